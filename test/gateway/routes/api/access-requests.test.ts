/**
 * The access-request API against real PostgreSQL and the Temporal dev server: the policy catalogue
 * and its validation, who may act as whom, what a request is checked against, and how stage rules
 * (any, all, quorum), the rules for a stage nobody can approve, rejection, cancellation and
 * expiry play out in the accessRequest workflow.
 */
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { userBody } from '../../../helpers/gateway.js';
import { eventually } from '../../../helpers/temporal.js';
import { startTestStack } from '../../../helpers/stack.js';
import { memoryTarget } from '../../../fixtures/memory-connector.js';
import { createToken } from '../../../../core/auth/tokens.js';

const PLUGIN = fileURLToPath(new URL('../../../fixtures/memory-connector.ts', import.meta.url));
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const ENTERPRISE = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';

const { database, temporal, gw } = await startTestStack(t, { idleMs: 1000 });
const ns = `access-${temporal.taskQueue}`;
const target = memoryTarget(ns);
const api = gw.call;

await api('PUT', '/api/connectors/memory', { id: 'memory', type: PLUGIN, config: { namespace: ns } }, 200);
await api('POST', '/api/entitlements', { connectorId: 'memory', name: 'prod-db', target: { group: 'prod-db' } }, 201);

const user = async (userName: string, extra: Record<string, unknown> = {}) => (await api('POST', '/scim/v2/Users', userBody(userName, extra), 201)).id as string;
const ids: Record<string, string> = {};
for (const name of ['ann', 'ben', 'cat', 'dan', 'fay']) ids[name] = await user(`${name}@example.com`);
ids.ria = await user('ria@example.com', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:User', ENTERPRISE], [ENTERPRISE]: { department: 'Engineering', manager: { value: ids.ann } } });
ids.out = await user('out@example.com', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:User', ENTERPRISE], [ENTERPRISE]: { department: 'Sales' } });
await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'DBAs', members: [{ value: ids.ben }, { value: ids.cat }, { value: ids.dan }] }, 201);
await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Fallback', members: [{ value: ids.fay }] }, 201);
await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Empty' }, 201);

const tokens: Record<string, string> = {};
for (const [name, id] of Object.entries(ids)) tokens[name] = (await createToken(database.db, `personal-${name}`, ['requests'], undefined, id)).token;
const frontEnd = (await createToken(database.db, 'chat-app', ['requests', 'requests:act-as'])).token;

interface Answer {
  status: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests inspect the JSON freely
  body: any;
}

/** Calls the API with a token (a person's name, or a token itself) and optional X-Act-As. */
async function call(who: string, method: 'GET' | 'POST' | 'PUT', url: string, payload?: unknown, actAs?: string): Promise<Answer> {
  const res = await gw.scim({
    method,
    url,
    token: tokens[who] ?? who,
    headers: { ...(payload !== undefined ? { 'content-type': 'application/json' } : {}), ...(actAs ? { 'x-act-as': actAs } : {}) },
    ...(payload !== undefined ? { payload: payload as object } : {}),
  });
  return { status: res.statusCode, body: res.statusCode === 204 ? undefined : res.json() };
}

const policy = (stages: unknown[], extra: Record<string, unknown> = {}) => ({
  entitlement: 'memory/prod-db',
  displayName: 'Production database',
  durations: { defaultSeconds: 600, maxSeconds: 3600 },
  fulfilment: { mode: 'automatic' },
  stages,
  ...extra,
});

/** Makes `who` request under `name` and waits until the first stage has been resolved. */
async function request(who: string, name: string, body: Record<string, unknown> = {}): Promise<string> {
  const res = await call(who, 'POST', '/api/requests', { policy: name, ...body });
  if (res.status !== 201) throw new Error(`request ${name}: ${res.status} ${JSON.stringify(res.body)}`);
  const id = res.body.id as string;
  await eventually(async () => {
    const r = await call(who, 'GET', `/api/requests/${id}`);
    return r.body.stages.length > 0 || r.body.status !== 'pending';
  }, 30_000, `request ${id} to open its first stage`);
  return id;
}

async function settled(id: string): Promise<Answer['body']> {
  return await eventually(async () => {
    const r = await call(gw.token, 'GET', `/api/requests/${id}`);
    return ['pending', 'approved'].includes(r.body.status) ? undefined : r.body;
  }, 60_000, `request ${id} to settle`);
}

