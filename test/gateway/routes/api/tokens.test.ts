import t from 'tap';
import { createTestDatabase } from '../../../helpers/db.js';
import { startTestGateway } from '../../../helpers/gateway.js';
import { uniqueTaskQueue } from '../../../helpers/temporal.js';

const database = await createTestDatabase(t);
const admin = await startTestGateway(t, { database, temporalAddress: '127.0.0.1:1', taskQueue: uniqueTaskQueue(), dispatchOutbox: false, scopes: ['admin'] });
const auth = (token: string) => ({ authorization: `Bearer ${token}` });

t.test('issue, use, rotate and revoke a token through the admin API', async (t) => {
  const issued = await admin.app.inject({ method: 'POST', url: '/api/tokens', headers: auth(admin.token), payload: { name: 'okta', scopes: ['scim:read', 'scim:write'] } });
  t.equal(issued.statusCode, 201, issued.body);
  const { token, name, scopes } = issued.json();
  t.equal(name, 'okta');
  t.same(scopes, ['scim:read', 'scim:write']);
  t.match(token, /^scimgw_/);

  const list = await admin.app.inject({ url: '/api/tokens', headers: auth(admin.token) });
  t.notMatch(list.body, token, 'secrets are never listed');
  t.ok(list.json().some((x: { name: string }) => x.name === 'okta'));

  t.equal((await admin.app.inject({ url: '/scim/v2/Users', headers: auth(token) })).statusCode, 200, 'the new token works for SCIM');
  t.equal((await admin.app.inject({ url: '/api/tokens', headers: auth(token) })).statusCode, 403, 'but not for the admin API');

  const dup = await admin.app.inject({ method: 'POST', url: '/api/tokens', headers: auth(admin.token), payload: { name: 'okta', scopes: ['scim:read'] } });
  t.equal(dup.statusCode, 409);
  const badScope = await admin.app.inject({ method: 'POST', url: '/api/tokens', headers: auth(admin.token), payload: { name: 'x', scopes: ['root'] } });
  t.equal(badScope.statusCode, 400);

  const rotated = await admin.app.inject({ method: 'POST', url: '/api/tokens/okta/rotate', headers: auth(admin.token) });
  t.equal(rotated.statusCode, 200);
  const fresh = rotated.json().token;
  t.not(fresh, token);
  t.equal((await admin.app.inject({ url: '/scim/v2/Users', headers: auth(token) })).statusCode, 401, 'the gateway that rotated it refuses the old token at once (its cache forgets it)');
  t.equal((await admin.app.inject({ url: '/scim/v2/Users', headers: auth(fresh) })).statusCode, 200);

  // The verifier caches for a few seconds; a new app sees revocations at once.
  const other = await startTestGateway(t, { database, temporalAddress: '127.0.0.1:1', taskQueue: uniqueTaskQueue(), dispatchOutbox: false });
  t.equal((await other.app.inject({ url: '/scim/v2/Users', headers: auth(token) })).statusCode, 401, 'the rotated-out token is dead');
  t.equal((await other.app.inject({ url: '/scim/v2/Users', headers: auth(fresh) })).statusCode, 200);

  t.equal((await admin.app.inject({ method: 'DELETE', url: '/api/tokens/okta', headers: auth(admin.token) })).statusCode, 204);
  t.equal((await admin.app.inject({ url: '/scim/v2/Users', headers: auth(fresh) })).statusCode, 401, 'and a token it revoked');
  t.equal((await admin.app.inject({ method: 'DELETE', url: '/api/tokens/okta', headers: auth(admin.token) })).statusCode, 404);
  const third = await startTestGateway(t, { database, temporalAddress: '127.0.0.1:1', taskQueue: uniqueTaskQueue(), dispatchOutbox: false });
  t.equal((await third.app.inject({ url: '/scim/v2/Users', headers: auth(fresh) })).statusCode, 401, 'a revoked token is dead');

  const audit = await database.db.query("SELECT action FROM audit_events WHERE resource_type = 'ApiToken' ORDER BY id");
  t.same(audit.rows.map((r) => r.action), ['token.created', 'token.rotated', 'token.revoked']);
});

t.test('rotating a personal token keeps its user', async (t) => {
  const { rows } = await database.db.query<{ id: string }>(`INSERT INTO users (id, user_name, resource) VALUES (gen_random_uuid(), 'pat@example.com', '{}') RETURNING id`);
  const pat = rows[0]!.id;
  const issued = await admin.app.inject({ method: 'POST', url: '/api/tokens', headers: auth(admin.token), payload: { name: 'pats-portal', scopes: ['requests'], user: 'pat@example.com' } });
  t.equal(issued.statusCode, 201, issued.body);
  t.equal(issued.json().userId, pat);
  const rotated = await admin.app.inject({ method: 'POST', url: '/api/tokens/pats-portal/rotate', headers: auth(admin.token) });
  t.equal(rotated.statusCode, 200);
  t.equal(rotated.json().userId, pat, 'the new token acts as the same user');
  const listed = await admin.app.inject({ url: '/api/tokens', headers: auth(admin.token) });
  t.ok(listed.json().some((x: { name: string; userId?: string }) => x.name === 'pats-portal' && x.userId === pat), 'and is listed with the user');
});

t.test('the admin API needs a token', async (t) => {
  const res = await admin.app.inject({ url: '/api/tokens' });
  t.equal(res.statusCode, 401);
  t.notOk(res.body.includes('stack'), 'no stack trace');
});
