/**
 * `npm run bench:access`: access requests under load, on the real Temporal dev server and
 * PostgreSQL. BENCH_ACCESS_REQUESTS (default 1,000) users each request the same entitlement through
 * the API (as a front end acting as them); once every request awaits its approver, BENCH_APPROVERS
 * (default 50) approvers decide them concurrently through the API. Prints the decision API's
 * latency (p50, p99) and the time from an approval's answer to the access being present in the
 * target (an in-memory connector), p50 and p99.
 *
 * Baselines measured in the same run, on the same stack and concurrency:
 *  - reading a request (`GET /api/requests/{id}` as the approver): HTTP, authentication and one
 *    PostgreSQL read, everything a decision does except the workflow's Update;
 *  - a direct grant (`POST /api/grants` for as many other users): the same provisioning pipeline
 *    (grant, outbox, userSync, connector) without a request workflow in front of it;
 *  - the Temporal floor: as many Updates to the smallest workflow a decision could be (a handler
 *    that records the value with a local activity, scripts/bench-access-workflow.ts), one workflow
 *    per caller, through the same client, dev server and worker process.
 *
 * Development tool: it uses the test fakes, so it needs the dev dependencies.
 */
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { NativeConnection, Runtime, DefaultLogger, Worker } from '@temporalio/worker';
import { Client, Connection } from '@temporalio/client';
import { createWriteStream, readdirSync, readFileSync } from 'node:fs';
import { buildApp, loggerOptions } from '../gateway/app.js';
import { createToken } from '../core/auth/tokens.js';
import { loadGatewayConfig } from '../core/config.js';
import { migrate } from '../core/db/migrate.js';
import { connectPool } from '../core/db/pool.js';
import { TemporalAccess } from '../gateway/temporal.js';
import { createWorker } from '../workflows/worker.js';
import { ensureSearchAttributes } from '../workflows/client.js';
import { startTemporalDevServer } from './dev-server.js';
import { memoryTarget } from '../test/fixtures/memory-connector.js';
import { createBenchDatabase, inParallel } from './bench-common.js';

