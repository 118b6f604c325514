/**
 * The Slack app's messages and modals (Block Kit), built from plain data so they can be tested
 * and reused by the gateway (answers to clicks and commands) and the activities (notifications).
 * Action and callback ids name what a click or submission does; button values carry the ids.
 */
import { formatDuration } from './matching.js';

/** Action ids of buttons, and callback ids of modals. */
export const ACTION = {
  approve: 'access.approve',
  reject: 'access.reject',
  /** Prefix: `access.choose:<policy>` opens the request form for that policy. */
  choose: 'access.choose',
  extend: 'access.extend',
  claim: 'access.task-claim',
  done: 'access.task-done',
  /** Access review buttons; the value is the review item's id. */
  reviewKeep: 'review.keep',
  reviewRevoke: 'review.revoke',
} as const;
export const VIEW = { request: 'access.request', rejectReason: 'access.reject-reason' } as const;

type Block = Record<string, unknown>;
export interface SlackMessage {
  text: string;
  blocks: Block[];
}

/** Slack's mrkdwn with `&`, `<` and `>` escaped, so names and reasons never become links or mentions. */
export function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
const plain = (text: string) => ({ type: 'plain_text', text: text.slice(0, 150), emoji: true });
const section = (text: string): Block => ({ type: 'section', text: { type: 'mrkdwn', text: text.slice(0, 3000) } });
const context = (text: string): Block => ({ type: 'context', elements: [{ type: 'mrkdwn', text: text.slice(0, 3000) }] });
const button = (text: string, action_id: string, value: string, style?: 'primary' | 'danger'): Block => ({ type: 'button', text: plain(text), action_id, value, ...(style ? { style } : {}) });

/** When, for people: `2026-12-07 05:22 UTC`. */
export function when(at: Date | string): string {
  return `${new Date(at).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

export function durationText(seconds: number | null): string {
  return seconds === null ? 'permanent' : formatDuration(seconds);
}

/** What an approver is asked to decide. */
export interface ApprovalInfo {
  requestId: string;
  requester: { name: string; userName: string; title: string | null; manager: string | null };
  resource: string;
  policy: string;
  durationSeconds: number | null;
  justification: string | null;
  stage: number;
  stageName: string;
  stageCount: number;
}

/** How a stage ended, for every approver's message. */
export interface StageOutcome {
  status: string;
  /** Who decided (their names) and when; empty when nobody did (timeout, cancellation). */
  deciders: Array<{ name: string; decision: 'approve' | 'reject'; at: string; comment: string | null }>;
  reason: string | null;
}

function approvalFacts(a: ApprovalInfo): Block[] {
  const who = [`*${esc(a.requester.name)}*`, a.requester.title ? esc(a.requester.title) : undefined, a.requester.manager ? `manager: ${esc(a.requester.manager)}` : undefined].filter(Boolean).join(' · ');
  return [
    section(`${who} asks for *${esc(a.resource)}*`),
    {
      type: 'section',
      fields: [
        { type: 'mrkdwn', text: `*Resource*\n${esc(a.resource)} (\`${esc(a.policy)}\`)` },
        { type: 'mrkdwn', text: `*Duration*\n${durationText(a.durationSeconds)}` },
        { type: 'mrkdwn', text: `*Justification*\n${a.justification ? esc(a.justification) : '_none given_'}` },
        { type: 'mrkdwn', text: `*Stage*\n${a.stage + 1} of ${a.stageCount} (${esc(a.stageName)})` },
      ],
    },
  ];
}

/** The DM asking an approver to decide, with Approve and Reject. */
export function approvalRequest(a: ApprovalInfo): SlackMessage {
  const value = `${a.requestId}:${a.stage}`;
  return {
    text: `${a.requester.name} asks for ${a.resource}: your decision is needed (stage ${a.stage + 1} of ${a.stageCount})`,
    blocks: [
      ...approvalFacts(a),
      { type: 'actions', block_id: `decide:${value}`, elements: [button('Approve', ACTION.approve, value, 'primary'), button('Reject', ACTION.reject, value, 'danger')] },
      context(`Request \`${a.requestId}\``),
    ],
  };
}

/** The same DM once its stage closed: who decided and when, no buttons. */
export function approvalClosed(a: ApprovalInfo, o: StageOutcome): SlackMessage {
  const lines = o.deciders.map((d) => `${d.decision === 'approve' ? ':white_check_mark: Approved' : ':x: Rejected'} by *${esc(d.name)}* at ${when(d.at)}${d.comment ? `: ${esc(d.comment)}` : ''}`);
  if (lines.length === 0) lines.push(`Closed without a decision at this stage: ${esc(o.reason ?? o.status)}`);
  return {
    text: `${a.requester.name}'s request for ${a.resource}, stage ${a.stage + 1}: ${o.deciders.map((d) => `${d.decision === 'approve' ? 'approved' : 'rejected'} by ${d.name}`).join(', ') || o.status}`,
    blocks: [...approvalFacts(a), section(lines.join('\n')), context(`Request \`${a.requestId}\` is ${o.status}`)],
  };
}

