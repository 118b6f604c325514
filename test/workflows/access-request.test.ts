/**
 * Access requests end to end on the real Temporal dev server and PostgreSQL: a two-stage request
 * (the requester's manager, then the security group) is decided through the REST API as the
 * approvers' own personal tokens, and the approved access is provisioned into a real SCIM service
 * (SCIMMY) by the user's userSync workflow.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import t from 'tap';
import { userBody } from '../helpers/gateway.js';
import { eventually } from '../helpers/temporal.js';
import { startTestStack } from '../helpers/stack.js';
import { startScimmyServer } from '../connectors/scim/scimmy-server.js';
import { createToken } from '../../core/auth/tokens.js';
import { createWebhookAccessNotifier, type AccessNotice } from '../../core/access/notifier.js';
import { startNoticeReceiver } from '../core/delivery/notice-receiver.js';

const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const ENTERPRISE = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';

const { database, gw } = await startTestStack(t, { idleMs: 1000 });
const target = await startScimmyServer({ token: 'access-target-token' });
t.teardown(() => target.close());
process.env.ACCESS_TARGET_TOKEN = 'access-target-token';
const api = gw.call;

await api('PUT', '/api/connectors/target', { id: 'target', type: 'scim', config: { baseUrl: target.baseUrl, token: 'env:ACCESS_TARGET_TOKEN' } }, 200);
await api('POST', '/api/entitlements', { connectorId: 'target', name: 'security-tools', target: { group: 'SecurityTools', create: true } }, 201);

const user = async (userName: string, extra: Record<string, unknown> = {}) => (await api('POST', '/scim/v2/Users', userBody(userName, extra), 201)).id as string;
const bob = await user('bob@example.com');
const alice = await user('alice@example.com', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:User', ENTERPRISE], [ENTERPRISE]: { manager: { value: bob } } });
const carol = await user('carol@example.com');
const dave = await user('dave@example.com');
const eve = await user('eve@example.com');
await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Security', members: [{ value: carol }, { value: dave }] }, 201);

const tokens: Record<string, string> = {};
for (const [name, id] of Object.entries({ alice, bob, carol, dave, eve })) tokens[name] = (await createToken(database.db, `personal-${name}`, ['requests'], undefined, id)).token;

/** Calls the API with `who`'s personal token. */
async function as(who: string, method: 'GET' | 'POST', url: string, payload?: unknown) {
  const res = await gw.scim({ method, url, token: tokens[who]!, ...(payload !== undefined ? { payload: payload as object, headers: { 'content-type': 'application/json' } } : {}) });
  return { status: res.statusCode, body: res.json() };
}

await api(
  'PUT',
  '/api/access-policies/security-tools',
  {
    entitlement: 'target/security-tools',
    displayName: 'Security tools',
    description: 'The security team tooling',
    aliases: ['sectools'],
    durations: { defaultSeconds: 3600, maxSeconds: 86_400 },
    justificationRequired: true,
    fulfilment: { mode: 'automatic' },
    stages: [
      { name: 'manager', approvers: { manager: 1 } },
      { name: 'security team', approvers: { group: 'Security' } },
    ],
  },
  201,
);

