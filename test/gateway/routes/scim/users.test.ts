import t from 'tap';
import { createTestDatabase } from '../../../helpers/db.js';
import { startTestGateway, userBody } from '../../../helpers/gateway.js';
import { uniqueTaskQueue } from '../../../helpers/temporal.js';

// The outbox dispatcher is off here: these tests are about the HTTP contract and what is stored.
const database = await createTestDatabase(t);
const gw = await startTestGateway(t, {
  database,
  temporalAddress: '127.0.0.1:1',
  taskQueue: uniqueTaskQueue(),
  dispatchOutbox: false,
});
const ERROR_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:Error';

t.test('POST /Users stores the user, its audit event and its outbox message together', async (t) => {
  const res = await gw.scim({
    method: 'POST',
    url: '/scim/v2/Users',
    payload: userBody('bjensen@example.com', { externalId: 'okta-1', password: 't1meMa$heen', active: true }),
  });
  t.equal(res.statusCode, 201, res.body);
  t.match(res.headers['content-type'], /^application\/scim\+json/);
  const user = res.json();
  t.match(user.id, /^[0-9a-f-]{36}$/);
  t.equal(user.userName, 'bjensen@example.com');
  t.notOk('password' in user, 'password is write-only and never returned');
  t.equal(res.headers.location, `http://localhost:80/scim/v2/Users/${user.id}`, 'Location is the new resource');
  t.equal(user.meta.location, res.headers.location);
  t.equal(user.meta.resourceType, 'User');
  t.equal(user.meta.version, 'W/"1"');
  t.equal(res.headers.etag, 'W/"1"');

  const stored = await database.db.query('SELECT resource FROM users WHERE id = $1', [user.id]);
  t.notOk('password' in stored.rows[0].resource, 'password is not stored');
  const outbox = await database.db.query('SELECT topic, payload FROM outbox WHERE aggregate_id = $1', [user.id]);
  t.same(outbox.rows, [{ topic: 'user.changed', payload: { userName: 'bjensen@example.com' } }]);
  const audit = await database.db.query('SELECT actor, action FROM audit_events WHERE resource_id = $1', [user.id]);
  t.equal(audit.rows.length, 1);
  t.match(audit.rows[0].actor, /^test-/, 'the change is attributed to the token');

  const got = await gw.scim({ method: 'GET', url: `/scim/v2/Users/${user.id}` });
  t.equal(got.statusCode, 200);
  t.same(got.json(), user);
});

t.test('userName is unique case-insensitively: 409 uniqueness, nothing stored', async (t) => {
  const first = await gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: userBody('Unique.Person@example.com') });
  t.equal(first.statusCode, 201);
  const before = await database.db.query('SELECT count(*)::int AS n FROM outbox');
  const dup = await gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: userBody('unique.person@EXAMPLE.com') });
  t.equal(dup.statusCode, 409);
  t.same(dup.json(), {
    schemas: [ERROR_SCHEMA],
    status: '409',
    scimType: 'uniqueness',
    detail: 'a user with userName "unique.person@EXAMPLE.com" already exists',
  });
  const after = await database.db.query('SELECT count(*)::int AS n FROM outbox');
  t.equal(after.rows[0].n, before.rows[0].n, 'a refused write leaves no outbox message');
});

t.test('application/json is accepted too', async (t) => {
  const res = await gw.scim({
    method: 'POST',
    url: '/scim/v2/Users',
    headers: { 'content-type': 'application/json' },
    payload: JSON.stringify(userBody('json.client@example.com')),
  });
  t.equal(res.statusCode, 201);
  t.match(res.headers['content-type'], /^application\/scim\+json/);
});

