/**
 * A decision that closes its stage is answered once what follows is in PostgreSQL: the stage's and
 * the request's statuses (with their audit events) and, for an approved request fulfilled
 * automatically, its grant and the outbox row that has userSync provision it. The request's
 * workflow records these with the decision (one local activity) rather than in activities after the
 * answer, and without a notifier configured it sends no notice.
 */
import t from 'tap';
import { localActivities } from '../helpers/history.js';
import { userBody } from '../helpers/gateway.js';
import { eventually } from '../helpers/temporal.js';
import { startTestStack } from '../helpers/stack.js';
import { createToken } from '../../core/auth/tokens.js';
import { memoryTarget } from '../fixtures/memory-connector.js';
import { recordDecisionAndOutcome } from '../../workflows/activities/access-requests.js';
import { fileURLToPath } from 'node:url';

const MEMORY_PLUGIN = fileURLToPath(new URL('../fixtures/memory-connector.ts', import.meta.url));
const { database, gw, temporal } = await startTestStack(t, { idleMs: 1000 });
const api = gw.call;
const target = memoryTarget('decision-outcome');

await api('PUT', '/api/connectors/memory', { id: 'memory', type: MEMORY_PLUGIN, config: { namespace: 'decision-outcome' } }, 200);
await api('POST', '/api/entitlements', { connectorId: 'memory', name: 'ops', target: { group: 'ops' } }, 201);
const user = async (userName: string) => (await api('POST', '/scim/v2/Users', userBody(userName), 201)).id as string;
const ids: Record<string, string> = {};
const tokens: Record<string, string> = {};
for (const name of ['rita', 'otto', 'olga', 'sam', 'ulf']) {
  ids[name] = await user(`${name}@example.com`);
  tokens[name] = (await createToken(database.db, `personal-${name}`, ['requests'], undefined, ids[name])).token;
}
const as = async (who: string, method: 'GET' | 'POST', url: string, payload?: unknown) => {
  const res = await gw.scim({ method, url, token: tokens[who]!, ...(payload !== undefined ? { payload: payload as object, headers: { 'content-type': 'application/json' } } : {}) });
  return { status: res.statusCode, body: res.json() };
};
const policy = (name: string, stages: unknown[]) =>
  api('PUT', `/api/access-policies/${name}`, { entitlement: 'memory/ops', displayName: name, durations: { permanentAllowed: true }, fulfilment: { mode: 'automatic' }, stages }, 201);
await policy('one-stage', [{ approvers: { users: ['otto@example.com'] } }]);
await policy('two-stage', [{ name: 'lead', approvers: { users: ['otto@example.com'] } }, { name: 'owner', approvers: { users: ['olga@example.com'] } }]);

/** Makes a request as `who` and waits until its first stage awaits `approver`. */
async function request(who: string, policyName: string, approver: string): Promise<string> {
  const created = await as(who, 'POST', '/api/requests', { policy: policyName });
  t.equal(created.status, 201, `requested: ${created.body.message ?? ''}`);
  const id = created.body.id as string;
  await eventually(async () => (await as(approver, 'GET', '/api/approvals')).body.some((x: { id: string }) => x.id === id), 30_000, 'the request awaits its approver');
  return id;
}

/** Local activities (markers) and activities in the request's history, by activity type. */
async function activityRuns(id: string): Promise<{ scheduled: string[]; local: string[] }> {
  const events = (await temporal.client.workflow.getHandle(`access-request:${id}`).fetchHistory()).events ?? [];
  const scheduled = events.flatMap((e) => (e.activityTaskScheduledEventAttributes?.activityType?.name ? [e.activityTaskScheduledEventAttributes.activityType.name] : []));
  return { scheduled, local: localActivities(events).map((l) => l.type) };
}