const decide = (who: string, id: string, decision: 'approve' | 'reject', comment?: string) =>
  call(who, 'POST', `/api/requests/${id}/decisions`, { decision, ...(comment ? { comment } : {}) });

t.test('the catalogue: create, replace, get by alias, list; bad policies are refused with the reason', async (t) => {
  const created = await call(gw.token, 'PUT', '/api/access-policies/prod-db', policy([{ approvers: { group: 'DBAs' } }], { aliases: ['database'], owners: { users: ['ann@example.com'] } }));
  t.equal(created.status, 201, 'a new policy is created');
  t.equal(created.body.entitlement, 'memory/prod-db');
  t.same(created.body.owners.userIds, [ids.ann], 'owners are resolved to ids');
  const replaced = await call(gw.token, 'PUT', '/api/access-policies/prod-db', policy([{ approvers: { group: 'DBAs' } }], { aliases: ['database'], description: 'read-write' }));
  t.equal(replaced.status, 200, 'an existing policy is replaced');
  t.equal(replaced.body.id, created.body.id, 'and keeps its id');
  t.equal((await call(gw.token, 'GET', '/api/access-policies/database')).body.description, 'read-write', 'found by alias');
  t.ok((await call(gw.token, 'GET', '/api/access-policies')).body.some((p: { name: string }) => p.name === 'prod-db'));

  const bad: Array<[unknown, RegExp]> = [
    [policy([{ approvers: { group: 'Nope' } }]), /stages\[0\]\.approvers\.group: no group Nope/],
    [policy([{ approvers: {} }]), /name at least one source of approvers/],
    [policy([{ approvers: { group: 'DBAs' }, rule: 'quorum' }]), /quorum exactly when/],
    [policy([{ approvers: { group: 'DBAs' }, whenNobody: 'escalate' }]), /fallbackGroup exactly when whenNobody or onTimeout/],
    [policy([{ approvers: { owners: true } }]), /the policy has no owners/],
    [policy([], { entitlement: 'memory/none' }), /no entitlement memory\/none/],
    [policy([], { entitlement: undefined }), /automatic fulfilment needs an entitlement/],
    [policy([], { eligibility: { filter: 'department eq' } }), /eligibility\.filter/],
    [policy([], { durations: { defaultSeconds: 10, maxSeconds: 5 } }), /longer than maxSeconds/],
  ];
  for (const [body, why] of bad) {
    const res = await call(gw.token, 'PUT', '/api/access-policies/broken', body);
    t.equal(res.status, 400, `refused: ${String(why)}`);
    t.match(res.body.message, why);
  }
  t.equal((await call(gw.token, 'PUT', '/api/access-policies/laptop-admin', { displayName: 'Laptop admin rights', fulfilment: { mode: 'manual', group: 'Fallback' }, stages: [] })).status, 201, 'a manual-only resource needs no connector');
  t.equal((await call('ann', 'PUT', '/api/access-policies/x', policy([]))).status, 403, 'a personal token cannot edit the catalogue');
});

t.test('who is acting: personal tokens act as themselves, act-as tokens name the user', async (t) => {
  const noPerson = await call(frontEnd, 'GET', '/api/requests');
  t.equal(noPerson.status, 400, 'a token of no person must name the acting user');
  t.equal((await call(frontEnd, 'GET', '/api/requests', undefined, 'ria@example.com')).status, 200, 'an act-as token acts as the named user');
  t.equal((await call(frontEnd, 'GET', '/api/requests', undefined, 'nobody@example.com')).status, 400, 'an unknown user is refused');
  const other = await call('ria', 'GET', '/api/requests', undefined, 'ann@example.com');
  t.equal(other.status, 403, 'a personal token cannot act as someone else');
  t.match(other.body.message, 'acts as its own user only');
  t.equal((await call('ria', 'GET', '/api/requests', undefined, 'ria@example.com')).status, 200, 'naming oneself is fine');
  const issued = await api('POST', '/api/tokens', { name: 'ria-personal', scopes: ['requests'], user: 'ria@example.com' }, 201);
  t.equal(issued.userId, ids.ria, 'a personal token is issued through the API for a user');
  t.equal((await call(issued.token, 'GET', '/api/requests')).status, 200, 'and acts as that user');
  t.equal((await api('GET', '/api/tokens')).find((x: { name: string }) => x.name === 'ria-personal')?.userId, ids.ria, 'the token list shows whose it is');
  t.equal((await call(gw.token, 'POST', '/api/tokens', { name: 'ghost', scopes: ['requests'], user: 'ghost@example.com' })).status, 400, 'a token for an unknown user is refused');
  const scimOnly = (await createToken(database.db, 'scim-only', ['scim:read'])).token;
  t.equal((await call(scimOnly, 'GET', '/api/requests', undefined, 'ria@example.com')).status, 403, 'a token without the requests scope is refused');
});