t.test('manager then security group: approved, decided only by approvers, provisioned into the target', async (t) => {
  const created = await as('alice', 'POST', '/api/requests', { policy: 'sectools', justification: 'incident response rota' });
  t.equal(created.status, 201, `the request is created: ${created.body.message ?? ''}`);
  const id = created.body.id as string;
  t.equal(created.body.status, 'pending');

  const inbox = await eventually(async () => {
    const r = await as('bob', 'GET', '/api/approvals');
    return r.body.find((x: { id: string }) => x.id === id);
  }, 30_000, "the request in the manager's inbox");
  t.same(inbox.stages[0].approvers, [bob], 'stage 1 resolves to the requester’s manager');

  const self = await as('alice', 'POST', `/api/requests/${id}/decisions`, { decision: 'approve' });
  t.equal(self.status, 403, 'the requester cannot approve');
  t.match(self.body.message, 'own request');

  const outsider = await as('eve', 'POST', `/api/requests/${id}/decisions`, { decision: 'approve', comment: 'let me' });
  t.equal(outsider.status, 403, 'a non-approver is refused');
  t.match(outsider.body.message, 'not an approver of the current stage');
  const refused = await database.db.query(`SELECT approver_id, accepted, refusal FROM access_request_decisions WHERE request_id = $1 AND NOT accepted`, [id]);
  t.same(refused.rows.map((r) => r.approver_id).sort(), [alice, eve].sort(), 'both refused attempts are recorded');
  const refusedAudit = await database.db.query(`SELECT actor FROM audit_events WHERE action = 'access-request.decision-refused' AND resource_id = $1`, [id]);
  t.same(refusedAudit.rows.map((r) => r.actor).sort(), ['alice@example.com', 'eve@example.com'], 'and audited with who tried');

  const early = await as('carol', 'POST', `/api/requests/${id}/decisions`, { decision: 'approve' });
  t.equal(early.status, 403, 'a later stage’s approver cannot decide the current stage');

  const first = await as('bob', 'POST', `/api/requests/${id}/decisions`, { decision: 'approve', comment: 'ok by me' });
  t.equal(first.status, 200, `the manager's approval is accepted: ${first.body.message ?? ''}`);
  t.equal(first.body.stages[0].status, 'approved', 'the manager stage is approved');
  const again = await as('bob', 'POST', `/api/requests/${id}/decisions`, { decision: 'approve', comment: 'ok by me' });
  t.equal(again.status, 200, 'a double click is answered with the current state');
  t.equal(again.body.stages[0].decisions[bob], 'approve');

  await eventually(async () => (await as('carol', 'GET', '/api/approvals')).body.some((x: { id: string }) => x.id === id), 30_000, "the request in the security team's inbox");
  const changed = await as('bob', 'POST', `/api/requests/${id}/decisions`, { decision: 'reject' });
  t.equal(changed.status, 403, 'a first-stage approver cannot decide the second stage');
  const second = await as('carol', 'POST', `/api/requests/${id}/decisions`, { decision: 'approve' });
  t.equal(second.status, 200, `the security approval is accepted: ${second.body.message ?? ''}`);

  const done = await eventually(async () => {
    const r = await as('alice', 'GET', `/api/requests/${id}`);
    return r.body.status === 'fulfilled' || r.body.status === 'failed' ? r.body : undefined;
  }, 90_000, 'the request to be fulfilled');
  t.equal(done.status, 'fulfilled', done.reason);
  const group = target.findGroupByName('SecurityTools');
  const remote = target.findUserByName('alice@example.com');
  t.ok(remote, 'alice has an account in the target');
  t.ok((group?.members as Array<{ value: string }> | undefined)?.some((m) => m.value === remote!.id), 'alice is in the SecurityTools group in the target');

  const { rows: grants } = await database.db.query<{ reason: string; valid_from: Date; valid_until: Date }>(
    'SELECT reason, valid_from, valid_until FROM grants WHERE id = $1',
    [done.grantId],
  );
  t.equal(grants[0]?.reason, `request:${id}`, "the grant's reason is the request");
  t.equal(grants[0]!.valid_until.getTime() - grants[0]!.valid_from.getTime(), 3600_000, 'for the default duration, from fulfilment');
  const why = ((await api('GET', `/api/grants?userId=${alice}`)) as Array<{ reason: string; request: Record<string, unknown> | null }>).find((g) => g.reason === `request:${id}`);
  t.match(
    why?.request,
    {
      id,
      policy: 'security-tools',
      requestedBy: 'alice@example.com',
      justification: 'incident response rota',
      decisions: [
        { stage: 0, approver: 'bob@example.com', decision: 'approve', comment: 'ok by me' },
        { stage: 1, approver: 'carol@example.com', decision: 'approve' },
      ],
    },
    'who-has-what-and-why shows the request, its justification and who approved it at which stage',
  );
  t.equal((why!.request!.decisions as unknown[]).length, 2, 'refused attempts are not approvals');

  const late = await as('dave', 'POST', `/api/requests/${id}/decisions`, { decision: 'approve' });
  t.equal(late.status, 409, 'a decision on a closed request conflicts');
  t.equal(late.body.state.status, 'fulfilled', 'and says where the request stands');
  const repeat = await as('carol', 'POST', `/api/requests/${id}/decisions`, { decision: 'approve' });
  t.equal(repeat.status, 200, 'the same decision repeated after the request closed is still idempotent');

  const { rows: decided } = await database.db.query(`SELECT actor, reason FROM audit_events WHERE action = 'access-request.decided' AND resource_id = $1 ORDER BY id`, [id]);
  t.same(decided.map((r) => r.actor), ['bob@example.com', 'carol@example.com'], 'each accepted decision is audited once');
  const { rows: statuses } = await database.db.query(`SELECT action FROM audit_events WHERE resource_type = 'AccessRequest' AND resource_id = $1 AND action IN ('access-request.approved', 'access-request.fulfilled')`, [id]);
  t.same(statuses.map((r) => r.action), ['access-request.approved', 'access-request.fulfilled'], 'approval and fulfilment are in the audit log');
});

