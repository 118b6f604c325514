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
const ENTERPRISE = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';

async function create(userName: string, extra: Record<string, unknown> = {}) {
  const res = await gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: userBody(userName, extra) });
  if (res.statusCode !== 201) throw new Error(`create ${userName}: ${res.statusCode} ${res.body}`);
  return res.json();
}

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
  await create('Unique.Person@example.com');
  const before = await database.db.query('SELECT count(*)::int AS n FROM outbox');
  const dup = await gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: userBody('unique.person@EXAMPLE.com') });
  t.equal(dup.statusCode, 409);
  t.same(dup.json(), {
    schemas: [ERROR_SCHEMA],
    status: '409',
    scimType: 'uniqueness',
    detail: 'a User with userName "unique.person@EXAMPLE.com" already exists',
  });
  const after = await database.db.query('SELECT count(*)::int AS n FROM outbox');
  t.equal(after.rows[0].n, before.rows[0].n, 'a refused write leaves no outbox message');
});

t.test('a refused create leaves the server accepting new users (an IdP sends duplicates as a matter of course)', async (t) => {
  // Runs on both databases (TEST_DATABASE=embedded included): the embedded one once refused every
  // create after the first failed statement.
  await create('seq.x1@example.com');
  const dup = await gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: userBody('seq.x1@example.com') });
  t.equal(dup.statusCode, 409, 'the duplicate is refused');
  const found = await gw.scim({ method: 'GET', url: `/scim/v2/Users?filter=${encodeURIComponent('userName eq "SEQ.X1@EXAMPLE.COM"')}` });
  t.equal(found.statusCode, 200);
  t.equal(found.json().totalResults, 1);
  for (const name of ['seq.x2@example.com', 'seq.x3@example.com', 'seq.x4@example.com']) {
    const res = await gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: userBody(name) });
    t.equal(res.statusCode, 201, `${name} after the refused duplicate: ${res.body}`);
  }
  const again = await gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: userBody('SEQ.X2@example.com') });
  t.equal(again.statusCode, 409, 'a second refusal');
  const after = await gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: userBody('seq.x5@example.com') });
  t.equal(after.statusCode, 201, `and a create after it: ${after.body}`);
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