t.test('a request is checked against its policy', async (t) => {
  await api('PUT', '/api/access-policies/eng-only', policy([{ approvers: { group: 'DBAs' } }], { eligibility: { filter: `${ENTERPRISE}:department eq "Engineering"` }, justificationRequired: true }), 201);
  const outsider = await call('out', 'POST', '/api/requests', { policy: 'eng-only', justification: 'x' });
  t.equal(outsider.status, 403, 'a user the eligibility filter excludes is refused');
  t.equal((await call('ria', 'POST', '/api/requests', { policy: 'eng-only' })).status, 400, 'a missing justification is refused');
  t.equal((await call('ria', 'POST', '/api/requests', { policy: 'eng-only', justification: 'x', durationSeconds: 7200 })).status, 400, 'a duration over the maximum is refused');
  t.equal((await call('ria', 'POST', '/api/requests', { policy: 'eng-only', justification: 'x', permanent: true })).status, 400, 'permanent access where the policy does not allow it is refused');
  t.equal((await call('ria', 'POST', '/api/requests', { policy: 'nope' })).status, 404);
  const ok = await call('ria', 'POST', '/api/requests', { policy: 'eng-only', justification: 'migration' });
  t.equal(ok.status, 201, 'an eligible, justified request is accepted');
  t.equal(ok.body.durationSeconds, 600, 'with the default duration');
  t.equal((await call('ria', 'POST', '/api/requests', { policy: 'eng-only', justification: 'again' })).status, 409, 'one pending request per user and policy');
  const mine = await call('ria', 'GET', '/api/requests');
  t.ok(mine.body.some((r: { id: string }) => r.id === ok.body.id), 'it is among my requests');
  t.equal((await call('out', 'GET', `/api/requests/${ok.body.id}`)).status, 404, "someone else's request is not visible");
  await eventually(async () => (await call('ria', 'GET', `/api/requests/${ok.body.id}`)).body.stages.length > 0, 30_000, 'the stage to open');
  t.equal((await call('ben', 'GET', `/api/requests/${ok.body.id}`)).status, 200, 'an approver sees it');
  const cancelled = await call('ria', 'POST', `/api/requests/${ok.body.id}/cancel`);
  t.equal(cancelled.status, 200);
  t.equal(cancelled.body.status, 'cancelled', 'the requester cancels a pending request');
});

t.test('reject and cancel provision nothing', async (t) => {
  await api('PUT', '/api/access-policies/any-dba', policy([{ approvers: { group: 'DBAs' }, rule: 'any' }]), 201);
  const rejected = await request('ria', 'any-dba');
  const no = await decide('ben', rejected, 'reject', 'not for this');
  t.equal(no.status, 200);
  t.equal((await settled(rejected)).status, 'rejected', 'under "any" the first decision decides');
  t.equal((await decide('cat', rejected, 'approve')).status, 409, 'deciding a rejected request conflicts');

  const cancelled = await request('ria', 'any-dba');
  t.equal((await call('ben', 'POST', `/api/requests/${cancelled}/cancel`)).status, 403, 'only the requester cancels');
  t.equal((await call('ria', 'POST', `/api/requests/${cancelled}/cancel`)).body.status, 'cancelled');
  const late = await decide('ben', cancelled, 'approve');
  t.equal(late.status, 409, 'deciding a cancelled request conflicts');
  t.equal(late.body.state.status, 'cancelled');

  const { rows } = await database.db.query(`SELECT 1 FROM grants WHERE reason = ANY($1)`, [[`request:${rejected}`, `request:${cancelled}`]]);
  t.equal(rows.length, 0, 'no grant was written');
  t.notOk(target.groups.get('prod-db')?.size, 'nothing reached the target');
});

