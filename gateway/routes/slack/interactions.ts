/**
 * What the Slack app does with a callback, whatever carried it (HTTP, verified by
 * ../../plugins/slack-signature.ts, or Socket Mode): slash commands, interactions (buttons and
 * modal submissions) and events (DMs to the bot).
 *
 * Slack wants an answer within 3 seconds, so each handler answers at once and does the work in
 * the background: a decision goes to the request's workflow (a Temporal Update, see
 * ../../access-decisions.ts), and the messages that follow are posted by the workflow's activities.
 * Only a submitted request form is handled before answering, because validation errors must be
 * shown in the form itself; that is a few PostgreSQL queries. Replies to the person who clicked or
 * typed (explanations, refusals, lists) are ephemeral messages.
 */
import type { FastifyBaseLogger } from 'fastify';
import type { Client } from '@temporalio/client';
import type { WebClient } from '@slack/web-api';
import type { Db } from '../../../core/db/pool.js';
import type { SchemaRegistry } from '../../../core/scim/schemas.js';
import { SlackIdentities, type MappedUser } from '../../../core/slack/identity.js';
import { slackErrorCode } from '../../../core/slack/client.js';
import { findPolicy, listPolicies, type AccessPolicy } from '../../../core/access/policies.js';
import { approvalsOf, createRequest, isEligible, listRequestsOf, RequestRefused } from '../../../core/access/requests.js';
import { claimTask, getTask } from '../../../core/access/tasks.js';
import { formatDuration, understand, parseDuration } from '../../../core/slack/matching.js';
import { approvalInfo, requestFacts, stageOutcome } from '../../../core/slack/facts.js';
import {
  ACTION,
  approvalRequest,
  choiceMessage,
  durationText,
  esc,
  rejectReasonModal,
  requestModal,
  taskMessage,
  VIEW,
  when,
  type PolicyOption,
  type RequestDraft,
  type SlackMessage,
} from '../../../core/slack/messages.js';
import { markSeen } from '../../../core/slack/store.js';
import { decideAs } from '../../access-decisions.js';
import { decideReviewsAs } from '../../review-decisions.js';
import { AccessRequestNotRunning, AccessRequestRefusal, completeAccessTask } from '../../../workflows/client.js';

export interface SlackAppDeps {
  db: Db;
  registry: SchemaRegistry;
  slack: WebClient;
  temporal: () => Promise<Client>;
  /** Has the outbox start the new request's workflow now rather than at its next poll. */
  kickOutbox: () => void;
  identityTtlSeconds: number;
  log: FastifyBaseLogger;
}

type Json = Record<string, unknown>;
/** A payload field as text ('' when absent or not text). */
const str = (v: unknown): string => (typeof v === 'string' ? v : typeof v === 'number' ? String(v) : '');
/** The synchronous answer to a callback (its HTTP body, or the Socket Mode ack payload). */
export type Ack = Json | string | undefined;

const HELP = [
  '*/access* `<what you need>`: ask for access in plain words, e.g. `/access vpn for 2 days to fix the build`',
  '*/access list*: your access and your pending requests',
  '*/access inbox*: requests waiting for your decision',
].join('\n');

export class SlackInteractions {
  private readonly identities: SlackIdentities;
  private readonly running = new Set<Promise<void>>();

  constructor(private readonly deps: SlackAppDeps) {
    this.identities = new SlackIdentities(deps.db, deps.slack, deps.identityTtlSeconds);
  }

  /** Resolves once every piece of background work started so far is finished (for shutdown and tests). */
  async idle(): Promise<void> {
    while (this.running.size) await Promise.all([...this.running]);
  }

  private later(what: string, work: () => Promise<void>): void {
    const p = work()
      .catch((err: unknown) => this.deps.log.error({ err: { message: (err as Error)?.message, slack: slackErrorCode(err) } }, `Slack ${what} failed`))
      .finally(() => this.running.delete(p));
    this.running.add(p);
  }

  private get slack() {
    return this.deps.slack;
  }

  /** An ephemeral reply where the person is, or a DM when the bot cannot post there. */
  private async tell(user: string, channel: string | undefined, m: SlackMessage): Promise<void> {
    if (channel) {
      try {
        await this.slack.chat.postEphemeral({ channel, user, text: m.text, blocks: m.blocks as never });
        return;
      } catch (err) {
        const code = slackErrorCode(err);
        if (code !== 'channel_not_found' && code !== 'not_in_channel' && code !== 'user_not_in_channel') throw err;
      }
    }
    await this.slack.chat.postMessage({ channel: user, text: m.text, blocks: m.blocks as never });
  }

