/**
 * `npm run bench:groups [-- --quick]`: a large group over SCIM, as Okta and Entra ID read and change
 * it, against the real gateway app and PostgreSQL (Temporal is not part of it: the outbox rows a
 * write inserts are counted, not delivered).
 *
 * It seeds the users with one SQL statement, builds a group of BENCH_GROUP_MEMBERS (default 50,000)
 * members over SCIM (PATCH add in batches of BENCH_GROUP_DELTA, as identity providers push a group),
 * and a small group of 10 members and a medium group of BENCH_GROUP_DELTA members as baselines
 * measured in the same run. Then it measures (median and p90 of BENCH_GROUP_REPEAT requests, one at
 * a time, over HTTP):
 *
 *  - GET /Groups/{id}?excludedAttributes=members, large vs. small: the ratio should be ~1 (the
 *    members are not read at all);
 *  - GET /Groups?filter=displayName eq "…"&excludedAttributes=members, large vs. small;
 *  - PATCH adding BENCH_GROUP_DELTA members and removing as many in one request (Entra ID's shape:
 *    `add` and `remove` on `members` with value lists; and Okta's: one `members[value eq "…"]` remove
 *    per member), large vs. medium group, answered with excludedAttributes=members and as sent by
 *    the identity providers (no query: the whole group in the answer);
 *  - the provisioning work each PATCH causes: the outbox rows it inserted (one `user.changed` per
 *    user whose memberships changed, each a userSync workflow's plan), which must be the delta, and
 *    the size of its audit event;
 *  - GET /Groups/{id} with all members (the complete answer) and PUT replacing the members of the
 *    large group with a list that differs in BENCH_GROUP_DELTA members.
 *
 * `--quick` is a smoke run proving the script works (5,000 members, 3 repeats); its figures mean
 * little. Environment: BENCH_GROUP_MEMBERS, BENCH_GROUP_DELTA, BENCH_GROUP_REPEAT, BENCH_DATABASE_URL
 * (see scripts/bench-common.ts). Every database it creates is dropped at the end.
 */
import { createToken } from '../core/auth/tokens.js';
import { loadGatewayConfig } from '../core/config.js';
import { migrate } from '../core/db/migrate.js';
import { connectPool, type Db } from '../core/db/pool.js';
import { GROUP_SCHEMA, PATCH_OP_SCHEMA } from '../core/scim/schemas.js';
import { buildApp } from '../gateway/app.js';
import { TemporalAccess } from '../gateway/temporal.js';
import { createBenchDatabase } from './bench-common.js';
import { seedUsers } from './bench-scim.js';

const quick = process.argv.includes('--quick');
const unknownArgs = process.argv.slice(2).filter((a) => a !== '--quick');
if (unknownArgs.length) throw new Error(`unknown argument(s): ${unknownArgs.join(' ')} (only --quick is accepted)`);

function positiveInt(name: string, fallback: number): number {
  const raw = process.env[name]?.trim();
  if (!raw) return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < 1) throw new Error(`${name} must be a whole number ≥ 1, got "${raw}"`);
  return Number(raw);
}

const MEMBERS = positiveInt('BENCH_GROUP_MEMBERS', quick ? 5_000 : 50_000);
const DELTA = positiveInt('BENCH_GROUP_DELTA', 1_000);
const REPEAT = positiveInt('BENCH_GROUP_REPEAT', quick ? 3 : 20);
const SMALL = 10;
/** Nothing listens on port 1: Temporal is not part of this benchmark. */
const UNREACHABLE_TEMPORAL = '127.0.0.1:1';

const log = (line: string) => process.stdout.write(`${line}\n`);
const fmt = (n: number, d = 1) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
const count = (n: number) => n.toLocaleString('en-US');
const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))] ?? NaN;

interface Timing {
  p50: number;
  p90: number;
}

const timing = (xs: number[]): Timing => ({ p50: quantile(xs, 0.5), p90: quantile(xs, 0.9) });

class Scim {
  constructor(
    private readonly base: string,
    private readonly token: string,
  ) {}

