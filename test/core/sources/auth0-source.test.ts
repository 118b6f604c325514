/**
 * Auth0 as a source, end to end: the gateway, a worker on the Temporal dev server and PostgreSQL,
 * against the HTTPS fake tenant (test/connectors/auth0/fake-auth0.ts) through the real `auth0`
 * client. A scheduled import of a few thousand users, then changes, blocks and deletes; the
 * userName precedence between a source and SCIM; Log Streams applied once per log id.
 */
import { underTestCa } from '../../connectors/auth0/test-ca.js';

const tls = await underTestCa(import.meta.url);
const { default: t } = await import('tap');
const { startFakeAuth0, ALL_SCOPES } = await import('../../connectors/auth0/fake-auth0.js');
const { createTestDatabase } = await import('../../helpers/db.js');
const { testTemporal } = await import('../../helpers/temporal.js');
const { startTestGateway, userBody } = await import('../../helpers/gateway.js');

const SECRET = 'source-client-secret-0123456789abcdef';
const LOG_SECRET = 'log-stream-secret-0123456789abcdef0123';
const CONNECTION = 'Username-Password-Authentication';
process.env.AUTH0_SOURCE_TEST_SECRET = SECRET;
process.env.AUTH0_SOURCE_TEST_LOG_SECRET = LOG_SECRET;

const fake = await startFakeAuth0({ cert: tls.cert, key: tls.key });
t.teardown(() => fake.close());
fake.connections.add(CONNECTION);
fake.connections.add('Other-Database');
fake.clients.set('source-app', { secret: SECRET, scopes: ALL_SCOPES });

const database = await createTestDatabase(t);
const temporal = await testTemporal(t);
// The outbox is not dispatched here: that imported users reach provisioning is checked by the
// user.changed messages their changes put in the outbox (the first-login test provisions them).
const gw = await startTestGateway(t, { database, temporalAddress: temporal.address, taskQueue: temporal.taskQueue, scopes: ['scim:read', 'scim:write', 'admin'], dispatchOutbox: false });
await temporal.startWorker(database.newPool());
const db = database.db;
const api = gw.call;

const USERS = 3000;
const base = Date.parse('2026-01-01T00:00:00.000Z');
const created: string[] = [];
// Three users per millisecond, so pages end part way through one instant.
for (let i = 0; i < USERS; i++) {
  const at = new Date(base + Math.floor(i / 3)).toISOString();
  created.push(fake.addUser({ email: `user${i}@example.com`, connection: CONNECTION, name: `User ${i}`, created_at: at, updated_at: at }).user_id);
}
fake.addUser({ email: 'elsewhere@example.com', connection: 'Other-Database' });

const config = {
  domain: fake.domain,
  clientId: 'source-app',
  clientSecret: 'env:AUTH0_SOURCE_TEST_SECRET',
  connection: CONNECTION,
  logStreamSecret: 'env:AUTH0_SOURCE_TEST_LOG_SECRET',
};

async function directory(externalId: string): Promise<{ id: string; user_name: string; active: boolean; display_name: string | null; deleted: boolean } | undefined> {
  const { rows } = await db.query(
    `SELECT id, user_name, active, display_name, deleted_at IS NOT NULL AS deleted FROM users WHERE external_id = $1 AND source_id = 'auth0-main' ORDER BY deleted_at NULLS FIRST LIMIT 1`,
    [externalId],
  );
  return rows[0];
}

const liveSourceUsers = async () => Number((await db.query(`SELECT count(*) AS n FROM users WHERE source_id = 'auth0-main' AND deleted_at IS NULL`)).rows[0].n);
const outboxFor = async (userId: string) => Number((await db.query(`SELECT count(*) AS n FROM outbox WHERE topic = 'user.changed' AND aggregate_id = $1`, [userId])).rows[0].n);

