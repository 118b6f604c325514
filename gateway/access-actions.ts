/**
 * What people do to access requests and fulfilment tasks besides deciding (see ./access-decisions.ts):
 * cancel a pending request, release their own access or revoke someone's, claim and complete a
 * manual task. The REST API and the web console both call these, so every front end applies the same
 * rules: the request's workflow has the last word where it runs (a Temporal Update whose validator
 * refuses), the database where it has ended, and refused task attempts are audited.
 */
import type { Client } from '@temporalio/client';
import type { Db } from '../core/db/pool.js';
import { cancelUnstarted, getRequest, revokeGrantedAccess, type AccessEnding, type AccessRequestState, type AccessRequestView } from '../core/access/requests.js';
import { claimTask, getTask, recordRefusedTaskAttempt, type AccessTaskView } from '../core/access/tasks.js';
import { AccessRequestNotRunning, AccessRequestRefusal, cancelAccessRequest, completeAccessTask, revokeManualAccess } from '../workflows/client.js';

export interface Person {
  userId: string;
  userName: string;
}

/** What an action answers: its result, or why it was refused (an HTTP status) with where the request or the task stands. */
export type ActionOutcome<T> =
  | { ok: true; value: T }
  | { ok: false; status: 400 | 403 | 404 | 409 | 503; message: string; state?: AccessRequestState | undefined; task?: AccessTaskView | undefined };

type Refused = Extract<ActionOutcome<unknown>, { ok: false }>;

const TEMPORAL_DOWN: Refused = { ok: false, status: 503, message: 'Temporal is unreachable; try again later' };

export function stateOf(view: AccessRequestView): AccessRequestState {
  return { requestId: view.requestId, status: view.status, stage: view.stage, reason: view.reason, stages: view.stages };
}

async function connect(temporal: () => Promise<Client>): Promise<Client | undefined> {
  try {
    return await temporal();
  } catch {
    return undefined;
  }
}

function refusal(err: AccessRequestRefusal): Refused {
  return { ok: false, status: err.status, message: err.message, ...(err.state ? { state: err.state } : {}) };
}

// ------------------------------------------------------------------ requests

/**
 * Cancels a pending request: through its workflow, or in the database when the workflow has not
 * started yet (it then ends at once). The caller has checked that `who` may cancel it (the
 * requester, or an administrator with `asAdmin`).
 */
export async function cancelRequest(
  db: Db,
  temporal: () => Promise<Client>,
  view: AccessRequestView,
  who: { actorId: string; actorName: string; asAdmin: boolean },
): Promise<ActionOutcome<AccessRequestState>> {
  if (view.status !== 'pending') return { ok: false, status: 409, message: `the request is ${view.status}`, state: stateOf(view) };
  const client = await connect(temporal);
  if (!client) return TEMPORAL_DOWN;
  try {
    return { ok: true, value: await cancelAccessRequest(client, view.id, { actorId: who.actorId, asAdmin: who.asAdmin }) };
  } catch (err) {
    if (err instanceof AccessRequestRefusal) return refusal(err);
    if (!(err instanceof AccessRequestNotRunning)) throw err;
  }
  // Not started yet: cancelled in the database, and the workflow, when it starts, sees it.
  if (await cancelUnstarted(db, view.id, who.actorName)) return { ok: true, value: stateOf((await getRequest(db, view.id))!) };
  const now = (await getRequest(db, view.id))!;
  return { ok: false, status: 409, message: `the request is ${now.status}`, state: stateOf(now) };
}

/**
 * Takes fulfilled access away before it ends, for an administrator's revocation and the requester's
 * release alike. Automatic access: its grant ends (with those of the fulfilled extensions that
 * prolong it) and userSync removes it from the target; the caller kicks the outbox. Access given by
 * hand: the request's workflow records it and opens the revocation task for the fulfilment group,
 * answering once the task is open. 409 when the request holds no running access.
 */
export async function endAccess(db: Db, temporal: () => Promise<Client>, view: AccessRequestView, ending: AccessEnding): Promise<ActionOutcome<AccessRequestState>> {
  const { rows: mode } = await db.query<{ manual: boolean }>(`SELECT policy->'fulfilment'->>'mode' = 'manual' AS manual FROM access_requests WHERE id = $1`, [view.id]);
  if (view.status === 'fulfilled' && mode[0]?.manual) {
    const client = await connect(temporal);
    if (!client) return TEMPORAL_DOWN;
    try {
      await revokeManualAccess(client, view.id, { actor: ending.actor, reason: ending.reason, ...(ending.release ? { release: ending.release } : {}) });
      return { ok: true, value: stateOf((await getRequest(db, view.id))!) };
    } catch (err) {
      if (err instanceof AccessRequestRefusal) return refusal(err);
      if (!(err instanceof AccessRequestNotRunning)) throw err;
      return { ok: false, status: 409, message: 'the access given by hand has ended already', state: stateOf((await getRequest(db, view.id))!) };
    }
  }
  if (!(await revokeGrantedAccess(db, view.id, ending))) {
    const message = ending.release ? `the request is ${view.status} and holds no running access to release` : `the request is ${view.status} and holds no automatic access to revoke`;
    return { ok: false, status: 409, message, state: stateOf(view) };
  }
  return { ok: true, value: stateOf((await getRequest(db, view.id))!) };
}