t.test('the approval is answered with the request approved and its grant written', async (t) => {
  const id = await request('rita', 'one-stage', 'otto');
  const decided = await as('otto', 'POST', `/api/requests/${id}/decisions`, { decision: 'approve' });
  t.equal(decided.status, 200, `approved: ${decided.body.message ?? ''}`);
  t.equal(decided.body.status, 'approved', 'the answer says the request is approved');

  // Read straight after the answer: everything is in PostgreSQL already.
  const { rows: requests } = await database.db.query<{ status: string; grant_id: string | null }>('SELECT status, grant_id FROM access_requests WHERE id = $1', [id]);
  t.equal(requests[0]?.status, 'approved', 'recorded as approved');
  t.ok(requests[0]?.grant_id, 'with its grant');
  const { rows: grants } = await database.db.query<{ reason: string; status: string }>('SELECT reason, status FROM grants WHERE id = $1', [requests[0]?.grant_id]);
  t.same(grants, [{ reason: `request:${id}`, status: 'active' }], 'the grant of the request');
  const { rows: audit } = await database.db.query<{ action: string }>(
    `SELECT action FROM audit_events WHERE resource_id = $1 OR resource_id = $2 ORDER BY id`,
    [id, requests[0]?.grant_id],
  );
  t.same(
    audit.map((a) => a.action).filter((a) => a !== 'access-request.created' && a !== 'access-request.stage-opened'),
    ['access-request.decided', 'access-request.approved', 'grant.created'],
    'audited in order: the decision, the approval, the grant',
  );

  await eventually(async () => (target.groups.get('ops')?.has(`acct-${ids.rita}`) ? true : undefined), 30_000, 'the access in the target');
  const done = await eventually(async () => {
    const r = await as('rita', 'GET', `/api/requests/${id}`);
    return r.body.status === 'fulfilled' || r.body.status === 'failed' ? r.body : undefined;
  }, 30_000, 'the request fulfilled');
  t.equal(done.status, 'fulfilled', done.reason);

  // Run again (a local activity may be retried): nothing more is recorded, the same grant answers.
  const count = async () =>
    (
      await database.db.query<{ n: number }>(
        `SELECT (SELECT count(*) FROM audit_events WHERE resource_id IN ($1::text, $2::text)) + (SELECT count(*) FROM outbox WHERE aggregate_id = $3::text)
              + (SELECT count(*) FROM access_request_decisions WHERE request_id = $1::uuid) + (SELECT count(*) FROM grants WHERE user_id = $3::uuid) AS n`,
        [id, requests[0]?.grant_id, ids.rita],
      )
    ).rows[0]!.n;
  const before = await count();
  const again = await recordDecisionAndOutcome(database.db, {
    requestId: id,
    stage: 0,
    approverId: ids.otto!,
    decision: 'approve',
    outcome: { statuses: [{ status: 'pending', stage: 1, reason: 'approved', stageStatus: 'approved' }, { status: 'approved', stage: 1, reason: 'approved; provisioning' }], grant: true },
  });
  t.equal(again.grantId, requests[0]?.grant_id, 'the same grant');
  t.equal(await count(), before, 'no second decision, audit event or outbox row');

  // Recording went through local activities: no activity task for it, no trip through the task queue.
  const runs = await activityRuns(id);
  for (const name of ['recordDecision', 'recordRequestStatus', 'grantRequestedAccess', 'checkFulfilment']) {
    t.notOk(runs.scheduled.includes(name), `no ${name} activity task`);
  }
  t.ok(runs.local.includes('recordDecisionAndOutcome'), 'the decision and its outcome in one local activity');
  t.ok(runs.local.includes('recordRequestStatus'), 'fulfilled, recorded by a local activity');
  // No notifier configured (the worker says so with the loaded request): no notice is sent.
  t.equal(runs.scheduled.filter((n) => n === 'notifyAccess').length, 0, `no notice (${JSON.stringify(runs.scheduled)})`);
});