t.test('rule "all": every approver must approve; one rejection rejects', async (t) => {
  await api('PUT', '/api/access-policies/all-dba', policy([{ approvers: { users: ['ben@example.com', 'cat@example.com'] }, rule: 'all' }]), 201);
  const id = await request('ria', 'all-dba');
  const one = await decide('ben', id, 'approve');
  t.equal(one.body.status, 'pending', 'one of two approvals leaves the stage open');
  t.equal(one.body.stages[0].status, 'open');
  await decide('cat', id, 'approve');
  t.equal((await settled(id)).status, 'fulfilled', 'both approvals approve and fulfil');
  await eventually(async () => target.groups.get('prod-db')?.has(`acct-${ids.ria}`), 30_000, 'ria in prod-db in the target');

  const vetoed = await request('dan', 'all-dba');
  await decide('ben', vetoed, 'approve');
  await decide('cat', vetoed, 'reject');
  t.equal((await settled(vetoed)).status, 'rejected', 'one rejection rejects under "all"');
});

t.test('rule "quorum": two of three', async (t) => {
  await api('PUT', '/api/access-policies/quorum-dba', policy([{ approvers: { group: 'DBAs' }, rule: 'quorum', quorum: 2 }], { fulfilment: { mode: 'manual', group: 'Fallback' } }), 201);
  const id = await request('ria', 'quorum-dba');
  t.equal((await decide('ben', id, 'approve')).body.status, 'pending', 'one approval is not a quorum');
  t.equal((await decide('cat', id, 'reject')).body.status, 'pending', 'a quorum is still reachable');
  await decide('dan', id, 'approve');
  const now = await eventually(async () => {
    const r = (await call(gw.token, 'GET', `/api/requests/${id}`)).body;
    return r.status !== 'pending' ? r : undefined;
  }, 30_000, 'the quorum request to be decided');
  t.equal(now.status, 'approved', 'two approvals make the quorum (manual fulfilment leaves it approved)');

  const lost = await request('fay', 'quorum-dba');
  await decide('ben', lost, 'reject');
  await decide('cat', lost, 'reject');
  t.equal((await settled(lost)).status, 'rejected', 'rejected once the quorum cannot be reached');
});

t.test('a stage nobody can approve: reject, skip or escalate; the requester is never an approver', async (t) => {
  await api('PUT', '/api/access-policies/nobody-reject', policy([{ approvers: { group: 'Empty' }, whenNobody: 'reject' }]), 201);
  const rejected = await request('ria', 'nobody-reject');
  const r = await settled(rejected);
  t.equal(r.status, 'rejected', 'reject: the request is rejected');
  t.match(r.reason, 'nobody could approve');

  await api('PUT', '/api/access-policies/nobody-skip', policy([{ approvers: { group: 'Empty' }, whenNobody: 'skip' }, { approvers: { users: ['ben@example.com'] } }], { fulfilment: { mode: 'manual', group: 'Fallback' } }), 201);
  const skipped = await request('ria', 'nobody-skip');
  await eventually(async () => (await call('ben', 'GET', '/api/approvals')).body.some((x: { id: string }) => x.id === skipped), 30_000, 'the second stage to open');
  const view = (await call('ria', 'GET', `/api/requests/${skipped}`)).body;
  t.equal(view.stages[0].status, 'skipped', 'skip: the empty stage is skipped');
  t.equal(view.stage, 1, 'and the next one is open');

  await api('PUT', '/api/access-policies/self-only', policy([{ approvers: { manager: 1 }, whenNobody: 'escalate', fallbackGroup: 'Fallback' }]), 201);
  // ben has no manager, so nobody is found and the fallback group decides.
  const escalated = await request('ben', 'self-only');
  const esc = (await call('ben', 'GET', `/api/requests/${escalated}`)).body;
  t.same(esc.stages[0].approvers, [ids.fay], 'escalate: the fallback group approves');
  t.equal((await decide('fay', escalated, 'approve')).status, 200);

  // ann's only approver would be ann herself: she is removed, and the rule for nobody applies.
  await api('PUT', '/api/access-policies/own-owner', policy([{ approvers: { users: ['ann@example.com'] }, whenNobody: 'reject' }]), 201);
  const own = await request('ann', 'own-owner');
  t.equal((await settled(own)).status, 'rejected', 'a stage of only the requester counts as nobody');
});

