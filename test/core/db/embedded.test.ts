/**
 * The embedded database (PGlite over the wire protocol) runs the same migrations and the same `pg`
 * code as PostgreSQL, including concurrent transactions through its connection multiplexer.
 */
import t from 'tap';
import { readdirSync } from 'node:fs';
import { MIGRATIONS_DIR, migrate } from '../../../core/db/migrate.js';
import { startEmbeddedPostgres } from '../../../core/db/embedded.js';
import { connectPool, queryPrepared } from '../../../core/db/pool.js';
import { createEmbeddedTestDatabase } from '../../helpers/db.js';
import { startTestGateway, userBody } from '../../helpers/gateway.js';
import { uniqueTaskQueue } from '../../helpers/temporal.js';
import { OutboxDispatcher } from '../../../gateway/outbox/dispatcher.js';

t.test('migrations, SCIM writes and the outbox on PGlite', async (t) => {
  const pg = await startEmbeddedPostgres({});
  t.teardown(() => pg.stop());
  const all = readdirSync(MIGRATIONS_DIR).filter((f) => f.endsWith('.sql')).map((f) => f.replace(/\.sql$/, '')).sort();
  t.ok(all.length >= 10, 'the migrations are found');
  t.same(await migrate(pg.url), all, 'every migration applies on PGlite');
  t.same(await migrate(pg.url), [], 'a second run applies nothing');

  // One connection for everything, as `npm start` does (see core/db/embedded.ts).
  const shared = await pg.connect();
  const database = { url: pg.url, name: 'embedded', db: shared, newPool: () => shared };
  t.teardown(() => shared.end().catch(() => {}));
  const gw = await startTestGateway(t, { database, temporalAddress: '127.0.0.1:1', taskQueue: uniqueTaskQueue(), dispatchOutbox: false });

  const results = await Promise.all(
    Array.from({ length: 40 }, (_, i) =>
      gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: userBody(`embedded.${i}@example.com`) }),
    ),
  );
  t.same([...new Set(results.map((r) => r.statusCode))], [201], 'forty concurrent creates all commit');
  const dup = await gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: userBody('EMBEDDED.0@example.com') });
  t.equal(dup.statusCode, 409, 'the case-insensitive unique index works on PGlite too');
  const counts = await database.db.query('SELECT (SELECT count(*) FROM users)::int AS users, (SELECT count(*) FROM outbox)::int AS outbox');
  t.same(counts.rows[0], { users: 40, outbox: 40 });

  // Two dispatchers claiming from the same outbox never share a row (SKIP LOCKED works on PGlite).
  const claim = (id: string) =>
    new OutboxDispatcher({
      db: database.db,
      temporal: () => Promise.reject(new Error('Temporal is not part of this test')),
      taskQueue: 'none',
      timing: { idleMs: 0, debounceMs: 0 },
      pollMs: 10,
      batchSize: 25,
      leaseMs: 60_000,
      log: { warn: () => {} } as never,
      id,
    });
  await Promise.all([claim('a').dispatchOnce(), claim('b').dispatchOnce()]);
  const claimed = await database.db.query('SELECT attempts, count(*)::int AS n FROM outbox GROUP BY attempts');
  t.same(claimed.rows, [{ attempts: 1, n: 40 }], 'every row claimed exactly once by one of the two');

  // Members added while they are deleted: the membership triggers and row locks work on PGlite too.
  const users = results.slice(0, 10).map((r) => r.json<{ id: string }>().id);
  const group = (await gw.scim({ method: 'POST', url: '/scim/v2/Groups', payload: { schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'], displayName: 'embedded' } })).json<{ id: string }>();
  const raced = await Promise.all(
    users.flatMap((id) => [
      gw.scim({
        method: 'PATCH',
        url: `/scim/v2/Groups/${group.id}`,
        payload: { schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'], Operations: [{ op: 'add', path: 'members', value: [{ value: id }] }] },
      }),
      gw.scim({ method: 'DELETE', url: `/scim/v2/Users/${id}` }),
    ]),
  );
  t.same([...new Set(raced.map((r) => r.statusCode))].filter((s) => ![200, 204, 400].includes(s)), [], 'no request failed with a server error');
  const dangling = await database.db.query(
    `SELECT m.member_id FROM group_members m JOIN users u ON u.id = m.member_id WHERE u.deleted_at IS NOT NULL`,
  );
  t.same(dangling.rows, [], 'no membership of a deleted user');
});

t.test('one session behind every connection: a new connection never meets statements an old one left', async (t) => {
  const pg = await startEmbeddedPostgres({});
  t.teardown(() => pg.stop());
  await migrate(pg.url);
  const text = 'SELECT count(*)::int AS n FROM users WHERE lower(user_name) = lower($1)';

  // What `pg` does against PostgreSQL (one session per connection) is wrong here: a statement named
  // on one connection is still in the session when the next connection asks for the same name.
  const named = await connectPool(pg.url, 1);
  await named.query({ name: 'embedded_probe', text, values: ['a'] });
  await named.end();
  const fresh = await connectPool(pg.url, 1);
  t.teardown(() => fresh.end().catch(() => {}));
  await t.rejects(fresh.query({ name: 'embedded_probe', text, values: ['a'] }), /already exists/, 'the session outlives the connection');
  await fresh.end();

  // The embedded pool names nothing, so a failed query (after which pg-pool replaces the
  // connection) and an idle timeout leave nothing behind.
  const pool = await pg.connect();
  t.teardown(() => pool.end().catch(() => {}));
  for (let round = 0; round < 3; round++) {
    t.same((await queryPrepared(pool, text, ['nobody'])).rows, [{ n: 0 }], `round ${round}: the hot-path helper runs`);
    await t.rejects(pool.query('SELECT * FROM no_such_table'), /does not exist/, `round ${round}: a failed query`);
  }
  t.same((await queryPrepared(pool, text, ['nobody'])).rows, [{ n: 0 }], 'still answers after three replaced connections');
});

t.test('the embedded default under concurrency: duplicates and failures mixed in, then 1,000 creates', async (t) => {
  const database = await createEmbeddedTestDatabase(t);
  const shared = database.db;
  const gw = await startTestGateway(t, { database, temporalAddress: '127.0.0.1:1', taskQueue: uniqueTaskQueue(), dispatchOutbox: false });
  const post = (payload: unknown) => gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: payload as object });

  // 16 at once: 8 distinct users, each sent twice (one of each pair must be 409), plus lookups and
  // bodies the database itself refuses.
  const mixed = await Promise.all([
    ...Array.from({ length: 8 }, (_, i) => post(userBody(`burst.${i}@example.com`))),
    ...Array.from({ length: 8 }, (_, i) => post(userBody(`BURST.${i}@example.com`))),
    ...Array.from({ length: 4 }, (_, i) => gw.scim({ method: 'GET', url: `/scim/v2/Users?filter=${encodeURIComponent(`userName eq "burst.${i}@example.com"`)}` })),
    gw.scim({ method: 'GET', url: '/scim/v2/Users/00000000-0000-0000-0000-000000000000' }),
    post({ schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'] }),
  ]);
  const statuses = mixed.map((r) => r.statusCode);
  for (let i = 0; i < 8; i++) {
    t.same([statuses[i], statuses[i + 8]].sort(), [201, 409], `burst.${i}: one create, one 409`, { bodies: [mixed[i]!.body, mixed[i + 8]!.body] });
  }
  t.same(statuses.slice(16, 20), [200, 200, 200, 200], 'lookups answer');
  t.equal(statuses[20], 404, 'an unknown id is 404');
  t.equal(statuses[21], 400, 'a user without userName is 400');

  // Then 1,000 creates, 25 at a time, with a duplicate every 50th: every answer is the right one.
  const answers = new Map<number, number>();
  for (let start = 0; start < 1000; start += 25) {
    const batch = await Promise.all(
      Array.from({ length: 25 }, (_, k) => {
        const i = start + k;
        const name = i % 50 === 49 ? `burst.${i % 8}@example.com` : `wave.${i}@example.com`;
        return post(userBody(name)).then((r) => [i, r.statusCode] as const);
      }),
    );
    for (const [i, status] of batch) answers.set(i, status);
  }
  const wrong = [...answers].filter(([i, status]) => status !== (i % 50 === 49 ? 409 : 201));
  t.same(wrong, [], 'every create is 201 and every duplicate 409; no 500');
  const counts = await shared.query('SELECT (SELECT count(*) FROM users)::int AS users, (SELECT count(*) FROM outbox)::int AS outbox');
  t.same(counts.rows[0], { users: 8 + 980, outbox: 8 + 980 }, 'each user stored once, with its outbox row');
});