t.test('authentication', async (t) => {
  const none = await gw.scim({ method: 'POST', url: '/scim/v2/Users', token: null, payload: '{not json' });
  t.equal(none.statusCode, 401, 'a missing token is refused before the body is looked at');
  t.equal(none.json().schemas[0], ERROR_SCHEMA);
  t.equal(none.headers['www-authenticate'], 'Bearer realm="scim"');

  const wrong = await gw.scim({ method: 'GET', url: '/scim/v2/Users/00000000-0000-0000-0000-000000000000', token: 'nope' });
  t.equal(wrong.statusCode, 401);
  t.equal(wrong.json().status, '401');

  const readOnly = await startTestGateway(t, {
    database,
    temporalAddress: '127.0.0.1:1',
    taskQueue: uniqueTaskQueue(),
    dispatchOutbox: false,
    scopes: ['scim:read'],
  });
  const denied = await readOnly.scim({ method: 'POST', url: '/scim/v2/Users', payload: userBody('nobody@example.com') });
  t.equal(denied.statusCode, 403);
  t.match(denied.json().detail, /lacks the scim:write scope/);
});

t.test('bad input gets SCIM errors, never a 500', async (t) => {
  const cases: Array<[string, unknown, number, string | undefined]> = [
    ['malformed JSON', '{"schemas": [', 400, 'invalidSyntax'],
    ['an array body', '[]', 400, 'invalidSyntax'],
    ['no schemas', JSON.stringify({ userName: 'x' }), 400, 'invalidSyntax'],
    ['wrong schema', JSON.stringify({ schemas: ['urn:x'], userName: 'x' }), 400, 'invalidSyntax'],
    ['no userName', JSON.stringify({ schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'] }), 400, 'invalidValue'],
    ['userName not a string', JSON.stringify(userBody('x', { userName: 42 })), 400, 'invalidValue'],
    ['active not a boolean', JSON.stringify(userBody('x', { active: 'yes' })), 400, 'invalidValue'],
    ['empty body', '', 400, 'invalidSyntax'],
  ];
  for (const [name, payload, status, scimType] of cases) {
    const res = await gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: payload as string });
    t.equal(res.statusCode, status, `${name}: ${res.body}`);
    t.equal(res.json().scimType, scimType, name);
    t.equal(res.json().schemas[0], ERROR_SCHEMA, name);
  }
  const huge = await gw.scim({
    method: 'POST',
    url: '/scim/v2/Users',
    payload: JSON.stringify(userBody('big', { nickName: 'x'.repeat(2 * 1024 * 1024) })),
  });
  t.equal(huge.statusCode, 413);
  t.equal(huge.json().status, '413');

  const xml = await gw.scim({
    method: 'POST',
    url: '/scim/v2/Users',
    headers: { 'content-type': 'application/xml' },
    payload: '<user/>',
  });
  t.equal(xml.statusCode, 415);
  t.equal(xml.json().schemas[0], ERROR_SCHEMA);

  const missing = await gw.scim({ method: 'GET', url: '/scim/v2/Users/not-a-uuid' });
  t.equal(missing.statusCode, 404);
  const unknown = await gw.scim({ method: 'GET', url: '/scim/v2/Nope' });
  t.equal(unknown.statusCode, 404);
  t.equal(unknown.json().schemas[0], ERROR_SCHEMA);
});

t.test('discovery needs no token and describes the server', async (t) => {
  const res = await gw.scim({ method: 'GET', url: '/scim/v2/ServiceProviderConfig', token: null });
  t.equal(res.statusCode, 200);
  const body = res.json();
  t.same(body.schemas, ['urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig']);
  t.equal(body.authenticationSchemes[0].type, 'oauthbearertoken');
});

t.test('health and readiness', async (t) => {
  t.equal((await gw.app.inject({ url: '/healthz' })).statusCode, 200);
  const ready = await gw.app.inject({ url: '/readyz' });
  t.equal(ready.statusCode, 503, 'Temporal is unreachable at 127.0.0.1:1');
  t.same(ready.json(), { status: 'unavailable', checks: { postgres: 'ok', temporal: 'unreachable' } });
});
