/**
 * The gateway's Prometheus metrics: protected by the metrics:read scope, counting requests by route,
 * status and token name, with latency histograms and the outbox read from PostgreSQL.
 */
import t from 'tap';
import { createTestDatabase } from '../../helpers/db.js';
import { startTestGateway, userBody } from '../../helpers/gateway.js';
import { uniqueTaskQueue } from '../../helpers/temporal.js';
import { createToken } from '../../../core/auth/tokens.js';
import { sample } from '../../helpers/metrics.js';

const database = await createTestDatabase(t);
const gw = await startTestGateway(t, { database, temporalAddress: '127.0.0.1:1', taskQueue: uniqueTaskQueue(), dispatchOutbox: false });
const { token: scraper } = await createToken(database.db, 'prometheus', ['metrics:read']);
const scrape = (token: string | null = scraper) => gw.scim({ method: 'GET', url: '/metrics', token });

t.test('/metrics needs the metrics:read scope', async (t) => {
  t.equal((await scrape(null)).statusCode, 401, 'no token');
  t.equal((await scrape(gw.token)).statusCode, 403, 'a SCIM token');
  const res = await scrape();
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/);
  t.match(res.body, /^process_cpu_seconds_total /m, 'process metrics are included');
});

t.test('requests by route, status and token name, with latency', async (t) => {
  const created = await gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: userBody('metrics@example.com') });
  t.equal(created.statusCode, 201);
  const id: string = created.json().id;
  for (let i = 0; i < 3; i++) t.equal((await gw.scim({ method: 'GET', url: `/scim/v2/Users/${id}` })).statusCode, 200);
  t.equal((await gw.scim({ method: 'GET', url: '/scim/v2/Users', token: 'wrong' })).statusCode, 401);

  const text = (await scrape()).body;
  const client = (await database.db.query<{ name: string }>('SELECT name FROM api_tokens WHERE name LIKE $1', ['test-%'])).rows[0]!.name;
  t.equal(sample(text, 'scimgw_http_requests_total', { route: '/scim/v2/Users', method: 'POST', status: '201', client }), 1, 'the create, by token name');
  t.equal(sample(text, 'scimgw_http_requests_total', { route: '/scim/v2/Users/:id', method: 'GET', status: '200', client }), 3, 'reads under the route pattern, not the id');
  t.notOk(text.includes(id), 'no resource id becomes a label');
  t.equal(sample(text, 'scimgw_http_requests_total', { route: '/scim/v2/Users', method: 'GET', status: '401', client: '-' }), 1, 'unauthenticated requests');
  t.equal(sample(text, 'scimgw_http_request_duration_seconds_count', { route: '/scim/v2/Users/:id', method: 'GET', status: '200' }), 3, 'latency histogram');
  t.ok(sample(text, 'scimgw_http_request_duration_seconds_bucket', { route: '/scim/v2/Users/:id', method: 'GET', status: '200', le: '+Inf' }) === 3);
});

t.test('outbox backlog, oldest age and dead letters', async (t) => {
  // The dispatcher is off: the user created above waits in the outbox.
  await database.db.query(`UPDATE outbox SET created_at = now() - interval '90 seconds'`);
  await database.db.query(
    `INSERT INTO outbox (topic, aggregate_id, payload, attempts, dead_lettered_at, dead_letter_reason)
     VALUES ('user.changed', gen_random_uuid(), '{}', 3, now(), 'refused')`,
  );
  const text = (await scrape()).body;
  t.equal(sample(text, 'scimgw_outbox_pending', {}), 1);
  t.ok((sample(text, 'scimgw_outbox_oldest_pending_age_seconds', {}) ?? 0) >= 90, 'the oldest pending row is at least 90 s old');
  t.equal(sample(text, 'scimgw_outbox_dead_letters', {}), 1);
});