  private text(s: string): SlackMessage {
    return { text: s, blocks: [{ type: 'section', text: { type: 'mrkdwn', text: s.slice(0, 3000) } }] };
  }

  /** The directory user of a Slack user, or undefined after telling them why there is none. */
  private async who(slackUser: string, channel: string | undefined): Promise<MappedUser | undefined> {
    const found = await this.identities.resolve(slackUser);
    if ('unmapped' in found) {
      await this.tell(slackUser, channel, this.text(`I can't match your Slack account to a directory account (${found.unmapped}), so I can't do anything for you. Ask your administrator.`));
      return undefined;
    }
    return found;
  }

  private async eligiblePolicies(userId: string): Promise<AccessPolicy[]> {
    const out: AccessPolicy[] = [];
    for (const p of await listPolicies(this.deps.db)) if (await isEligible(this.deps.db, this.deps.registry, p, userId)) out.push(p);
    return out;
  }

  private option(p: AccessPolicy): PolicyOption {
    return { name: p.name, displayName: p.displayName, defaultSeconds: p.durations.defaultSeconds, justificationRequired: p.justificationRequired };
  }

  private async openRequestForm(triggerId: string, userId: string, draft: RequestDraft): Promise<void> {
    const eligible = await this.eligiblePolicies(userId);
    await this.slack.views.open({ trigger_id: triggerId, view: requestModal(eligible.map((p) => this.option(p)), draft) as never });
  }

  // ------------------------------------------------------------------ slash commands

  command(fields: Record<string, string>): Ack {
    const user = fields.user_id ?? '';
    const channel = fields.channel_id;
    const text = (fields.text ?? '').trim();
    this.later('command', async () => {
      if (text === '' || text === 'help') return await this.tell(user, channel, this.text(HELP));
      const me = await this.who(user, channel);
      if (!me) return;
      await this.plainWords(me, user, channel, text, fields.trigger_id);
    });
    return undefined;
  }

  /** `list`, `inbox`, or a request in plain words: the form when it is clear, a choice when not. */
  private async plainWords(me: MappedUser, user: string, channel: string | undefined, text: string, triggerId: string | undefined, inDm = false): Promise<void> {
    const word = text.toLowerCase().replace(/[^a-z]/g, '');
    if (word === 'list') return await this.tell(user, channel, await this.list(me));
    if (word === 'inbox') return await this.tell(user, channel, await this.inbox(me));
    if (word === 'help') return await this.tell(user, channel, this.text(HELP));
    const eligible = await this.eligiblePolicies(me.userId);
    const u = understand(text, eligible);
    const draft: Omit<RequestDraft, 'policy'> = {
      ...(u.durationSeconds !== undefined ? { durationSeconds: u.durationSeconds } : {}),
      ...(u.permanent ? { permanent: true } : {}),
      ...(u.justification ? { justification: u.justification } : {}),
    };
    const reply = (m: SlackMessage) => (inDm && channel ? this.slack.chat.postMessage({ channel, text: m.text, blocks: m.blocks as never }).then(() => undefined) : this.tell(user, channel, m));
    if (u.policy && triggerId) return await this.openRequestForm(triggerId, me.userId, { ...draft, policy: u.policy.name });
    if (u.policy) return await reply(choiceMessage(`I understood: ${u.policy.displayName}${u.durationSeconds ? ` for ${durationText(u.durationSeconds)}` : ''}. Review and send the request:`, [u.policy], draft));
    if (u.choices.length) return await reply(choiceMessage('Which one do you mean?', u.choices, draft));
    const names = eligible.map((p) => p.displayName).slice(0, 30);
    await reply(this.text(names.length ? `I couldn't tell what you need. You can ask for: ${names.map(esc).join(', ')}.` : 'There is nothing you can request.'));
  }

  private async list(me: MappedUser): Promise<SlackMessage> {
    const mine = await listRequestsOf(this.deps.db, me.userId, 50);
    const { rows: grants } = await this.deps.db.query<{ request_id: string; valid_until: Date | null }>(
      `SELECT r.id AS request_id, g.valid_until FROM access_requests r JOIN grants g ON g.id = r.grant_id AND g.status = 'active' WHERE r.requester_id = $1`,
      [me.userId],
    );
    const until = new Map(grants.map((g) => [g.request_id, g.valid_until]));
    const access = mine.filter((r) => r.status === 'fulfilled' && (until.has(r.id) || r.grantId === null));
    const pending = mine.filter((r) => r.status === 'pending' || r.status === 'approved');
    const lines = ['*Your access*', ...(access.length ? access.map((r) => `• ${esc(r.displayName)}${until.get(r.id) ? ` until ${when(until.get(r.id)!)}` : ''}`) : ['_none through requests_'])];
    lines.push('*Your pending requests*', ...(pending.length ? pending.map((r) => `• ${esc(r.displayName)}: ${r.status}, stage ${Math.min(r.stage + 1, r.stages.length || 1)} (\`${r.id}\`)`) : ['_none_']));
    return this.text(lines.join('\n'));
  }

