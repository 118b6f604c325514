/**
 * The embedded database (PGlite over the wire protocol) runs the same migrations and the same `pg`
 * code as PostgreSQL, including concurrent transactions through its connection multiplexer.
 */
import t from 'tap';
import { migrate } from '../../../gateway/db/migrate.js';
import { EMBEDDED_POOL_SIZE, startEmbeddedPostgres } from '../../../gateway/db/embedded.js';
import { connectPool } from '../../../gateway/db/pool.js';
import { startTestGateway, userBody } from '../../helpers/gateway.js';
import { uniqueTaskQueue } from '../../helpers/temporal.js';
import { OutboxDispatcher } from '../../../gateway/outbox/dispatcher.js';

t.test('migrations, SCIM writes and the outbox on PGlite', async (t) => {
  const pg = await startEmbeddedPostgres({});
  t.teardown(() => pg.stop());
  t.same(await migrate(pg.url), ['1732170000000_foundation', '1732170000001_scim-groups', '1732170000002_listing-order', '1732170000003_drop-unused-resource-index', '1732170000004_provisioning', '1732170000005_audit-chain', '1732170000006_reconcile', '1732170000007_deliveries', '1732170000010_provisioning-progress']);
  t.same(await migrate(pg.url), [], 'a second run applies nothing');

  // One connection for everything, as `npm start` does (see gateway/db/embedded.ts).
  const shared = await connectPool(pg.url, EMBEDDED_POOL_SIZE);
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
});

