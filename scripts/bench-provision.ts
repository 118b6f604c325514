/**
 * `npm run bench:provision`: the provisioning engine under load, on the real Temporal dev server and
 * PostgreSQL.
 *
 * 1. A joiner wave: BENCH_USERS (default 10,000) users created over SCIM and added to a group whose
 *    rule entitles them on two connectors (`webhook`, each on its own HTTPS fake receiver that
 *    answers at once), timed until every account and membership is present in both targets, with
 *    the outbox's backlog, Temporal history sizes and memory on the way. Baseline in the same run:
 *    the same connectors called directly (create + grant on both), no gateway, outbox, Temporal or
 *    database in between.
 * 2. A re-org: half of those users move to another group at once (revoke one entitlement, grant
 *    another, on both connectors), timed the same way; then the targets are checked to hold exactly
 *    the expected memberships, with no account created twice.
 * 3. Reconciliation of BENCH_RECONCILE_ACCOUNTS (default 100,000) accounts and memberships on an
 *    in-memory target: time, peak memory growth of the process (which hosts worker and target) and
 *    target API calls. Baseline: reading the same pages directly from the connector.
 *
 * Development tool: it uses the test fakes, so it needs the dev dependencies.
 */
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { NativeConnection, Runtime, DefaultLogger } from '@temporalio/worker';
import { Client, Connection } from '@temporalio/client';
import pino from 'pino';
import { buildApp, loggerOptions } from '../gateway/app.js';
import { createToken } from '../core/auth/tokens.js';
import { loadGatewayConfig } from '../core/config.js';
import { migrate } from '../core/db/migrate.js';
import { connectPool, type Db } from '../core/db/pool.js';
import { TemporalAccess } from '../gateway/temporal.js';
import { instantiate, loadConnector } from '../connectors/index.js';
import { collectPages } from '@scim-gateway/connector-sdk/kit';
import { createSecretResolver } from '@scim-gateway/connector-sdk';
import { createWorker } from '../workflows/worker.js';
import { ensureSearchAttributes, startReconcileRun } from '../workflows/client.js';
import { startTemporalDevServer } from './dev-server.js';
import { startFakeReceiver, type FakeReceiver } from '../test/connectors/webhook/fake-receiver.js';
import { memoryTarget } from '../test/fixtures/memory-connector.js';
import { createBenchDatabase, inParallel } from './bench-common.js';

const USERS = Number(process.env.BENCH_USERS ?? 10_000);
/** Members added (or removed) per SCIM PATCH, as an identity provider batches them. */
const MEMBERS_PER_PATCH = 100;
const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
const RECONCILE_ACCOUNTS = Number(process.env.BENCH_RECONCILE_ACCOUNTS ?? 100_000);
const CONCURRENCY = 20;
const MEMORY_PLUGIN = fileURLToPath(new URL('../test/fixtures/memory-connector.ts', import.meta.url));
const log = (line: string) => process.stderr.write(`${line}\n`);
const fmt = (n: number, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });

/** How many accounts at a receiver hold an entitlement. */
function held(receiver: FakeReceiver, entitlement: string): number {
  return receiver.grants.get(entitlement)?.size ?? 0;
}

/** Outbox rows not yet handed to Temporal. */
async function outboxBacklog(db: Db): Promise<number> {
  const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM outbox WHERE delivered_at IS NULL');
  return rows[0]!.n;
}

/** The process's peak RSS from now until stop(), sampled every 50 ms. */
function sampleMemory(): { stop(): { before: number; peak: number } } {
  const before = process.memoryUsage().rss;
  let peak = before;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50);
  return {
    stop() {
      clearInterval(timer);
      return { before, peak };
    },
  };
}

/**
 * Polls until `count()` reaches `goal` (the fakes' state, not the gateway's records), noting when
 * the outbox emptied on the way and printing progress every 10 s.
 */