t.test('the manager N levels up', async (t) => {
  await api('PUT', '/api/access-policies/manager', policy([{ approvers: { manager: 1 } }], { fulfilment: { mode: 'manual', group: 'Fallback' } }), 201);
  const id = await request('ria', 'manager');
  t.same((await call('ria', 'GET', `/api/requests/${id}`)).body.stages[0].approvers, [ids.ann], "ria's manager approves");
  t.equal((await decide('ann', id, 'approve')).status, 200);
});

t.test('an undecided stage expires the request after its timeout', async (t) => {
  await api('PUT', '/api/access-policies/short', policy([{ approvers: { group: 'DBAs' }, timeoutSeconds: 1 }]), 201);
  const id = await request('ria', 'short');
  const r = await settled(id);
  t.equal(r.status, 'expired', 'nobody decided in time');
  t.match(r.reason, 'not decided in time');
  t.equal((await decide('ben', id, 'approve')).status, 409, 'an expired request cannot be decided');
});

t.test('a request still pending after its TTL expires', async (t) => {
  await api('PUT', '/api/access-policies/ttl', policy([{ approvers: { group: 'DBAs' } }, { approvers: { users: ['fay@example.com'] } }], { requestTtlSeconds: 2 }), 201);
  const id = await request('ria', 'ttl');
  await decide('ben', id, 'approve');
  const r = await settled(id);
  t.equal(r.status, 'expired', 'the second stage was still open when the TTL ran out');
  t.match(r.reason, 'the request was not decided in time');
});

t.test('time-bound access is removed from the target when it ends', async (t) => {
  await api('POST', '/api/entitlements', { connectorId: 'memory', name: 'break-glass', target: { group: 'break-glass' } }, 201);
  await api('PUT', '/api/access-policies/break-glass', policy([{ approvers: { users: ['ben@example.com'] } }], { entitlement: 'memory/break-glass', durations: { maxSeconds: 3 } }), 201);
  const id = await request('ria', 'break-glass');
  await decide('ben', id, 'approve');
  t.equal((await settled(id)).status, 'fulfilled', 'granted for its maximum duration');
  t.ok(target.groups.get('break-glass')?.has(`acct-${ids.ria}`), 'the access is in the target');
  await eventually(async () => !target.groups.get('break-glass')?.has(`acct-${ids.ria}`), 30_000, 'the access to be removed when it ends');
  t.pass('the access ended by itself');
});

t.test('auto-approval: a stage whose condition matches the requester approves itself', async (t) => {
  const dept = `${ENTERPRISE}:department eq "Engineering"`;
  t.equal((await call(gw.token, 'PUT', '/api/access-policies/bad-auto', policy([{ approvers: { group: 'DBAs' }, autoApprove: 'department eq' }]))).status, 400, 'the condition must be a SCIM filter');
  await api('PUT', '/api/access-policies/auto', policy([{ approvers: { group: 'DBAs' }, autoApprove: dept }, { approvers: { users: ['fay@example.com'] } }], { fulfilment: { mode: 'manual', group: 'Fallback' } }), 201);
  const engineer = await request('ria', 'auto');
  await eventually(async () => (await call('fay', 'GET', '/api/approvals')).body.some((x: { id: string }) => x.id === engineer), 30_000, 'the second stage to open');
  const view = (await call('ria', 'GET', `/api/requests/${engineer}`)).body;
  t.equal(view.stages[0].status, 'approved', 'the engineer’s first stage approved itself');
  t.same(view.stages[0].approvers, [], 'without approvers');
  const { rows } = await database.db.query(`SELECT reason FROM audit_events WHERE action = 'access-request.stage-opened' AND resource_id = $1 ORDER BY id LIMIT 1`, [engineer]);
  t.match(rows[0]?.reason, 'approved automatically', 'the audit log says why');

  const other = await request('out', 'auto');
  const otherView = (await call('out', 'GET', `/api/requests/${other}`)).body;
  t.equal(otherView.stages[0].status, 'open', 'someone the condition does not match waits for the DBAs');
});

