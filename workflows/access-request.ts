/**
 * accessRequest: one workflow per access request (id `access-request:<requestId>`), started through
 * the outbox when the request is recorded. It takes the request through its policy's serial
 * stages (each stage's approvers resolved by an activity when the stage opens), waits for
 * decisions arriving as `decideUpdate`s whose validator refuses anyone who may not decide, and on
 * approval fulfils: automatically through a grant that userSync provisions, or by leaving it to the
 * fulfilment group; an invitation request (for an email not in the directory) instead invites the
 * email and stays `invited` until the invitation is redeemed (fulfilled), revoked or expires. Stage timeouts, reminders before them, the request's TTL, the notice before
 * time-bound access ends and the end of manually given access are durable timers.
 *
 * For the Temporal UI, every activity carries a one-line summary of what it does for this request,
 * and the workflow's current details say where the request stands ("stage 2 of 3: security team,
 * waiting on group Security (1 of 2 approvals)").
 */
import * as wf from '@temporalio/workflow';
import { RECORDING, summarized } from './summarized.js';
import type { UpdateDefinition } from '@temporalio/common';
import type { Activities } from './activities/index.js';
import type { DecisionOutcomeRecord, RecordedOutcome, RequestStatusChange } from './activities/access-requests.js';
import {
  accessRequestStateQuery,
  accessStatusSearchAttribute,
  cancelUpdate,
  completeTaskUpdate,
  CONFLICT,
  decideUpdate,
  FORBIDDEN,
  fulfilmentProgressSignal,
  invitationSettledSignal,
  type AccessRequestInput,
  type AccessRequestState,
  type AccessRequestStatus,
  type AccessStageState,
  type AccessTaskState,
  type CompleteTaskInput,
  type DecideInput,
  revokeAccessUpdate,
  type RevokeInput,
} from './access-request-messages.js';

/**
 * A decision is recorded by a local activity: it runs in the worker that handles the Update, inside
 * the same workflow task, so the approver's answer waits for one PostgreSQL write instead of a round
 * trip through the task queue (an activity task and a second workflow task).
 */
const LOCAL: wf.LocalActivityOptions = {
  startToCloseTimeout: '10 seconds',
  retry: { initialInterval: '200 milliseconds', backoffCoefficient: 2, maximumInterval: '10 seconds' },
  // Backoffs longer than this wait in a workflow timer, not inside the worker, so a failing
  // database never holds a workflow task (and the worker's shutdown) open indefinitely.
  localRetryThreshold: '2 seconds',
};
const {
  recordDecision: recordDecisionLocally,
  recordDecisionAndOutcome,
  checkFulfilment: checkFulfilmentLocally,
  recordRequestStatus: recordRequestStatusLocally,
} = wf.proxyLocalActivities<Activities>(LOCAL);

/** Notices: retried while the channel fails, then recorded as failed; they never hold up the request. */
const NOTICE: wf.ActivityOptions = {
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 5 },
};

const stageNo = (stage: number) => `stage ${stage + 1}`;
const loadAccessRequest = summarized('loadAccessRequest', RECORDING, () => 'load the request and the policy it was made under');
const resolveStageApprovers = summarized('resolveStageApprovers', RECORDING, ({ stage }) => `${stageNo(stage)}: find who approves`);
const recordDecision = summarized('recordDecision', RECORDING, ({ stage, decision }) => `${stageNo(stage)}: record a decision (${decision})`);
const recordRequestStatus = summarized('recordRequestStatus', RECORDING, ({ status, reason }) => `record the request as ${status}: ${reason}`);
const grantRequestedAccess = summarized('grantRequestedAccess', RECORDING, () => 'grant the access (userSync provisions it)');
const checkFulfilment = summarized('checkFulfilment', RECORDING, () => 'check whether the access reached the target');
const openFulfilmentTask = summarized('openFulfilmentTask', RECORDING, ({ kind }) => (kind === 'grant' ? 'open the task to give the access' : 'open the task to take the access away'));
const closeFulfilmentTask = summarized('closeFulfilmentTask', RECORDING, ({ outcome }) => `record the task as ${outcome}`);
const escalateStage = summarized('escalateStage', RECORDING, ({ stage }) => `${stageNo(stage)}: escalate to the fallback group after the timeout`);
const whenAccessEnds = summarized('whenAccessEnds', RECORDING, () => 'look up when the access ends (extended? revoked?)');
const startManualAccess = summarized('startManualAccess', RECORDING, () => 'record when the access given by hand ends');
const extendedManualAccess = summarized('extendedManualAccess', RECORDING, () => 'find the running access this extension prolongs');
const recordManualRevocation = summarized('recordManualRevocation', RECORDING, ({ actor }) => `record the access as revoked by ${actor}`);
const recordAccessEnded = summarized('recordAccessEnded', RECORDING, () => 'record that the time-bound access ended');
const invitationProgress = summarized('invitationProgress', RECORDING, () => 'look where the invitation stands (redeemed? revoked? expired?)');
const notifyAccess = summarized('notifyAccess', NOTICE, ({ type, recipientIds }) => `notify ${type} (${recipientIds.length} recipient${recipientIds.length === 1 ? '' : 's'})`);