/** A policy offered in the request form. */
export interface PolicyOption {
  name: string;
  displayName: string;
  defaultSeconds: number | null;
  justificationRequired: boolean;
}

/** What the request form opens with. */
export interface RequestDraft {
  policy?: string;
  durationSeconds?: number;
  permanent?: boolean;
  justification?: string;
  extends?: string;
}

/** The request form (a modal), prefilled with what was understood. */
export function requestModal(options: PolicyOption[], draft: RequestDraft): Record<string, unknown> {
  const opt = (p: PolicyOption) => ({ text: plain(p.displayName), value: p.name, description: plain(p.name) });
  const chosen = options.find((p) => p.name === draft.policy);
  const duration = draft.permanent ? 'permanent' : draft.durationSeconds !== undefined ? formatDuration(draft.durationSeconds) : undefined;
  return {
    type: 'modal',
    callback_id: VIEW.request,
    private_metadata: JSON.stringify({ extends: draft.extends ?? null }),
    title: plain(draft.extends ? 'Extend access' : 'Request access'),
    submit: plain('Request'),
    close: plain('Cancel'),
    blocks: [
      {
        type: 'input',
        block_id: 'policy',
        label: plain('What'),
        element: { type: 'static_select', action_id: 'value', options: options.slice(0, 100).map(opt), ...(chosen ? { initial_option: opt(chosen) } : {}), placeholder: plain('Choose a resource') },
      },
      {
        type: 'input',
        block_id: 'duration',
        optional: true,
        label: plain('For how long'),
        hint: plain('e.g. 8 hours, 2 days, 1 week, permanent; empty: the usual duration'),
        element: { type: 'plain_text_input', action_id: 'value', ...(duration ? { initial_value: duration } : {}) },
      },
      {
        type: 'input',
        block_id: 'justification',
        optional: true,
        label: plain('Why'),
        element: { type: 'plain_text_input', action_id: 'value', multiline: true, max_length: 3000, ...(draft.justification ? { initial_value: draft.justification } : {}) },
      },
    ],
  };
}

/** The modal asking an approver why they reject. */
export function rejectReasonModal(meta: { requestId: string; stage: number; channel: string | null; ts: string | null }, resource: string): Record<string, unknown> {
  return {
    type: 'modal',
    callback_id: VIEW.rejectReason,
    private_metadata: JSON.stringify(meta),
    title: plain('Reject request'),
    submit: plain('Reject'),
    close: plain('Cancel'),
    blocks: [
      section(`Rejecting the request for *${esc(resource)}*. The requester sees your reason.`),
      { type: 'input', block_id: 'reason', label: plain('Reason'), element: { type: 'plain_text_input', action_id: 'value', multiline: true, max_length: 3000 } },
    ],
  };
}

/** "Which one did you mean?": one button per candidate, each opening the form for it. */
export function choiceMessage(intro: string, choices: Array<{ name: string; displayName: string }>, draft: Omit<RequestDraft, 'policy'>): SlackMessage {
  return {
    text: intro,
    blocks: [
      section(esc(intro)),
      {
        type: 'actions',
        elements: choices.slice(0, 25).map((c) => button(c.displayName, `${ACTION.choose}:${c.name}`, JSON.stringify({ ...draft, policy: c.name }).slice(0, 2000))),
      },
    ],
  };
}

/** The confirmation that starts a request's thread in the requester's DM. */
export function requestConfirmation(r: { requestId: string; resource: string; durationSeconds: number | null; justification: string | null; stageCount: number }): SlackMessage {
  const text = `Your request for ${r.resource} (${durationText(r.durationSeconds)}) is recorded${r.stageCount ? `; it needs ${r.stageCount} approval stage${r.stageCount === 1 ? '' : 's'}` : ''}. Updates follow in this thread.`;
  return {
    text,
    blocks: [section(`:inbox_tray: ${esc(text)}`), ...(r.justification ? [context(`Justification: ${esc(r.justification)}`)] : []), context(`Request \`${r.requestId}\``)],
  };
}

/** A line in the request's thread. */
export function threadUpdate(text: string, extendRequestId?: string): SlackMessage {
  return {
    text,
    blocks: [section(esc(text)), ...(extendRequestId ? [{ type: 'actions', elements: [button('Extend', ACTION.extend, extendRequestId, 'primary')] }] : [])],
  };
}

