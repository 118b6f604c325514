/**
 * The hash-chained audit log: the chainer links every way the code writes events (single rows,
 * multi-row and CTE inserts, transactions, concurrent writers, commits out of id order) exactly
 * once, writers never wait for each other, verification finds altered, removed, moved and
 * unchained events, the migrations chain existing events, and all of it works on PGlite too.
 */
import { execFile } from 'node:child_process';
import { runner } from 'node-pg-migrate';
import pg from 'pg';
import t from 'tap';
import { chainAllPendingAuditEvents, chainPendingAuditEvents, verifyAuditChain } from '../../../core/audit/chain.js';
import { startEmbeddedPostgres } from '../../../core/db/embedded.js';
import { migrate, MIGRATIONS_DIR } from '../../../core/db/migrate.js';
import type { Db } from '../../../core/db/pool.js';
import { createTestDatabase } from '../../helpers/db.js';

const INSERT = 'INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, before, after) VALUES ($1, $2, $3, $4, $5, $6, $7)';

/** Writes `n` events (not chained yet). */
async function writeEvents(db: Db, n: number, prefix = 'e'): Promise<void> {
  for (let i = 0; i < n; i++) {
    await db.query(INSERT, [`actor-${i % 3}`, `${prefix}.${i}`, 'User', `u${i}`, i % 2 ? null : 'SCIM', i % 4 ? null : JSON.stringify({ i }), JSON.stringify({ n: i, s: 'x|1:y~' })]);
  }
}

/** Writes `n` events and chains them, as the gateway's chainer does a moment later. */
async function insertEvents(db: Db, n: number, prefix = 'e'): Promise<void> {
  await writeEvents(db, n, prefix);
  await chainAllPendingAuditEvents(db);
}