t.test('a source is configured through the admin API, with a Temporal Schedule for its import', async (t) => {
  const bad = await gw.scim({ method: 'PUT', url: '/api/sources/auth0-main', payload: { type: 'auth0', config: { ...config, clientSecret: 'plain-text-secret' } }, headers: { 'content-type': 'application/json' } });
  t.equal(bad.statusCode, 400, 'a secret given as a value is refused');
  t.match(bad.json().message, /clientSecret/);
  await api('PUT', '/api/sources/auth0-main', { type: 'auth0', config, importEveryMinutes: 30 }, 201);
  const schedule = await temporal.client.schedule.getHandle('source-import:auth0-main').describe();
  t.same(schedule.spec.intervals?.map((i) => i.every), [1_800_000], 'imported every 30 minutes');
  await api('PUT', '/api/sources/auth0-main', { type: 'auth0', config, importEveryMinutes: null });
  await t.rejects(temporal.client.schedule.getHandle('source-import:auth0-main').describe(), 'null removes the schedule');
  await api('PUT', '/api/sources/auth0-main', { type: 'auth0', config, importEveryMinutes: 60 });
});

t.test('the import reads every user of the connection, in keyset pages, into the directory', async (t) => {
  const summary = await api('POST', '/api/sources/auth0-main/import', { wait: true });
  t.match(summary, { seen: USERS, created: USERS, updated: 0, deleted: 0, conflicts: 0 });
  t.equal(await liveSourceUsers(), USERS, 'one directory user per Auth0 user of the connection');
  const first = await directory(created[0]!);
  t.match(first, { user_name: 'user0@example.com', active: true, display_name: 'User 0' });
  const scim = await api('GET', `/scim/v2/Users/${first!.id}`);
  t.equal(scim.externalId, created[0], 'externalId is the Auth0 user_id');
  t.equal(await outboxFor(first!.id), 1, 'the new user is announced to provisioning');
  const { rows } = await db.query(`SELECT count(*)::int AS n FROM users WHERE user_name = 'elsewhere@example.com'`);
  t.equal(rows[0].n, 0, 'users of other connections are not imported');
  const again = await api('POST', '/api/sources/auth0-main/import', { wait: true });
  t.match(again, { seen: USERS, created: 0, updated: 0, deleted: 0 }, 'an unchanged tenant changes nothing');
  t.equal(await outboxFor(first!.id), 1, 'and announces nothing');
});

t.test('changes, blocks and deletes in Auth0 are followed', async (t) => {
  for (let i = 0; i < 10; i++) fake.users.get(created[i]!)!.name = `Renamed ${i}`;
  for (let i = 10; i < 15; i++) fake.users.get(created[i]!)!.blocked = true;
  for (let i = 20; i < 27; i++) fake.users.delete(created[i]!);
  const late = fake.addUser({ email: 'late@example.com', connection: CONNECTION, created_at: new Date(base + 10_000_000).toISOString() });
  const summary = await api('POST', '/api/sources/auth0-main/import', { wait: true });
  t.match(summary, { seen: USERS - 7 + 1, created: 1, updated: 15, deleted: 7 });
  t.equal((await directory(created[3]!))!.display_name, 'Renamed 3');
  t.equal((await directory(created[12]!))!.active, false, 'a blocked Auth0 user is an inactive directory user (deprovisioned)');
  const gone = (await directory(created[22]!))!;
  t.equal(gone.deleted, true, 'a deleted Auth0 user is deleted from the directory');
  t.equal(await outboxFor(gone.id), 2, 'and provisioning hears of it');
  t.ok(await directory(late.user_id), 'a new Auth0 user is imported');
  const { rows } = await db.query(`SELECT count(*)::int AS n FROM audit_events WHERE actor = 'source:auth0-main' AND action = 'user.deleted'`);
  t.equal(rows[0].n, 7, 'each deletion is audited with the source as actor');

  const list = await api('GET', '/api/sources');
  t.match(list, [
    {
      id: 'auth0-main',
      type: 'auth0',
      config: { clientSecret: 'env:AUTH0_SOURCE_TEST_SECRET', connection: CONNECTION },
      importEveryMinutes: 60,
      users: await liveSourceUsers(),
      conflicts: 0,
      lastImport: { id: summary.runId, startedAt: String, finishedAt: String, seen: USERS - 7 + 1, created: 1, updated: 15, deleted: 7, conflicts: 0 },
    },
  ], 'the list shows each source with its last import, whole');
});