t.test('workers killed while a request waits for approval and while it is fulfilled: it completes once, provisioned once', async (t) => {
  // A stack of its own whose workers are processes of this test, killed and restarted below.
  const stack = await startTestStack(t, { idleMs: 1000, worker: false });
  const crashTarget = await startScimmyServer({ token: 'access-crash-token' });
  t.teardown(() => crashTarget.close());
  const env = {
    ...process.env,
    DATABASE_URL: stack.database.url,
    TEMPORAL_ADDRESS: stack.temporal.address,
    TEMPORAL_TASK_QUEUE: stack.temporal.taskQueue,
    ACCESS_CRASH_TOKEN: 'access-crash-token',
    LOG_LEVEL: 'error',
  };
  const workers: Array<ChildProcess> = [];
  const startWorker = () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'workflows/worker.ts'], { env, stdio: ['ignore', 'ignore', 'ignore'] });
    workers.push(child);
    return child;
  };
  const kill = async (child: ChildProcess) => {
    child.kill('SIGKILL');
    if (child.exitCode === null && child.signalCode === null) await new Promise((r) => child.once('exit', r));
  };
  t.teardown(() => workers.forEach((w) => w.kill('SIGKILL')));
  let worker = startWorker();

  const call = stack.gw.call;
  await call('PUT', '/api/connectors/target', { id: 'target', type: 'scim', config: { baseUrl: crashTarget.baseUrl, token: 'env:ACCESS_CRASH_TOKEN' } }, 200);
  await call('POST', '/api/entitlements', { connectorId: 'target', name: 'ops', target: { group: 'Ops', create: true } }, 201);
  const requester = (await call('POST', '/scim/v2/Users', userBody('rita@example.com'), 201)).id as string;
  const approver = (await call('POST', '/scim/v2/Users', userBody('otto@example.com'), 201)).id as string;
  await call('PUT', '/api/access-policies/ops', { entitlement: 'target/ops', displayName: 'Ops', durations: { defaultSeconds: 3600 }, fulfilment: { mode: 'automatic' }, stages: [{ approvers: { users: ['otto@example.com'] } }] }, 201);
  const created = await call('POST', '/api/requests', { policy: 'ops' }, 201).catch(() => undefined);
  t.notOk(created, 'an admin token must name the acting user');
  const rita = (await createToken(stack.database.db, 'personal-rita', ['requests'], undefined, requester)).token;
  const otto = (await createToken(stack.database.db, 'personal-otto', ['requests'], undefined, approver)).token;
  const made = await stack.gw.scim({ method: 'POST', url: '/api/requests', token: rita, payload: { policy: 'ops' }, headers: { 'content-type': 'application/json' } });
  t.equal(made.statusCode, 201, 'the request is created');
  const id = made.json().id as string;

  await eventually(async () => (await stack.database.db.query('SELECT 1 FROM access_request_stages WHERE request_id = $1', [id])).rows.length > 0, 120_000, 'the stage to open');
  await kill(worker);
  worker = startWorker();

  const decided = await stack.gw.scim({ method: 'POST', url: `/api/requests/${id}/decisions`, token: otto, payload: { decision: 'approve' }, headers: { 'content-type': 'application/json' } });
  t.equal(decided.statusCode, 200, 'the decision reaches the workflow through a new worker');
  // Kill the worker again while the access is being provisioned.
  await eventually(async () => (await stack.database.db.query('SELECT 1 FROM grants WHERE reason = $1', [`request:${id}`])).rows.length > 0, 120_000, 'the grant to be written');
  await kill(worker);
  worker = startWorker();

  await eventually(async () => (await stack.database.db.query<{ status: string }>('SELECT status FROM access_requests WHERE id = $1', [id])).rows[0]?.status === 'fulfilled', 180_000, 'the request to be fulfilled');
  const remote = crashTarget.findUserByName('rita@example.com');
  const members = (crashTarget.findGroupByName('Ops')?.members as Array<{ value: string }> | undefined) ?? [];
  t.same(members.map((m) => m.value), [remote?.id], 'rita is in the Ops group once');
  t.equal(crashTarget.requests.filter((r) => r.method === 'POST' && r.path === '/Users').length, 1, 'one account created');
  const { rows } = await stack.database.db.query<{ action: string; n: number }>(
    `SELECT action, count(*)::int AS n FROM audit_events WHERE resource_id = $1 OR (resource_type = 'Grant' AND reason = $2) GROUP BY action ORDER BY action`,
    [id, `request:${id}`],
  );
  t.same(
    Object.fromEntries(rows.map((r) => [r.action, r.n])),
    { 'access-request.approved': 1, 'access-request.created': 1, 'access-request.decided': 1, 'access-request.fulfilled': 1, 'access-request.stage-opened': 1, 'grant.created': 1 },
    'every step happened once',
  );
});