/**
 * Slack (activities/slack.ts): one notice at a time, in order, so a request's thread reads in
 * order; retried while Slack is unavailable (after the delay it asks for) for up to a day.
 */
const notifySlack = summarized(
  'notifySlack',
  {
    startToCloseTimeout: '1 minute',
    scheduleToCloseTimeout: '1 day',
    retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '5 minutes' },
  },
  ({ type }) => `tell Slack: ${type}`,
);

/**
 * Sending an invitation (activities/access-requests.ts inviteForRequest): retried while Auth0 or the
 * delivery channel fails; its last try (INVITE_ATTEMPTS) answers `failed` instead of throwing.
 */
const inviteRequested = summarized(
  'inviteRequested',
  { startToCloseTimeout: '2 minutes', retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 6 } },
  () => 'invite the email into the Auth0 connection and send the link',
);
/** How often an invited request looks at its invitation when no signal came (the gateway signals redemption and revocation). */
const INVITATION_CHECK_MS = 6 * 3600_000;

/** The reason an automatically fulfilled request is approved with. */
const APPROVED_PROVISIONING = 'approved; provisioning';

const forbidden = (message: string) => wf.ApplicationFailure.create({ type: FORBIDDEN, message, nonRetryable: true });

/** Where the stage stands under its rule: still open, approved or rejected. */
function verdict(s: AccessStageState): 'open' | 'approved' | 'rejected' {
  const values = Object.values(s.decisions);
  const approvals = values.filter((d) => d === 'approve').length;
  const rejections = values.length - approvals;
  const undecided = s.approvers.length - values.length;
  switch (s.rule) {
    case 'any':
      if (approvals > 0) return 'approved';
      return rejections > 0 ? 'rejected' : 'open';
    case 'all':
      if (rejections > 0) return 'rejected';
      return approvals === s.approvers.length ? 'approved' : 'open';
    case 'quorum': {
      const needed = s.quorum ?? 1;
      if (approvals >= needed) return 'approved';
      // Rejected as soon as the quorum can no longer be reached.
      return approvals + undecided < needed ? 'rejected' : 'open';
    }
  }
}