async function waitUntil(db: Db, start: number, what: string, count: () => number, goal: number): Promise<{ seconds: number; outboxDrainedAt?: number; backlogPeak: number }> {
  let outboxDrainedAt: number | undefined;
  let backlogPeak = 0;
  let lastReport = Date.now();
  for (;;) {
    const backlog = await outboxBacklog(db);
    backlogPeak = Math.max(backlogPeak, backlog);
    if (backlog === 0 && outboxDrainedAt === undefined) outboxDrainedAt = (Date.now() - start) / 1000;
    if (backlog > 0) outboxDrainedAt = undefined;
    const n = count();
    if (n >= goal) return { seconds: (Date.now() - start) / 1000, ...(outboxDrainedAt !== undefined ? { outboxDrainedAt } : {}), backlogPeak };
    if (Date.now() - start > 30 * 60_000) throw new Error(`${what}: only ${n} of ${goal} changes in the targets after 30 minutes`);
    if (Date.now() - lastReport > 10_000) {
      log(`  ${what}: ${fmt(n)} of ${fmt(goal)} changes in the targets, outbox backlog ${fmt(backlog)}, ${fmt((Date.now() - start) / 1000)} s`);
      lastReport = Date.now();
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** History length and size of some workflows, as Temporal stores them. */
async function historySizes(client: Client, workflowIds: string[]): Promise<{ events: number; bytes: number; n: number }> {
  let events = 0;
  let bytes = 0;
  let n = 0;
  for (const id of workflowIds) {
    const d = await client.workflow.getHandle(id).describe().catch(() => undefined);
    if (!d) continue;
    events += d.historyLength;
    bytes += d.historySize ?? 0;
    n++;
  }
  return { events: n ? events / n : 0, bytes: n ? bytes / n : 0, n };
}

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const database = await createBenchDatabase('bench_provision');
  const dbUrl = database.url;
  const cleanups: Array<() => Promise<unknown>> = [() => database.drop()];
  try {
    await migrate(dbUrl);
    const db = await connectPool(dbUrl, 20);
    cleanups.unshift(() => db.end());
    const server = await startTemporalDevServer({ headless: true });
    cleanups.unshift(() => server.stop());
    // Two targets that answer as fast as they can: HTTPS receivers checking every signature.
    const wiki = await startFakeReceiver({ secret: 'bench-webhook-secret-0123456789', pageSize: 500 });
    cleanups.unshift(() => wiki.close());
    const crm = await startFakeReceiver({ secret: 'bench-webhook-secret-0123456789', pageSize: 500 });
    cleanups.unshift(() => crm.close());
    process.env.BENCH_HOOK_SECRET = 'bench-webhook-secret-0123456789';

    const wikiConfig = { url: wiki.url, secret: 'env:BENCH_HOOK_SECRET', caFile: wiki.caFile };
    const crmConfig = { url: crm.url, secret: 'env:BENCH_HOOK_SECRET', caFile: crm.caFile };
    const taskQueue = 'bench-provision';
    const config = {
      // As deployed: the defaults of every setting (outbox polling and batches, the userSync debounce
      // and idle time), logs at info (written to /dev/null, so formatting them is paid, a terminal not).
      ...loadGatewayConfig({ LOG_LEVEL: 'info' }),
      databaseUrl: dbUrl,
      temporalAddress: server.address,
      taskQueue,
    };
    const app = await buildApp({ config, db: await connectPool(dbUrl, 10), temporal: new TemporalAccess(server.address, 'default'), logger: { ...(loggerOptions('info') as Record<string, unknown>), stream: pino.destination('/dev/null') } });
    await app.ready();
    cleanups.unshift(() => app.close());
    const { token } = await createToken(db, 'bench', ['scim:read', 'scim:write', 'admin']);
    const call = async (method: 'GET' | 'POST' | 'PUT' | 'PATCH', path: string, payload?: unknown, expect = 200) => {
      const res = await app.inject({ method, url: path, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, ...(payload !== undefined ? { payload: payload as object } : {}) });
      if (res.statusCode !== expect) throw new Error(`${method} ${path}: ${res.statusCode} ${res.body}`);
      return res.json<Record<string, unknown>>();
    };

    const connection = await NativeConnection.connect({ address: server.address });
    const worker = await createWorker({ connection, namespace: 'default', taskQueue, db: await connectPool(dbUrl, 20) });
    const running = worker.run();
    cleanups.unshift(async () => {
      worker.shutdown();
      await running;
      await connection.close();
    });
    const clientConn = await Connection.connect({ address: server.address });
    await ensureSearchAttributes(clientConn, 'default');
    const client = new Client({ connection: clientConn });
    cleanups.unshift(() => clientConn.close());

    // ------------------------------------------------------------- 1. a joiner wave, then a re-org
    await call('PUT', '/api/connectors/wiki', { id: 'wiki', type: 'webhook', config: wikiConfig });
    await call('PUT', '/api/connectors/crm', { id: 'crm', type: 'webhook', config: crmConfig });
    for (const team of ['eng', 'sales']) {
      for (const c of ['wiki', 'crm']) await call('POST', '/api/entitlements', { connectorId: c, name: team, target: { name: team } }, 201);
    }
    const eng = await call('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Engineering' }, 201);
    const sales = await call('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Sales' }, 201);
    await call('POST', '/api/rules', { name: 'engineering', group: 'Engineering', entitlements: ['wiki/eng', 'crm/eng'] }, 201);
    await call('POST', '/api/rules', { name: 'sales', group: 'Sales', entitlements: ['wiki/sales', 'crm/sales'] }, 201);

    const rss = sampleMemory();
    log(`joiner wave: ${fmt(USERS)} users created over SCIM and added to Engineering (wiki/eng + crm/eng)`);
    const waveStart = Date.now();
    const ids: string[] = [];
    await inParallel(Array.from({ length: USERS }, (_, i) => i), CONCURRENCY, async (i) => {
      const u = await call('POST', '/scim/v2/Users', { schemas: [USER], userName: `bench.${i}@example.com`, displayName: `Bench ${i}` }, 201);
      ids.push(String(u.id));
    });
    const createSeconds = (Date.now() - waveStart) / 1000;
    for (let i = 0; i < ids.length; i += MEMBERS_PER_PATCH) {
      await call('PATCH', `/scim/v2/Groups/${String(eng.id)}`, { schemas: [PATCH], Operations: [{ op: 'add', path: 'members', value: ids.slice(i, i + MEMBERS_PER_PATCH).map((value) => ({ value })) }] });
    }
    const acceptedSeconds = (Date.now() - waveStart) / 1000;
    const outboxAtAccept = await outboxBacklog(db);
    const wave = await waitUntil(db, waveStart, 'joiner wave', () => held(wiki, 'eng') + held(crm, 'eng'), 2 * USERS);
    const waveSeconds = wave.seconds;
    const waveRss = rss.stop();

    // Each user ran one userSync workflow; its history is what Temporal stored for that user.
    const histories = await historySizes(client, ids.slice(0, 50).map((id) => `user-sync:${id}`));

    const moved = ids.slice(0, Math.floor(USERS / 2));
    log(`re-org: ${fmt(moved.length)} users move from Engineering to Sales`);
    const reorgRss = sampleMemory();
    const reorgStart = Date.now();
    for (let i = 0; i < moved.length; i += MEMBERS_PER_PATCH) {
      const chunk = moved.slice(i, i + MEMBERS_PER_PATCH);
      await call('PATCH', `/scim/v2/Groups/${String(eng.id)}`, { schemas: [PATCH], Operations: chunk.map((id) => ({ op: 'remove', path: `members[value eq "${id}"]` })) });
      await call('PATCH', `/scim/v2/Groups/${String(sales.id)}`, { schemas: [PATCH], Operations: [{ op: 'add', path: 'members', value: chunk.map((value) => ({ value })) }] });
    }
    const reorg = await waitUntil(db, reorgStart, 're-org', () => held(wiki, 'sales') + held(crm, 'sales') + (2 * USERS - held(wiki, 'eng') - held(crm, 'eng')), 4 * moved.length);
    const reorgPeak = reorgRss.stop();
    const exact =
      held(wiki, 'eng') === USERS - moved.length && held(crm, 'eng') === USERS - moved.length && held(wiki, 'sales') === moved.length && held(crm, 'sales') === moved.length && wiki.accounts.size === USERS && crm.accounts.size === USERS;
    const accountsHeld = [wiki.accounts.size, crm.accounts.size];
    const duplicates = wiki.deliveries.filter((d) => d.operation === 'createAccount').length - USERS + (crm.deliveries.filter((d) => d.operation === 'createAccount').length - USERS);

    // The baseline needs the machine to itself: every userSync workflow first ends its idle wait.
    log('waiting for the userSync workflows to complete before the baseline');
    const quietBy = Date.now() + 180_000;
    while (Date.now() < quietBy && (await client.workflow.count(`TaskQueue = "${taskQueue}" AND ExecutionStatus = "Running"`)).count > 0) {
      await new Promise((r) => setTimeout(r, 1000));
    }
    log('baseline: the same two connectors called directly');
    const secret = createSecretResolver(process.env);
    const direct = [instantiate(await loadConnector('webhook'), wikiConfig, { secret }), instantiate(await loadConnector('webhook'), crmConfig, { secret })];
    const directUsers = Math.min(USERS, 2000);
    const baseStart = Date.now();
    await inParallel(Array.from({ length: directUsers }, (_, i) => i), CONCURRENCY, async (i) => {
      const input = { userId: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, userName: `direct.${i}@example.com`, active: true, attributes: {} };
      await Promise.all(
        direct.map(async (c) => {
          const a = await c.createAccount!(input);
          await c.grant!(a.remoteId!, { id: 'x', target: { name: 'direct' } });
        }),
      );
    });
    const directRate = directUsers / ((Date.now() - baseStart) / 1000);

    // ------------------------------------------------------------- 2. reconciliation at scale
    log(`seeding ${fmt(RECONCILE_ACCOUNTS)} accounts for reconciliation`);
    const mem = memoryTarget('bench-big');
    await call('PUT', '/api/connectors/big', { id: 'big', type: MEMORY_PLUGIN, config: { namespace: 'bench-big', pageSize: 1000 } });
    const ent = await call('POST', '/api/entitlements', { connectorId: 'big', name: 'members', target: { group: 'members' }, membership: 'authoritative' }, 201);
    const { rows: seeded } = await db.query<{ id: string }>(
      `WITH u AS (
         INSERT INTO users (id, user_name, resource)
         SELECT gen_random_uuid(), 'big.' || i || '@example.com', jsonb_build_object('schemas', jsonb_build_array('urn:ietf:params:scim:schemas:core:2.0:User'), 'userName', 'big.' || i || '@example.com')
           FROM generate_series(1, $1) i RETURNING id),
       a AS (INSERT INTO accounts (user_id, connector_id, remote_id, state) SELECT id, 'big', 'acct-' || id, 'active' FROM u),
       g AS (INSERT INTO account_grants (user_id, entitlement_id) SELECT id, $2 FROM u)
       SELECT id FROM u`,
      [RECONCILE_ACCOUNTS, ent.id],
    );
    const members = new Set<string>();
    for (const r of seeded) {
      mem.accounts.set(`acct-${r.id}`, { userName: r.id, active: true });
      members.add(`acct-${r.id}`);
    }
    mem.groups.set('members', members);
    await db.query('VACUUM ANALYZE accounts, account_grants, users');
    const big = instantiate(await loadConnector(MEMORY_PLUGIN), { namespace: 'bench-big', pageSize: 1000 });
    const listStart = Date.now();
    const listed = (await collectPages((c) => big.listAccounts!(c))).length + (await collectPages((c) => big.listGrants!({ id: String(ent.id), target: { group: 'members' } }, c))).length;
    const directListSeconds = (Date.now() - listStart) / 1000;

    global.gc?.();
    const rssBefore = process.memoryUsage().rss;
    let rssPeak = rssBefore;
    const sampler = setInterval(() => {
      rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
    }, 50);
    const recStart = Date.now();
    const handle = await startReconcileRun(client, taskQueue, 'big', true);
    const summary = await handle!.result();
    const recSeconds = (Date.now() - recStart) / 1000;
    clearInterval(sampler);

    const cpu = cpus()[0]?.model ?? 'unknown CPU';
    const { rows: v } = await db.query<{ v: string }>("SELECT current_setting('server_version') AS v");
    const lines = [
      '',
      'Provisioning benchmark',
      `machine:  ${cpu}, ${cpus().length} cores, ${fmt(totalmem() / 2 ** 30, 1)} GiB; Node ${process.version}, PostgreSQL ${v[0]!.v}; Temporal dev server (SQLite)`,
      '',
      `1. Joiner wave: ${fmt(USERS)} users created over SCIM (${CONCURRENCY} at a time) and added to Engineering (${MEMBERS_PER_PATCH} per PATCH);`,
      '   its rule grants wiki/eng and crm/eng: two webhook connectors on two HTTPS receivers (fakes answering at once)',
      `   accepted by the gateway: ${fmt(acceptedSeconds, 1)} s (${fmt(USERS / createSeconds)} creates/s); outbox backlog then ${fmt(outboxAtAccept)}, peak ${fmt(wave.backlogPeak)}, empty at ${wave.outboxDrainedAt !== undefined ? `${fmt(wave.outboxDrainedAt, 1)} s` : 'never during the wave'}`,
      `   end to end:       ${fmt(USERS / waveSeconds, 1)} users/s (last user's accounts and memberships present at ${fmt(waveSeconds, 1)} s)`,
      `   direct baseline:  ${fmt(directRate, 1)} users/s (${fmt(directUsers)} users: both connectors called in-process, create + grant, ${CONCURRENCY} at a time)`,
      `   ratio:            ${fmt((USERS / waveSeconds / directRate) * 100, 1)}% of the direct rate`,
      `   Temporal history: ${fmt(histories.events, 1)} events, ${fmt(histories.bytes / 1024, 1)} KiB per userSync workflow (mean of ${histories.n})`,
      `   memory:           peak RSS ${fmt(waveRss.peak / 2 ** 20)} MiB (from ${fmt(waveRss.before / 2 ** 20)} MiB; gateway, worker and both targets in one process)`,
      `2. Re-org: ${fmt(moved.length)} users move from Engineering to Sales (${MEMBERS_PER_PATCH} per PATCH on each group): each loses eng and gains sales on both connectors`,
      `   end to end:       ${fmt(moved.length / reorg.seconds, 1)} users/s (${fmt(reorg.seconds, 1)} s until the last change is in the targets); peak RSS ${fmt(reorgPeak.peak / 2 ** 20)} MiB`,
      `   targets exact:    ${exact ? 'yes' : 'NO'} (eng ${held(wiki, 'eng')}/${held(crm, 'eng')}, sales ${held(wiki, 'sales')}/${held(crm, 'sales')}, accounts ${accountsHeld.join('/')}); accounts created twice: ${duplicates}`,
      '',
      `3. Reconciliation (dry run) of ${fmt(RECONCILE_ACCOUNTS)} accounts and ${fmt(RECONCILE_ACCOUNTS)} memberships (page size 1,000)`,
      `   time:             ${fmt(recSeconds, 1)} s`,
      `   target API calls: ${fmt(summary.apiCalls)} (accounts seen ${fmt(summary.accountsSeen)}, memberships seen ${fmt(summary.grantsSeen)}, drift ${summary.drift.reduce((a, d) => a + d.count, 0)})`,
      `   peak memory:      +${fmt((rssPeak - rssBefore) / 2 ** 20, 1)} MiB RSS over the process's ${fmt(rssBefore / 2 ** 20)} MiB (worker, gateway and target in one process)`,
      `   direct baseline:  ${fmt(directListSeconds, 1)} s to read the same ${fmt(listed)} items straight from the connector`,
      `   ratio:            ${fmt(recSeconds / directListSeconds, 1)}× the direct read`,
      '',
    ];
    process.stdout.write(lines.join('\n'));
  } finally {
    for (const fn of cleanups) await fn().catch((err: unknown) => log(`cleanup: ${String(err)}`));
  }
}

await main();
process.exit(0);