t.test('manual fulfilment: a task for the fulfilment group; time-bound access gets a revocation task when it ends', async (t) => {
  await api(
    'PUT',
    '/api/access-policies/laptop',
    { displayName: 'Laptop admin rights', durations: { defaultSeconds: 2 }, fulfilment: { mode: 'manual', group: 'Fallback', instructions: 'MDM: add to local admins' }, stages: [{ approvers: { users: ['ben@example.com'] } }] },
    201,
  );
  const id = await request('ria', 'laptop');
  await decide('ben', id, 'approve');
  const task = await eventually(async () => (await call('fay', 'GET', '/api/tasks')).body.find((x: { requestId: string }) => x.requestId === id), 30_000, 'the grant task');
  t.match(task, { kind: 'grant', status: 'open', requester: 'ria@example.com', instructions: 'MDM: add to local admins' }, 'the fulfilment group sees the task');
  t.equal((await call('ria', 'GET', `/api/requests/${id}`)).body.status, 'approved', 'access is not granted until the task is done');

  t.equal((await call('ben', 'POST', `/api/tasks/${task.id}/complete`, { outcome: 'done' })).status, 403, 'someone outside the fulfilment group cannot close it');
  t.equal((await call('fay', 'POST', `/api/tasks/${task.id}/claim`)).body.status, 'claimed', 'an assignee claims it');
  t.equal((await call('fay', 'POST', `/api/tasks/${task.id}/claim`)).status, 409, 'once');
  const done = await call('fay', 'POST', `/api/tasks/${task.id}/complete`, { outcome: 'done', note: 'added via MDM' });
  t.equal(done.status, 200, `the task is closed: ${done.body.message ?? ''}`);
  t.equal(done.body.status, 'done');
  t.equal((await call('fay', 'POST', `/api/tasks/${task.id}/complete`, { outcome: 'done', note: 'added via MDM' })).status, 200, 'reporting it done again is idempotent');
  t.equal((await call('fay', 'POST', `/api/tasks/${task.id}/complete`, { outcome: 'failed' })).status, 409, 'reporting it failed after done conflicts');
  const fulfilled = await eventually(async () => {
    const r = (await call('ria', 'GET', `/api/requests/${id}`)).body;
    return r.status === 'fulfilled' ? r : undefined;
  }, 30_000, 'the request to be fulfilled');
  t.equal(fulfilled.reason, 'added via MDM', "the fulfiller's note is the requester's answer");

  const revoke = await eventually(async () => (await call('fay', 'GET', '/api/tasks')).body.find((x: { requestId: string; kind: string }) => x.requestId === id && x.kind === 'revoke'), 30_000, 'the revocation task when the access ends');
  t.equal(revoke.status, 'open', 'a revocation task appears when the time-bound access ends');
  t.equal((await call('fay', 'POST', `/api/tasks/${revoke.id}/complete`, { outcome: 'done' })).status, 200);
  const { rows } = await database.db.query(`SELECT action FROM audit_events WHERE resource_type = 'AccessTask' AND after->>'requestId' = $1 ORDER BY id`, [id]);
  t.same(
    rows.map((r) => r.action),
    ['access-task.opened', 'access-task.refused', 'access-task.claimed', 'access-task.refused', 'access-task.done', 'access-task.refused', 'access-task.opened', 'access-task.done'],
    'every step of the tasks is audited, refused attempts too',
  );
});

t.test('an admin revokes fulfilled access at any time; a pending request is cancelled', async (t) => {
  const { rows } = await database.db.query<{ id: string }>(`SELECT id FROM access_requests WHERE requester_id = $1 AND policy->>'name' = 'all-dba' AND status = 'fulfilled'`, [ids.ria]);
  const id = rows[0]!.id;
  t.ok(target.groups.get('prod-db')?.has(`acct-${ids.ria}`), 'the access is in the target');
  t.equal((await call('ria', 'POST', `/api/requests/${id}/revoke`, {})).status, 403, 'only an admin revokes');
  const revoked = await call(gw.token, 'POST', `/api/requests/${id}/revoke`, { reason: 'left the project' });
  t.equal(revoked.status, 200);
  t.equal(revoked.body.status, 'revoked');
  await eventually(async () => !target.groups.get('prod-db')?.has(`acct-${ids.ria}`), 30_000, 'the access to be removed from the target');
  t.equal((await call(gw.token, 'POST', `/api/requests/${id}/revoke`, {})).status, 409, 'nothing left to revoke');

  const pending = await request('cat', 'any-dba');
  const cancelled = await call(gw.token, 'POST', `/api/requests/${pending}/revoke`, {});
  t.equal(cancelled.body.status, 'cancelled', 'a pending request is cancelled');
});

