/**
 * A decision on an access request as a directory user, the way POST /api/requests/{id}/decisions
 * makes it: the request's workflow decides (a Temporal Update whose validator refuses anyone who
 * may not decide), a refused attempt is recorded and audited, and once the workflow has ended the
 * answer comes from what was recorded. Front ends other than the REST API (the Slack app) use this,
 * so every channel applies the same rules.
 */
import type { Client } from '@temporalio/client';
import type { Db } from '../core/db/pool.js';
import { getRequest, recordRefusedDecision, type AccessRequestState, type Decision } from '../core/access/requests.js';
import { AccessRequestNotRunning, AccessRequestRefusal, decideAccessRequest } from '../workflows/client.js';

export type DecisionOutcome =
  | { ok: true; state: AccessRequestState }
  | { ok: false; status: 403 | 404 | 409 | 503; message: string; state?: AccessRequestState | undefined };

export async function decideAs(
  db: Db,
  temporal: () => Promise<Client>,
  me: { userId: string; userName: string },
  requestId: string,
  decision: Decision,
  comment?: string,
): Promise<DecisionOutcome> {
  const { rows } = await db.query<{ stage: number }>('SELECT stage FROM access_requests WHERE id = $1', [requestId]);
  if (!rows[0]) return { ok: false, status: 404, message: `no access request ${requestId}` };
  const refused = async (status: 403 | 409, message: string, state: AccessRequestState | undefined): Promise<DecisionOutcome> => {
    await recordRefusedDecision(db, { requestId, stage: rows[0]!.stage, approverId: me.userId, decision, refusal: message, actor: me.userName, ...(comment !== undefined ? { comment } : {}) });
    return { ok: false, status, message, state };
  };
  let client: Client;
  try {
    client = await temporal();
  } catch {
    return { ok: false, status: 503, message: 'Temporal is unreachable; try again later' };
  }
  try {
    return { ok: true, state: await decideAccessRequest(client, requestId, { approverId: me.userId, decision, ...(comment !== undefined ? { comment } : {}) }) };
  } catch (err) {
    if (err instanceof AccessRequestRefusal) return await refused(err.status, err.message, err.state);
    if (!(err instanceof AccessRequestNotRunning)) throw err;
  }
  // The workflow has ended (or not started yet): answer from what was recorded.
  const view = (await getRequest(db, requestId))!;
  const state: AccessRequestState = { requestId: view.requestId, status: view.status, stage: view.stage, reason: view.reason, stages: view.stages };
  if (view.requesterId === me.userId) return await refused(403, 'nobody approves their own request', state);
  if (view.status === 'pending') return { ok: false, status: 503, message: 'the request is being started; try again shortly', state };
  if (view.stages.some((s) => s.decisions[me.userId] === decision)) return { ok: true, state };
  return await refused(409, `the request is ${view.status}`, state);
}