const REQUESTS = Number(process.env.BENCH_ACCESS_REQUESTS ?? 1000);
const APPROVERS = Number(process.env.BENCH_APPROVERS ?? 50);
/** `BENCH_ACCESS_BASELINES=0` skips the three baselines (a quicker look at the request path alone). */
const BASELINES = process.env.BENCH_ACCESS_BASELINES !== '0';
/** `BENCH_ACCESS_TRACE=1` prints where the median request's time went: its workflow's and its userSync's events. */
const TRACE = process.env.BENCH_ACCESS_TRACE === '1';
/** `BENCH_ACCESS_DYNAMIC_CONFIG='{"key": value}'`: dynamic config for the dev server (to try its settings). */
const DYNAMIC_CONFIG = JSON.parse(process.env.BENCH_ACCESS_DYNAMIC_CONFIG ?? '{}') as Record<string, unknown>;
const MEMORY_PLUGIN = fileURLToPath(new URL('../test/fixtures/memory-connector.ts', import.meta.url));
const log = (line: string) => process.stderr.write(`${line}\n`);
const fmt = (n: number, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
/**
 * CPU seconds used so far: this process's threads grouped by name (the gateway and activities run
 * on the main thread, workflow code on its own thread, the Temporal SDK core on its runtime
 * threads) and, given its pid, the Temporal dev server.
 */
function cpuSeconds(serverPid: number | undefined): Map<string, number> {
  const tick = 100; // USER_HZ
  const used = (stat: string) => {
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / tick;
  };
  const out = new Map<string, number>();
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const name = readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim().replace(/[-\d]+$/, '');
      out.set(`gateway+worker process: ${name}`, (out.get(`gateway+worker process: ${name}`) ?? 0) + used(readFileSync(`/proc/self/task/${tid}/stat`, 'utf8')));
    } catch {
      // the thread ended
    }
  }
  if (serverPid !== undefined) {
    try {
      out.set('temporal dev server', used(readFileSync(`/proc/${serverPid}/stat`, 'utf8')));
    } catch {
      // not on Linux, or the server has ended
    }
  }
  return out;
}
/** CPU milliseconds per item between two {@link cpuSeconds} readings, largest first (under 0.05 ms left out). */
function cpuPerItem(before: Map<string, number>, after: Map<string, number>, items: number): Array<readonly [string, number]> {
  return [...after]
    .map(([name, s]) => [name, ((s - (before.get(name) ?? 0)) * 1000) / items] as const)
    .filter(([, ms]) => ms >= 0.05)
    .sort((a, b) => b[1] - a[1]);
}
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? NaN;

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const database = await createBenchDatabase('bench_access');
  const dbUrl = database.url;
  const cleanups: Array<() => Promise<unknown>> = [() => database.drop()];
  try {
    await migrate(dbUrl);
    const db = await connectPool(dbUrl, 20);
    cleanups.unshift(() => db.end());
    const server = await startTemporalDevServer({ headless: true, dynamicConfig: DYNAMIC_CONFIG });
    cleanups.unshift(() => server.stop());
    const taskQueue = 'bench-access';
    const config = {
      ...loadGatewayConfig({ LOG_LEVEL: 'info', OUTBOX_POLL_MS: '50', USER_SYNC_DEBOUNCE_MS: '0', USER_SYNC_IDLE_MS: '5000', OUTBOX_BATCH_SIZE: '500' }),
      databaseUrl: dbUrl,
      temporalAddress: server.address,
      taskQueue,
    };
    const clientConn = await Connection.connect({ address: server.address });
    await ensureSearchAttributes(clientConn, 'default');
    cleanups.unshift(() => clientConn.close());
    // Logging as in production (info, JSON, redaction), written where it costs what stdout costs
    // but leaves the report readable.
    const logSink = createWriteStream('/dev/null');
    cleanups.unshift(async () => void logSink.end());
    const logger = { ...(loggerOptions('info') as object), stream: logSink };
    const app = await buildApp({ config, db: await connectPool(dbUrl, 20), temporal: new TemporalAccess(server.address, 'default'), logger });
    await app.ready();
    cleanups.unshift(() => app.close());
    const connection = await NativeConnection.connect({ address: server.address });
    const worker = await createWorker({ connection, namespace: 'default', taskQueue, db: await connectPool(dbUrl, 20) });
    const running = worker.run();
    cleanups.unshift(async () => {
      worker.shutdown();
      await running;
      await connection.close();
    });

    const { token } = await createToken(db, 'bench', ['scim:read', 'scim:write', 'admin', 'requests', 'requests:act-as']);
    const call = async (method: 'GET' | 'POST' | 'PUT', path: string, payload?: unknown, expect = 200, actAs?: string) => {
      const res = await app.inject({
        method,
        url: path,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...(actAs ? { 'x-act-as': actAs } : {}) },
        ...(payload !== undefined ? { payload: payload as object } : {}),
      });
      if (res.statusCode !== expect) throw new Error(`${method} ${path}: ${res.statusCode} ${res.body}`);
      return res.json<Record<string, unknown>>();
    };
    const target = memoryTarget('bench-access');
    /** Waits until each user is in the target's group; answers how long after its moment each arrived (ms). */
    const arrivals = new Map<string, number>();
    const untilPresent = async (since: Map<string, number>): Promise<number[]> => {
      const waited: number[] = [];
      const seen = new Set<string>();
      const deadline = Date.now() + 15 * 60_000;
      while (seen.size < since.size && Date.now() < deadline) {
        const members = target.groups.get('prod') ?? new Set<string>();
        for (const [userId, at] of since) {
          if (!seen.has(userId) && members.has(`acct-${userId}`)) {
            seen.add(userId);
            waited.push(Date.now() - at);
            arrivals.set(userId, Date.now() - at);
          }
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      return waited;
    };
    await call('PUT', '/api/connectors/memory', { id: 'memory', type: MEMORY_PLUGIN, config: { namespace: 'bench-access' } });
    await call('POST', '/api/entitlements', { connectorId: 'memory', name: 'prod', target: { group: 'prod' } }, 201);

    log(`creating ${REQUESTS} requesters and ${APPROVERS} approvers`);
    const requesters: Array<{ id: string; userName: string }> = [];
    await inParallel(Array.from({ length: REQUESTS }, (_, i) => i), 20, async (i) => {
      const u = await call('POST', '/scim/v2/Users', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName: `req.${i}@example.com` }, 201);
      requesters.push({ id: String(u.id), userName: `req.${i}@example.com` });
    });
    const approvers: string[] = [];
    for (let i = 0; i < APPROVERS; i++) {
      await call('POST', '/scim/v2/Users', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName: `appr.${i}@example.com` }, 201);
      approvers.push(`appr.${i}@example.com`);
    }
    await call('PUT', '/api/access-policies/prod', { entitlement: 'memory/prod', displayName: 'Prod', durations: { permanentAllowed: true }, fulfilment: { mode: 'automatic' }, stages: [{ approvers: { users: approvers } }] }, 201);

    log(`requesting (${REQUESTS} requests, 50 at a time)`);
    const requestIds = new Map<string, { id: string; userId: string }>();
    const createdAt = Date.now();
    await inParallel(requesters, 50, async (r) => {
      const req = await call('POST', '/api/requests', { policy: 'prod' }, 201, r.userName);
      requestIds.set(r.userName, { id: String(req.id), userId: r.id });
    });
    const createSeconds = (Date.now() - createdAt) / 1000;
    for (;;) {
      const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM access_request_stages');
      if (rows[0]!.n >= REQUESTS) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    // Every approver's workflow state holds the open stage once the stage row exists; give the
    // workflows the moment between the activity's commit and its completion.
    await new Promise((r) => setTimeout(r, 2000));

    // Baseline 1: reading the requests, as the approvers, at the same concurrency.
    const reads: number[] = [];
    if (BASELINES) {
      const queue = [...requestIds.values()];
      await Promise.all(
        approvers.map(async (approver) => {
          for (let item = queue.shift(); item; item = queue.shift()) {
            const started = performance.now();
            await call('GET', `/api/requests/${item.id}`, undefined, 200, approver);
            reads.push(performance.now() - started);
          }
        }),
      );
    }

    // Baseline 3: the Temporal floor of a decision, the same callers each updating its own workflow.
    log(`baseline: ${REQUESTS} Updates to the smallest workflow with ${APPROVERS} concurrent callers`);
    const floor: number[] = [];
    let floorCpuBefore = new Map<string, number>();
    let floorFrom = 0;
    let floorMs = NaN;
    let floorCpu: Array<readonly [string, number]> = [];
    if (BASELINES) {
      const floorQueue = 'bench-access-floor';
      const floorWorker = await Worker.create({
        connection,
        namespace: 'default',
        taskQueue: floorQueue,
        workflowsPath: fileURLToPath(new URL('./bench-access-workflow.ts', import.meta.url)),
        activities: { benchRecord: async (n: number) => n },
      });
      const floorRun = floorWorker.run();
      const floorClient = new Client({ connection: clientConn, namespace: 'default' });
      const handles = await Promise.all(
        approvers.map((_, i) => floorClient.workflow.start('benchUpdateFloor', { taskQueue: floorQueue, workflowId: `bench-floor-${i}-${Date.now()}` })),
      );
      let left = REQUESTS;
      floorCpuBefore = cpuSeconds(server.pid);
      floorFrom = performance.now();
      await Promise.all(
        handles.map(async (h) => {
          while (left-- > 0) {
            const started = performance.now();
            await h.executeUpdate('benchTouch', { args: [1] });
            floor.push(performance.now() - started);
          }
          await h.executeUpdate('benchTouch', { args: [-1] });
        }),
      );
      floorMs = performance.now() - floorFrom;
      floorCpu = cpuPerItem(floorCpuBefore, cpuSeconds(server.pid), REQUESTS + handles.length);
      floorWorker.shutdown();
      await floorRun;
    }

    // Baseline 2: direct grants to as many other users, at the same concurrency, to the target.
    log(`baseline: ${REQUESTS} direct grants with ${APPROVERS} concurrent callers`);
    const direct: Array<{ id: string }> = [];
    await inParallel(Array.from({ length: BASELINES ? REQUESTS : 0 }, (_, i) => i), 20, async (i) => {
      const u = await call('POST', '/scim/v2/Users', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName: `direct.${i}@example.com` }, 201);
      direct.push({ id: String(u.id) });
    });
    const grantedAt = new Map<string, number>();
    {
      const queue = [...direct];
      await Promise.all(
        Array.from({ length: APPROVERS }, async () => {
          for (let item = queue.shift(); item; item = queue.shift()) {
            await call('POST', '/api/grants', { userId: item.id, entitlement: 'memory/prod', reason: 'manual' }, 201);
            grantedAt.set(item.id, Date.now());
          }
        }),
      );
    }
    const directToAccess = await untilPresent(grantedAt);

    log(`deciding with ${APPROVERS} concurrent approvers`);
    const cpuBefore = cpuSeconds(server.pid);
    const decidingFrom = performance.now();
    const latencies: number[] = [];
    const approvedAt = new Map<string, number>();
    const queue = [...requestIds.values()];
    await Promise.all(
      approvers.map(async (approver) => {
        for (let item = queue.shift(); item; item = queue.shift()) {
          const started = performance.now();
          await call('POST', `/api/requests/${item.id}/decisions`, { decision: 'approve' }, 200, approver);
          latencies.push(performance.now() - started);
          approvedAt.set(item.userId, Date.now());
        }
      }),
    );

    const decidingMs = performance.now() - decidingFrom;
    const toAccess = await untilPresent(approvedAt);
    const cpu = cpuPerItem(cpuBefore, cpuSeconds(server.pid), REQUESTS);
    const cpuLine = (items: Array<readonly [string, number]>) => items.map(([name, ms]) => `${name} ${fmt(ms, 1)} ms`).join('; ');
    const cpuTotal = (items: Array<readonly [string, number]>) => items.reduce((sum, [, ms]) => sum + ms, 0);
    const ratio = (a: number, b: number) => `${fmt(a / b, 1)}×`;
    if (TRACE) await traceMedian(new Client({ connection: clientConn, namespace: 'default' }), requestIds, approvedAt, arrivals);

    process.stdout.write(
      [
        `bench:access on ${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), dev server, PostgreSQL, in-process gateway (logs at info) and worker`,
        `requests created: ${fmt(REQUESTS)} in ${fmt(createSeconds, 1)} s (${fmt(REQUESTS / createSeconds, 0)}/s, 50 concurrent)`,
        `decision API (${APPROVERS} concurrent approvers, ${fmt(REQUESTS / (decidingMs / 1000), 1)} decisions/s): p50 ${fmt(pct(latencies, 50), 1)} ms, p99 ${fmt(pct(latencies, 99), 1)} ms`,
        `  baseline, reading the request (same callers): p50 ${fmt(pct(reads, 50), 1)} ms, p99 ${fmt(pct(reads, 99), 1)} ms; decision / read: p50 ${ratio(pct(latencies, 50), pct(reads, 50))}, p99 ${ratio(pct(latencies, 99), pct(reads, 99))}`,
        `  baseline, an Update to the smallest workflow (same callers, one workflow each, ${fmt(REQUESTS / (floorMs / 1000), 1)} Updates/s): p50 ${fmt(pct(floor, 50), 1)} ms, p99 ${fmt(pct(floor, 99), 1)} ms; decision / Update: p50 ${ratio(pct(latencies, 50), pct(floor, 50))}, p99 ${ratio(pct(latencies, 99), pct(floor, 99))}`,
        `    CPU per Update: ${cpuLine(floorCpu)} (${fmt(cpuTotal(floorCpu), 1)} ms in all: at most ${fmt((cpus().length * 1000) / cpuTotal(floorCpu), 0)} Updates/s on ${cpus().length} cores, so with ${APPROVERS} callers each waiting for its answer at least ${fmt((APPROVERS * cpuTotal(floorCpu)) / cpus().length, 0)} ms per Update)`,
        `approval → access in the target: p50 ${fmt(pct(toAccess, 50))} ms, p99 ${fmt(pct(toAccess, 99))} ms (${fmt(toAccess.length)} of ${fmt(REQUESTS)} present)`,
        `  baseline, direct grant → access (${APPROVERS} concurrent callers): p50 ${fmt(pct(directToAccess, 50))} ms, p99 ${fmt(pct(directToAccess, 99))} ms (${fmt(directToAccess.length)} of ${fmt(REQUESTS)}); request / direct: p50 ${ratio(pct(toAccess, 50), pct(directToAccess, 50))}, p99 ${ratio(pct(toAccess, 99), pct(directToAccess, 99))}`,
        `CPU from the first decision until every access was present, per request: ${cpuLine(cpu)} (${fmt(cpuTotal(cpu), 1)} ms in all)`,
        '',
      ].join('\n'),
    );
  } finally {
    for (const fn of cleanups) await fn().catch((err: unknown) => log(`cleanup: ${String(err)}`));
  }
}