async function ids(db: Db): Promise<number[]> {
  return (await db.query<{ id: number }>('SELECT id FROM audit_events ORDER BY id')).rows.map((r) => Number(r.id));
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

function cli(env: Record<string, string>, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'scripts/audit.ts', ...args], { env: { PATH: process.env.PATH ?? '', ...env } }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

t.test('every way of writing events extends one chain', async (t) => {
  const { db } = await createTestDatabase(t);
  t.same(await verifyAuditChain(db), { ok: true, checked: 0 }, 'an empty log verifies');

  await insertEvents(db, 5);
  // Several rows in one statement, and a CTE as the directory writes them.
  await db.query(`INSERT INTO audit_events (actor, action, resource_type, after) SELECT 'bulk', 'bulk.' || g, 'Thing', jsonb_build_object('g', g) FROM generate_series(1, 7) g`);
  await db.query(`WITH a AS (INSERT INTO audit_events (actor, action, resource_type, resource_id, reason) VALUES ('cte', 'cte.one', 'User', 'x', 'SCIM')) SELECT 1`);
  // A transaction with two events, and one rolled back (its id is skipped, the chain is not).
  const c = await db.connect();
  try {
    await c.query('BEGIN');
    await c.query(INSERT, ['tx', 'tx.1', 'Group', 'g', '', '{}', '[]']);
    await c.query(INSERT, ['tx', 'tx.2', 'Group', 'g', 'a,b"c\nd', null, '{"deep": {"b": 1, "a": [1.50, null, "é"]}}']);
    await c.query('COMMIT');
    await c.query('BEGIN');
    await c.query(INSERT, ['tx', 'tx.lost', 'Group', 'g', null, null, null]);
    await c.query('ROLLBACK');
  } finally {
    c.release();
  }
  // A caller-chosen id is replaced by the next one in chain order.
  const { rows } = await db.query<{ id: number }>(`INSERT INTO audit_events (id, actor, action, resource_type) VALUES (1, 'x', 'forced.id', 'T') RETURNING id`);
  t.ok(rows[0]!.id > 15, 'the trigger assigns the id');

  const all = await ids(db);
  t.equal(all.length, 16);
  t.not(all[all.length - 1]! - all[0]!, all.length - 1, 'the rolled-back event left a gap in the ids');
  const result = await verifyAuditChain(db);
  t.same(result, { ok: true, checked: 16, lastId: all[all.length - 1], lastHash: result.lastHash });
  t.match(result.lastHash, /^[0-9a-f]{64}$/);
  t.same(await verifyAuditChain(db, { batchSize: 3 }), result, 'batch boundaries change nothing');

  const chain = await db.query<{ prev_hash: Buffer | null; hash: Buffer }>('SELECT prev_hash, hash FROM audit_chain ORDER BY seq');
  t.equal(chain.rows[0]!.prev_hash, null, 'the first event has no predecessor');
  t.ok(chain.rows.every((r, i) => r.hash.length === 32 && (i === 0 || r.prev_hash?.equals(chain.rows[i - 1]!.hash))), 'each event links to the one before');
  const head = await db.query('SELECT last_id, encode(last_hash, \'hex\') AS last_hash FROM audit_chain_head');
  t.same(head.rows, [{ last_id: result.lastId, last_hash: result.lastHash }]);

  // The session's time zone plays no part in the canonical form.
  const other = await db.connect();
  try {
    await other.query(`SET TimeZone = 'Pacific/Chatham'`);
    await other.query(INSERT, ['tz', 'tz.1', 'T', null, null, null, null]);
  } finally {
    other.release();
  }
  t.equal((await verifyAuditChain(db)).ok, true);
});

t.test('200 concurrent inserts from 10 connections still form one chain', async (t) => {
  const database = await createTestDatabase(t);
  const pool = database.newPool(10);
  await Promise.all(
    Array.from({ length: 200 }, async (_, i) => {
      if (i % 4) return pool.query(INSERT, [`w${i % 10}`, `c.${i}`, 'User', String(i), null, null, JSON.stringify({ i })]);
      // Some writers hold their transaction open between two events, as group changes do.
      const c = await pool.connect();
      try {
        await c.query('BEGIN');
        await c.query(INSERT, [`w${i % 10}`, `c.${i}.a`, 'Group', String(i), null, null, null]);
        await c.query('SELECT pg_sleep(0.002)');
        await c.query(INSERT, [`w${i % 10}`, `c.${i}.b`, 'Group', String(i), null, null, null]);
        await c.query('COMMIT');
      } finally {
        c.release();
      }
    }),
  );
  const result = await verifyAuditChain(database.db, { batchSize: 64 });
  t.equal(result.ok, true, result.reason ?? 'verifies');
  t.equal(result.checked, 250);
  const seqs = await database.db.query<{ seq: number }>('SELECT c.seq FROM audit_events e JOIN audit_chain c ON c.event_id = e.id ORDER BY c.seq');
  t.same(seqs.rows.map((r) => r.seq), Array.from({ length: 250 }, (_, i) => i + 1), 'each event has its own place in the chain, without gaps');
  const pairs = await database.db.query<{ action: string; seq: number }>(`SELECT e.action, c.seq FROM audit_events e JOIN audit_chain c ON c.event_id = e.id WHERE e.action LIKE '%.a' OR e.action LIKE '%.b' ORDER BY e.id`);
  const byTx = new Map<string, number[]>();
  for (const r of pairs.rows) byTx.set(r.action.slice(0, -2), [...(byTx.get(r.action.slice(0, -2)) ?? []), r.seq]);
  t.equal(byTx.size, 50);
  t.ok([...byTx.values()].every(([a, b]) => b! > a!), "a transaction's events are chained in the order it wrote them");
});

t.test('events committed while verification runs are verified too', async (t) => {
  const { db } = await createTestDatabase(t);
  await insertEvents(db, 3);
  // Another process writes an event and its chainer links it.
  const late = async () => {
    await db.query(INSERT, ['late', 'late', 'T', null, null, null, null]);
    await chainPendingAuditEvents(db);
  };
  let eventReads = 0;
  let headReads = 0;
  // Another writer commits an event after the first read of events, and just before the first
  // read of the chain head (when the verifier believes it has reached the end).
  const busy = {
    query: async (text: string, values?: unknown[]) => {
      if (text.includes('FROM audit_chain_head') && headReads++ === 0) await late();
      const res = await db.query(text, values);
      if (text.includes('AS intact') && eventReads++ === 0) await late();
      return res;
    },
  } as unknown as Db;
  const result = await verifyAuditChain(busy, { batchSize: 2, chainFirst: false });
  t.match(result, { ok: true, checked: 5 });
  t.equal(result.pending, undefined);
  t.equal(result.lastId, (await ids(db)).at(-1));
});

t.test('a transaction whose snapshot predates the last event writes without conflict, and its event is chained after it', async (t) => {
  const database = await createTestDatabase(t);
  await insertEvents(database.db, 2);
  const stale = new pg.Client({ connectionString: database.url });
  await stale.connect();
  t.teardown(() => stale.end());
  await stale.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
  await stale.query('SELECT count(*) FROM audit_events');
  await insertEvents(database.db, 1, 'meanwhile');
  await stale.query(INSERT, ['stale', 'stale', 'T', null, null, null, null]);
  await stale.query('COMMIT');
  t.equal(await chainPendingAuditEvents(database.db), 1);
  const last = await database.db.query<{ action: string }>('SELECT e.action FROM audit_events e JOIN audit_chain c ON c.event_id = e.id ORDER BY c.seq DESC LIMIT 1');
  t.equal(last.rows[0]!.action, 'stale');
  t.match(await verifyAuditChain(database.db), { ok: true, checked: 4 });

  // A chainer in a REPEATABLE READ transaction whose snapshot predates the last batch fails
  // instead of forking the chain.
  await stale.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
  await stale.query('SELECT count(*) FROM audit_events');
  await insertEvents(database.db, 1, 'later');
  await database.db.query(INSERT, ['x', 'unchained', 'T', null, null, null, null]);
  await t.rejects(stale.query('SELECT audit_events_chain_pending()'), { code: '40001' });
  await stale.query('ROLLBACK');
  t.match(await verifyAuditChain(database.db), { ok: true, checked: 6 });
});

t.test('events cannot be updated, deleted or truncated', async (t) => {
  const { db } = await createTestDatabase(t);
  await insertEvents(db, 2);
  await t.rejects(db.query(`UPDATE audit_events SET reason = 'x'`), /append-only/);
  await t.rejects(db.query('DELETE FROM audit_events'), /append-only/);
  await t.rejects(db.query('TRUNCATE audit_events'), /append-only/);
  await t.rejects(db.query('DELETE FROM audit_chain_head'), /cannot be deleted/);
  t.equal((await verifyAuditChain(db)).checked, 2);
});

/** Recomputes the link of event $1 from its content as it is now, as someone who altered it would. */
const REHASH = `UPDATE audit_chain c SET hash = sha256(COALESCE(c.prev_hash, ''::bytea) || audit_events_canonical(e.id, e.at, e.actor, e.action, e.resource_type, e.resource_id, e.reason, e.before, e.after))
                  FROM audit_events e WHERE e.id = c.event_id AND e.id = $1`;

t.test('an altered event is reported', async (t) => {
  const { db } = await createTestDatabase(t);
  await insertEvents(db, 10);
  const [, , , , fifth, sixth] = await ids(db);
  await tamper(db, `UPDATE audit_events SET after = '{"n": 4, "s": "forged"}' WHERE id = $1`, [fifth]);
  t.match(await verifyAuditChain(db), { ok: false, checked: 4, firstBadId: fifth, reason: /content was altered/ });
  t.match(await verifyAuditChain(db, { batchSize: 4 }), { ok: false, firstBadId: fifth }, 'also at a batch boundary');

  // Re-hashing the altered event only moves the break to the next one.
  await tamper(db, REHASH, [fifth]);
  t.match(await verifyAuditChain(db), { ok: false, checked: 5, firstBadId: sixth, reason: /does not link/ });
});

t.test('changing the actor, the time or the canonical function is caught', async (t) => {
  const { db } = await createTestDatabase(t);
  await insertEvents(db, 4);
  const [first] = await ids(db);
  await tamper(db, `UPDATE audit_events SET at = at + interval '1 microsecond' WHERE id = $1`, [first]);
  t.match(await verifyAuditChain(db), { ok: false, firstBadId: first });

  // A database function that ignores `after` does not fool the verifier, which has its own copy.
  const db2 = (await createTestDatabase(t)).db;
  await insertEvents(db2, 4);
  await db2.query(`CREATE OR REPLACE FUNCTION audit_events_canonical(id bigint, at timestamptz, actor text, action text, resource_type text, resource_id text, reason text, before jsonb, after jsonb) RETURNS bytea LANGUAGE sql AS $$ SELECT convert_to(id::text, 'UTF8') $$`);
  const firstOf2 = (await ids(db2))[0];
  await tamper(db2, `UPDATE audit_events SET after = '{}' WHERE id = $1`, [firstOf2]);
  await tamper(db2, REHASH, [firstOf2]);
  t.match(await verifyAuditChain(db2), { ok: false, firstBadId: (await ids(db2))[0] });
});

t.test('removed events are reported', async (t) => {
  await t.test('in the middle', async (t) => {
    const { db } = await createTestDatabase(t);
    await insertEvents(db, 6);
    const all = await ids(db);
    await tamper(db, 'DELETE FROM audit_events WHERE id = $1', [all[2]]);
    t.match(await verifyAuditChain(db), { ok: false, checked: 2, firstBadId: all[2], reason: /the event was removed/ }, 'its link remains');
    await tamper(db, 'DELETE FROM audit_chain WHERE event_id = $1', [all[2]]);
    t.match(await verifyAuditChain(db), { ok: false, checked: 2, firstBadId: all[3], reason: /removed/ }, 'and with the link gone');
  });
  await t.test('at the start', async (t) => {
    const { db } = await createTestDatabase(t);
    await insertEvents(db, 3);
    const all = await ids(db);
    await tamper(db, 'DELETE FROM audit_events WHERE id = $1', [all[0]]);
    await tamper(db, 'DELETE FROM audit_chain WHERE event_id = $1', [all[0]]);
    t.match(await verifyAuditChain(db), { ok: false, checked: 0, firstBadId: all[1], reason: /missing/ });
  });
  await t.test('at the end', async (t) => {
    const { db } = await createTestDatabase(t);
    await insertEvents(db, 3);
    const all = await ids(db);
    await tamper(db, 'DELETE FROM audit_events WHERE id = $1', [all[2]]);
    await tamper(db, 'DELETE FROM audit_chain WHERE event_id = $1', [all[2]]);
    t.match(await verifyAuditChain(db), { ok: false, checked: 2, firstBadId: all[2], reason: /at the end were removed/ });
    await tamper(db, 'DELETE FROM audit_events');
    await tamper(db, 'DELETE FROM audit_chain');
    t.match(await verifyAuditChain(db), { ok: false, checked: 0, firstBadId: all[2] }, 'even all of them');
  });
});

t.test('the migration chains the events already there, and rolls back', async (t) => {
  const database = await createTestDatabase(t, { migrate: false });
  const migrations = async (direction: 'up' | 'down', count?: number) => {
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      return (await runner({ dbClient: client, dir: MIGRATIONS_DIR, direction, count, migrationsTable: 'pgmigrations', checkOrder: true, log: () => {} })).map((m) => m.name);
    } finally {
      await client.end();
    }
  };
  // In id order, each event links to the one before and the head names the last: the chain as
  // migration 1732170000005 builds it (the verifier itself needs the later migrations).
  const linkedInIdOrder = async () =>
    (
      await database.db.query<{ ok: boolean }>(
        `SELECT bool_and(e.prev_hash IS NOT DISTINCT FROM (SELECT p.hash FROM audit_events p WHERE p.id < e.id ORDER BY p.id DESC LIMIT 1)
                 AND e.hash IS NOT NULL)
                AND (SELECT last_id FROM audit_chain_head) = max(e.id) AS ok
           FROM audit_events e`,
      )
    ).rows[0]!.ok;
  // The migrations before 1732170000005, some events, then that one.
  const earlier = await migrations('up', 5);
  t.equal(earlier.at(-1), '1732170000004_provisioning');
  await writeEvents(database.db, 25, 'old');
  t.same(await migrations('up', 1), ['1732170000005_audit-chain']);
  t.equal(await linkedInIdOrder(), true, 'the events already there are chained');
  await writeEvents(database.db, 3, 'new');
  t.equal(await linkedInIdOrder(), true, 'and the trigger chains new ones');

  t.same(await migrations('down', 1), ['1732170000005_audit-chain']);
  const cols = await database.db.query(`SELECT column_name FROM information_schema.columns WHERE table_name = 'audit_events' AND column_name IN ('hash', 'prev_hash')`);
  t.same(cols.rows, []);
  await writeEvents(database.db, 2, 'down');
  await t.rejects(database.db.query('DELETE FROM audit_events'), /append-only/, 'the append-only trigger stays');

  // Up to the latest: 1732170000020 gives the events chained in id order their chain positions.
  const applied = await migrate(database.url);
  t.ok(applied.includes('1732170000005_audit-chain') && applied.includes('1732170000020_audit-chain-async'));
  t.match(await verifyAuditChain(database.db, { chainFirst: false }), { ok: true, checked: 30 });
  t.equal(await chainPendingAuditEvents(database.db), 0, 'nothing was left unchained');

  // Events committed out of id order, chained; then back to the chain built by each writer, which
  // links them again in id order, and forward once more.
  const open = await database.db.connect();
  try {
    await open.query('BEGIN');
    await open.query(INSERT, ['slow', 'slow', 'T', null, null, null, null]);
    await writeEvents(database.db, 2, 'fast');
    await open.query('COMMIT');
  } finally {
    open.release();
  }
  t.match(await verifyAuditChain(database.db), { ok: true, checked: 33 });
  const later = (await database.db.query<{ name: string }>(`SELECT name FROM pgmigrations WHERE name >= '1732170000020' ORDER BY name DESC`)).rows;
  t.same((await migrations('down', later.length)).at(-1), '1732170000020_audit-chain-async');
  t.equal(await linkedInIdOrder(), true, 'down: linked in id order again');
  await writeEvents(database.db, 1, 'old-trigger');
  t.equal(await linkedInIdOrder(), true, "down: each writer's trigger chains again");
  await migrate(database.url);
  t.match(await verifyAuditChain(database.db), { ok: true, checked: 34 });
});

