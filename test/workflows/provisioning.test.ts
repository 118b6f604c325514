/**
 * The provisioning engine end to end on the real Temporal dev server and PostgreSQL: SCIM users and
 * groups → rules → grants → connector accounts and memberships, and back out on deactivation. The
 * target is a connector plugin loaded by path, whose in-memory state the test inspects and breaks.
 */
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { userBody } from '../helpers/gateway.js';
import { eventually } from '../helpers/temporal.js';
import { startTestStack } from '../helpers/stack.js';
import { memoryTarget } from '../fixtures/memory-connector.js';
import { notifyUserChanged } from '../../workflows/client.js';

const PLUGIN = fileURLToPath(new URL('../fixtures/memory-connector.ts', import.meta.url));
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';

const { database, temporal, gw } = await startTestStack(t, { idleMs: 1000 });
const ns = `prov-${temporal.taskQueue}`;
const target = memoryTarget(ns);
const broken = memoryTarget(`${ns}-broken`);

const api = gw.call;

t.test('admin API: connectors, entitlements, rules; secrets only by reference', async (t) => {
  const leak = await gw.scim({ method: 'PUT', url: '/api/connectors/leaky', headers: { 'content-type': 'application/json' }, payload: { id: 'leaky', type: PLUGIN, config: { namespace: 'x', apiToken: 'ghp_plaintext' } } });
  t.equal(leak.statusCode, 400);
  t.match(leak.json().message, 'config.apiToken: give secrets as env:NAME or file:/path references');
  const badConfig = await gw.scim({ method: 'PUT', url: '/api/connectors/bad', headers: { 'content-type': 'application/json' }, payload: { id: 'bad', type: PLUGIN, config: {} } });
  t.equal(badConfig.statusCode, 400);
  t.match(badConfig.json().message, /invalid configuration/);

  await api('PUT', '/api/connectors/memory', { id: 'memory', type: PLUGIN, config: { namespace: ns } });
  await api('PUT', '/api/connectors/broken', { id: 'broken', type: PLUGIN, config: { namespace: `${ns}-broken` } });
  await api('POST', '/api/entitlements', { connectorId: 'memory', name: 'eng-group', target: { group: 'eng' } }, 201);
  await api('POST', '/api/entitlements', { connectorId: 'memory', name: 'security-group', target: { group: 'security' } }, 201);
  await api('POST', '/api/entitlements', { connectorId: 'broken', name: 'eng-group', target: { group: 'eng' } }, 201);
  const bad = await gw.scim({ method: 'POST', url: '/api/entitlements', headers: { 'content-type': 'application/json' }, payload: { connectorId: 'memory', name: 'x', target: { nope: 1 } } });
  t.equal(bad.statusCode, 400, 'the target is validated against the connector type');

  await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Engineering' }, 201);
  await api('POST', '/api/rules', { name: 'engineering', group: 'Engineering', entitlements: ['memory/eng-group', 'broken/eng-group'] }, 201);
  await api('POST', '/api/rules', { name: 'security-dept', condition: 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "Security"', entitlements: ['memory/security-group'] }, 201);
  const badRule = await gw.scim({ method: 'POST', url: '/api/rules', headers: { 'content-type': 'application/json' }, payload: { name: 'x', condition: 'department eq', entitlements: ['memory/eng-group'] } });
  t.equal(badRule.statusCode, 400, 'a rule condition must be a valid SCIM filter');
  t.equal((await api('GET', '/api/rules')).length, 2);
});

t.test('group membership and attributes → grants → accounts; a 403 on one connector does not block the other', async (t) => {
  broken.failures.set('createAccount', Array.from({ length: 50 }, () => ({ kind: 'permanent' as const, message: 'token lacks admin:org' })));
  target.failures.set('grant', [{ kind: 'transient', retryAfterMs: 200 }, { kind: 'transient' }]);

  const alice = await api('POST', '/scim/v2/Users', userBody('alice@example.com', { displayName: 'Alice', 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User': { department: 'Security' }, schemas: ['urn:ietf:params:scim:schemas:core:2.0:User', 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User'] }), 201);
  const [eng] = (await api('GET', `/scim/v2/Groups?filter=${encodeURIComponent('displayName eq "Engineering"')}`)).Resources;
  await api('PATCH', `/scim/v2/Groups/${eng.id}`, { schemas: [PATCH], Operations: [{ op: 'add', path: 'members', value: [{ value: alice.id }] }] });

  const remote = `acct-${alice.id}`;
  await eventually(async () => target.groups.get('eng')?.has(remote) && target.groups.get('security')?.has(remote), 60_000, 'alice in eng and security in the target');
  t.equal(target.accounts.get(remote)?.active, true, 'the account exists and is active');
  t.ok(target.calls.filter((c) => c === 'grant').length >= 3, 'the throttled grant was retried until it succeeded');

  const grants = await api('GET', `/api/grants?userId=${alice.id}`);
  t.same(
    grants.map((g: { connectorId: string; entitlement: string; reason: string }) => `${g.connectorId}/${g.entitlement} ${g.reason}`).sort(),
    ['broken/eng-group rule:engineering', 'memory/eng-group rule:engineering', 'memory/security-group rule:security-dept'],
    'who has what and why',
  );

  const status = await eventually(async () => {
    const s = await api('GET', `/api/users/${alice.id}/provisioning`);
    return s.find((a: { connectorId: string; lastError: string | null }) => a.connectorId === 'broken' && a.lastError) ? s : undefined;
  }, 30_000, 'the broken connector to record its error');
  const brokenStatus = status.find((a: { connectorId: string }) => a.connectorId === 'broken');
  t.match(brokenStatus.lastError, 'token lacks admin:org', 'the permanent failure keeps its reason');
  t.match(brokenStatus.workflowId, `user-sync:${alice.id}`);
  const memoryStatus = status.find((a: { connectorId: string }) => a.connectorId === 'memory');
  t.equal(memoryStatus.state, 'active');
  t.equal(memoryStatus.lastError, null);
  t.equal(broken.accounts.size, 0, 'nothing was created in the refusing target');
});

t.test('deactivation revokes every membership and disables the account; reactivation restores them', async (t) => {
  const [alice] = (await api('GET', `/scim/v2/Users?filter=${encodeURIComponent('userName eq "alice@example.com"')}`)).Resources;
  const remote = `acct-${alice.id}`;
  await api('PATCH', `/scim/v2/Users/${alice.id}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { active: false } }] });
  await eventually(async () => target.accounts.get(remote)?.active === false, 60_000, 'the account to be disabled');
  t.notOk(target.groups.get('eng')?.has(remote), 'eng membership revoked');
  t.notOk(target.groups.get('security')?.has(remote), 'security membership revoked');
  t.same(await api('GET', `/api/grants?userId=${alice.id}`), [], 'no active grant remains');

  await api('PATCH', `/scim/v2/Users/${alice.id}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { active: true } }] });
  await eventually(
    async () => target.accounts.get(remote)?.active === true && target.groups.get('eng')?.has(remote) && target.groups.get('security')?.has(remote),
    60_000,
    'the account and both memberships to come back',
  );
  t.pass('reactivation restored the account and both memberships');

  const audit = await database.db.query(`SELECT action FROM audit_events WHERE resource_type = 'Account' AND resource_id = $1 ORDER BY id`, [`memory:${alice.id}`]);
  t.ok(audit.rows.some((r) => r.action === 'account.disableAccount'), 'workflow outcomes are in the audit log');
});