  /** One request; throws unless the status is `expect`. Answers the parsed body, its size and the time taken (ms). */
  async call(method: string, path: string, body?: unknown, expect = 200): Promise<{ json: Record<string, unknown>; bytes: number; ms: number }> {
    const started = performance.now();
    const res = await fetch(`${this.base}${path}`, {
      method,
      headers: { authorization: `Bearer ${this.token}`, ...(body !== undefined ? { 'content-type': 'application/scim+json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    const ms = performance.now() - started;
    if (res.status !== expect) throw new Error(`${method} ${path}: expected ${expect}, got ${res.status} ${text.slice(0, 500)}`);
    return { json: text ? (JSON.parse(text) as Record<string, unknown>) : {}, bytes: Buffer.byteLength(text), ms };
  }

  /**
   * `n` timed requests to each path, alternating between them (after one warm-up each), so that a
   * machine busier at one moment than another weighs on both figures alike.
   */
  async paired(method: string, paths: [string, string], n: number): Promise<[Timing & { bytes: number }, Timing & { bytes: number }]> {
    for (const path of paths) await this.call(method, path); // warm-up: plans prepared, pages cached
    const ms: [number[], number[]] = [[], []];
    const bytes = [0, 0];
    for (let i = 0; i < n; i++) {
      for (const k of [0, 1] as const) {
        const r = await this.call(method, paths[k]);
        ms[k].push(r.ms);
        bytes[k] = r.bytes;
      }
    }
    return [
      { ...timing(ms[0]), bytes: bytes[0]! },
      { ...timing(ms[1]), bytes: bytes[1]! },
    ];
  }
}

const memberList = (ids: string[]) => ids.map((value) => ({ value }));
const entraPatch = (add: string[], remove: string[]) => ({
  schemas: [PATCH_OP_SCHEMA],
  Operations: [
    ...(add.length ? [{ op: 'Add', path: 'members', value: memberList(add) }] : []),
    ...(remove.length ? [{ op: 'Remove', path: 'members', value: memberList(remove) }] : []),
  ],
});
/** Okta's shape: one operation per removed member; additions in one operation (the request holds at most 1,000 operations). */
const oktaRemove = (remove: string[]) => ({
  schemas: [PATCH_OP_SCHEMA],
  Operations: remove.map((id) => ({ op: 'remove', path: `members[value eq "${id}"]` })),
});

async function outboxHead(db: Db): Promise<number> {
  const { rows } = await db.query<{ id: string | null }>('SELECT max(id)::text AS id FROM outbox');
  return Number(rows[0]?.id ?? 0);
}

/** What a write left for provisioning and audit: outbox rows after `since`, and the size of the group's newest audit event. */
async function workCaused(db: Db, since: number, groupId: string): Promise<{ outbox: number; distinctUsers: number; auditBytes: number; added: number; removed: number }> {
  const { rows } = await db.query<{ n: number; users: number }>(
    "SELECT count(*)::int AS n, count(DISTINCT aggregate_id)::int AS users FROM outbox WHERE id > $1 AND topic = 'user.changed'",
    [since],
  );
  const { rows: audit } = await db.query<{ bytes: number; added: number; removed: number }>(
    `SELECT (coalesce(pg_column_size(before), 0) + coalesce(pg_column_size(after), 0))::int AS bytes,
            coalesce(jsonb_array_length(after->'membersAdded'), 0)::int AS added,
            coalesce(jsonb_array_length(after->'membersRemoved'), 0)::int AS removed
       FROM audit_events WHERE resource_type = 'Group' AND resource_id = $1 ORDER BY id DESC LIMIT 1`,
    [groupId],
  );
  return { outbox: rows[0]!.n, distinctUsers: rows[0]!.users, auditBytes: audit[0]?.bytes ?? 0, added: audit[0]?.added ?? 0, removed: audit[0]?.removed ?? 0 };
}

async function main(): Promise<number> {
  const database = await createBenchDatabase('bench_groups');
  const cleanups: Array<() => Promise<unknown>> = [() => database.drop()];
  try {
    await migrate(database.url);
    const db = await connectPool(database.url, 5);
    cleanups.unshift(() => db.end());
    // Users: the large group's members, one delta to add, the medium group's members and its delta, the small group.
    const total = MEMBERS + DELTA + 2 * DELTA + SMALL;
    let t0 = performance.now();
    await seedUsers(db, total);
    const { rows: users } = await db.query<{ id: string }>('SELECT id::text FROM users ORDER BY created_at, id');
    const ids = users.map((u) => u.id);
    log(`seeded ${count(total)} users in ${fmt((performance.now() - t0) / 1000)} s`);
    let at = 0;
    const take = (n: number) => ids.slice(at, (at += n));
    const largeMembers = take(MEMBERS);
    const largeExtra = take(DELTA);
    const mediumMembers = take(DELTA);
    const mediumExtra = take(DELTA);
    const smallMembers = take(SMALL);

    // A PUT of the large group carries every member; the default body limit (1 MiB) is far below that.
    const config = { ...loadGatewayConfig({ LOG_LEVEL: 'silent', BODY_LIMIT_BYTES: String(100 * 1_048_576) }), databaseUrl: database.url };
    const app = await buildApp({ config, db: await connectPool(database.url, 10), temporal: new TemporalAccess(UNREACHABLE_TEMPORAL, 'default'), dispatchOutbox: false, logger: false });
    await app.listen({ host: '127.0.0.1', port: 0 });
    cleanups.unshift(() => app.close());
    const addr = app.server.address();
    if (!addr || typeof addr === 'string') throw new Error('gateway is not listening on TCP');
    const { token } = await createToken(db, 'bench-groups', ['scim:read', 'scim:write']);
    const scim = new Scim(`http://127.0.0.1:${addr.port}/scim/v2`, token);

    const createGroup = async (displayName: string, members: string[]) =>
      String((await scim.call('POST', '/Groups', { schemas: [GROUP_SCHEMA], displayName, members: memberList(members) }, 201)).json.id);
    const small = await createGroup('Small group', smallMembers);
    const medium = await createGroup('Medium group', mediumMembers);
    const large = await createGroup('Large group', []);
    t0 = performance.now();
    const batches: number[] = [];
    for (let i = 0; i < MEMBERS; i += DELTA) {
      batches.push((await scim.call('PATCH', `/Groups/${large}?excludedAttributes=members`, entraPatch(largeMembers.slice(i, i + DELTA), []))).ms);
    }
    log(
      `built the large group over SCIM: ${count(MEMBERS)} members in ${batches.length} PATCH requests of ${count(DELTA)}, ${fmt((performance.now() - t0) / 1000)} s ` +
        `(first batch ${fmt(batches[0]!)} ms, last ${fmt(batches.at(-1)!)} ms)`,
    );
    await db.query('VACUUM ANALYZE group_members');
    await db.query('VACUUM ANALYZE groups');

    log('');
    log(`large group: ${count(MEMBERS)} members; baselines: ${SMALL} members (reads), ${count(DELTA)} members (writes); ${REPEAT} requests each, one at a time`);
    log('');
    const row = (label: string, big: Timing, base: Timing, extra = '') =>
      log(`${label.padEnd(78)} ${fmt(big.p50).padStart(9)} ms (p90 ${fmt(big.p90).padStart(8)})   baseline ${fmt(base.p50).padStart(7)} ms   ratio ${fmt(big.p50 / base.p50, 2).padStart(6)}${extra}`);

    const byId = (id: string) => `/Groups/${id}?excludedAttributes=members`;
    const byName = (name: string) => `/Groups?filter=${encodeURIComponent(`displayName eq "${name}"`)}&excludedAttributes=members`;
    const [getLarge, getSmall] = await scim.paired('GET', [byId(large), byId(small)], REPEAT);
    row('GET /Groups/{id}?excludedAttributes=members', getLarge, getSmall);
    const [listLarge, listSmall] = await scim.paired('GET', [byName('Large group'), byName('Small group')], REPEAT);
    row('GET /Groups?filter=displayName eq …&excludedAttributes=members', listLarge, listSmall);

    // One request adding DELTA members and removing DELTA others, then the reverse, so every repeat
    // changes the same number of members of a group of the same size. The large group and the
    // baseline group take turns, as the reads do.
    interface Work {
      outbox: number;
      distinctUsers: number;
      auditBytes: number;
      added: number;
      removed: number;
    }
    const patcher = (group: string, members: string[], extra: string[], query: string, shape: 'entra' | 'okta') => {
      let current = members.slice(0, DELTA);
      let spare = extra;
      const ms: number[] = [];
      const work: Work = { outbox: 0, distinctUsers: 0, auditBytes: 0, added: 0, removed: 0 };
      const out = { ms, bytes: 0, work };
      return {
        out,
        async step(timed: boolean) {
          const since = await outboxHead(db);
          let r;
          if (shape === 'entra') {
            r = await scim.call('PATCH', `/Groups/${group}${query}`, entraPatch(spare, current));
          } else {
            // Okta sends additions and removals as separate requests; both count.
            const a = await scim.call('PATCH', `/Groups/${group}${query}`, entraPatch(spare, []));
            const b = await scim.call('PATCH', `/Groups/${group}${query}`, oktaRemove(current));
            r = { ms: a.ms + b.ms, bytes: b.bytes };
          }
          if (timed) ms.push(r.ms);
          out.bytes = r.bytes;
          out.work = await workCaused(db, since, group);
          [current, spare] = [spare, current];
        },
      };
    };
    const patchBench = async (query: string, shape: 'entra' | 'okta') => {
      const big = patcher(large, largeMembers, largeExtra, query, shape);
      const base = patcher(medium, mediumMembers, mediumExtra, query, shape);
      for (let i = 0; i <= REPEAT; i++) {
        await big.step(i > 0); // the first of each is the warm-up
        await base.step(i > 0);
      }
      const result = (o: typeof big.out) => ({ ...timing(o.ms), bytes: o.bytes, work: o.work });
      return [result(big.out), result(base.out)] as const;
    };

    log('');
    // Every write below adds DELTA members and removes DELTA: the work it causes must be that delta.
    let notDelta = 0;
    const describeWork = (w: Work, audited: { added: number; removed: number } = { added: DELTA, removed: DELTA }) => {
      const ok = w.outbox === 2 * DELTA && w.distinctUsers === 2 * DELTA && w.added === audited.added && w.removed === audited.removed;
      if (!ok) notDelta++;
      return (
        `   provisioning: ${count(w.outbox)} user changes planned (${count(w.distinctUsers)} users), audit event +${count(w.added)}/-${count(w.removed)} ` +
        `members, ${fmt(w.auditBytes / 1024)} KiB: ${ok ? 'the delta' : `NOT the delta of ${count(2 * DELTA)} users`}`
      );
    };
    for (const [label, query] of [
      ['excludedAttributes=members', '?excludedAttributes=members'],
      ['as sent by IdPs, whole group in the answer', ''],
    ] as const) {
      const [big, base] = await patchBench(query, 'entra');
      row(`PATCH +${count(DELTA)} -${count(DELTA)}, Entra shape, ${label}`, big, base, `   answer ${fmt(big.bytes / 1024)} KiB`);
      log(describeWork(big.work));
    }
    {
      const query = '?excludedAttributes=members';
      const [big, base] = await patchBench(query, 'okta');
      row(`PATCH +${count(DELTA)} then ${count(DELTA)} × remove members[value eq], Okta`, big, base);
      // The audit event read is the second request's: the removals only.
      log(describeWork(big.work, { added: 0, removed: DELTA }));
    }

    log('');
    const [full, fullMedium] = await scim.paired('GET', [`/Groups/${large}`, `/Groups/${medium}`], Math.min(REPEAT, 5));
    row('GET /Groups/{id} with all members (complete answer)', full, fullMedium, `   answer ${fmt(full.bytes / 1024 / 1024, 2)} MiB`);

    // PUT: the whole member list, differing from the stored one in DELTA members.
    const stored = (await scim.call('GET', `/Groups/${large}`)).json;
    const storedIds = (stored.members as Array<{ value: string }>).map((m) => m.value);
    const storedSet = new Set(storedIds);
    const outside = [...largeMembers, ...largeExtra].filter((id) => !storedSet.has(id)).slice(0, DELTA);
    const putIds = [...storedIds.slice(DELTA), ...outside];
    const since = await outboxHead(db);
    const put = await scim.call('PUT', `/Groups/${large}?excludedAttributes=members`, { schemas: [GROUP_SCHEMA], displayName: 'Large group', members: memberList(putIds) });
    const putWork = await workCaused(db, since, large);
    log(`${'PUT /Groups/{id}, all members, ' + count(DELTA) + ' swapped'.padEnd(20)}`.padEnd(78) + ` ${fmt(put.ms).padStart(9)} ms`);
    log(describeWork(putWork));
    if (notDelta > 0) log(`\n${notDelta} write(s) caused work beyond their delta`);
    return notDelta > 0 ? 1 : 0;
  } finally {
    for (const c of cleanups) await c().catch((err: unknown) => process.stderr.write(`cleanup failed: ${String(err)}\n`));
  }
}

try {
  process.exit(await main());
} catch (err) {
  process.stderr.write(`bench:groups failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
}
