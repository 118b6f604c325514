/**
 * The audit chain linked after commit: writers of audit events never wait for each other, events
 * committed out of id order are chained exactly once, events and links are append-only, an
 * interrupted chainer loses nothing, events left unchained are
 * reported, moved and removed chained events are caught, and the gateway chains by itself.
 */
import pg from 'pg';
import t from 'tap';
import { chainAllPendingAuditEvents, chainPendingAuditEvents, verifyAuditChain } from '../../../core/audit/chain.js';
import { AuditChainer } from '../../../core/audit/chainer.js';
import type { Db } from '../../../core/db/pool.js';
import { createEmbeddedTestDatabase, createTestDatabase } from '../../helpers/db.js';
import { startTestGateway } from '../../helpers/gateway.js';

const INSERT = 'INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, before, after) VALUES ($1, $2, $3, $4, $5, $6, $7)';

async function write(db: Pick<Db, 'query'>, action: string): Promise<void> {
  await db.query(INSERT, ['test', action, 'T', null, null, null, JSON.stringify({ action })]);
}

/** What an attacker who can bypass triggers (a superuser) can do. */
async function tamper(db: Db, sql: string, params: unknown[] = []): Promise<void> {
  const c = await db.connect();
  try {
    await c.query('BEGIN');
    await c.query('SET LOCAL session_replication_role = replica');
    await c.query(sql, params);
    await c.query('COMMIT');
  } finally {
    c.release();
  }
}

async function client(t: { teardown(fn: () => unknown): void }, url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  t.teardown(() => c.end().catch(() => {}));
  return c;
}

async function eventsInChainOrder(db: Db): Promise<{ id: number; action: string; seq: number | null }[]> {
  return (
    await db.query<{ id: number; action: string; seq: number | null }>(
      'SELECT e.id, e.action, c.seq FROM audit_events e LEFT JOIN audit_chain c ON c.event_id = e.id ORDER BY c.seq NULLS LAST, e.id',
    )
  ).rows;
}

/** Events with no link in the chain yet. */
async function unlinked(db: Pick<Db, 'query'>): Promise<number> {
  const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_events e WHERE NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.event_id = e.id)');
  return rows[0]!.n;
}

t.test('a writer does not wait for another whose transaction is still open', async (t) => {
  const database = await createTestDatabase(t);
  const first = await client(t, database.url);
  const second = await client(t, database.url);
  await first.query('BEGIN');
  await write(first, 'first.open');
  // With a lock held by every writer until it commits, this insert would wait for `first` and
  // fail at the timeout.
  await second.query(`SET statement_timeout = '3s'`);
  const started = Date.now();
  await second.query('BEGIN');
  await write(second, 'second');
  await second.query('COMMIT');
  t.ok(Date.now() - started < 3000, 'the second writer committed while the first was still open');
  t.same(
    (await database.db.query('SELECT action FROM audit_events')).rows,
    [{ action: 'second' }],
    'and its event is in the log at once, before it is chained',
  );
  await first.query('COMMIT');
  t.match(await verifyAuditChain(database.db), { ok: true, checked: 2 });
});

t.test('events committed out of id order are all chained, exactly once, in the order they became visible', async (t) => {
  const database = await createTestDatabase(t);
  const db = database.db;
  const open = await Promise.all([1, 2, 3].map(() => client(t, database.url)));
  for (const [i, c] of open.entries()) {
    await c.query('BEGIN');
    await write(c, `open.${i}`);
  }
  await write(db, 'committed.first');
  t.equal(await chainPendingAuditEvents(db), 1);
  // Committed in reverse order of their ids, with chainer passes between.
  await open[2]!.query('COMMIT');
  await write(db, 'committed.second');
  t.equal(await chainPendingAuditEvents(db), 2);
  await open[0]!.query('COMMIT');
  t.equal(await chainPendingAuditEvents(db), 1);
  t.equal(await chainPendingAuditEvents(db), 0, 'a pass with nothing to do links nothing');
  await open[1]!.query('COMMIT');
  t.equal(await chainPendingAuditEvents(db), 1);

  const chain = await eventsInChainOrder(db);
  t.same(
    chain.map((e) => [e.action, e.seq]),
    [
      ['committed.first', 1],
      ['open.2', 2],
      ['committed.second', 3],
      ['open.0', 4],
      ['open.1', 5],
    ],
  );
  t.ok(chain[1]!.id < chain[0]!.id, 'an event can be chained after one with a greater id');
  const result = await verifyAuditChain(db);
  t.same(result, { ok: true, checked: 5, lastId: chain[4]!.id, lastHash: result.lastHash });
  const head = await db.query('SELECT last_seq, last_id, encode(last_hash, \'hex\') AS last_hash FROM audit_chain_head');
  t.same(head.rows, [{ last_seq: 5, last_id: chain[4]!.id, last_hash: result.lastHash }]);
});