export async function accessRequest(input: AccessRequestInput): Promise<AccessRequestState> {
  const { requestId } = input;
  // An Update that arrives before the request is loaded (a cancel right after the request was made)
  // waits for it, then goes through the same validator and handler as any later one; without this
  // the SDK would refuse it for want of a handler.
  const ready = new Map<string, { handler: (input: never) => Promise<unknown>; validator?: ((input: never) => void) | undefined }>();
  for (const def of [decideUpdate, cancelUpdate, completeTaskUpdate, revokeAccessUpdate] as Array<UpdateDefinition<unknown, [never]>>) {
    wf.setHandler(def, async (early: never) => {
      await wf.condition(() => ready.has(def.name));
      const real = ready.get(def.name)!;
      real.validator?.(early);
      return await real.handler(early);
    });
  }
  /** Registers an Update's handler, also for the Updates that arrived before it. */
  const onUpdate = <Ret, Arg>(def: UpdateDefinition<Ret, [Arg]>, handler: (input: Arg) => Promise<Ret>, options?: { validator: (input: Arg) => void }) => {
    wf.setHandler(def, handler, options);
    ready.set(def.name, { handler, validator: options?.validator });
  };
  const request = await loadAccessRequest({ requestId });
  const state: AccessRequestState = { requestId, status: request.status, stage: 0, reason: null, stages: [] };
  const conflict = (message: string) => wf.ApplicationFailure.create({ type: CONFLICT, message, nonRetryable: true, details: [state] });
  // Decisions accepted, and how many of them the main loop has looked at.
  let accepted = 0;
  let evaluated = 0;

  wf.setHandler(accessRequestStateQuery, () => state);
  // Told by the requester's userSync after a round that provisioned (or failed to provision) this request's grant.
  let progress = 0;
  wf.setHandler(fulfilmentProgressSignal, () => {
    progress++;
  });
  // Told by the gateway when the request's invitation was redeemed or revoked.
  let settled = 0;
  wf.setHandler(invitationSettledSignal, () => {
    settled++;
  });
  /** What the Temporal UI shows as where the request stands. */
  const show = (details: string) => wf.setCurrentDetails(details);
  const iso = (ms: number) => new Date(ms).toISOString();
  let escalated = false;
  const showStage = () => {
    const s = state.stages[state.stage];
    const def = request.stages[state.stage];
    if (!s || !def) return;
    const approvals = Object.values(s.decisions).filter((d) => d === 'approve').length;
    const needed = s.rule === 'any' ? 1 : s.rule === 'all' ? s.approvers.length : (s.quorum ?? 1);
    show(
      `stage ${state.stage + 1} of ${request.stages.length}: ${def.name}, waiting on ${def.approversLabel}${escalated ? ' and the fallback group' : ''} ` +
        `(${approvals} of ${needed} approval${needed === 1 ? '' : 's'}, ${s.approvers.length} approver${s.approvers.length === 1 ? '' : 's'})`,
    );
  };
  /** True while a stage is being opened (its approvers resolved): decisions wait for it. */
  const opening = () => state.status === 'pending' && (escalating || state.stages[state.stage]?.status !== 'open');
  let escalating = false;
  /**
   * Stages closed by a decision that records what follows (see the decide handler): how the stage
   * closed and, once its local activity has returned, what it recorded. Such a stage takes no other
   * decision (409), and the main loop goes by its verdict and records only the rest.
   */
  const closings = new Map<number, { verdict: 'approved' | 'rejected'; recorded?: RecordedOutcome }>();
  /**
   * The decision closing the current stage while it is being recorded, or when it ends the request
   * (a rejection, the last stage's approval): no cancelling then, as what it records may include
   * the grant. Between stages a request can be cancelled again.
   */
  const closingNow = () => {
    const c = closings.get(state.stage);
    return c && (c.recorded === undefined || c.verdict === 'rejected' || state.stage === request.stages.length - 1) ? c : undefined;
  };
  /** What the decision that closes stage `s` (approved or rejected) records with it. */
  const closingOf = (s: AccessStageState): { record: DecisionOutcomeRecord; summary: string } => {
    const def = request.stages[s.stage]!;
    if (verdict(s) === 'rejected') {
      const reason = `rejected at ${def.name}`;
      return { record: { statuses: [{ status: 'rejected', stage: s.stage, reason, stageStatus: 'rejected' }] }, summary: `record the request as rejected: ${reason}` };
    }
    const next: RequestStatusChange = { status: 'pending', stage: s.stage + 1, reason: `${def.name} approved`, stageStatus: 'approved' };
    // The last stage approved, access given automatically: the request is approved and its grant made.
    if (s.stage === request.stages.length - 1 && request.fulfilment === 'automatic' && !request.invitee) {
      const approved: RequestStatusChange = { status: 'approved', stage: request.stages.length, reason: APPROVED_PROVISIONING };
      return { record: { statuses: [next, approved], grant: true }, summary: `record the request as approved and grant the access` };
    }
    return { record: { statuses: [next] }, summary: `record the request as pending: ${next.reason}` };
  };
  /**
   * Whether `input` is a new decision of the open stage or the repeat of one already made; throws
   * the 403/409 refusal otherwise.
   */
  const judge = ({ approverId, decision }: DecideInput): 'new' | 'repeat' => {
    if (approverId === request.requesterId) throw forbidden('nobody approves their own request');
    const current = state.status === 'pending' ? state.stages[state.stage] : undefined;
    // A stage whose closing decision is being recorded takes no more decisions.
    const open = current?.status === 'open' && !closings.has(current.stage);
    if (open && current.decisions[approverId] === decision) return 'repeat';
    // The same decision again (a double click), even after its stage or the request closed.
    if (!(open && current.approvers.includes(approverId)) && state.stages.some((s) => s.decisions[approverId] === decision)) return 'repeat';
    if (state.status !== 'pending') throw conflict(`the request is ${state.status}`);
    if (!open) throw conflict('no stage is open for decisions');
    if (!current.approvers.includes(approverId)) throw forbidden(`not an approver of the current stage (${current.name})`);
    if (current.decisions[approverId]) throw conflict(`you already decided this stage: ${current.decisions[approverId]}`);
    return 'new';
  };

  onUpdate(
    decideUpdate,
    async (input: DecideInput) => {
      // A decision that arrived while the stage was being opened is judged once it is open.
      await wf.condition(() => !opening());
      if (judge(input) === 'repeat') return state;
      const { approverId, decision, comment } = input;
      const current = state.stages[state.stage]!;
      current.decisions[approverId] = decision;
      const decided = { requestId, stage: current.stage, approverId, decision, ...(comment !== undefined ? { comment } : {}) };
      const summary = `${stageNo(current.stage)}: record a decision (${decision})`;
      if (wf.patched('decision-records-outcome')) {
        // The decision that closes its stage records what follows with it (the stage's and the
        // request's statuses, an automatic grant), so provisioning starts once it commits.
        const closes = verdict(current);
        const outcome = closes !== 'open' && !closings.has(current.stage) ? closingOf(current) : undefined;
        const closing: { verdict: 'approved' | 'rejected'; recorded?: RecordedOutcome } | undefined = outcome && closes !== 'open' ? { verdict: closes } : undefined;
        // Marked before recording, so a cancel or a timeout meanwhile does not undo what it records.
        if (closing) closings.set(current.stage, closing);
        const recorded = await recordDecisionAndOutcome.executeWithOptions({ summary: outcome ? `${summary}; ${outcome.summary}` : summary }, [
          { ...decided, ...(outcome ? { outcome: outcome.record } : {}) },
        ]);
        if (closing) closing.recorded = recorded;
      } else if (wf.patched('record-decision-locally')) await recordDecisionLocally.executeWithOptions({ summary }, [decided]);
      else await recordDecision(decided);
      const ticket = ++accepted;
      // Answer once the main loop has applied this decision, so the caller sees its effect.
      await wf.condition(() => evaluated >= ticket || state.status !== 'pending');
      return state;
    },
    {
      // Refused here, nothing reaches history; a decision during a stage's opening is judged by the handler.
      validator: (input: DecideInput) => {
        if (input.approverId === request.requesterId || !opening()) judge(input);
      },
    },
  );
  onUpdate(
    cancelUpdate,
    async ({ actorId, asAdmin }) => {
      if (state.status !== 'pending' || closingNow()) return state;
      state.status = 'cancelled';
      state.reason = asAdmin ? 'cancelled by an administrator' : 'cancelled by the requester';
      await recordRequestStatus({ requestId, status: 'cancelled', stage: state.stage, reason: state.reason, stageStatus: 'closed', ...(asAdmin ? {} : { actor: actorId }) });
      return state;
    },
    {
      validator: ({ actorId, asAdmin }) => {
        if (!asAdmin && actorId !== request.requesterId) throw forbidden('only the requester can cancel a request');
        if (state.status !== 'pending') throw conflict(`the request is ${state.status}`);
        const closing = closingNow();
        if (closing) throw conflict(`the request is being ${closing.verdict}`);
      },
    },
  );

  // Manual fulfilment: the open task, if any, and what its assignees reported.
  let task: { taskId: string; kind: 'grant' | 'revoke'; assignees: string[]; status: 'open' | 'done' | 'failed'; closing?: 'done' | 'failed'; note?: string } | undefined;
  const taskState = (): AccessTaskState => ({ taskId: task!.taskId, kind: task!.kind, status: task!.status, request: state });
  /** True while a task is being opened (its row written, its assignees resolved): reports wait for it. */
  let taskOpening = false;
  const judgeTask = ({ taskId, actorId, outcome }: CompleteTaskInput) => {
    if (!task || task.taskId !== taskId) throw conflict('the task is not open');
    if (!task.assignees.includes(actorId)) throw forbidden('not a member of the fulfilment group of this task');
    const reported = task.closing ?? (task.status === 'open' ? undefined : task.status);
    if (reported && reported !== outcome) throw conflict(`the task is ${reported}`);
  };
  onUpdate(
    completeTaskUpdate,
    async (input: CompleteTaskInput) => {
      const { actorId, outcome, note } = input;
      // A report that arrived while the task was being opened is judged once it is open.
      if (taskOpening) {
        await wf.condition(() => !taskOpening);
        judgeTask(input);
      }
      if (task!.closing) {
        await wf.condition(() => task!.status !== 'open');
        return taskState();
      }
      task!.closing = outcome;
      await closeFulfilmentTask({ taskId: task!.taskId, actorId, outcome, ...(note !== undefined ? { note } : {}) });
      task!.status = outcome;
      if (note !== undefined) task!.note = note;
      return taskState();
    },
    {
      // Refused here, nothing reaches history; a report during a task's opening is judged by the handler.
      validator: (input: CompleteTaskInput) => {
        if (!taskOpening) judgeTask(input);
      },
    },
  );
  const manualTask = async (kind: 'grant' | 'revoke') => {
    taskOpening = true;
    const opened = await openFulfilmentTask({ requestId, kind });
    task = { ...opened, kind, status: 'open' };
    taskOpening = false;
    show(`${kind === 'grant' ? 'approved: waiting for the fulfilment group to give the access' : 'waiting for the fulfilment group to take the access away'} (task ${opened.taskId}, ${opened.assignees.length} assignee${opened.assignees.length === 1 ? '' : 's'})`);
    notify('task.assigned', opened.assignees, `task-${kind}`);
    await wf.condition(() => task!.status !== 'open');
    return task;
  };

  // Manually given access: an administrator may take it away while it runs, or its requester give it up.
  let manualAccessRunning = false;
  let revocation: RevokeInput | undefined;
  onUpdate(
    revokeAccessUpdate,
    async (input: RevokeInput) => {
      if (!revocation) {
        revocation = input;
        state.status = 'revoked';
        state.reason = input.reason;
        wf.upsertSearchAttributes([{ key: accessStatusSearchAttribute, value: 'revoked' }]);
        await recordManualRevocation({ requestId, actor: input.actor, reason: input.reason, ...(input.release ? { release: input.release } : {}) });
      }
      // Answer once the fulfilment group has its revocation task.
      await wf.condition(() => task?.kind === 'revoke');
      return state;
    },
    {
      validator: (_input: RevokeInput) => {
        if (request.fulfilment !== 'manual') throw conflict('automatic access is revoked by ending its grant');
        if (!manualAccessRunning && !revocation) throw conflict(`the request is ${state.status} and holds no running access given by hand`);
      },
    },
  );

  /**
   * Follows fulfilled time-bound access with durable timers only: it wakes when the requester is to
   * be told the access ends soon (`expiringNoticeSeconds` before) and, with `untilEnd`, when it
   * ends; each time it looks again whether an extension carried the access on or it was revoked.
   * Answers how the access ended (`noticed`: the notice went out and `untilEnd` was not asked).
   */
  const followAccess = async (untilEnd: boolean): Promise<'ended' | 'revoked' | 'continued' | 'noticed' | 'open-ended'> => {
    const lead = request.expiringNoticeSeconds !== null ? request.expiringNoticeSeconds * 1000 : undefined;
    let noticed = false;
    for (;;) {
      const access = await whenAccessEnds({ requestId });
      if (revocation || access.revoked) return 'revoked';
      if (access.continuedBy) return 'continued';
      if (access.until === null) {
        if (!untilEnd) return 'open-ended';
        show('fulfilled: access without an end, until an administrator revokes it');
        await wf.condition(() => revocation !== undefined);
        return 'revoked';
      }
      const now = Date.now();
      if (now >= access.until) return 'ended';
      const noticeAt = lead !== undefined && !noticed ? access.until - lead : undefined;
      if (noticeAt !== undefined && now >= noticeAt) {
        noticed = true;
        notify('request.expiring', [request.requesterId], 'expiring', { deadline: iso(access.until) });
        if (!untilEnd) return 'noticed';
        continue;
      }
      if (!untilEnd && noticeAt === undefined) return 'noticed';
      const wakeAt = noticeAt ?? access.until;
      show(`fulfilled: access until ${iso(access.until)}${noticeAt !== undefined ? `; the requester is told at ${iso(noticeAt)}` : ''}`);
      if (await wf.condition(() => revocation !== undefined, Math.max(1, wakeAt - now))) return 'revoked';
    }
  };

  const notices: Array<Promise<unknown>> = [];
  // Histories from before the Slack notices replay without them.
  // Without a Slack app configured, the first notice says so and no more are sent.
  let slackOn = wf.patched('slack-notices');
  let slackQueue: Promise<unknown> = Promise.resolve();
  const slack = (n: { type: string; stage?: number; recipientIds?: string[]; key?: string; deadline?: string }) => {
    if (!slackOn) return;
    slackQueue = slackQueue
      .then(async () => {
        if (slackOn) slackOn = await notifySlack({ requestId, ...n });
      })
      .catch(() => undefined);
    notices.push(slackQueue);
  };
  // Without a notifier configured (the worker said so when it loaded the request), no notice is
  // sent (histories from before this send every notice).
  const noticesOff = request.notices === false && wf.patched('notices-when-configured');
  const notify = (type: Parameters<typeof notifyAccess>[0]['type'], recipientIds: string[], key: string, extra: { stage?: number; deadline?: string } = {}) => {
    if (!noticesOff) notices.push(notifyAccess({ requestId, type, recipientIds, key, ...extra }).catch(() => undefined));
    slack({ type, recipientIds, key, stage: extra.stage ?? state.stage, ...(extra.deadline ? { deadline: extra.deadline } : {}) });
  };
  const NOTICE_OF: Partial<Record<AccessRequestStatus, Parameters<typeof notifyAccess>[0]['type']>> = {
    approved: 'request.decided',
    rejected: 'request.decided',
    expired: 'request.expired',
    invited: 'request.invited',
    fulfilled: 'request.fulfilled',
    failed: 'request.failed',
  };
  /**
   * Moves the request to `status`. `recorded`: a decision recorded it already; `locally`: recorded by
   * a local activity (in the workflow task that learnt of it, without a trip through the task queue).
   */
  const finish = async (status: AccessRequestStatus, reason: string, stageStatus?: 'approved' | 'rejected' | 'closed', how: { recorded?: boolean; locally?: boolean } = {}) => {
    state.status = status;
    state.reason = reason;
    show(`${status}: ${reason}`);
    wf.upsertSearchAttributes([{ key: accessStatusSearchAttribute, value: status }]);
    const change = { requestId, status, stage: state.stage, reason, ...(stageStatus ? { stageStatus } : {}) };
    if (how.locally) await recordRequestStatusLocally.executeWithOptions({ summary: `record the request as ${status}: ${reason}` }, [change]);
    else if (!how.recorded) await recordRequestStatus(change);
    const type = NOTICE_OF[status];
    if (type) notify(type, [request.requesterId], status);
  };
  const done = async () => {
    if (state.status === 'cancelled') slack({ type: 'request.cancelled' });
    await Promise.all(notices);
    await wf.condition(wf.allHandlersFinished);
    return state;
  };

  if (request.status !== 'pending') return state;
  slack({ type: 'request.opened' });
  const expiresAt = request.requestTtlSeconds !== null ? request.createdAt + request.requestTtlSeconds * 1000 : undefined;

  /** What the decision that closed the stage recorded with it (the last stage's outlives the loop). */
  let recorded: RecordedOutcome | undefined;
  for (const [index, def] of request.stages.entries()) {
    state.stage = index;
    recorded = undefined;
    let fromFunction: { ids: string[]; note?: string } = { ids: [] };
    if (def.approverFunction) {
      // The function runs in an activity with its own deadline; one that throws or hangs adds nobody.
      const { callApproverFunction } = wf.proxyActivities<Activities>({
        startToCloseTimeout: def.approverFunction.timeoutSeconds * 1000,
        retry: { initialInterval: '1 second', maximumAttempts: 3 },
        summary: `${stageNo(index)}: ask the approver function ${def.approverFunction.module.split('/').pop()}`,
      });
      try {
        fromFunction = { ids: await callApproverFunction({ requestId, stage: index }) };
      } catch (err) {
        const cause = err instanceof wf.ActivityFailure && err.cause ? err.cause.message : String(err);
        fromFunction = { ids: [], note: `the approver function failed: ${cause}` };
      }
    }
    const resolved = await resolveStageApprovers({ requestId, stage: index, fromFunction });
    const stage: AccessStageState = { stage: index, name: def.name, rule: def.rule, quorum: def.quorum, approvers: resolved.approvers, decisions: {}, status: 'open' };
    if (resolved.outcome === 'open') notify('request.awaiting-you', resolved.approvers, `stage-${index}`);
    state.stages.push(stage);
    if (state.status !== 'pending') return await done();
    if (resolved.outcome === 'skip' || resolved.outcome === 'approve') {
      stage.status = resolved.outcome === 'skip' ? 'skipped' : 'approved';
      continue;
    }
    if (resolved.outcome === 'reject') {
      stage.status = 'rejected';
      await finish('rejected', `${def.name}: ${resolved.note}`);
      return await done();
    }
    let stageDeadline = def.timeoutSeconds !== null ? Date.now() + def.timeoutSeconds * 1000 : undefined;
    // Reminders to the undecided approvers before the stage times out, earliest first.
    let reminders = (stageDeadline !== undefined ? (def.remindBeforeSeconds ?? []) : [])
      .map((before) => ({ before, at: stageDeadline! - before * 1000 }))
      .filter((r) => r.at > Date.now())
      .sort((a, b) => a.at - b.at);
    escalated = false;
    for (;;) {
      const outcome = closings.get(index)?.verdict ?? verdict(stage);
      if (outcome !== 'open') {
        stage.status = outcome;
        break;
      }
      showStage();
      const deadline = Math.min(stageDeadline ?? Infinity, expiresAt ?? Infinity, reminders[0]?.at ?? Infinity);
      const wake = () => accepted > evaluated || state.status !== 'pending';
      let woke = true;
      if (Number.isFinite(deadline)) woke = await wf.condition(wake, Math.max(1, deadline - Date.now()));
      else await wf.condition(wake);
      if (state.status !== 'pending') return await done();
      // A decision closed the stage while it waited: that, not a timeout, ends the stage.
      if (closings.has(index)) continue;
      const reminder = reminders[0];
      if (!woke && reminder && Date.now() >= reminder.at) {
        reminders = reminders.slice(1);
        const undecided = stage.approvers.filter((id) => !stage.decisions[id]);
        notify('request.reminder', undecided, `stage-${index}-reminder-${reminder.before}`, { stage: index, deadline: iso(stageDeadline!) });
        continue;
      }
      if (!woke && Date.now() >= deadline && deadline === stageDeadline && expiresAt !== deadline && def.onTimeout === 'escalate') {
        // Escalated once; from then on only the request's TTL limits the stage.
        escalating = true;
        const before = stage.approvers;
        stage.approvers = (await escalateStage({ requestId, stage: index })).approvers;
        escalating = false;
        escalated = true;
        notify('request.awaiting-you', stage.approvers.filter((id) => !before.includes(id)), `stage-${index}-escalated`);
        stageDeadline = undefined;
        reminders = [];
        continue;
      }
      if (!woke && Date.now() >= deadline) {
        stage.status = 'closed';
        const why = expiresAt !== undefined && deadline === expiresAt ? 'the request was not decided in time' : `${def.name} was not decided in time`;
        await finish('expired', why, 'closed');
        return await done();
      }
      evaluated = accepted;
    }
    evaluated = accepted;
    // Closed by a decision that records what follows with it: wait until it has.
    const closing = closings.get(index);
    if (closing) {
      await wf.condition(() => closing.recorded !== undefined);
      recorded = closing.recorded;
    }
    if (stage.status === 'rejected') {
      await finish('rejected', `rejected at ${def.name}`, 'rejected', { recorded: recorded !== undefined });
      return await done();
    }
    if (!recorded) await recordRequestStatus({ requestId, status: 'pending', stage: index + 1, reason: `${def.name} approved`, stageStatus: 'approved' });
    slack({ type: 'stage.closed', stage: index });
  }
  state.stage = request.stages.length;

  if (request.invitee && wf.patched('access-invitations')) {
    // An invitation request: approved, the invitee is invited; the request is fulfilled when the
    // invitation is redeemed at the first login (the redemption records it and makes the grant).
    const email = request.invitee;
    await finish('approved', `approved; inviting ${email}`);
    const sent = await inviteRequested({ requestId });
    if (sent.state === 'failed') {
      await finish('failed', `the invitation could not be sent: ${sent.reason ?? 'unknown error'}`);
      return await done();
    }
    await finish('invited', `invitation sent to ${email}; it is redeemed at the first login, until ${iso(sent.expiresAt!)}`);
    for (;;) {
      // Counted before looking, so a signal that comes while we look is not missed.
      const seen = settled;
      const now = await invitationProgress({ requestId });
      if (now.status === 'redeemed') {
        await finish('fulfilled', now.requestReason ?? `the invitation was redeemed by ${email}`);
        break;
      }
      if (now.status === 'revoked' || now.requestStatus === 'revoked') {
        // Recorded with the revocation (and its audit event) by whoever revoked the invitation.
        state.status = 'revoked';
        state.reason = now.requestReason ?? 'the invitation was revoked';
        show(`revoked: ${state.reason}`);
        wf.upsertSearchAttributes([{ key: accessStatusSearchAttribute, value: 'revoked' }]);
        break;
      }
      if (now.status === 'expired' || now.status === 'none') {
        await finish('expired', `the invitation to ${email} expired before it was redeemed`);
        break;
      }
      const until = now.expiresAt ?? Date.now();
      show(`invited ${email}: waiting for the first login (the invitation expires at ${iso(until)})`);
      await wf.condition(() => settled > seen, Math.max(1000, Math.min(until - Date.now() + 1000, INVITATION_CHECK_MS)), {
        summary: 'wait for the invitation to be redeemed or revoked, or look again at its expiry',
      });
    }
    if (state.status === 'fulfilled' && request.expiringNoticeSeconds !== null && request.durationSeconds !== null) await followAccess(false);
    return await done();
  }

  if (request.fulfilment === 'manual') {
    const prolongs = request.extendsId !== null ? await extendedManualAccess({ requestId }) : null;
    if (prolongs) {
      // An extension of running manual access moves its end on: nothing to give by hand.
      await finish('approved', 'approved; the access is prolonged');
      const { until } = await startManualAccess({ requestId });
      await finish('fulfilled', `the access of request ${prolongs.extendsId} is prolonged${until !== null ? ` until ${iso(until)}` : ''}`);
    } else {
      await finish('approved', 'approved; waiting for the fulfilment group');
      const given = await manualTask('grant');
      if (given.status === 'failed') {
        await finish('failed', given.note ?? 'the fulfilment group could not give the access');
        return await done();
      }
      await startManualAccess({ requestId });
      await finish('fulfilled', given.note ?? 'the fulfilment group gave the access');
    }
    // Access given by hand is taken away by hand: a revocation task when it ends or is revoked.
    manualAccessRunning = true;
    const end = await followAccess(true);
    manualAccessRunning = false;
    if (end === 'ended') await recordAccessEnded({ requestId });
    // An administrator's revocation always gets its task, even when it crossed the end or an extension.
    if (end === 'ended' || revocation) await manualTask('revoke');
    else if (end === 'continued') show('fulfilled: an extension carries the access on');
    else if (end === 'revoked') {
      state.status = 'revoked';
      show('revoked: together with the access it prolongs');
    }
    return await done();
  }
  // Granted with the decision that approved the request, or now.
  const granted = recorded?.grantId !== undefined;
  await finish('approved', APPROVED_PROVISIONING, undefined, { recorded: granted });
  show(`approved: granting ${request.entitlement ?? 'the access'}; userSync provisions it`);
  if (!granted) await grantRequestedAccess({ requestId });
  // The user's userSync applies the grant; look until it is there or the connector gave up. With
  // the grant made by the decision, the looks and the outcome are local activities.
  const giveUpAt = Date.now() + (input.fulfilmentTimeoutMs ?? 15 * 60_000);
  let pause = input.fulfilmentPollMs ?? 250;
  let firstLook = granted ? recorded?.fulfilment : undefined;
  for (;;) {
    // Counted before looking, so word from userSync that comes while we look is not missed.
    const seen = progress;
    const outcome = firstLook ?? (granted ? await checkFulfilmentLocally.executeWithOptions({ summary: 'check whether the access reached the target' }, [{ requestId }]) : await checkFulfilment({ requestId }));
    firstLook = undefined;
    if (outcome.state === 'done') {
      await finish('fulfilled', 'the access is in place', undefined, { locally: granted });
      break;
    }
    if (outcome.state === 'failed' || Date.now() >= giveUpAt) {
      await finish('failed', outcome.reason ?? 'the access did not reach the target in time', undefined, { locally: granted });
      break;
    }
    // Looked at again when userSync says a round ran, or after the pause (in case no round does).
    await wf.condition(() => progress > seen, pause, { summary: 'wait for userSync, or look at the target again after a pause' });
    pause = Math.min(pause * 2, input.fulfilmentPollMaxMs ?? 30_000);
  }
  // The grant ends by itself (userSync's timer); this workflow only tells the requester before.
  if (state.status === 'fulfilled' && request.expiringNoticeSeconds !== null && request.durationSeconds !== null) await followAccess(false);
  return await done();
}