  private async inbox(me: MappedUser): Promise<SlackMessage> {
    const waiting = await approvalsOf(this.deps.db, me.userId, 10);
    if (waiting.length === 0) return this.text('Nothing is waiting for your decision.');
    const blocks: unknown[] = [{ type: 'section', text: { type: 'mrkdwn', text: `*${waiting.length} request(s) wait for your decision*` } }];
    for (const r of waiting) {
      const f = await requestFacts(this.deps.db, r.id);
      if (f) blocks.push(...approvalRequest(approvalInfo(f, r.stage)).blocks, { type: 'divider' });
    }
    return { text: `${waiting.length} request(s) wait for your decision`, blocks: blocks.slice(0, 50) as SlackMessage['blocks'] };
  }

  // ------------------------------------------------------------------ events

  event(body: Json): Ack {
    if (body.type === 'url_verification') return { challenge: body.challenge };
    if (body.type !== 'event_callback') return undefined;
    const event = (body.event ?? {}) as Json;
    const eventId = typeof body.event_id === 'string' ? body.event_id : undefined;
    this.later('event', async () => {
      // Slack retries an event it thinks was not received; each is handled once.
      if (eventId && !(await markSeen(this.deps.db, `event:${eventId}`, new Date(Date.now() + 3_600_000)))) return;
      const isDm = event.type === 'message' && event.channel_type === 'im' && !event.bot_id && !event.subtype && typeof event.user === 'string';
      if (!isDm) return;
      const user = event.user as string;
      const channel = event.channel as string;
      const me = await this.who(user, undefined);
      if (!me) return;
      await this.plainWords(me, user, channel, str(event.text), undefined, true);
    });
    return undefined;
  }

  // ------------------------------------------------------------------ interactions

  async interaction(payload: Json): Promise<Ack> {
    const user = str(((payload.user ?? {}) as Json).id);
    const container = (payload.container ?? {}) as Json;
    const channel = (((payload.channel ?? {}) as Json).id ?? container.channel_id) as string | undefined;
    if (payload.type === 'block_actions') {
      const action = ((payload.actions as Json[] | undefined) ?? [])[0] ?? {};
      const id = str(action.action_id);
      const value = str(action.value);
      const triggerId = payload.trigger_id as string | undefined;
      const message = (payload.message ?? {}) as Json;
      const where = { channel, ts: (message.ts ?? container.message_ts) as string | undefined };
      this.later(id, async () => {
        const me = await this.who(user, where.channel);
        if (!me) return;
        if (id === ACTION.approve) return await this.decide(me, user, where.channel, value, 'approve');
        if (id === ACTION.reject) return await this.askReason(me, user, where, value, triggerId);
        if (id.startsWith(`${ACTION.choose}:`) && triggerId) return await this.openRequestForm(triggerId, me.userId, JSON.parse(value) as RequestDraft);
        if (id === ACTION.extend && triggerId) return await this.extend(me, user, where.channel, value, triggerId);
        if (id === ACTION.claim || id === ACTION.done) return await this.task(me, user, where, value, id === ACTION.claim ? 'claim' : 'done');
        if (id === ACTION.reviewKeep || id === ACTION.reviewRevoke) return await this.review(me, user, where.channel, value, id === ACTION.reviewKeep ? 'keep' : 'revoke');
      });
      return undefined;
    }
    if (payload.type === 'view_submission') {
      const view = (payload.view ?? {}) as Json;
      const values = ((view.state ?? {}) as Json).values as Record<string, Record<string, { value?: string | null; selected_option?: { value: string } | null }>> | undefined;
      const field = (block: string) => {
        const v = values?.[block]?.value;
        return v?.selected_option?.value ?? v?.value ?? undefined;
      };
      if (view.callback_id === VIEW.request) return await this.submitRequest(user, field, (str(view.private_metadata) || '{}'));
      if (view.callback_id === VIEW.rejectReason) {
        const meta = JSON.parse((str(view.private_metadata) || '{}')) as { requestId: string; stage: number; channel: string | null };
        const reason = (field('reason') ?? '').trim();
        if (!reason) return { response_action: 'errors', errors: { reason: 'Say why you reject the request.' } };
        this.later('rejection', async () => {
          const me = await this.who(user, meta.channel ?? undefined);
          if (me) await this.decide(me, user, meta.channel ?? undefined, `${meta.requestId}:${meta.stage}`, 'reject', reason);
        });
        return undefined;
      }
    }
    return undefined;
  }

