/**
 * accessRequest: one workflow per access request (id `access-request:<requestId>`), started through
 * the outbox when the request is recorded. It takes the request through its policy's serial
 * stages (each stage's approvers resolved by an activity when the stage opens), waits for
 * decisions arriving as `decideUpdate`s whose validator refuses anyone who may not decide, and on
 * approval fulfils: automatically through a grant that userSync provisions, or by leaving it to the
 * fulfilment group. Stage timeouts and the request's TTL are durable timers.
 */
import * as wf from '@temporalio/workflow';
import type { Activities } from './activities/index.js';
import {
  accessRequestStateQuery,
  accessStatusSearchAttribute,
  cancelUpdate,
  completeTaskUpdate,
  CONFLICT,
  decideUpdate,
  FORBIDDEN,
  type AccessRequestInput,
  type AccessRequestState,
  type AccessRequestStatus,
  type AccessStageState,
  type AccessTaskState,
  type CompleteTaskInput,
  type DecideInput,
} from './access-request-messages.js';

const { loadAccessRequest, resolveStageApprovers, recordDecision, recordRequestStatus, grantRequestedAccess, checkFulfilment, openFulfilmentTask, closeFulfilmentTask, escalateStage } =
  wf.proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

/** Notices: retried while the channel fails, then recorded as failed; they never hold up the request. */
const { notifyAccess } = wf.proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 5 },
});

/**
 * Slack (activities/slack.ts): one notice at a time, in order, so a request's thread reads in
 * order; retried while Slack is unavailable (after the delay it asks for) for up to a day.
 */