t.test('the same change delivered twice does nothing the second time', async (t) => {
  const [alice] = (await api('GET', `/scim/v2/Users?filter=${encodeURIComponent('userName eq "alice@example.com"')}`)).Resources;
  const { rows } = await database.db.query<{ seq: number }>('SELECT max(id)::int AS seq FROM outbox WHERE aggregate_id = $1', [alice.id]);
  const seq = rows[0]!.seq;
  await eventually(async () => {
    const r = await database.db.query<{ synced_seq: number }>('SELECT synced_seq FROM user_sync_state WHERE user_id = $1', [alice.id]);
    return r.rows[0]?.synced_seq === seq;
  }, 60_000, 'the last change to be applied');
  // Let the workflow run complete, so the duplicate starts a fresh run that knows nothing in memory.
  await new Promise((r) => setTimeout(r, 1500));
  const calls = target.calls.length;
  await notifyUserChanged(temporal.client, temporal.taskQueue, { idleMs: 200, debounceMs: 0 }, { userId: alice.id, userName: 'alice@example.com', seq });
  await eventually(async () => {
    const r = await database.db.query<{ syncs: number; synced_seq: number }>('SELECT syncs, synced_seq FROM user_sync_state WHERE user_id = $1', [alice.id]);
    return r.rows[0];
  }, 30_000);
  await new Promise((r) => setTimeout(r, 1500));
  t.equal(target.calls.length, calls, 'no call reached the target for the duplicate');
});