/**
 * Prints the events of the median request's workflow and of its requester's userSync, each as
 * milliseconds after the approval's answer, so a slow stretch shows where it is.
 */
async function traceMedian(client: Client, requestIds: Map<string, { id: string; userId: string }>, approvedAt: Map<string, number>, arrivals: Map<string, number>): Promise<void> {
  const sorted = [...arrivals].filter(([u]) => approvedAt.has(u)).sort((a, b) => a[1] - b[1]);
  const [userId, waited] = sorted[Math.floor(sorted.length / 2)] ?? [];
  const request = [...requestIds.values()].find((r) => r.userId === userId);
  if (!userId || !request) return;
  const at = approvedAt.get(userId)!;
  const lines = [`trace: request ${request.id}, access ${fmt(waited ?? NaN)} ms after the approval's answer`];
  const { accessRequestWorkflowId, userSyncWorkflowId } = await import('../workflows/client.js');
  for (const workflowId of [accessRequestWorkflowId(request.id), userSyncWorkflowId(userId)]) {
    lines.push(`  ${workflowId}`);
    for (const e of (await client.workflow.getHandle(workflowId).fetchHistory()).events ?? []) {
      const ms = Number(String(e.eventTime?.seconds ?? 0)) * 1000 + Math.floor((e.eventTime?.nanos ?? 0) / 1e6) - at;
      if (ms < -3000) continue;
      const type = Object.keys(e).find((k) => k.endsWith('EventAttributes') && (e as Record<string, unknown>)[k]) ?? String(e.eventType);
      lines.push(`    ${fmt(ms).padStart(8)} ms  ${type.replace(/EventAttributes$/, '')}`);
    }
  }
  log(lines.join('\n'));
}

await main();