/**
 * The requester gives up their own fulfilled access early ({@link endAccess}), audited as
 * `access-request.released` with the person as actor and `via` (the console, or the token used).
 * Only the requester releases (403); 404 when there is no such request.
 */
export async function releaseAccess(
  db: Db,
  temporal: () => Promise<Client>,
  me: Person,
  requestId: string,
  via: string,
  reason?: string,
): Promise<ActionOutcome<AccessRequestState>> {
  const view = await getRequest(db, requestId);
  if (!view) return { ok: false, status: 404, message: `no access request ${requestId}` };
  if (view.requesterId !== me.userId) return { ok: false, status: 403, message: 'only the requester can release their access' };
  if (view.status !== 'fulfilled') return { ok: false, status: 409, message: `the request is ${view.status} and holds no running access to release`, state: stateOf(view) };
  const why = reason?.trim() ? `released by the requester: ${reason.trim()}` : 'released by the requester';
  return await endAccess(db, temporal, view, { actor: me.userName, reason: why, release: { via } });
}

// ------------------------------------------------------------------ manual fulfilment tasks

async function refusedTask(
  db: Db,
  status: 403 | 409,
  task: AccessTaskView,
  me: Person,
  attempt: 'claim' | 'complete',
  message: string,
  outcome?: 'done' | 'failed',
  state?: AccessRequestState,
): Promise<Refused> {
  await recordRefusedTaskAttempt(db, { taskId: task.id, requestId: task.requestId, kind: task.kind, actor: me.userName, attempt, reason: message, ...(outcome ? { outcome } : {}) });
  return { ok: false, status, message, task, ...(state ? { state } : {}) };
}

/**
 * Claims an open task for `me`: only its assignees (the fulfilment group's members) may (403),
 * and only while it is open (409); refused attempts are audited (`access-task.refused`).
 */
export async function claimTaskAs(db: Db, me: Person, taskId: string): Promise<ActionOutcome<AccessTaskView>> {
  const found = await getTask(db, taskId);
  if (!found) return { ok: false, status: 404, message: `no task ${taskId}` };
  if (!found.assignees.includes(me.userId)) return await refusedTask(db, 403, found.task, me, 'claim', 'not a member of the fulfilment group of this task');
  if (!(await claimTask(db, taskId, me.userId, me.userName))) {
    const now = (await getTask(db, taskId))!.task;
    return await refusedTask(db, 409, now, me, 'claim', `the task is ${now.status}${now.claimedBy ? ` (claimed by ${now.claimedBy})` : ''}`);
  }
  return { ok: true, value: (await getTask(db, taskId))!.task };
}

/** What reporting a task answers: the workflow's account of it, or the task as recorded once the workflow ended. */
export type TaskReport = Awaited<ReturnType<typeof completeAccessTask>> | AccessTaskView;

/**
 * Reports a task done or failed as `me`, through the request's workflow: an assignee, the one who
 * claimed it if it is claimed (403 otherwise); the same report again by the same person answers
 * the task; any other report of a closed task is 409. Refused attempts are audited.
 */
export async function completeTaskAs(
  db: Db,
  temporal: () => Promise<Client>,
  me: Person,
  taskId: string,
  outcome: 'done' | 'failed',
  note?: string,
): Promise<ActionOutcome<TaskReport>> {
  const found = await getTask(db, taskId);
  if (!found) return { ok: false, status: 404, message: `no task ${taskId}` };
  const { task } = found;
  if (!found.assignees.includes(me.userId)) return await refusedTask(db, 403, task, me, 'complete', 'not a member of the fulfilment group of this task', outcome);
  if (task.status === 'claimed' && task.claimedBy !== me.userName) return await refusedTask(db, 403, task, me, 'complete', `the task is claimed by ${task.claimedBy}`, outcome);
  if (task.status === 'done' || task.status === 'failed') {
    // The same report again by the same person (a double click) answers the task; anything else is refused.
    if (task.status === outcome && task.closedBy === me.userName) return { ok: true, value: task };
    return await refusedTask(db, 409, task, me, 'complete', `the task is ${task.status} already${task.closedBy ? ` (reported by ${task.closedBy})` : ''}`, outcome);
  }
  const client = await connect(temporal);
  if (!client) return TEMPORAL_DOWN;
  try {
    return { ok: true, value: await completeAccessTask(client, task.requestId, { taskId: task.id, actorId: me.userId, outcome, ...(note !== undefined ? { note } : {}) }) };
  } catch (err) {
    if (err instanceof AccessRequestRefusal) return await refusedTask(db, err.status, task, me, 'complete', err.message, outcome, err.state);
    if (!(err instanceof AccessRequestNotRunning)) throw err;
  }
  // The workflow has ended: answer from what was recorded.
  const now = (await getTask(db, task.id))!.task;
  if (now.status === outcome && now.closedBy === me.userName) return { ok: true, value: now };
  return await refusedTask(db, 409, now, me, 'complete', `the task is ${now.status}`, outcome);
}
