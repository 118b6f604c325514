/**
 * The Slack side of an access request's workflow: DMs asking each approver to decide, every
 * approver's message updated once their stage closes, the request's thread in the requester's DM
 * (confirmation, then each step), and manual tasks in the fulfilment group's channel.
 *
 * One activity, `notifySlack`, called by the workflow in order, one notice at a time. Idempotent:
 * each message is recorded in `slack_messages` under a key naming what it is for (request, stage,
 * approver, update), and a retry skips what was posted. Slack failures are classified like
 * connector errors (core/slack/client.ts): transient ones are retried by Temporal after the delay
 * Slack asked for; permanent ones fail the notice at once, after the other recipients got theirs.
 */
import type { WebClient } from '@slack/web-api';
import { PermanentError } from '@scim-gateway/connector-sdk';
import type { Db } from '../../core/db/pool.js';
import type { SlackConfig } from '../../core/config.js';
import { classifySlackError, slackClient } from '../../core/slack/client.js';
import { SlackIdentities } from '../../core/slack/identity.js';
import { approvalInfo, personName, requestFacts, stageOutcome, type RequestFacts } from '../../core/slack/facts.js';
import { approvalClosed, approvalRequest, durationText, requestConfirmation, reviewItemsMessage, REVIEW_ITEMS_PER_MESSAGE, taskMessage, threadUpdate, when, type SlackMessage } from '../../core/slack/messages.js';
import { listItems, pendingReviewers } from '../../core/access/reviews.js';
import { postedMessage, postedMessagesOf, recordPosted, recordShown } from '../../core/slack/store.js';
import { getTask } from '../../core/access/tasks.js';
import { toFailure } from './provisioning.js';

/** What the workflow tells Slack about. `type` is an access notice type, or one of the Slack-only events. */
export interface SlackNoticeInput {
  requestId: string;
  type: string;
  /** The stage the notice is about (awaiting-you, stage.closed). */
  stage?: number;
  recipientIds?: string[];
  /** The workflow's key of the notice (e.g. `task-grant`). */
  key?: string;
  /** When the stage times out (reminders), ISO 8601. */
  deadline?: string;
}

export interface SlackActivityDeps {
  db: Db;
  config: SlackConfig;
  /** The gateway's external base URL (PUBLIC_URL), for links to the console. */
  publicUrl?: string | undefined;
  /** For tests: a client of their own; default one from the config. */
  client?: WebClient;
}

export class SlackNotices {
  private readonly slack: WebClient;
  private readonly identities: SlackIdentities;

  constructor(private readonly deps: SlackActivityDeps) {
    this.slack = deps.client ?? slackClient(deps.config);
    this.identities = new SlackIdentities(deps.db, this.slack, deps.config.identityTtlSeconds);
  }

  private get db() {
    return this.deps.db;
  }

