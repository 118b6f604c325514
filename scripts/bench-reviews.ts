/**
 * `npm run bench:reviews`: an access review of BENCH_REVIEW_ITEMS (default 10,000) user ×
 * entitlement holdings, on PostgreSQL (a scratch database on BENCH_DATABASE_URL). The directory is
 * seeded in bulk (users with managers, connectors, entitlements, grants); then the steps the
 * `certification` workflow's activities run are timed through the same core functions: generating
 * the items, resolving every item's reviewer (the user's manager), the auditors' report, and the
 * due date's policy settling every item. Prints each step's time, the peak resident memory and
 * the peak JavaScript heap of the process, as JSON on stdout.
 */
import { migrate } from '../core/db/migrate.js';
import { connectPool } from '../core/db/pool.js';
import { applyDueDate, createCampaign, generateItems, reportItems, resolveCampaign, resolveReviewers } from '../core/access/reviews.js';
import { createBenchDatabase } from './bench-common.js';

const ITEMS = Number(process.env.BENCH_REVIEW_ITEMS ?? 10_000);
const ENTITLEMENTS = 5;
const USERS = Math.ceil(ITEMS / ENTITLEMENTS);
const MANAGERS = Math.max(1, Math.ceil(USERS / 20));
const log = (line: string) => process.stderr.write(`${line}\n`);

let peakRss = 0;
let peakHeap = 0;
const sample = () => {
  const m = process.memoryUsage();
  peakRss = Math.max(peakRss, m.rss);
  peakHeap = Math.max(peakHeap, m.heapUsed);
};
const sampler = setInterval(sample, 20);

async function timed<T>(label: string, fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  const value = await fn();
  const ms = Math.round(performance.now() - start);
  sample();
  log(`${label}: ${ms} ms`);
  return { value, ms };
}

const bench = await createBenchDatabase('scimgw_bench_reviews');
try {
  await migrate(bench.url);
  const db = await connectPool(bench.url, 5);
  try {
    log(`seeding ${USERS} users (${MANAGERS} managers) × ${ENTITLEMENTS} entitlements = ${USERS * ENTITLEMENTS} holdings`);
    await db.query(`INSERT INTO connectors (id, type, config) VALUES ('bench', 'scim', '{}')`);
    await db.query(
      `INSERT INTO entitlements (id, connector_id, name, target) SELECT gen_random_uuid(), 'bench', 'ent-' || n, jsonb_build_object('group', 'g' || n) FROM generate_series(1, $1) n`,
      [ENTITLEMENTS],
    );
    await db.query(
      `INSERT INTO users (id, user_name, resource) SELECT gen_random_uuid(), 'manager' || n || '@example.com', jsonb_build_object('userName', 'manager' || n || '@example.com') FROM generate_series(1, $1) n`,
      [MANAGERS],
    );
    await db.query(
      `WITH m AS (SELECT id, row_number() OVER (ORDER BY user_name) AS k FROM users)
       INSERT INTO users (id, user_name, resource)
       SELECT gen_random_uuid(), 'user' || n || '@example.com',
              jsonb_build_object('userName', 'user' || n || '@example.com',
                                 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User', jsonb_build_object('manager', jsonb_build_object('value', m.id::text)))
         FROM generate_series(1, $1) n JOIN m ON m.k = (n % $2) + 1`,
      [USERS, MANAGERS],
    );
    await db.query(
      `INSERT INTO grants (id, user_id, entitlement_id, reason)
       SELECT gen_random_uuid(), u.id, e.id, 'manual' FROM users u CROSS JOIN entitlements e WHERE u.user_name LIKE 'user%' ORDER BY u.user_name, e.name LIMIT $1`,
      [ITEMS],
    );
    const spec = await resolveCampaign(db, { name: 'bench', scope: { connectors: ['bench'] }, reviewers: { manager: 1 }, durationSeconds: 86_400, onUnreviewed: { action: 'keep' } });
    const campaignId = await createCampaign(db, spec, 'bench');
    sample();
    const baseline = { rss: process.memoryUsage().rss, heap: process.memoryUsage().heapUsed };
    peakRss = baseline.rss;
    peakHeap = baseline.heap;
    const generated = await timed('generate items', () => generateItems(db, campaignId));
    const resolved = await timed('resolve reviewers (manager)', () => resolveReviewers(db, campaignId));
    const report = await timed('report (all items, pages of 1,000)', async () => {
      let n = 0;
      for (let offset = 0; ; offset += 1000) {
        const page = await reportItems(db, campaignId, 1000, offset);
        n += page.length;
        if (page.length < 1000) return n;
      }
    });
    const peakAfterGeneration = { rss: peakRss, heap: peakHeap };
    await db.query(`UPDATE review_campaigns SET status = 'open', generated_at = now() WHERE id = $1`, [campaignId]);
    const due = await timed('due date: keep every item (100 per transaction)', () => applyDueDate(db, campaignId));
    clearInterval(sampler);
    const mib = (b: number) => Math.round((b / 1024 / 1024) * 10) / 10;
    process.stdout.write(
      `${JSON.stringify(
        {
          items: generated.value,
          reviewersResolved: resolved.value,
          generateMs: generated.ms,
          resolveReviewersMs: resolved.ms,
          generationTotalMs: generated.ms + resolved.ms,
          reportItems: report.value,
          reportMs: report.ms,
          dueDateItems: due.value.kept + due.value.revoked,
          dueDateMs: due.ms,
          memoryMiB: {
            baselineRss: mib(baseline.rss),
            peakRssDuringGeneration: mib(peakAfterGeneration.rss),
            peakHeapDuringGeneration: mib(peakAfterGeneration.heap),
            peakRss: mib(peakRss),
            peakHeap: mib(peakHeap),
          },
        },
        null,
        2,
      )}\n`,
    );
  } finally {
    await db.end();
  }
} finally {
  clearInterval(sampler);
  await bench.drop();
}