  /** Approve or reject as the clicker; refusals and stale buttons get an ephemeral answer with where the request stands. */
  private async decide(me: MappedUser, user: string, channel: string | undefined, value: string, decision: 'approve' | 'reject', comment?: string): Promise<void> {
    const [requestId] = value.split(':');
    if (!requestId) return;
    const outcome = await decideAs(this.deps.db, this.deps.temporal, me, requestId, decision, comment);
    const f = await requestFacts(this.deps.db, requestId);
    const resource = f?.policy.displayName ?? 'the resource';
    const requester = f?.requester.name ?? 'someone';
    if (outcome.ok) {
      // An approval that completes the request wrote its grant: provisioning starts now.
      this.deps.kickOutbox();
      await this.tell(user, channel, this.text(`You ${decision === 'approve' ? 'approved' : 'rejected'} ${esc(requester)}'s request for ${esc(resource)}. It is now ${outcome.state.status}.`));
      return;
    }
    if (outcome.status === 409 && f) {
      // A stale button: say where the request stands and who decided.
      const o = await stageOutcome(this.deps.db, f, Number(value.split(':')[1] ?? f.stage));
      const by = o.deciders.map((d) => `${d.decision === 'approve' ? 'approved' : 'rejected'} by ${esc(d.name)} at ${when(d.at)}`).join('; ');
      await this.tell(user, channel, this.text(`This request is already ${f.status}${by ? ` (${by})` : ''}${f.reason ? `: ${esc(f.reason)}` : ''}. Nothing changed.`));
      return;
    }
    await this.tell(user, channel, this.text(`You can't decide this request: ${esc(outcome.message)}. Nothing changed.`));
  }

  /**
   * Keep or Revoke on an access review item, as the clicker: the same rules as the API and the
   * console (only its reviewer, never their own access, a repeated click changes nothing, access
   * from a rule cannot be revoked here); the answer is ephemeral.
   */
  private async review(me: MappedUser, user: string, channel: string | undefined, itemId: string, decision: 'keep' | 'revoke'): Promise<void> {
    const [r] = await decideReviewsAs({ db: this.deps.db, temporal: { client: this.deps.temporal }, log: this.deps.log, kickOutbox: this.deps.kickOutbox }, me, [{ itemId, decision }]);
    if (!r) return;
    if (r.ok) {
      const i = r.item;
      const what = `${esc(i.userName)}'s ${esc(i.entitlement)}`;
      await this.tell(user, channel, this.text(i.decision === 'revoke' ? `You revoked ${what}: it is being removed from the target.` : `You kept ${what}.`));
      return;
    }
    await this.tell(user, channel, this.text(`${r.status === 409 ? 'Nothing changed' : "You can't decide this item"}: ${esc(r.message)}.`));
  }

  /** Reject asks why first (a modal); someone who may not decide is told so instead. */
  private async askReason(me: MappedUser, user: string, where: { channel: string | undefined; ts: string | undefined }, value: string, triggerId: string | undefined): Promise<void> {
    const [requestId, stageText] = value.split(':');
    const f = requestId ? await requestFacts(this.deps.db, requestId) : undefined;
    if (!f || !triggerId) return;
    const stage = Number(stageText);
    const { rows } = await this.deps.db.query('SELECT 1 FROM access_request_stages WHERE request_id = $1 AND stage = $2 AND status = $3 AND $4 = ANY (approver_ids)', [f.id, stage, 'open', me.userId]);
    if (f.status !== 'pending' || f.stage !== stage || rows.length === 0) {
      // Not (or no longer) theirs to decide: the same answer a decision would get, and it is recorded like one.
      return await this.decide(me, user, where.channel, value, 'reject');
    }
    await this.slack.views.open({ trigger_id: triggerId, view: rejectReasonModal({ requestId: f.id, stage, channel: where.channel ?? null, ts: where.ts ?? null }, f.policy.displayName) as never });
  }