t.test('PUT replaces, PATCH modifies, both bump the version; If-Match and If-None-Match', async (t) => {
  const user = await create('versioned@example.com', { name: { givenName: 'Ver', familyName: 'Sioned' }, title: 'Engineer' });
  const put = await gw.scim({
    method: 'PUT',
    url: `/scim/v2/Users/${user.id}`,
    headers: { 'if-match': 'W/"1"' },
    payload: userBody('versioned@example.com', { name: { givenName: 'Ver' }, [ENTERPRISE]: { department: 'R&D' }, schemas: ['urn:ietf:params:scim:schemas:core:2.0:User', ENTERPRISE] }),
  });
  t.equal(put.statusCode, 200, put.body);
  const replaced = put.json();
  t.equal(replaced.meta.version, 'W/"2"');
  t.notOk('title' in replaced, 'PUT replaces: attributes left out are gone');
  t.same(replaced.name, { givenName: 'Ver' });
  t.equal(replaced[ENTERPRISE].department, 'R&D');

  const stale = await gw.scim({
    method: 'PATCH',
    url: `/scim/v2/Users/${user.id}`,
    headers: { 'if-match': 'W/"1"' },
    payload: { schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'], Operations: [{ op: 'replace', path: 'title', value: 'x' }] },
  });
  t.equal(stale.statusCode, 412, 'a stale If-Match is refused');
  t.equal(stale.json().status, '412');

  const patch = await gw.scim({
    method: 'PATCH',
    url: `/scim/v2/Users/${user.id}`,
    headers: { 'if-match': 'W/"2"' },
    payload: { schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'], Operations: [{ op: 'replace', value: { active: false } }] },
  });
  t.equal(patch.statusCode, 200, patch.body);
  t.equal(patch.json().active, false);
  t.equal(patch.headers.etag, 'W/"3"');

  const same = await gw.scim({
    method: 'PATCH',
    url: `/scim/v2/Users/${user.id}`,
    payload: { schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'], Operations: [{ op: 'replace', value: { active: false } }] },
  });
  t.equal(same.headers.etag, 'W/"3"', 'a PATCH that changes nothing keeps the version');

  const notModified = await gw.scim({ method: 'GET', url: `/scim/v2/Users/${user.id}`, headers: { 'if-none-match': 'W/"3"' } });
  t.equal(notModified.statusCode, 304);
  const modified = await gw.scim({ method: 'GET', url: `/scim/v2/Users/${user.id}`, headers: { 'if-none-match': 'W/"1"' } });
  t.equal(modified.statusCode, 200);

  const outbox = await database.db.query('SELECT count(*)::int AS n FROM outbox WHERE aggregate_id = $1', [user.id]);
  t.equal(outbox.rows[0].n, 3, 'create, PUT and the changing PATCH each announce one change; the no-op PATCH none');
});

t.test('DELETE hides the user but keeps a tombstone', async (t) => {
  const user = await create('leaver@example.com');
  const del = await gw.scim({ method: 'DELETE', url: `/scim/v2/Users/${user.id}` });
  t.equal(del.statusCode, 204);
  t.equal((await gw.scim({ method: 'GET', url: `/scim/v2/Users/${user.id}` })).statusCode, 404);
  t.equal((await gw.scim({ method: 'DELETE', url: `/scim/v2/Users/${user.id}` })).statusCode, 404);
  const row = await database.db.query('SELECT deleted_at FROM users WHERE id = $1', [user.id]);
  t.ok(row.rows[0].deleted_at, 'the row stays, marked deleted');
  const audit = await database.db.query("SELECT action FROM audit_events WHERE resource_id = $1 ORDER BY id", [user.id]);
  t.same(audit.rows.map((r) => r.action), ['user.created', 'user.deleted']);
  const again = await gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: userBody('leaver@example.com') });
  t.equal(again.statusCode, 201, 'the userName is free again');
});

t.test('listing: filter, paging, sorting, attribute selection', async (t) => {
  for (let i = 0; i < 12; i++) await create(`list.${String(i).padStart(2, '0')}@paging.example`, { title: i % 2 ? 'odd' : 'even' });
  const page = await gw.scim({ method: 'GET', url: '/scim/v2/Users?filter=userName%20sw%20%22list.%22&startIndex=3&count=4&sortBy=userName' });
  t.equal(page.statusCode, 200, page.body);
  const body = page.json();
  t.same(body.schemas, ['urn:ietf:params:scim:api:messages:2.0:ListResponse']);
  t.equal(body.totalResults, 12);
  t.equal(body.startIndex, 3);
  t.equal(body.itemsPerPage, 4);
  t.same(body.Resources.map((r: { userName: string }) => r.userName), ['list.02@paging.example', 'list.03@paging.example', 'list.04@paging.example', 'list.05@paging.example']);

  const desc = await gw.scim({ method: 'GET', url: '/scim/v2/Users?filter=title%20eq%20%22odd%22&sortBy=userName&sortOrder=descending&attributes=userName' });
  const d = desc.json();
  t.equal(d.totalResults, 6);
  t.equal(d.Resources[0].userName, 'list.11@paging.example');
  t.same(Object.keys(d.Resources[0]).sort(), ['id', 'schemas', 'userName'], 'attributes=userName returns id, schemas and userName');

  const beyond = await gw.scim({ method: 'GET', url: '/scim/v2/Users?filter=userName%20sw%20%22list.%22&startIndex=100' });
  t.equal(beyond.json().totalResults, 12, 'a start beyond the end still reports the total');
  t.same(beyond.json().Resources, []);
  const zero = await gw.scim({ method: 'GET', url: '/scim/v2/Users?filter=userName%20sw%20%22list.%22&count=0' });
  t.equal(zero.json().totalResults, 12);
  t.equal(zero.json().itemsPerPage, 0);
  const clamp = await gw.scim({ method: 'GET', url: '/scim/v2/Users?startIndex=-5&count=-1' });
  t.equal(clamp.statusCode, 200);
  t.equal(clamp.json().startIndex, 1, 'startIndex below 1 is 1');
  t.equal(clamp.json().itemsPerPage, 0, 'a negative count is 0');
  const bad = await gw.scim({ method: 'GET', url: '/scim/v2/Users?count=many' });
  t.equal(bad.statusCode, 400);
  t.equal(bad.json().scimType, 'invalidValue');

  const search = await gw.scim({
    method: 'POST',
    url: '/scim/v2/Users/.search',
    payload: { schemas: ['urn:ietf:params:scim:api:messages:2.0:SearchRequest'], filter: 'userName eq "LIST.07@paging.example"', attributes: ['userName', 'title'] },
  });
  t.equal(search.statusCode, 200, search.body);
  t.equal(search.json().totalResults, 1, 'userName matches case-insensitively');
  t.equal(search.json().Resources[0].title, 'odd');
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
  t.equal((await readOnly.scim({ method: 'GET', url: '/scim/v2/Users' })).statusCode, 200, 'reading is allowed');
});

t.test('bad input gets SCIM errors, never a 500', async (t) => {
  const cases: Array<[string, string, number, string | undefined]> = [
    ['malformed JSON', '{"schemas": [', 400, 'invalidSyntax'],
    ['an array body', '[]', 400, 'invalidSyntax'],
    ['no schemas', JSON.stringify({ userName: 'x' }), 400, 'invalidSyntax'],
    ['unknown schema', JSON.stringify({ schemas: ['urn:x'], userName: 'x' }), 400, 'invalidSyntax'],
    ['no userName', JSON.stringify({ schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'] }), 400, 'invalidValue'],
    ['userName not a string', JSON.stringify(userBody('x', { userName: 42 })), 400, 'invalidValue'],
    ['active not a boolean', JSON.stringify(userBody('x', { active: 'yes' })), 400, 'invalidValue'],
    ['emails not a list of objects', JSON.stringify(userBody('x', { emails: 'a@b.c' })), 400, 'invalidValue'],
    // Unknown attributes are ignored unless SCIM_STRICT is set: see leniency.test.ts.
    ['a sub-attribute where an attribute goes', JSON.stringify(userBody('x', { 'name.givenName': 'B' })), 400, 'invalidSyntax'],
    ['empty body', '', 400, 'invalidSyntax'],
  ];
  for (const [name, payload, status, scimType] of cases) {
    const res = await gw.scim({ method: 'POST', url: '/scim/v2/Users', payload });
    t.equal(res.statusCode, status, `${name}: ${res.body}`);
    t.equal(res.json().scimType, scimType, name);
    t.equal(res.json().schemas[0], ERROR_SCHEMA, name);
    t.ok(res.json().detail, `${name} has a detail`);
  }
  const huge = await gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: JSON.stringify(userBody('big', { nickName: 'x'.repeat(2 * 1024 * 1024) })) });
  t.equal(huge.statusCode, 413);
  t.equal(huge.json().status, '413');

  const xml = await gw.scim({ method: 'POST', url: '/scim/v2/Users', headers: { 'content-type': 'application/xml' }, payload: '<user/>' });
  t.equal(xml.statusCode, 415);
  t.equal(xml.json().schemas[0], ERROR_SCHEMA);

  const filters: Array<[string, string]> = [
    ['unknown attribute', 'favouriteColour eq "blue"'],
    ['syntax', 'userName eq'],
    ['deep nesting', `${'('.repeat(200)}userName eq "x"${')'.repeat(200)}`],
    ['boolean ordering', 'active gt true'],
  ];
  for (const [name, filter] of filters) {
    const res = await gw.scim({ method: 'GET', url: `/scim/v2/Users?filter=${encodeURIComponent(filter)}` });
    t.equal(res.statusCode, 400, `${name}: ${res.body}`);
    t.equal(res.json().scimType, 'invalidFilter', name);
  }
  const longFilter = await gw.scim({ method: 'GET', url: `/scim/v2/Users?filter=${encodeURIComponent(`userName eq "${'x'.repeat(10_000)}"`)}` });
  t.equal(longFilter.statusCode, 400, 'an over-long filter');

  t.equal((await gw.scim({ method: 'GET', url: '/scim/v2/Users/not-a-uuid' })).statusCode, 404);
  const unknown = await gw.scim({ method: 'GET', url: '/scim/v2/Nope' });
  t.equal(unknown.statusCode, 404);
  t.equal(unknown.json().schemas[0], ERROR_SCHEMA);
  const badPatch = await gw.scim({ method: 'PATCH', url: '/scim/v2/Users/00000000-0000-0000-0000-000000000000', payload: { Operations: [] } });
  t.equal(badPatch.statusCode, 400);
  t.equal(badPatch.json().scimType, 'invalidSyntax');
});

t.test('health and readiness', async (t) => {
  t.equal((await gw.app.inject({ url: '/healthz' })).statusCode, 200);
  const ready = await gw.app.inject({ url: '/readyz' });
  t.equal(ready.statusCode, 503, 'Temporal is unreachable at 127.0.0.1:1');
  t.match(ready.json(), { status: 'unavailable', checks: { postgres: 'ok', temporal: 'unreachable', outbox: 'ok' }, outbox: { deadLetters: 0 } });
});
