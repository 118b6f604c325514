/**
 * `npm run bench:provision`: the provisioning engine under load, on the real Temporal dev server and
 * PostgreSQL.
 *
 * 1. Throughput: users per second from SCIM POST (plus the group membership that entitles them) until
 *    both connectors have applied them: a `webhook` connector on its HTTPS fake receiver and a `scim`
 *    connector on a SCIMMY server. Baseline in the same run: the same connectors called directly
 *    (create + grant on both), with no gateway, outbox, Temporal or database in between.
 * 2. Reconciliation of BENCH_RECONCILE_ACCOUNTS (default 100,000) accounts and memberships on an
 *    in-memory target: time, peak memory growth of the process (which hosts worker and target) and
 *    target API calls. Baseline: reading the same pages directly from the connector.
 *
 * Development tool: it uses the test fakes, so it needs the dev dependencies.
 */
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { NativeConnection, Runtime, DefaultLogger } from '@temporalio/worker';
import { Client, Connection } from '@temporalio/client';
import { buildApp } from '../gateway/app.js';
import { createToken } from '../core/auth/tokens.js';
import { loadGatewayConfig } from '../core/config.js';
import { migrate } from '../core/db/migrate.js';
import { connectPool } from '../core/db/pool.js';
import { TemporalAccess } from '../gateway/temporal.js';
import { instantiate, loadConnector } from '../connectors/index.js';
import { collectPages } from '@scim-gateway/connector-sdk/kit';
import { createSecretResolver } from '@scim-gateway/connector-sdk';
import { createWorker } from '../workflows/worker.js';
import { ensureSearchAttributes, startReconcileRun } from '../workflows/client.js';
import { startTemporalDevServer } from './dev-server.js';
import { startFakeReceiver } from '../test/connectors/webhook/fake-receiver.js';
import { startScimmyServer } from '../test/connectors/scim/scimmy-server.js';
import { memoryTarget } from '../test/fixtures/memory-connector.js';
import { createBenchDatabase, inParallel } from './bench-common.js';

const USERS = Number(process.env.BENCH_USERS ?? 300);
const RECONCILE_ACCOUNTS = Number(process.env.BENCH_RECONCILE_ACCOUNTS ?? 100_000);
const CONCURRENCY = 20;
const MEMORY_PLUGIN = fileURLToPath(new URL('../test/fixtures/memory-connector.ts', import.meta.url));
const log = (line: string) => process.stderr.write(`${line}\n`);
const fmt = (n: number, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });

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
    const receiver = await startFakeReceiver({ secret: 'bench-webhook-secret-0123456789', pageSize: 500 });
    cleanups.unshift(() => receiver.close());
    const scimTarget = await startScimmyServer({ token: 'bench-scim-target-token' });
    cleanups.unshift(() => scimTarget.close());
    process.env.BENCH_HOOK_SECRET = 'bench-webhook-secret-0123456789';
    process.env.BENCH_SCIM_TOKEN = 'bench-scim-target-token';

    const taskQueue = 'bench-provision';
    const config = {
      ...loadGatewayConfig({ LOG_LEVEL: 'silent', OUTBOX_POLL_MS: '50', USER_SYNC_DEBOUNCE_MS: '0', USER_SYNC_IDLE_MS: '5000', OUTBOX_BATCH_SIZE: '500' }),
      databaseUrl: dbUrl,
      temporalAddress: server.address,
      taskQueue,
    };
    const app = await buildApp({ config, db: await connectPool(dbUrl, 10), temporal: new TemporalAccess(server.address, 'default'), logger: false });
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

    // ------------------------------------------------------------- 1. end-to-end throughput
    const hooksConfig = { url: receiver.url, secret: 'env:BENCH_HOOK_SECRET', caFile: receiver.caFile };
    const scimConfig = { baseUrl: scimTarget.baseUrl, token: 'env:BENCH_SCIM_TOKEN' };
    await call('PUT', '/api/connectors/hooks', { id: 'hooks', type: 'webhook', config: hooksConfig });
    await call('PUT', '/api/connectors/target', { id: 'target', type: 'scim', config: scimConfig });
    await call('POST', '/api/entitlements', { connectorId: 'hooks', name: 'all', target: { name: 'all' } }, 201);
    await call('POST', '/api/entitlements', { connectorId: 'target', name: 'all', target: { group: 'All', create: true } }, 201);
    const group = await call('POST', '/scim/v2/Groups', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'], displayName: 'All' }, 201);
    await call('POST', '/api/rules', { name: 'all', group: 'All', entitlements: ['hooks/all', 'target/all'] }, 201);

    log(`provisioning ${USERS} users through SCIM to two connectors`);
    const started = Date.now();
    const ids: string[] = [];
    await inParallel(Array.from({ length: USERS }, (_, i) => i), CONCURRENCY, async (i) => {
      const u = await call('POST', '/scim/v2/Users', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName: `bench.${i}@example.com`, displayName: `Bench ${i}` }, 201);
      ids.push(String(u.id));
    });
    for (let i = 0; i < ids.length; i += 100) {
      await call('PATCH', `/scim/v2/Groups/${String(group.id)}`, {
        schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'],
        Operations: [{ op: 'add', path: 'members', value: ids.slice(i, i + 100).map((value) => ({ value })) }],
      });
    }
    for (;;) {
      const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM account_grants');
      if (rows[0]!.n >= 2 * USERS) break;
      if (Date.now() - started > 15 * 60_000) throw new Error(`only ${rows[0]!.n} of ${2 * USERS} memberships applied after 15 minutes`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const e2eSeconds = (Date.now() - started) / 1000;
    const e2eRate = USERS / e2eSeconds;

    log('baseline: the same connectors called directly');
    const secret = createSecretResolver(process.env);
    const hooks = instantiate(await loadConnector('webhook'), hooksConfig, { secret });
    const target = instantiate(await loadConnector('scim'), scimConfig, { secret });
    const baseStart = Date.now();
    await inParallel(Array.from({ length: USERS }, (_, i) => i), CONCURRENCY, async (i) => {
      const input = { userId: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, userName: `direct.${i}@example.com`, active: true, attributes: {} };
      const a = await hooks.createAccount!(input);
      await hooks.grant!(a.remoteId!, { id: 'x', target: { name: 'direct' } });
      const b = await target.createAccount!(input);
      await target.grant!(b.remoteId!, { id: 'y', target: { group: 'All', create: true } });
    });
    const directRate = USERS / ((Date.now() - baseStart) / 1000);

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
      `1. SCIM POST + group membership → applied by 2 connectors (webhook over HTTPS, scim to SCIMMY), ${USERS} users`,
      `   end to end:       ${fmt(e2eRate, 1)} users/s (${fmt(e2eSeconds, 1)} s)`,
      `   direct baseline:  ${fmt(directRate, 1)} users/s (connectors called in-process, no gateway/outbox/Temporal)`,
      `   ratio:            ${fmt((e2eRate / directRate) * 100, 1)}% of the direct rate`,
      '',
      `2. Reconciliation (dry run) of ${fmt(RECONCILE_ACCOUNTS)} accounts and ${fmt(RECONCILE_ACCOUNTS)} memberships (page size 1,000)`,
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