t.test('test connection runs validate() in a worker and says why it failed', async (t) => {
  t.same(await api('POST', '/api/connectors/memory/test'), { ok: true });
  broken.failures.set('validate', [{ kind: 'permanent', message: 'bad credentials' }]);
  const res = await api('POST', '/api/connectors/broken/test');
  t.equal(res.ok, false);
  t.equal(res.kind, 'permanent');
  t.match(res.error, 'bad credentials');
  broken.failures.set('validate', [{ kind: 'transient' }]);
  t.match(await api('POST', '/api/connectors/broken/test'), { ok: false, kind: 'transient' });
});

t.test('time-bound access ends by itself; a manual grant can be ended early', async (t) => {
  const [alice] = (await api('GET', `/scim/v2/Users?filter=${encodeURIComponent('userName eq "alice@example.com"')}`)).Resources;
  const remote = `acct-${alice.id}`;
  await api('POST', '/api/entitlements', { connectorId: 'memory', name: 'temp-group', target: { group: 'temp' } }, 201);
  await api('POST', '/api/entitlements', { connectorId: 'memory', name: 'oncall-group', target: { group: 'oncall' } }, 201);
  const until = new Date(Date.now() + 5000).toISOString();
  const temp = await api('POST', '/api/grants', { userId: alice.id, entitlement: 'memory/temp-group', validUntil: until }, 201);
  t.equal(temp.reason, 'manual');
  const oncall = await api('POST', '/api/grants', { userId: alice.id, entitlement: 'memory/oncall-group', reason: 'request:REQ-42' }, 201);
  await eventually(async () => target.groups.get('temp')?.has(remote) && target.groups.get('oncall')?.has(remote), 60_000, 'both grants applied');

  await api('DELETE', `/api/grants/${oncall.id}`, undefined, 204);
  await eventually(async () => !target.groups.get('oncall')?.has(remote), 60_000, 'the ended grant to be revoked');

  await eventually(async () => !target.groups.get('temp')?.has(remote), 60_000, 'the time-bound grant to be revoked when its window closes');
  t.ok(Date.now() >= Date.parse(until), 'not before its time');
  const grants = await api('GET', `/api/grants?userId=${alice.id}`);
  t.notOk(grants.some((g: { entitlement: string }) => g.entitlement === 'temp-group'), 'the expired grant no longer counts');
  t.ok(target.groups.get('eng')?.has(remote), 'rule-based access is untouched');
  const bad = await gw.scim({ method: 'POST', url: '/api/grants', headers: { 'content-type': 'application/json' }, payload: { userId: alice.id, entitlement: 'memory/temp-group', validFrom: until, validUntil: until } });
  t.equal(bad.statusCode, 400, 'an empty window is refused');
});

t.test('removing a rule ends the access it gave; entitlements and connectors in use cannot be removed', async (t) => {
  const [alice] = (await api('GET', `/scim/v2/Users?filter=${encodeURIComponent('userName eq "alice@example.com"')}`)).Resources;
  const remote = `acct-${alice.id}`;
  t.ok(target.groups.get('security')?.has(remote), 'alice holds security through the department rule');
  const security = (await api('GET', '/api/entitlements')).find((e: { connectorId: string; name: string }) => e.connectorId === 'memory' && e.name === 'security-group');
  t.equal((await gw.scim({ method: 'DELETE', url: `/api/entitlements/${security.id}` })).statusCode, 409, 'an entitlement a rule uses stays');

  await api('DELETE', '/api/rules/security-dept', undefined, 204);
  await eventually(async () => !target.groups.get('security')?.has(remote), 60_000, 'the rule grant to be revoked');
  t.ok(target.groups.get('eng')?.has(remote), 'other rules are untouched');
  await eventually(async () => (await gw.scim({ method: 'DELETE', url: `/api/entitlements/${security.id}` })).statusCode === 204, 30_000, 'the unused entitlement to be removable');

  t.equal((await gw.scim({ method: 'DELETE', url: '/api/connectors/memory' })).statusCode, 409, 'a connector with entitlements stays');
  await api('PUT', '/api/connectors/spare', { id: 'spare', type: PLUGIN, config: { namespace: 'spare' } });
  await api('DELETE', '/api/connectors/spare', undefined, 204);
  t.equal((await gw.scim({ method: 'DELETE', url: '/api/connectors/spare' })).statusCode, 404);
  t.equal((await gw.scim({ method: 'DELETE', url: '/api/rules/no-such-rule' })).statusCode, 404);
});