  private async extend(me: MappedUser, user: string, channel: string | undefined, requestId: string, triggerId: string): Promise<void> {
    const f = await requestFacts(this.deps.db, requestId);
    if (!f || f.requesterId !== me.userId) return await this.tell(user, channel, this.text('That is not your request.'));
    await this.openRequestForm(triggerId, me.userId, { policy: f.policy.name, extends: f.id, ...(f.durationSeconds !== null ? { durationSeconds: f.durationSeconds } : {}) });
  }

  private async submitRequest(user: string, field: (block: string) => string | undefined, metadata: string): Promise<Ack> {
    const me = await this.identities.resolve(user);
    if ('unmapped' in me) return { response_action: 'errors', errors: { policy: `Your Slack account has no directory account (${me.unmapped}).` } };
    const errors: Record<string, string> = {};
    const policyName = field('policy');
    const policy = policyName ? await findPolicy(this.deps.db, policyName) : undefined;
    if (!policy) errors.policy = 'Choose what you need.';
    const durationText = (field('duration') ?? '').trim();
    const duration = durationText ? parseDuration(durationText) : undefined;
    if (durationText && !duration) errors.duration = 'Write a duration like "8 hours", "2 days" or "permanent".';
    if (Object.keys(errors).length || !policy) return { response_action: 'errors', errors };
    let extendsId: string | undefined;
    try {
      extendsId = (JSON.parse(metadata) as { extends?: string | null }).extends ?? undefined;
    } catch {
      extendsId = undefined;
    }
    const justification = field('justification');
    try {
      await createRequest(this.deps.db, this.deps.registry, {
        policy,
        requesterId: me.userId,
        createdBy: `slack:${user}`,
        ...(justification ? { justification } : {}),
        ...(duration && 'seconds' in duration ? { durationSeconds: duration.seconds } : {}),
        ...(duration && 'permanent' in duration ? { permanent: true } : {}),
        ...(extendsId ? { extendsId } : {}),
      });
    } catch (err) {
      if (!(err instanceof RequestRefused)) throw err;
      const block = /justification/.test(err.message) ? 'justification' : /duration|permanent|extends/.test(err.message) ? 'duration' : 'policy';
      // The API's refusals name its fields; the form says it in its own words.
      const max = /at most (\d+) s$/.exec(err.message);
      const message = max ? `${policy.displayName} can be granted for at most ${formatDuration(Number(max[1]))}.` : err.message.replace(/ \(durationSeconds\)$/, '').replace(/^durationSeconds: /, '');
      return { response_action: 'errors', errors: { [block]: message.slice(0, 2000) } };
    }
    this.deps.kickOutbox();
    return undefined;
  }

  private async task(me: MappedUser, user: string, where: { channel: string | undefined; ts: string | undefined }, taskId: string, what: 'claim' | 'done'): Promise<void> {
    const found = await getTask(this.deps.db, taskId);
    if (!found || !found.assignees.includes(me.userId)) return await this.tell(user, where.channel, this.text('This task is not for you: you are not in its fulfilment group. Nothing changed.'));
    if (what === 'claim') {
      if (!(await claimTask(this.deps.db, taskId, me.userId, me.userName))) return await this.tell(user, where.channel, this.text(`This task is already ${found.task.status}${found.task.claimedBy ? ` (claimed by ${esc(found.task.claimedBy)})` : ''}.`));
    } else {
      try {
        const client = await this.deps.temporal();
        await completeAccessTask(client, found.task.requestId, { taskId, actorId: me.userId, outcome: 'done' });
      } catch (err) {
        if (err instanceof AccessRequestRefusal) return await this.tell(user, where.channel, this.text(`You can't close this task: ${esc(err.message)}. Nothing changed.`));
        if (!(err instanceof AccessRequestNotRunning)) throw err;
        const now = (await getTask(this.deps.db, taskId))!;
        if (now.task.status !== 'done') return await this.tell(user, where.channel, this.text(`This task is ${now.task.status}. Nothing changed.`));
      }
    }
    const now = (await getTask(this.deps.db, taskId))!.task;
    const f = await requestFacts(this.deps.db, now.requestId);
    const { rows } = await this.deps.db.query<{ user_name: string }>('SELECT u.user_name FROM access_tasks t JOIN users u ON u.id = t.closed_by WHERE t.id = $1', [taskId]);
    const m = taskMessage({ taskId, kind: now.kind, requester: f?.requester.name ?? now.requester, resource: now.displayName, instructions: now.instructions, status: now.status, claimedBy: now.claimedBy, closedBy: rows[0]?.user_name ?? null, note: now.note });
    if (where.channel && where.ts) await this.slack.chat.update({ channel: where.channel, ts: where.ts, text: m.text, blocks: m.blocks as never });
  }
}
