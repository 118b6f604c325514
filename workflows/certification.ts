/**
 * certification: one workflow per access review campaign (id `certification:<campaignId>`, or,
 * when a review schedule fires, the Schedule's id with the firing time). It waits for the start,
 * generates the campaign's items and resolves their reviewers (activities, each safe to repeat),
 * tells the reviewers, then holds durable timers for the reminders and the due date; at the due
 * date the campaign's policy decides what nobody reviewed (or escalates it, with a second timer).
 * Decisions do not pass through the workflow: they are recorded in PostgreSQL by the API, which
 * signals the workflow so the progress it shows (search attributes `reviewPending` and
 * `reviewDecided`, and its current details) stays current.
 */
import * as wf from '@temporalio/workflow';
import { RECORDING, summarized } from './summarized.js';
import {
  certificationStateQuery,
  reviewCampaignSearchAttribute,
  reviewDecidedSearchAttribute,
  reviewDecidedSignal,
  reviewPendingSearchAttribute,
  reviewStatusSearchAttribute,
  type CertificationInput,
  type CertificationState,
} from './certification-messages.js';

/** Long runs over many items: heartbeats tell a dead worker from a slow one. */
const BULK: wf.ActivityOptions = {
  startToCloseTimeout: '1 hour',
  heartbeatTimeout: '1 minute',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
};
const NOTICE: wf.ActivityOptions = {
  startToCloseTimeout: '5 minutes',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 5 },
};

const openScheduledCampaign = summarized('openScheduledCampaign', RECORDING, ({ schedule }) => `open a campaign of the review schedule ${schedule}`);
const loadCampaign = summarized('loadCampaign', RECORDING, () => 'load the campaign');
const generateReviewItems = summarized('generateReviewItems', BULK, () => 'list who holds what in scope: one item per user × entitlement');
const resolveReviewers = summarized('resolveReviewers', BULK, () => "find each item's reviewers");
const reviewProgress = summarized('reviewProgress', RECORDING, () => 'count the items reviewed so far');
const applyReviewDueDate = summarized('applyReviewDueDate', BULK, ({ phase }) =>
  phase === 'escalation' ? 'the escalation ended: apply the policy to the items still not reviewed' : 'the due date came: apply the policy to the items not reviewed',
);
const closeReview = summarized('closeReview', RECORDING, () => 'every item is reviewed: close the campaign');
const notifyReviewers = summarized('notifyReviewers', NOTICE, ({ type }) => `tell the reviewers with pending items: ${type}`);

const iso = (ms: number) => new Date(ms).toISOString();

export async function certification(input: CertificationInput): Promise<CertificationState> {
  let signals = 0;
  wf.setHandler(reviewDecidedSignal, () => {
    signals++;
  });
  const state: CertificationState = { campaignId: input.campaignId ?? null, status: 'generating', total: 0, pending: 0, kept: 0, revoked: 0 };
  wf.setHandler(certificationStateQuery, () => state);
  const campaignId = input.campaignId ?? (await openScheduledCampaign({ schedule: input.schedule!, workflowId: wf.workflowInfo().workflowId })).campaignId;
  state.campaignId = campaignId;
  const c = await loadCampaign({ campaignId });
  state.status = c.status;
  const show = (details: string) => wf.setCurrentDetails(details);
  const publish = () => {
    wf.upsertSearchAttributes([
      { key: reviewCampaignSearchAttribute, value: c.name },
      { key: reviewStatusSearchAttribute, value: state.status },
      { key: reviewPendingSearchAttribute, value: state.pending },
      { key: reviewDecidedSearchAttribute, value: state.kept + state.revoked },
    ]);
  };
  publish();

  // Notices go out beside the campaign; each is awaited before the workflow ends or continues as new.
  const notices: Array<Promise<unknown>> = [];
  if (state.status === 'generating') {
    if (Date.now() < c.startsAt) {
      show(`starts at ${iso(c.startsAt)}`);
      await wf.sleep(c.startsAt - Date.now(), { summary: `the campaign starts at ${iso(c.startsAt)}` });
    }
    show('generating the items to review');
    await generateReviewItems({ campaignId });
    await resolveReviewers({ campaignId });
    notices.push(notifyReviewers({ campaignId, type: 'review.awaiting-you', key: 'opened' }).catch(() => undefined));
  }

  const sent = new Set(input.remindersSent ?? []);
  for (;;) {
    const p = await reviewProgress({ campaignId });
    Object.assign(state, { status: p.status, total: p.total, pending: p.pending, kept: p.kept, revoked: p.revoked });
    publish();
    if (p.status === 'closed') break;
    if (p.pending === 0) {
      await closeReview({ campaignId });
      continue;
    }
    const deadline = p.status === 'escalated' ? p.escalatedUntil! : p.dueAt;
    const reminders = p.status === 'open' ? c.remindBeforeSeconds.filter((b) => !sent.has(b)).map((b) => ({ before: b, at: p.dueAt - b * 1000 })) : [];
    const next = reminders.reduce((m, r) => Math.min(m, r.at), deadline);
    show(
      `${p.status === 'escalated' ? 'escalated' : 'open'}: ${p.kept + p.revoked} of ${p.total} reviewed (${p.kept} kept, ${p.revoked} revoked), ${p.pending} pending; ` +
        `${p.status === 'escalated' ? 'the escalation ends' : 'due'} ${iso(deadline)}`,
    );
    const seen = signals;
    const what = next < deadline ? 'a reminder' : p.status === 'escalated' ? 'the end of the escalation' : 'the due date';
    const woke = await wf.condition(() => signals > seen, Math.max(1, next - Date.now()), { summary: `wait for decisions until ${what} at ${iso(next)}` });
    if (woke) {
      // Decisions often come in bursts: read the progress once they settle a little.
      await wf.sleep(input.progressDebounceMs ?? 1000, { summary: 'let a burst of decisions settle' });
    } else {
      const due = reminders.filter((r) => r.at <= Date.now());
      if (due.length && Date.now() < deadline) {
        for (const r of due) sent.add(r.before);
        notices.push(notifyReviewers({ campaignId, type: 'review.reminder', key: `reminder-${Math.min(...due.map((r) => r.before))}` }).catch(() => undefined));
      } else if (Date.now() >= deadline) {
        const outcome = await applyReviewDueDate({ campaignId, phase: p.status === 'escalated' ? 'escalation' : 'due' });
        if (outcome.status === 'escalated') notices.push(notifyReviewers({ campaignId, type: 'review.escalated', key: 'escalated' }).catch(() => undefined));
      }
    }
    if (wf.workflowInfo().continueAsNewSuggested) {
      await Promise.all(notices);
      await wf.condition(wf.allHandlersFinished);
      return await wf.continueAsNew<typeof certification>({ ...input, campaignId, remindersSent: [...sent] });
    }
  }
  await Promise.all(notices);
  show(`closed: ${state.total} items, ${state.kept} kept, ${state.revoked} revoked`);
  return state;
}