const { notifySlack } = wf.proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  scheduleToCloseTimeout: '1 day',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '5 minutes' },
});

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
  const request = await loadAccessRequest({ requestId });
  const state: AccessRequestState = { requestId, status: request.status, stage: 0, reason: null, stages: [] };
  const conflict = (message: string) => wf.ApplicationFailure.create({ type: CONFLICT, message, nonRetryable: true, details: [state] });
  // Decisions accepted, and how many of them the main loop has looked at.
  let accepted = 0;
  let evaluated = 0;

  wf.setHandler(accessRequestStateQuery, () => state);
  /** True while a stage is being opened (its approvers resolved): decisions wait for it. */
  const opening = () => state.status === 'pending' && (escalating || state.stages[state.stage]?.status !== 'open');
  let escalating = false;
  /**
   * Whether `input` is a new decision of the open stage or the repeat of one already made; throws
   * the 403/409 refusal otherwise.
   */
  const judge = ({ approverId, decision }: DecideInput): 'new' | 'repeat' => {
    if (approverId === request.requesterId) throw forbidden('nobody approves their own request');
    const current = state.status === 'pending' ? state.stages[state.stage] : undefined;
    const open = current?.status === 'open';
    if (open && current.decisions[approverId] === decision) return 'repeat';
    // The same decision again (a double click), even after its stage or the request closed.
    if (!(open && current.approvers.includes(approverId)) && state.stages.some((s) => s.decisions[approverId] === decision)) return 'repeat';
    if (state.status !== 'pending') throw conflict(`the request is ${state.status}`);
    if (!open) throw conflict('no stage is open for decisions');
    if (!current.approvers.includes(approverId)) throw forbidden(`not an approver of the current stage (${current.name})`);
    if (current.decisions[approverId]) throw conflict(`you already decided this stage: ${current.decisions[approverId]}`);
    return 'new';
  };

  wf.setHandler(
    decideUpdate,
    async (input: DecideInput) => {
      // A decision that arrived while the stage was being opened is judged once it is open.
      await wf.condition(() => !opening());
      if (judge(input) === 'repeat') return state;
      const { approverId, decision, comment } = input;
      const current = state.stages[state.stage]!;
      current.decisions[approverId] = decision;
      await recordDecision({ requestId, stage: current.stage, approverId, decision, ...(comment !== undefined ? { comment } : {}) });
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
  wf.setHandler(
    cancelUpdate,
    async ({ actorId, asAdmin }) => {
      if (state.status !== 'pending') return state;
      state.status = 'cancelled';
      state.reason = asAdmin ? 'cancelled by an administrator' : 'cancelled by the requester';
      await recordRequestStatus({ requestId, status: 'cancelled', stage: state.stage, reason: state.reason, stageStatus: 'closed', ...(asAdmin ? {} : { actor: actorId }) });
      return state;
    },
    {
      validator: ({ actorId, asAdmin }) => {
        if (!asAdmin && actorId !== request.requesterId) throw forbidden('only the requester can cancel a request');
        if (state.status !== 'pending') throw conflict(`the request is ${state.status}`);
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
  wf.setHandler(
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
    notify('task.assigned', opened.assignees, `task-${kind}`);
    await wf.condition(() => task!.status !== 'open');
    return task;
  };

  const notices: Array<Promise<unknown>> = [];
  // Histories from before the Slack notices replay without them.
  // Without a Slack app configured, the first notice says so and no more are sent.
  let slackOn = wf.patched('slack-notices');
  let slackQueue: Promise<unknown> = Promise.resolve();
  const slack = (n: { type: string; stage?: number; recipientIds?: string[]; key?: string }) => {
    if (!slackOn) return;
    slackQueue = slackQueue
      .then(async () => {
        if (slackOn) slackOn = await notifySlack({ requestId, ...n });
      })
      .catch(() => undefined);
    notices.push(slackQueue);
  };
  const notify = (type: Parameters<typeof notifyAccess>[0]['type'], recipientIds: string[], key: string) => {
    notices.push(notifyAccess({ requestId, type, recipientIds, key }).catch(() => undefined));
    slack({ type, recipientIds, key, stage: state.stage });
  };
  const NOTICE_OF: Partial<Record<AccessRequestStatus, Parameters<typeof notifyAccess>[0]['type']>> = {
    approved: 'request.decided',
    rejected: 'request.decided',
    expired: 'request.expired',
    fulfilled: 'request.fulfilled',
    failed: 'request.failed',
  };
  const finish = async (status: AccessRequestStatus, reason: string, stageStatus?: 'approved' | 'rejected' | 'closed') => {
    state.status = status;
    state.reason = reason;
    wf.upsertSearchAttributes([{ key: accessStatusSearchAttribute, value: status }]);
    await recordRequestStatus({ requestId, status, stage: state.stage, reason, ...(stageStatus ? { stageStatus } : {}) });
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

  for (const [index, def] of request.stages.entries()) {
    state.stage = index;
    let fromFunction: { ids: string[]; note?: string } = { ids: [] };
    if (def.approverFunction) {
      // The function runs in an activity with its own deadline; one that throws or hangs adds nobody.
      const { callApproverFunction } = wf.proxyActivities<Activities>({
        startToCloseTimeout: def.approverFunction.timeoutSeconds * 1000,
        retry: { initialInterval: '1 second', maximumAttempts: 3 },
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
    for (;;) {
      const outcome = verdict(stage);
      if (outcome !== 'open') {
        stage.status = outcome;
        break;
      }
      const deadline = Math.min(stageDeadline ?? Infinity, expiresAt ?? Infinity);
      const wake = () => accepted > evaluated || state.status !== 'pending';
      let woke = true;
      if (Number.isFinite(deadline)) woke = await wf.condition(wake, Math.max(1, deadline - Date.now()));
      else await wf.condition(wake);
      if (state.status !== 'pending') return await done();
      if (!woke && Date.now() >= deadline && deadline === stageDeadline && expiresAt !== deadline && def.onTimeout === 'escalate') {
        // Escalated once; from then on only the request's TTL limits the stage.
        escalating = true;
        const before = stage.approvers;
        stage.approvers = (await escalateStage({ requestId, stage: index })).approvers;
        escalating = false;
        notify('request.awaiting-you', stage.approvers.filter((id) => !before.includes(id)), `stage-${index}-escalated`);
        stageDeadline = undefined;
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
    if (stage.status === 'rejected') {
      await finish('rejected', `rejected at ${def.name}`, 'rejected');
      return await done();
    }
    await recordRequestStatus({ requestId, status: 'pending', stage: index + 1, reason: `${def.name} approved`, stageStatus: 'approved' });
    slack({ type: 'stage.closed', stage: index });
  }
  state.stage = request.stages.length;

  if (request.fulfilment === 'manual') {
    await finish('approved', 'approved; waiting for the fulfilment group');
    const given = await manualTask('grant');
    if (given.status === 'failed') {
      await finish('failed', given.note ?? 'the fulfilment group could not give the access');
      return await done();
    }
    await finish('fulfilled', given.note ?? 'the fulfilment group gave the access');
    if (request.durationSeconds !== null) {
      // Time-bound access given by hand is taken away by hand: a revocation task when it ends.
      await wf.sleep(request.durationSeconds * 1000);
      await manualTask('revoke');
    }
    return await done();
  }
  await finish('approved', 'approved; provisioning');
  await grantRequestedAccess({ requestId });
  // The user's userSync applies the grant; look until it is there or the connector gave up.
  const giveUpAt = Date.now() + (input.fulfilmentTimeoutMs ?? 15 * 60_000);
  let pause = 250;
  for (;;) {
    const outcome = await checkFulfilment({ requestId });
    if (outcome.state === 'done') {
      await finish('fulfilled', 'the access is in place');
      break;
    }
    if (outcome.state === 'failed' || Date.now() >= giveUpAt) {
      await finish('failed', outcome.reason ?? 'the access did not reach the target in time');
      break;
    }
    await wf.sleep(pause);
    pause = Math.min(pause * 2, input.fulfilmentPollMaxMs ?? 30_000);
  }
  return await done();
}