t.test('notices: approvers, requester; a failing channel is retried, recorded, and never holds up the request', async (t) => {
  const stack = await startTestStack(t, { idleMs: 1000, worker: false });
  const receiver = await startNoticeReceiver(t, 'notice-secret');
  await stack.temporal.startWorker(stack.database.newPool(), { deps: { accessNotifier: createWebhookAccessNotifier({ url: receiver.url, secret: 'notice-secret' }) } });
  const call = stack.gw.call;
  const requester = (await call('POST', '/scim/v2/Users', userBody('nina@example.com', { emails: [{ value: 'nina@example.com', primary: true }] }), 201)).id as string;
  const approver = (await call('POST', '/scim/v2/Users', userBody('omar@example.com'), 201)).id as string;
  await call('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Helpdesk', members: [{ value: approver }] }, 201);
  await call('PUT', '/api/access-policies/desk', { displayName: 'Desk', durations: { permanentAllowed: true }, fulfilment: { mode: 'manual', group: 'Helpdesk' }, stages: [{ approvers: { users: ['omar@example.com'] } }] }, 201);
  const nina = (await createToken(stack.database.db, 'personal-nina', ['requests'], undefined, requester)).token;
  const omar = (await createToken(stack.database.db, 'personal-omar', ['requests'], undefined, approver)).token;
  const post = async (token: string, url: string, payload: object) => await stack.gw.scim({ method: 'POST', url, token, payload, headers: { 'content-type': 'application/json' } });

  receiver.failNext.push({ status: 503 }, { status: 503 });
  const made = await post(nina, '/api/requests', { policy: 'desk' });
  t.equal(made.statusCode, 201, made.statusCode === 201 ? "the request is created" : made.body);
  const id = made.json().id as string;
  const awaiting = await eventually(async () => receiver.notices.find((n) => (n as unknown as AccessNotice).type === 'request.awaiting-you') as unknown as AccessNotice | undefined, 60_000, 'the approver to be told');
  t.same(awaiting.recipients.map((r) => r.userName), ['omar@example.com'], 'the approver is told, after the channel recovered');
  t.equal((await post(omar, `/api/requests/${id}/decisions`, { decision: 'approve' })).statusCode, 200);
  const types = async () => receiver.notices.map((n) => (n as unknown as AccessNotice).type);
  await eventually(async () => (await types()).includes('task.assigned') && (await types()).includes('request.decided'), 60_000, 'the decision and the task to be announced');
  const decided = receiver.notices.find((n) => (n as unknown as AccessNotice).type === 'request.decided') as unknown as AccessNotice;
  t.same(decided.recipients, [{ userId: requester, userName: 'nina@example.com', email: 'nina@example.com' }], 'the requester is told, with the address to reach them');

  // From now on the channel refuses everything: the request still completes, and the failure is recorded.
  receiver.failNext.push(...Array.from({ length: 50 }, () => ({ status: 500 })));
  const task = (await stack.gw.scim({ method: 'GET', url: '/api/tasks', token: omar })).json()[0];
  t.equal((await post(omar, `/api/tasks/${task.id}/complete`, { outcome: 'done' })).statusCode, 200);
  await eventually(async () => (await stack.database.db.query<{ status: string }>('SELECT status FROM access_requests WHERE id = $1', [id])).rows[0]?.status === 'fulfilled', 30_000, 'the request to be fulfilled');
  t.pass('the request is fulfilled while the channel fails');
  const failed = await eventually(async () => (await stack.database.db.query<{ type: string; attempts: number; last_error: string }>(`SELECT type, attempts, last_error FROM access_notifications WHERE request_id = $1 AND status = 'failed'`, [id])).rows[0], 90_000, 'the failed notice to be recorded');
  t.equal(failed.type, 'request.fulfilled');
  t.equal(failed.attempts, 5, 'after its tries');
  t.match(failed.last_error, 'HTTP 500');
  const { rows: sent } = await stack.database.db.query<{ type: string }>(`SELECT type FROM access_notifications WHERE request_id = $1 AND status = 'sent' ORDER BY type`, [id]);
  t.same(sent.map((r) => r.type), ['request.awaiting-you', 'request.decided', 'task.assigned'], 'the notices sent are recorded');
});