  /** One Slack call, its failure classified. */
  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw classifySlackError(what, err);
    }
  }

  private async slackUserOf(userId: string): Promise<string | undefined> {
    return await this.call('looking up a Slack user', () => this.identities.slackUserOf(userId));
  }

  /** Posts `message` once under `key` (to a user's DM or a channel); answers where it is. */
  private async postOnce(key: string, what: Omit<Parameters<typeof recordPosted>[1], 'key' | 'channel' | 'ts'>, channel: string, message: SlackMessage, threadTs?: string) {
    const known = await postedMessage(this.db, key);
    if (known) return known;
    const res = await this.call(`posting ${what.kind}`, () =>
      this.slack.chat.postMessage({ channel, text: message.text, blocks: message.blocks as never, unfurl_links: false, ...(threadTs ? { thread_ts: threadTs } : {}) }),
    );
    const posted = { key, ...what, channel: res.channel!, ts: res.ts! };
    await recordPosted(this.db, posted);
    return { ...posted, shown: 'open' };
  }

  /** The request's thread in the requester's DM (started with the confirmation when missing), or undefined when the requester is not on Slack. */
  private async thread(f: RequestFacts) {
    const key = `${f.id}:thread`;
    const known = await postedMessage(this.db, key);
    if (known) return known;
    const user = await this.slackUserOf(f.requesterId);
    if (!user) return undefined;
    const confirmation = requestConfirmation({ requestId: f.id, resource: f.policy.displayName, durationSeconds: f.durationSeconds, justification: f.justification, stageCount: f.policy.stages.length });
    return await this.postOnce(key, { requestId: f.id, kind: 'thread', recipientId: f.requesterId, stage: null }, user, confirmation);
  }

  /** A line in the request's thread, once per `what`. */
  private async say(f: RequestFacts, what: string, text: string, extend = false): Promise<void> {
    const parent = await this.thread(f);
    if (!parent) return;
    await this.postOnce(`${f.id}:thread:${what}`, { requestId: f.id, kind: 'thread-update', recipientId: f.requesterId, stage: null }, parent.channel, threadUpdate(text, extend ? f.id : undefined), parent.ts);
  }

  /** DMs each approver of `stage`; a permanent failure for one does not keep the others from theirs. */
  private async askApprovers(f: RequestFacts, stage: number, approverIds: string[]): Promise<void> {
    const info = approvalInfo(f, stage);
    const permanent: Error[] = [];
    for (const approverId of approverIds) {
      const key = `${f.id}:approval:${stage}:${approverId}`;
      if (await postedMessage(this.db, key)) continue;
      try {
        const user = await this.slackUserOf(approverId);
        if (!user) continue; // not on Slack: the webhook notice and GET /api/approvals still reach them
        await this.postOnce(key, { requestId: f.id, kind: 'approval', recipientId: approverId, stage }, user, approvalRequest(info));
      } catch (err) {
        if (!(err instanceof PermanentError)) throw err;
        permanent.push(err);
      }
    }
    // The stage may have closed while the DMs went out: those messages show it at once.
    await this.closeApprovals(f);
    if (permanent[0]) throw permanent[0];
  }

  /**
   * Reminds approvers who have not decided yet, as a reply under the approval message they got (so
   * the buttons are one scroll away), once per reminder. An approver without such a message gets
   * none: they were not reached on Slack in the first place.
   */
  private async remindApprovers(f: RequestFacts, stage: number, approverIds: string[], reminderKey: string, deadline: string | undefined): Promise<void> {
    const open = (await stageOutcome(this.db, f, stage)).open;
    if (!open) return;
    const until = deadline ? ` before ${when(deadline)}` : '';
    for (const approverId of approverIds) {
      const approval = await postedMessage(this.db, `${f.id}:approval:${stage}:${approverId}`);
      if (!approval) continue;
      await this.postOnce(
        `${f.id}:reminder:${stage}:${approverId}:${reminderKey}`,
        { requestId: f.id, kind: 'reminder', recipientId: approverId, stage },
        approval.channel,
        { text: `Reminder: this request still needs your decision${until}.`, blocks: [{ type: 'section', text: { type: 'mrkdwn', text: `:alarm_clock: Reminder: this request still needs your decision${until}.` } }] },
        approval.ts,
      );
    }
  }

  /** Updates (chat.update) every approval message whose stage has closed to show who decided and when. */
  private async closeApprovals(f: RequestFacts): Promise<void> {
    const messages = (await postedMessagesOf(this.db, f.id, 'approval')).filter((m) => m.shown !== 'closed');
    const outcomes = new Map<number, Awaited<ReturnType<typeof stageOutcome>>>();
    for (const m of messages) {
      const stage = m.stage!;
      if (!outcomes.has(stage)) outcomes.set(stage, await stageOutcome(this.db, f, stage));
      const outcome = outcomes.get(stage)!;
      if (outcome.open) continue;
      const closed = approvalClosed(approvalInfo(f, stage), outcome);
      await this.call('updating an approval message', () => this.slack.chat.update({ channel: m.channel, ts: m.ts, text: closed.text, blocks: closed.blocks as never }));
      await recordShown(this.db, m.key, 'closed');
    }
  }

  private async task(f: RequestFacts, kind: 'grant' | 'revoke'): Promise<void> {
    const { rows } = await this.db.query<{ id: string; group_id: string | null; group_name: string | null }>(
      'SELECT t.id, t.group_id, g.display_name AS group_name FROM access_tasks t LEFT JOIN groups g ON g.id = t.group_id WHERE t.request_id = $1 AND t.kind = $2',
      [f.id, kind],
    );
    const row = rows[0];
    if (!row) return;
    const channels = this.deps.config.taskChannels;
    const channel = (row.group_name ? channels[row.group_name] : undefined) ?? (row.group_id ? channels[row.group_id] : undefined) ?? channels['*'];
    if (!channel) return; // no channel for this group: the webhook notice and GET /api/tasks reach its members
    const found = await getTask(this.db, row.id);
    if (!found) return;
    const t = found.task;
    const message = taskMessage({ taskId: t.id, kind: t.kind, requester: f.requester.name, resource: t.displayName, instructions: t.instructions, status: t.status, claimedBy: t.claimedBy, closedBy: null, note: t.note });
    await this.postOnce(`${f.id}:task:${kind}`, { requestId: f.id, kind: 'task', recipientId: null, stage: null }, channel, message);
  }

  /**
   * DMs each reviewer with items pending in an access review: the first items with Keep and Revoke,
   * once per reviewer and notice (`key`: opened, a reminder, escalated). A reviewer not on Slack is
   * skipped (the webhook notice, the console and GET /api/reviews reach them); a permanent failure
   * for one does not keep the others from theirs.
   */
  async reviewers(n: { campaignId: string; type: 'review.awaiting-you' | 'review.reminder' | 'review.escalated'; key: string }): Promise<number> {
    const { rows } = await this.db.query<{ name: string; due_at: Date; escalated_until: Date | null }>('SELECT name, due_at, escalated_until FROM review_campaigns WHERE id = $1', [n.campaignId]);
    const c = rows[0];
    if (!c) throw new PermanentError(`access review ${n.campaignId} does not exist`, 'notFound');
    const deadline = (n.type === 'review.escalated' ? (c.escalated_until ?? c.due_at) : c.due_at).toISOString();
    const kind = n.type === 'review.reminder' ? 'reminder' : n.type === 'review.escalated' ? 'escalated' : 'awaiting';
    const permanent: Error[] = [];
    let sent = 0;
    for (const r of await pendingReviewers(this.db, n.campaignId)) {
      const key = `review:${n.campaignId}:${n.key}:${r.userId}`;
      if (await postedMessage(this.db, key)) continue;
      try {
        const user = await this.slackUserOf(r.userId);
        if (!user) continue;
        const items = await listItems(this.db, n.campaignId, { status: 'pending', reviewerId: r.userId, limit: REVIEW_ITEMS_PER_MESSAGE });
        const message = reviewItemsMessage({
          campaign: c.name,
          kind,
          pending: r.pending,
          deadline,
          items: items.map((i) => ({ itemId: i.id, userName: i.userName, entitlement: i.entitlement, birthright: i.birthright, rules: i.rules, ungranted: i.ungranted })),
          consoleUrl: this.deps.publicUrl?.replace(/\/+$/, ''),
        });
        await this.postOnce(key, { requestId: null, kind: 'review', recipientId: r.userId, stage: null }, user, message);
        sent++;
      } catch (err) {
        if (!(err instanceof PermanentError)) throw err;
        permanent.push(err);
      }
    }
    if (permanent[0]) throw permanent[0];
    return sent;
  }

  async notify(n: SlackNoticeInput): Promise<void> {
    const f = await requestFacts(this.db, n.requestId);
    if (!f) throw new PermanentError(`access request ${n.requestId} does not exist`, 'notFound');
    const stageLabel = (s: number) => `stage ${s + 1} of ${f.policy.stages.length} (${f.policy.stages[s]?.name ?? `stage ${s + 1}`})`;
    switch (n.type) {
      case 'request.opened':
        await this.thread(f);
        return;
      case 'request.awaiting-you':
        await this.askApprovers(f, n.stage ?? f.stage, n.recipientIds ?? []);
        return;
      case 'stage.closed': {
        const stage = n.stage ?? f.stage;
        await this.closeApprovals(f);
        const o = await stageOutcome(this.db, f, stage);
        const approvers = o.deciders.filter((d) => d.decision === 'approve').map((d) => d.name);
        if (approvers.length && !o.deciders.some((d) => d.decision === 'reject')) await this.say(f, `stage-${stage}`, `Approved by ${approvers.join(', ')} at ${stageLabel(stage)}.`);
        return;
      }
      case 'task.assigned':
        await this.task(f, n.key === 'task-revoke' ? 'revoke' : 'grant');
        return;
      case 'request.reminder':
        await this.remindApprovers(f, n.stage ?? f.stage, n.recipientIds ?? [], n.key ?? 'reminder', n.deadline);
        return;
    }
    // The request moved on: every approval message shows it, and the thread says so.
    await this.closeApprovals(f);
    const resource = f.policy.displayName;
    switch (n.type) {
      case 'request.decided': {
        if (f.status === 'rejected') {
          const { rows } = await this.db.query<{ user_name: string; resource: Record<string, unknown>; stage: number; comment: string | null }>(
            `SELECT u.user_name, u.resource, d.stage, d.comment FROM access_request_decisions d JOIN users u ON u.id = d.approver_id
              WHERE d.request_id = $1 AND d.accepted AND d.decision = 'reject' ORDER BY d.id LIMIT 1`,
            [f.id],
          );
          const by = rows[0];
          const text = by
            ? `Rejected by ${personName(by.user_name, by.resource)} at ${stageLabel(by.stage)}${by.comment ? `: ${by.comment}` : '.'}`
            : `Your request for ${resource} was rejected: ${f.reason ?? 'no reason given'}.`;
          await this.say(f, 'decided', text);
        } else {
          await this.say(f, 'decided', `Approved. ${f.policy.fulfilment.mode === 'manual' ? 'The fulfilment team will give you the access.' : `Your access to ${resource} is being given.`}`);
        }
        return;
      }
      case 'request.fulfilled':
        await this.say(f, 'fulfilled', `Your access to ${resource} is in place${f.grantUntil ? ` until ${when(f.grantUntil)}` : f.durationSeconds !== null ? ` for ${durationText(f.durationSeconds)}` : ''}.`);
        return;
      case 'request.failed':
        await this.say(f, 'failed', `Your access to ${resource} could not be given: ${f.reason ?? 'no reason given'}.`);
        return;
      case 'request.expired':
        await this.say(f, 'expired', `Your request for ${resource} expired: ${f.reason ?? 'it was not decided in time'}.`);
        return;
      case 'request.cancelled':
        await this.say(f, 'cancelled', `Your request for ${resource} was cancelled.`);
        return;
    }
    // Notices about running access (its end coming, its end).
    if (/expiring/.test(n.type)) {
      await this.say(f, `${n.type}:${n.key ?? ''}`, `Your access to ${resource} ends${f.grantUntil ? ` at ${when(f.grantUntil)}` : ' soon'}. Need more time? Ask for an extension.`, f.policy.fulfilment.mode === 'automatic');
    } else if (/ended|access\.expired|revoked/.test(n.type)) {
      await this.say(f, `${n.type}:${n.key ?? ''}`, `Your access to ${resource} has ended.`);
    }
  }
}

/** The Slack activities; without a Slack configuration they do nothing. */
export function slackActivities(deps: SlackActivityDeps | SlackNotices | undefined) {
  const notices = deps instanceof SlackNotices ? deps : deps ? new SlackNotices(deps) : undefined;
  return {
    /**
     * Tells Slack about a step of an access request (DMs, message updates, the request's thread,
     * tasks). Answers whether the Slack app is configured, so a workflow stops asking when it is not.
     */
    async notifySlack(input: SlackNoticeInput): Promise<boolean> {
      if (!notices) return false;
      try {
        await notices.notify(input);
      } catch (err) {
        throw toFailure(`Slack ${input.type}`, err);
      }
      return true;
    },
  };
}