t.test('SCIM cannot change a source user; a SCIM user keeps its userName against the source, visibly', async (t) => {
  const owned = (await directory(created[40]!))!;
  const patch = await gw.scim({ method: 'PATCH', url: `/scim/v2/Users/${owned.id}`, payload: { schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'], Operations: [{ op: 'replace', path: 'displayName', value: 'x' }] } });
  t.equal(patch.statusCode, 409);
  t.match(patch.json().detail, /owned by the source "auth0-main"/);
  const put = await gw.scim({ method: 'PUT', url: `/scim/v2/Users/${owned.id}`, payload: userBody('user40@example.com') });
  t.equal(put.statusCode, 409);
  const del = await gw.scim({ method: 'DELETE', url: `/scim/v2/Users/${owned.id}` });
  t.equal(del.statusCode, 409);
  t.equal((await directory(created[40]!))!.deleted, false);
  const post = await gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: userBody('USER41@example.com') });
  t.equal(post.statusCode, 409, 'SCIM cannot create a userName a source user holds');

  const scimUser = await api('POST', '/scim/v2/Users', userBody('shared@example.com', { displayName: 'Pushed over SCIM' }), 201);
  const clashing = fake.addUser({ email: 'shared@example.com', connection: CONNECTION, name: 'From Auth0', created_at: new Date(base + 20_000_000).toISOString() });
  const summary = await api('POST', '/api/sources/auth0-main/import', { wait: true });
  t.equal(summary.conflicts, 1);
  const conflicts = await api('GET', '/api/sources/auth0-main/conflicts');
  t.match(conflicts, [{ externalId: clashing.user_id, userName: 'shared@example.com', holderId: scimUser.id, holderSource: null }]);
  t.equal((await api('GET', `/scim/v2/Users/${scimUser.id}`)).displayName, 'Pushed over SCIM', 'the SCIM user is left as it is');
  await api('POST', '/api/sources/auth0-main/import', { wait: true });
  const events = await db.query(`SELECT count(*)::int AS n FROM audit_events WHERE action = 'source.conflict' AND resource_id = $1`, [scimUser.id]);
  t.equal(events.rows[0].n, 1, 'the clash is an audit event once, not at every import');

  const adopted = await api('POST', `/api/sources/auth0-main/conflicts/${encodeURIComponent(clashing.user_id)}/adopt`);
  t.equal(adopted.userId, scimUser.id);
  t.same(await api('GET', '/api/sources/auth0-main/conflicts'), []);
  await api('POST', '/api/sources/auth0-main/import', { wait: true });
  const after = (await directory(clashing.user_id))!;
  t.equal(after.id, scimUser.id, 'the adopted user keeps its id');
  t.equal(after.display_name, 'From Auth0', 'and follows the source from then on');
});

t.test('Log Streams: refused without the secret, applied once per log id', async (t) => {
  const post = (payload: unknown, authorization?: string, contentType = 'application/json') =>
    gw.app.inject({ method: 'POST', url: '/auth0/auth0-main/log-stream', payload: typeof payload === 'string' ? payload : JSON.stringify(payload), headers: { 'content-type': contentType, ...(authorization !== undefined && { authorization }) } });
  const fresh = fake.addUser({ email: 'streamed@example.com', connection: CONNECTION, name: 'Streamed', created_at: new Date(base + 30_000_000).toISOString() });
  const signup = { log_id: '90020260101000000000000000000000000000000000000001', data: { type: 'ss', date: new Date().toISOString(), user_id: fresh.user_id, connection: CONNECTION, description: '' } };

  t.equal((await post([signup])).statusCode, 401, 'no Authorization header');
  const wrong = await post([signup], 'log-stream-secret-0123456789abcdef0124');
  t.equal(wrong.statusCode, 401, 'a wrong secret');
  t.match(wrong.json(), { statusCode: 401, message: /log stream secret/ });
  t.notOk(await directory(fresh.user_id), 'nothing applied');
  t.equal((await post('{not json', LOG_SECRET)).statusCode, 400, 'a body that is not log events is refused clearly');

  const first = await post([signup], LOG_SECRET);
  t.equal(first.statusCode, 200);
  t.match(first.json(), { received: 1, applied: 1, duplicates: 0 });
  t.equal((await directory(fresh.user_id))!.display_name, 'Streamed');

  // The same event again, after the user changed in Auth0: recognized by its id and not applied.
  fake.users.get(fresh.user_id)!.name = 'Changed meanwhile';
  const second = await post(signup, `Bearer ${LOG_SECRET}`);
  t.match(second.json(), { received: 1, applied: 0, duplicates: 1 });
  t.equal((await directory(fresh.user_id))!.display_name, 'Streamed', 'a redelivered event is not applied again');
  const audits = await db.query(`SELECT count(*)::int AS n FROM audit_events WHERE resource_id = $1 AND actor = 'source:auth0-main'`, [(await directory(fresh.user_id))!.id]);
  t.equal(audits.rows[0].n, 1);

  // A Management API update and a deletion, as JSON lines.
  const update = { log_id: '90020260101000000000000000000000000000000000000002', data: { type: 'sapi', details: { request: { method: 'patch', path: `/api/v2/users/${encodeURIComponent(fresh.user_id)}` } } } };
  fake.users.delete(created[50]!);
  const deletion = { log_id: '90020260101000000000000000000000000000000000000003', data: { type: 'sdu', user_id: created[50], connection: CONNECTION } };
  const other = { log_id: '90020260101000000000000000000000000000000000000004', data: { type: 'ss', user_id: 'auth0|x', connection: 'Other-Database' } };
  const lines = await post([update, deletion, other].map((e) => JSON.stringify(e)).join('\n'), LOG_SECRET);
  t.match(lines.json(), { received: 3, applied: 2, ignored: 1, duplicates: 0 });
  t.equal((await directory(fresh.user_id))!.display_name, 'Changed meanwhile', 'a new event re-reads the user');
  t.equal((await directory(created[50]!))!.deleted, true);

  // The Management API failing: the event stays pending, Auth0 is told to retry, the retry applies it.
  fake.users.get(fresh.user_id)!.name = 'After the outage';
  fake.fail({ method: 'GET', path: /^\/api\/v2\/users\//, status: 503, times: 1 });
  const retry = { log_id: '90020260101000000000000000000000000000000000000005', data: { type: 'sapi', user_id: fresh.user_id } };
  const failed = await post([retry], LOG_SECRET);
  t.equal(failed.statusCode, 503);
  t.match(failed.json(), { statusCode: 503, error: 'Service Unavailable', message: /1 of 1 events could not be applied yet/, received: 1, failed: 1 }, 'an API error with the counts');
  const redelivered = await post([retry], LOG_SECRET);
  t.match(redelivered.json(), { applied: 1, duplicates: 0 });
  t.equal((await directory(fresh.user_id))!.display_name, 'After the outage');
});

t.test('an import that reads nobody while the directory holds the source\'s users deletes nothing', async (t) => {
  const before = await liveSourceUsers();
  await api('PUT', '/api/sources/auth0-main', { type: 'auth0', config: { ...config, connection: 'Other-Database-Typo' }, importEveryMinutes: 60 });
  const res = await gw.scim({ method: 'POST', url: '/api/sources/auth0-main/import', payload: { wait: true }, headers: { 'content-type': 'application/json' } });
  t.equal(res.statusCode, 502);
  t.match(res.json().message, /read no users.*Nothing was deleted/);
  t.equal(await liveSourceUsers(), before, 'every user is still there');
  await api('PUT', '/api/sources/auth0-main', { type: 'auth0', config, importEveryMinutes: 60 });
});