t.test('a rejection is answered with the request rejected in PostgreSQL', async (t) => {
  const id = await request('sam', 'one-stage', 'otto');
  const decided = await as('otto', 'POST', `/api/requests/${id}/decisions`, { decision: 'reject', comment: 'not needed' });
  t.equal(decided.status, 200);
  t.equal(decided.body.status, 'rejected');
  const { rows } = await database.db.query<{ status: string; stage_status: string }>(
    `SELECT r.status, s.status AS stage_status FROM access_requests r JOIN access_request_stages s ON s.request_id = r.id WHERE r.id = $1`,
    [id],
  );
  t.same(rows, [{ status: 'rejected', stage_status: 'rejected' }], 'the request and its stage, rejected');
  t.equal((await as('otto', 'POST', `/api/requests/${id}/decisions`, { decision: 'approve' })).status, 409, 'and closed for later decisions');
  const { rows: grants } = await database.db.query('SELECT 1 FROM grants WHERE reason = $1', [`request:${id}`]);
  t.equal(grants.length, 0, 'no grant');
});

t.test("a stage's approval is answered with the request at the next stage", async (t) => {
  const id = await request('sam', 'two-stage', 'otto');
  const first = await as('otto', 'POST', `/api/requests/${id}/decisions`, { decision: 'approve' });
  t.equal(first.status, 200);
  t.equal(first.body.status, 'pending', 'still pending: another stage follows');
  const { rows } = await database.db.query<{ stage: number; status: string }>('SELECT stage, status FROM access_requests WHERE id = $1', [id]);
  t.same(rows, [{ stage: 1, status: 'pending' }], 'recorded at the next stage');
  const { rows: stages } = await database.db.query<{ stage: number; status: string }>('SELECT stage, status FROM access_request_stages WHERE request_id = $1 ORDER BY stage', [id]);
  t.same(stages[0], { stage: 0, status: 'approved' }, 'the first stage approved');
  await eventually(async () => (await as('olga', 'GET', '/api/approvals')).body.some((x: { id: string }) => x.id === id), 30_000, 'the second stage awaits its approver');
  const second = await as('olga', 'POST', `/api/requests/${id}/decisions`, { decision: 'approve' });
  t.equal(second.status, 200);
  t.equal(second.body.status, 'approved');
  const { rows: grants } = await database.db.query('SELECT 1 FROM grants WHERE reason = $1', [`request:${id}`]);
  t.equal(grants.length, 1, 'granted with the last approval');
});

t.test('no cancelling while the approval that grants the access is being recorded', async (t) => {
  const id = await request('ulf', 'one-stage', 'otto');
  // Hold the request's row, so the approval's transaction waits: long enough for its workflow task
  // to be extended (a local activity over most of the task's timeout), which lets the cancel in.
  const holder = await database.db.connect();
  await holder.query('BEGIN');
  await holder.query('SELECT 1 FROM access_requests WHERE id = $1 FOR UPDATE', [id]);
  const approving = as('otto', 'POST', `/api/requests/${id}/decisions`, { decision: 'approve' });
  await new Promise((r) => setTimeout(r, 500));
  const cancelling = as('ulf', 'POST', `/api/requests/${id}/cancel`, {});
  await new Promise((r) => setTimeout(r, 9000));
  await holder.query('COMMIT');
  holder.release();
  const [approved, cancelled] = await Promise.all([approving, cancelling]);
  t.equal(approved.status, 200, `approved: ${approved.body.message ?? ''}`);
  t.equal(approved.body.status, 'approved');
  t.equal(cancelled.status, 409, `the cancel is refused: ${cancelled.body.message ?? ''}`);
  t.match(cancelled.body.message, /the request is being approved/, 'refused because the approval is being recorded');
  const { rows } = await database.db.query<{ status: string; grant_id: string | null }>('SELECT status, grant_id FROM access_requests WHERE id = $1', [id]);
  t.equal(rows[0]?.status, 'approved', 'recorded approved, not cancelled');
  t.ok(rows[0]?.grant_id, 'with its grant');
});
