/**
 * Failed authentication is rate limited per client address: past AUTH_FAILURE_LIMIT failures in
 * the window, a failure answers 429 with Retry-After (in SCIM's error format under /scim/v2),
 * while valid tokens keep working, from that address too.
 */
import t from 'tap';
import { createTestDatabase } from '../../helpers/db.js';
import { startTestGateway } from '../../helpers/gateway.js';
import { uniqueTaskQueue } from '../../helpers/temporal.js';
import { createToken } from '../../../core/auth/tokens.js';

const ERROR_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:Error';
const LIMIT = 5;

const database = await createTestDatabase(t);
const gw = await startTestGateway(t, {
  database,
  temporalAddress: '127.0.0.1:1',
  taskQueue: uniqueTaskQueue(),
  dispatchOutbox: false,
  env: { AUTH_FAILURE_LIMIT: String(LIMIT), AUTH_FAILURE_WINDOW_MS: '600000' },
});

const from = (ip: string) => ({ remoteAddress: ip });

t.test('a burst of wrong tokens: 401 up to the limit, then 429 with Retry-After in SCIM format', async (t) => {
  const responses = [];
  for (let i = 0; i < LIMIT + 10; i++) {
    responses.push(await gw.app.inject({ method: 'GET', url: '/scim/v2/Users', headers: { authorization: `Bearer wrong-${i}` }, ...from('198.51.100.1') }));
  }
  const statuses = responses.map((r) => r.statusCode);
  const last = responses[responses.length - 1]!;
  t.same(statuses, [...Array(LIMIT).fill(401), ...Array(10).fill(429)], 'the first failures are 401, the rest 429');
  t.equal(last.headers['content-type'], 'application/scim+json; charset=utf-8');
  t.match(last.json(), { schemas: [ERROR_SCHEMA], status: '429' }, 'a SCIM error');
  const retryAfter = Number(last.headers['retry-after']);
  t.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 600, `Retry-After is whole seconds within the window (${last.headers['retry-after']})`);

  const missing = await gw.app.inject({ method: 'GET', url: '/scim/v2/Users', ...from('198.51.100.1') });
  t.equal(missing.statusCode, 429, 'no token at all is a failure too');
  const admin = await gw.app.inject({ method: 'GET', url: '/api/tokens', headers: { authorization: 'Bearer wrong' }, ...from('198.51.100.1') });
  t.equal(admin.statusCode, 429, 'the admin API shares the limit');
  t.match(admin.json(), { statusCode: 429, error: 'Too Many Requests' }, 'in its own error format');
  t.ok(admin.headers['retry-after']);
});

t.test('valid tokens are not throttled by the failed-authentication limit', async (t) => {
  const statuses = new Set<number>();
  for (let i = 0; i < LIMIT * 4; i++) {
    statuses.add((await gw.app.inject({ method: 'GET', url: '/scim/v2/Users', headers: { authorization: `Bearer ${gw.token}` }, ...from('198.51.100.2') })).statusCode);
  }
  t.same([...statuses], [200], 'many successful requests from one address all succeed');

  const good = await gw.app.inject({ method: 'GET', url: '/scim/v2/Users', headers: { authorization: `Bearer ${gw.token}` }, ...from('198.51.100.1') });
  t.equal(good.statusCode, 200, 'a valid token works from the address that is over its failure limit');
  const { token: fresh } = await createToken(database.db, 'fresh', ['scim:read']);
  const fromBlocked = await gw.app.inject({ method: 'GET', url: '/scim/v2/Users', headers: { authorization: `Bearer ${fresh}` }, ...from('198.51.100.1') });
  t.equal(fromBlocked.statusCode, 200, 'also a token never seen before');

  const forbidden = await gw.app.inject({ method: 'GET', url: '/api/tokens', headers: { authorization: `Bearer ${fresh}` }, ...from('198.51.100.3') });
  t.equal(forbidden.statusCode, 403, 'a valid token lacking a scope is not a failed authentication');
  const other = await gw.app.inject({ method: 'GET', url: '/scim/v2/Users', headers: { authorization: 'Bearer wrong' }, ...from('198.51.100.3') });
  t.equal(other.statusCode, 401, 'another address has its own count');
});