t.test('the auditors’ export: requests of a period with every decision and refused attempt', async (t) => {
  const json = await gw.scim({ method: 'GET', url: `/api/requests/export?from=2000-01-01&format=json` });
  t.equal(json.statusCode, 200);
  const all = json.json<Array<{ policy: string; requester: string; decisions: Array<{ approver: string; accepted: boolean; refusal: string | null }> }>>();
  const vetoed = all.find((r) => r.policy === 'all-dba' && r.requester === 'dan@example.com');
  t.same(vetoed?.decisions.map((d) => `${d.approver} ${d.accepted}`), ['ben@example.com true', 'cat@example.com true'], 'each decision with its approver');
  const quorum = all.find((r) => r.policy === 'quorum-dba' && r.requester === 'ria@example.com');
  t.equal(quorum?.decisions.length, 3, 'all three decisions of the quorum request');
  const csv = await gw.scim({ method: 'GET', url: `/api/requests/export?from=2000-01-01&format=csv` });
  t.match(csv.headers['content-type'], 'text/csv');
  const lines = csv.body.trimEnd().split('\r\n');
  t.match(lines[0], /^requestId,policy,entitlement,requester,/, 'a header row');
  t.ok(lines.length > all.length, 'a row per decision (or per undecided request)');
  t.equal((await gw.scim({ method: 'GET', url: `/api/requests/export?from=yesterday&format=csv` })).statusCode, 400, 'a bad date is refused');
  t.same((await gw.scim({ method: 'GET', url: `/api/requests/export?from=2000-01-01&to=2000-02-01&format=json` })).json(), [], 'an empty period is empty');
});

t.test('a stage timeout escalates to the fallback group when the policy says so', async (t) => {
  t.match((await call(gw.token, 'PUT', '/api/access-policies/bad-escalation', policy([{ approvers: { group: 'DBAs' }, onTimeout: 'escalate', fallbackGroup: 'Fallback' }]))).body.message, 'needs timeoutSeconds');
  await api('PUT', '/api/access-policies/escalating', policy([{ approvers: { users: ['ben@example.com'] }, timeoutSeconds: 3, onTimeout: 'escalate', fallbackGroup: 'Fallback' }], { fulfilment: { mode: 'manual', group: 'Fallback' } }), 201);
  const id = await request('ria', 'escalating');
  t.equal((await decide('fay', id, 'approve')).status, 403, 'before the timeout the fallback group cannot decide');
  await eventually(async () => (await call('fay', 'GET', '/api/approvals')).body.some((x: { id: string }) => x.id === id), 30_000, 'the escalated stage in the fallback group’s inbox');
  const view = (await call('ria', 'GET', `/api/requests/${id}`)).body;
  t.same(view.stages[0].approvers.sort(), [ids.ben, ids.fay].sort(), 'the fallback group joins the approvers');
  t.equal(view.status, 'pending', 'the request is still pending');
  const approved = await decide('fay', id, 'approve');
  t.equal(approved.status, 200, `the fallback approver decides: ${approved.body.message ?? ''}`);
  const { rows } = await database.db.query(`SELECT 1 FROM audit_events WHERE action = 'access-request.stage-escalated' AND resource_id = $1`, [id]);
  t.equal(rows.length, 1, 'the escalation is audited');
});