t.test('the command line verifies and exports', async (t) => {
  const database = await createTestDatabase(t);
  const env = { DATABASE_URL: database.url };
  await insertEvents(database.db, 4);
  await database.db.query(INSERT, ['cli', 'quoted', 'T', null, 'one, "two"\nthree', null, '{"a": 1}']);

  const good = await cli(env, 'verify');
  t.equal(good.code, 0, good.stderr);
  t.match(good.stdout, /^audit chain OK: 5 events verified, last id \d+, hash [0-9a-f]{64}\n$/);

  const csv = await cli(env, 'export', '--format', 'csv', '--since', '2000-01-01');
  t.equal(csv.code, 0, csv.stderr);
  t.match(csv.stdout, /^id,at,actor,action,resourceType,resourceId,reason,before,after,prevHash,hash\r\n/);
  t.match(csv.stdout, /,"one, ""two""\nthree",,"\{""a"": 1\}",/);
  const json = await cli(env, 'export', '--format', 'json', '--until', '2000-01-01T00:00:00Z');
  t.equal(json.code, 0, json.stderr);
  t.same(JSON.parse(json.stdout), []);
  const all = JSON.parse((await cli(env, 'export', '--format', 'json')).stdout);
  t.equal(all.length, 5);
  t.same(all[4].after, { a: 1 });
  await database.db.query(INSERT, ['cli', 'account.createAccount', 'Account', 'github:3f1c0b9e-0000-4000-8000-000000000001', null, null, '{}']);
  const mine = JSON.parse((await cli(env, 'export', '--format', 'json', '--user', '3f1c0b9e-0000-4000-8000-000000000001')).stdout);
  t.same(mine.map((e: { resourceId: string }) => e.resourceId), ['github:3f1c0b9e-0000-4000-8000-000000000001'], "--user exports the user's account events");

  t.equal((await cli(env, 'export', '--format', 'xml')).code, 2);
  t.equal((await cli(env, 'export', '--format', 'csv', '--since', 'yesterday')).code, 2);
  t.equal((await cli(env)).code, 2);
  t.equal((await cli({}, 'verify')).code, 2, 'DATABASE_URL is required');

  const [, second] = await ids(database.db);
  await tamper(database.db, `UPDATE audit_events SET actor = 'someone-else' WHERE id = $1`, [second]);
  const bad = await cli(env, 'verify');
  t.equal(bad.code, 1);
  t.match(bad.stdout, new RegExp(`^audit chain BROKEN at id ${second}: .*\\(1 events verified before it\\)\\n$`));
});

t.test('the chain on PGlite, the embedded database', async (t) => {
  const embedded = await startEmbeddedPostgres({});
  t.teardown(() => embedded.stop());
  t.ok((await migrate(embedded.url)).includes('1732170000005_audit-chain'));
  const db = await embedded.connect();
  t.teardown(() => db.end());
  await insertEvents(db, 5);
  await db.query(`INSERT INTO audit_events (actor, action, resource_type, after) SELECT 'bulk', 'bulk.' || g, 'Thing', jsonb_build_object('g', g) FROM generate_series(1, 3) g`);
  await Promise.all(Array.from({ length: 10 }, (_, i) => db.query(INSERT, ['p', `p.${i}`, 'T', null, null, null, null])));
  const result = await verifyAuditChain(db, { batchSize: 4 });
  t.equal(result.ok, true, result.reason ?? 'verifies');
  t.equal(result.checked, 18);
  await t.rejects(db.query('DELETE FROM audit_events'), /append-only/);

  const [, , third] = await ids(db);
  await tamper(db, `UPDATE audit_events SET reason = 'forged' WHERE id = $1`, [third]);
  t.match(await verifyAuditChain(db), { ok: false, checked: 2, firstBadId: third });
});