t.test('many writers and two chainer loops: every event chained once', async (t) => {
  const database = await createTestDatabase(t);
  const writers = database.newPool(8);
  const chainers = [new AuditChainer({ db: database.newPool(1), intervalMs: 5, batchSize: 7 }), new AuditChainer({ db: database.newPool(1), intervalMs: 5, batchSize: 7 })];
  for (const c of chainers) c.start();
  await Promise.all(
    Array.from({ length: 300 }, async (_, i) => {
      if (i % 3) return write(writers, `w.${i}`);
      const c = await writers.connect();
      try {
        await c.query('BEGIN');
        await write(c, `w.${i}.a`);
        await c.query('SELECT pg_sleep(0.003)');
        await write(c, `w.${i}.b`);
        await c.query('COMMIT');
      } finally {
        c.release();
      }
    }),
  );
  for (let i = 0; i < 800; i++) {
    if ((await unlinked(database.db)) === 0) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  await Promise.all(chainers.map((c) => c.stop()));
  const chain = await eventsInChainOrder(database.db);
  t.equal(chain.length, 400);
  t.same(
    chain.map((e) => e.seq),
    chain.map((_, i) => i + 1),
    'the loops chained every event, each at its own position, without gaps',
  );
  t.match(await verifyAuditChain(database.db, { chainFirst: false }), { ok: true, checked: 400 });
  await t.resolves(chainers[0]!.stop(), 'stopping twice is harmless');
});

t.test('events are never updated, and links never changed or removed', async (t) => {
  const { db } = await createTestDatabase(t);
  await write(db, 'first');
  const id = (await db.query<{ id: number }>('SELECT id FROM audit_events')).rows[0]!.id;
  t.same((await db.query('SELECT event_id FROM audit_unchained')).rows, [{ event_id: id }], "the insert put the event on the chainer's work list");

  await t.rejects(db.query(`UPDATE audit_events SET reason = 'changed' WHERE id = $1`, [id]), /append-only/);
  await t.rejects(db.query(`UPDATE audit_events SET after = '{"a": 1.0}' WHERE id = $1`, [id]), /append-only/);
  t.equal(await chainPendingAuditEvents(db), 1, 'the chainer links it');
  t.same((await db.query('SELECT event_id FROM audit_unchained')).rows, [], 'and takes it off the work list');
  await t.rejects(db.query(`UPDATE audit_events SET reason = 'changed' WHERE id = $1`, [id]), /append-only/, 'a chained event cannot be changed');
  await t.rejects(db.query('DELETE FROM audit_events'), /append-only/);
  await t.rejects(db.query('TRUNCATE audit_events'), /append-only/);
  await t.rejects(db.query('UPDATE audit_chain SET seq = 7'), /append-only/, 'a link cannot be moved');
  await t.rejects(db.query('UPDATE audit_chain SET hash = sha256(hash)'), /append-only/, 'nor re-hashed');
  await t.rejects(db.query('DELETE FROM audit_chain'), /append-only/, 'nor removed');
  await t.rejects(db.query('TRUNCATE audit_chain'), /append-only/);
  await t.rejects(db.query(`INSERT INTO audit_chain (seq, event_id, hash) VALUES (2, $1, '\\x01')`, [id]), /unique|duplicate/, 'an event has one link');

  // A work item for an event already linked (only a superuser bypassing the triggers can make
  // one) is passed over: the chainer neither fails nor links the event twice.
  await db.query('INSERT INTO audit_unchained (event_id) VALUES ($1)', [id]);
  t.equal(await chainPendingAuditEvents(db), 0);
  t.match(await verifyAuditChain(db), { ok: true, checked: 1 });
});

t.test('a chainer interrupted in the middle of a batch loses nothing', async (t) => {
  const database = await createTestDatabase(t);
  const db = database.db;
  for (let i = 0; i < 5; i++) await write(db, `before.${i}`);
  await chainAllPendingAuditEvents(db);
  const headBefore = (await db.query('SELECT * FROM audit_chain_head')).rows;
  for (let i = 0; i < 5; i++) await write(db, `pending.${i}`);

  const chainer = await client(t, database.url);
  const pid = (await chainer.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
  chainer.on('error', () => {});
  await chainer.query('BEGIN');
  t.equal((await chainer.query<{ n: number }>('SELECT audit_events_chain_pending(3) AS n')).rows[0]!.n, 3, 'a batch is linked, not committed');
  t.equal(await chainPendingAuditEvents(db), null, 'meanwhile another chainer finds the chain busy and leaves');
  // The process dies before committing.
  await db.query('SELECT pg_terminate_backend($1)', [pid]);
  await t.rejects(chainer.query('SELECT 1'));

  t.same((await db.query('SELECT * FROM audit_chain_head')).rows, headBefore, 'the head did not move');
  const pending = await db.query<{ action: string }>(
    'SELECT e.action FROM audit_events e WHERE NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.event_id = e.id) ORDER BY e.id',
  );
  t.same(
    pending.rows.map((r) => r.action),
    [0, 1, 2, 3, 4].map((i) => `pending.${i}`),
    'the batch is unchained again',
  );
  t.equal(await chainAllPendingAuditEvents(db), 5, 'the next pass links it');
  t.match(await verifyAuditChain(db), { ok: true, checked: 10 });
  t.same((await eventsInChainOrder(db)).map((e) => e.seq), Array.from({ length: 10 }, (_, i) => i + 1));
});

t.test('an event left unchained is reported', async (t) => {
  const { db } = await createTestDatabase(t);
  for (let i = 0; i < 3; i++) await write(db, `e.${i}`);
  await chainAllPendingAuditEvents(db);

  await write(db, 'recent');
  t.match(await verifyAuditChain(db, { chainFirst: false }), { ok: true, checked: 3, pending: 1 }, 'a recent one is pending, not a failure');

  // Recorded an hour ago and still not chained: no chainer ran, or the row was tampered with.
  const { rows } = await db.query<{ id: number }>(
    `INSERT INTO audit_events (at, actor, action, resource_type) VALUES (now() - interval '1 hour', 'test', 'old', 'T') RETURNING id`,
  );
  const stale = await verifyAuditChain(db, { chainFirst: false });
  t.match(stale, { ok: false, checked: 3, firstBadId: rows[0]!.id, pending: 2, reason: /1 event was recorded more than 600 s ago but never chained/ });
  t.match(await verifyAuditChain(db, { chainFirst: false, unchainedLimitSeconds: 7200 }), { ok: true, pending: 2 }, 'the limit is an option');
  t.match(await verifyAuditChain(db), { ok: true, checked: 5 }, 'chained first, it verifies');
  t.equal((await verifyAuditChain(db)).pending, undefined);
});

t.test('a role that may only read still verifies, leaving the chaining to the chainers', async (t) => {
  const database = await createTestDatabase(t);
  const role = `audit_reader_${database.name.slice(-6)}`;
  await database.db.query(`CREATE ROLE ${role} LOGIN`);
  const url = new URL(database.url);
  url.username = role;
  const reader = new pg.Pool({ connectionString: url.toString(), max: 1 });
  try {
    await database.db.query(`GRANT SELECT ON audit_events, audit_chain, audit_chain_head TO ${role}`);
    await write(database.db, 'a');
    await chainAllPendingAuditEvents(database.db);
    await write(database.db, 'b');
    t.match(await verifyAuditChain(reader), { ok: true, checked: 1, pending: 1 });
  } finally {
    // Roles belong to the server: revoke what it was granted here, then drop it.
    await reader.end();
    await database.db.query(`DROP OWNED BY ${role}`);
    await database.db.query(`DROP ROLE ${role}`);
  }
});

t.test('moving, removing and unchaining chained events is caught', async (t) => {
  const setup = async () => {
    const { db } = await createTestDatabase(t);
    for (let i = 0; i < 6; i++) await write(db, `e.${i}`);
    await chainAllPendingAuditEvents(db);
    return { db, chain: await eventsInChainOrder(db) };
  };

  await t.test('two events swapped in the chain', async (t) => {
    const { db, chain } = await setup();
    await tamper(db, 'UPDATE audit_chain SET seq = seq + 1000 WHERE seq IN (2, 4)');
    await tamper(db, 'UPDATE audit_chain SET seq = CASE seq WHEN 1002 THEN 4 ELSE 2 END WHERE seq IN (1002, 1004)');
    t.match(await verifyAuditChain(db), { ok: false, checked: 1, firstBadId: chain[3]!.id, reason: /does not link/ });
  });
  await t.test('an event given a position at the end', async (t) => {
    const { db, chain } = await setup();
    await tamper(db, 'UPDATE audit_chain SET seq = 100 WHERE seq = 3');
    t.match(await verifyAuditChain(db), { ok: false, checked: 2, firstBadId: chain[3]!.id, reason: /does not link/ });
  });
  await t.test('an event removed, its link left', async (t) => {
    const { db, chain } = await setup();
    await tamper(db, 'DELETE FROM audit_events WHERE id = $1', [chain[2]!.id]);
    t.match(await verifyAuditChain(db), { ok: false, checked: 2, firstBadId: chain[2]!.id, reason: /the event was removed/ });
  });
  await t.test('the last event removed with its link, and the head moved back over it', async (t) => {
    const { db, chain } = await setup();
    await tamper(db, 'DELETE FROM audit_events WHERE id = $1', [chain[5]!.id]);
    await tamper(db, 'DELETE FROM audit_chain WHERE seq = 6');
    t.match(await verifyAuditChain(db), { ok: false, checked: 5, firstBadId: chain[5]!.id, reason: /at the end were removed/ });
    await tamper(db, `UPDATE audit_chain_head SET last_seq = 5, last_id = $1, last_hash = (SELECT hash FROM audit_chain WHERE seq = 5)`, [chain[4]!.id]);
    t.match(await verifyAuditChain(db), { ok: true, checked: 5 }, 'a consistent rewrite of the end verifies: only a recorded hash catches it');
  });
  await t.test('a chained event made unchained to be altered, then chained again', async (t) => {
    const { db, chain } = await setup();
    await tamper(db, 'DELETE FROM audit_chain WHERE seq = 3');
    await tamper(db, `UPDATE audit_events SET reason = 'forged' WHERE id = $1`, [chain[2]!.id]);
    await tamper(db, 'INSERT INTO audit_unchained (event_id) VALUES ($1)', [chain[2]!.id]);
    await chainAllPendingAuditEvents(db);
    t.match(await verifyAuditChain(db), { ok: false, checked: 2, firstBadId: chain[3]!.id, reason: /does not link/ });
  });
});

t.test('the gateway chains the events its requests write, by itself', async (t) => {
  const database = await createTestDatabase(t);
  const gw = await startTestGateway(t, { database, temporalAddress: '127.0.0.1:1', taskQueue: 'unused', dispatchOutbox: false });
  const res = await gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: { schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName: 'chained@example.com' } });
  t.equal(res.statusCode, 201, res.body);
  const { id } = res.json<{ id: string }>();
  let row: { hash: Buffer | null } | undefined;
  for (let i = 0; i < 400; i++) {
    row = (
      await database.db.query<{ hash: Buffer | null }>(
        `SELECT c.hash FROM audit_events e JOIN audit_chain c ON c.event_id = e.id WHERE e.action = 'user.created' AND e.resource_id = $1`,
        [id],
      )
    ).rows[0];
    if (row?.hash) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  t.ok(row?.hash, "the app's chainer linked the event");
  t.match(await verifyAuditChain(database.db, { chainFirst: false }), { ok: true });
});

t.test('the API shows an event before it is chained, and the export chains what is pending first', async (t) => {
  const database = await createTestDatabase(t);
  const gw = await startTestGateway(t, { database, temporalAddress: '127.0.0.1:1', taskQueue: 'unused', dispatchOutbox: false, chainAudit: false, scopes: ['admin'] });
  await write(database.db, 'first');
  const listed = await gw.scim({ method: 'GET', url: '/api/audit' });
  t.equal(listed.statusCode, 200, listed.body);
  t.match(listed.json(), { events: [{ action: 'first', prevHash: null, hash: null }] }, 'recorded at once; the hash comes later');

  const exported = await gw.scim({ method: 'GET', url: '/api/audit/export?format=json' });
  t.equal(exported.statusCode, 200, exported.body);
  t.match(exported.json(), [{ action: 'first', prevHash: null, hash: /^[0-9a-f]{64}$/ }], 'the export chained the event before reading it');
  const verified = await gw.scim({ method: 'GET', url: '/api/audit/verify' });
  t.same(verified.json(), { ok: true, checked: 1, lastId: exported.json()[0].id, lastHash: exported.json()[0].hash });
});

t.test('following the log in chain order skips no event that commits late; following by id can', async (t) => {
  const database = await createTestDatabase(t);
  const gw = await startTestGateway(t, { database, temporalAddress: '127.0.0.1:1', taskQueue: 'unused', dispatchOutbox: false, chainAudit: false, scopes: ['admin'] });
  const page = async (query: string) => {
    const res = await gw.scim({ method: 'GET', url: `/api/audit?${query}` });
    t.equal(res.statusCode, 200, res.body);
    return res.json<{ events: { id: number; chainSeq: number | null; action: string }[]; nextAfterId: number | null; nextAfterChainSeq?: number | null }>();
  };
  const slow = await client(t, database.url);
  await slow.query('BEGIN');
  await write(slow, 'slow');
  await write(database.db, 'fast');
  await chainPendingAuditEvents(database.db);

  const byId = await page('afterId=0');
  const byChain = await page('afterChainSeq=0');
  t.same(byId.events.map((e) => e.action), ['fast']);
  t.same(byChain.events.map((e) => [e.action, e.chainSeq]), [['fast', 1]]);
  t.equal(byChain.nextAfterChainSeq, null);
  const lastId = byId.events.at(-1)!.id;

  await slow.query('COMMIT');
  await chainPendingAuditEvents(database.db);
  t.same((await page(`afterId=${lastId}`)).events, [], 'paging on by id misses the event committed late with a smaller id');
  t.same((await page('afterChainSeq=1')).events.map((e) => [e.action, e.chainSeq]), [['slow', 2]], 'paging on in chain order finds it');

  await write(database.db, 'unchained');
  t.same((await page('afterChainSeq=0&limit=1')).nextAfterChainSeq, 1, 'the next position when there is more');
  t.same((await page('afterChainSeq=2')).events, [], 'an event shows up in chain order once chained');
  t.equal((await page('afterChainSeq=0')).nextAfterId, null);
  for (const bad of ['afterChainSeq=x', 'afterChainSeq=1&afterId=1']) {
    t.equal((await gw.scim({ method: 'GET', url: `/api/audit?${bad}` })).statusCode, 400, bad);
  }
});

t.test('on PGlite, the embedded database: the chainer loop shares the one connection', async (t) => {
  const database = await createEmbeddedTestDatabase(t);
  const chainer = new AuditChainer({ db: database.db, intervalMs: 10 });
  chainer.start();
  t.teardown(() => chainer.stop());
  await Promise.all(Array.from({ length: 20 }, (_, i) => write(database.db, `p.${i}`)));
  for (let i = 0; i < 800; i++) {
    if ((await unlinked(database.db)) === 0) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  await chainer.stop();
  t.match(await verifyAuditChain(database.db, { chainFirst: false }), { ok: true, checked: 20 });
  t.equal(await chainPendingAuditEvents(database.db), 0);
});