t.test('an extension prolongs running time-bound access without a gap', async (t) => {
  await api('POST', '/api/entitlements', { connectorId: 'memory', name: 'ext-group', target: { group: 'ext' } }, 201);
  await api('PUT', '/api/access-policies/ext', policy([{ approvers: { users: ['ben@example.com'] } }], { entitlement: 'memory/ext-group', durations: { defaultSeconds: 4, maxSeconds: 60 } }), 201);
  const first = await request('ria', 'ext');
  await decide('ben', first, 'approve');
  const original = await settled(first);
  t.equal(original.status, 'fulfilled');
  t.equal((await call('cat', 'POST', '/api/requests', { policy: 'ext', extends: first })).status, 400, "someone else's access cannot be extended");
  const ext = await call('ria', 'POST', '/api/requests', { policy: 'ext', extends: first, durationSeconds: 30, justification: 'more time' });
  t.equal(ext.status, 201, `the extension is requested: ${ext.body.message ?? ''}`);
  t.equal(ext.body.extends, first, 'marked as an extension');
  await eventually(async () => (await call('ben', 'GET', '/api/approvals')).body.some((x: { id: string }) => x.id === ext.body.id), 30_000, 'the extension to reach the approver');
  await decide('ben', ext.body.id, 'approve');
  const extended = await settled(ext.body.id);
  t.equal(extended.status, 'fulfilled', 'the extension is fulfilled');
  const { rows } = await database.db.query<{ id: string; valid_from: Date; valid_until: Date }>('SELECT id, valid_from, valid_until FROM grants WHERE id = ANY($1::uuid[])', [[original.grantId, extended.grantId]]);
  const old = rows.find((g) => g.id === original.grantId)!;
  const next = rows.find((g) => g.id === extended.grantId)!;
  t.equal(next.valid_from.getTime(), old.valid_until.getTime(), 'the extension starts where the original ends');
  t.equal(next.valid_until.getTime() - next.valid_from.getTime(), 30_000, 'for the duration asked');
  // Past the original's end, the access is still there.
  await new Promise((r) => setTimeout(r, Math.max(0, old.valid_until.getTime() - Date.now()) + 1500));
  t.ok(target.groups.get('ext')?.has(`acct-${ids.ria}`), 'the access did not lapse when the original ended');

  // Revoking the original takes away the access the extension carries on too.
  const revoked = await call(gw.token, 'POST', `/api/requests/${first}/revoke`, { reason: 'project over' });
  t.equal(revoked.status, 200, `revoked: ${revoked.body.message ?? ''}`);
  const extAfter = (await call(gw.token, 'GET', `/api/requests/${ext.body.id}`)).body;
  t.equal(extAfter.status, 'revoked', 'the extension is revoked with the access it prolongs');
  t.equal(extAfter.reason, `revoked with request ${first}: project over`);
  const { rows: ended } = await database.db.query<{ status: string }>('SELECT status FROM grants WHERE id = $1', [extended.grantId]);
  t.equal(ended[0]!.status, 'ended', 'its grant ends');
  await eventually(async () => !target.groups.get('ext')?.has(`acct-${ids.ria}`), 30_000, 'the access to be removed from the target');
});

t.test('an approver function names approvers; one that throws or times out names nobody', async (t) => {
  const fn = fileURLToPath(new URL('../../../fixtures/approver-function.ts', import.meta.url));
  await api(
    'PUT',
    '/api/access-policies/by-function',
    policy([{ approvers: { function: fn, functionTimeoutSeconds: 1 }, whenNobody: 'escalate', fallbackGroup: 'Fallback' }], { fulfilment: { mode: 'manual', group: 'Fallback' } }),
    201,
  );
  const id = await request('ria', 'by-function');
  t.same((await call('ria', 'GET', `/api/requests/${id}`)).body.stages[0].approvers, [ids.cat], 'the function’s approver (the unknown one is ignored)');
  t.equal((await decide('cat', id, 'approve')).status, 200, 'and that approver decides');

  const thrown = await request('dan', 'by-function');
  const view = (await call('dan', 'GET', `/api/requests/${thrown}`)).body;
  t.same(view.stages[0].approvers, [ids.fay], 'a function that throws names nobody: the stage escalates');
  const { rows } = await database.db.query<{ reason: string }>(`SELECT reason FROM audit_events WHERE action = 'access-request.stage-opened' AND resource_id = $1`, [thrown]);
  t.match(rows[0]?.reason, 'the approver function failed: the approvals directory is down', 'and the reason is recorded');

  const hung = await request('fay', 'by-function');
  const hungView = await eventually(async () => {
    const r = (await call('fay', 'GET', `/api/requests/${hung}`)).body;
    return r.status !== 'pending' ? r : undefined;
  }, 60_000, 'the request of the hanging function to settle');
  t.equal(hungView.status, 'rejected', "a function that hangs names nobody; fay's only fallback approver is fay herself, so the request is rejected");
  t.match(hungView.reason, 'the approver function failed');
});