/** A manual fulfilment task for the fulfilment group's channel. */
export interface TaskInfo {
  taskId: string;
  kind: 'grant' | 'revoke';
  requester: string;
  resource: string;
  instructions: string | null;
  status: 'open' | 'claimed' | 'done' | 'failed';
  claimedBy: string | null;
  closedBy: string | null;
  note: string | null;
}

export function taskMessage(t: TaskInfo): SlackMessage {
  const what = t.kind === 'grant' ? `Give *${esc(t.requester)}* access to *${esc(t.resource)}*` : `Take *${esc(t.resource)}* away from *${esc(t.requester)}* (the access ended)`;
  const state =
    t.status === 'open'
      ? 'Open: nobody has claimed it yet.'
      : t.status === 'claimed'
        ? `Claimed by *${esc(t.claimedBy ?? 'someone')}*.`
        : `${t.status === 'done' ? ':white_check_mark: Done' : ':x: Failed'}${t.closedBy ? ` by *${esc(t.closedBy)}*` : ''}${t.note ? `: ${esc(t.note)}` : ''}`;
  const buttons = t.status === 'open' ? [button('Claim', ACTION.claim, t.taskId), button('Done', ACTION.done, t.taskId, 'primary')] : t.status === 'claimed' ? [button('Done', ACTION.done, t.taskId, 'primary')] : [];
  return {
    text: `${t.kind === 'grant' ? 'Manual task' : 'Revocation task'}: ${t.resource} for ${t.requester} (${t.status})`,
    blocks: [
      section(`:hammer_and_wrench: ${what}`),
      ...(t.instructions ? [context(`Instructions: ${esc(t.instructions)}`)] : []),
      section(state),
      ...(buttons.length ? [{ type: 'actions', elements: buttons }] : []),
      context(`Task \`${t.taskId}\``),
    ],
  };
}

/** One access review item as a reviewer sees it in Slack. */
export interface ReviewItemInfo {
  itemId: string;
  userName: string;
  entitlement: string;
  /** Given by a rule: reviewed, but changed only by changing the rule (no Revoke button). */
  birthright: boolean;
  rules: string[];
  /** Found in the target by reconciliation, granted by nobody. */
  ungranted: boolean;
}

/** Most items one message shows with buttons (Slack allows 50 blocks); the rest are in the console. */
export const REVIEW_ITEMS_PER_MESSAGE = 10;

/**
 * The DM telling a reviewer what awaits them in an access review: the first items with Keep and
 * Revoke (Revoke asks for confirmation; access from a rule has none), and where the rest are.
 */
export function reviewItemsMessage(r: { campaign: string; kind: 'awaiting' | 'reminder' | 'escalated'; pending: number; deadline: string; items: ReviewItemInfo[]; consoleUrl: string | undefined }): SlackMessage {
  const lead = r.kind === 'reminder' ? 'Reminder: ' : r.kind === 'escalated' ? 'Escalated to you: ' : '';
  const headline = `${lead}${r.pending} access review item${r.pending === 1 ? '' : 's'} in *${esc(r.campaign)}* need${r.pending === 1 ? 's' : ''} your decision by ${when(r.deadline)}`;
  const blocks: Block[] = [section(`:clipboard: ${headline}. Keep what is still needed; revoke what is not.`)];
  for (const i of r.items.slice(0, REVIEW_ITEMS_PER_MESSAGE)) {
    const flag = i.birthright ? ` · _from rule ${esc(i.rules.join(', '))}: change the rule to remove it_` : i.ungranted ? ' · _found in the target, granted by nobody_' : '';
    blocks.push(section(`*${esc(i.userName)}* · ${esc(i.entitlement)}${flag}`));
    const revoke = {
      ...button('Revoke', ACTION.reviewRevoke, i.itemId, 'danger'),
      confirm: {
        title: plain('Revoke this access?'),
        text: { type: 'mrkdwn', text: `${esc(i.userName)} loses ${esc(i.entitlement)} in the target system.` },
        confirm: plain('Revoke'),
        deny: plain('Cancel'),
        style: 'danger',
      },
    };
    blocks.push({ type: 'actions', block_id: `review:${i.itemId}`, elements: [button('Keep', ACTION.reviewKeep, i.itemId, 'primary'), ...(i.birthright ? [] : [revoke])] });
  }
  const more = r.pending - Math.min(r.items.length, REVIEW_ITEMS_PER_MESSAGE);
  const where = r.consoleUrl ? `<${r.consoleUrl}/console/reviews|the console's Reviews page>` : "the console's Reviews page (or GET /api/reviews)";
  blocks.push(context(more > 0 ? `${more} more in ${where}, where you can decide many at once.` : `Also in ${where}.`));
  return { text: headline.replace(/\*/g, ''), blocks };
}
