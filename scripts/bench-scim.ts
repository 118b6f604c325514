/**
 * `npm run bench:scim [-- --json]`: throughput and latency of the SCIM endpoints against PostgreSQL,
 * compared with a bare Fastify "ceiling" server on the same machine. See docs/benchmarks.md.
 *
 * For each seed size it creates a fresh database, migrates it, seeds the users with one SQL
 * statement, and for each log level starts the gateway as a child process
 * (scripts/bench-scim-server.ts) and drives it with autocannon from this process; the ceiling server
 * is another child. The ceiling is measured again right before every gateway scenario, and each
 * scenario is compared with that adjacent measurement, so drift of the machine during a round does
 * not skew the ratio. Every database it creates is dropped at the end, also on failure or Ctrl-C.
 *
 * `--quick` is a smoke run proving the script works (1,000 users, 10 connections, 1 s per scenario,
 * no warm-up); its figures mean nothing. The variables below override it.
 *
 * Environment:
 *   BENCH_SIZES          seed sizes, comma-separated (default 10000,100000)
 *   BENCH_LOG_LEVELS     gateway log levels to measure, comma-separated (default info,silent: the
 *                        production level, whose logging to stdout is part of a request's cost, and none)
 *   BENCH_CONNECTIONS    concurrent connections per scenario (default 50)
 *   BENCH_DURATION       measured seconds per scenario (default 10)
 *   BENCH_WARMUP         warm-up seconds before each scenario, not measured (default 2)
 *   BENCH_DATABASE_URL   a database on the server to use (default postgres://postgres@127.0.0.1:5432/postgres);
 *                        the benchmark creates and drops its own databases beside it
 *   BENCH_OUT            where --json writes the results (default bench-scim-results.json)
 *   BENCH_SCENARIOS      gateway scenarios to run, comma-separated keys (default filter,list,post,patch:
 *                        userName eq, page of 100, POST, PATCH)
 *   BENCH_PROFILE_DIR    write a V8 CPU profile of each server child there (open in Chrome DevTools)
 *   BENCH_STACK          what runs besides the gateway (default gateway):
 *                          gateway     Temporal off, outbox rows written but not delivered: the gateway alone
 *                          production  as deployed: a Temporal dev server (SQLite file), the outbox
 *                                      delivered to it, and `npm run worker` as a process beside the
 *                                      gateway; after the POST scenario the outbox's drain is measured
 *                          start       the same with the worker inside the gateway's process, as `npm start` runs it
 *                        Peak memory of the gateway (and worker) process is printed per round.
 *   DATABASE_POOL_SIZE   and the gateway's other variables apply to the gateway child as usual
 *
 * The exit code is 1 when any scenario saw errors or non-2xx responses; missed targets are printed,
 * not failed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import os from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pg from 'pg';
import { Connection } from '@temporalio/client';
import { loadGatewayConfig } from '../core/config.js';
import { startTemporalDevServer } from './dev-server.js';
import { createToken } from '../core/auth/tokens.js';
import { migrate } from '../core/db/migrate.js';
import { connectPool, redactDatabaseUrl, type Db } from '../core/db/pool.js';
import { ENTERPRISE_USER_SCHEMA, PATCH_OP_SCHEMA, USER_SCHEMA } from '../core/scim/schemas.js';

// ------------------------------------------------------------------ autocannon (untyped CommonJS)

interface CannonRequest {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  setupRequest?: (req: CannonRequest, context: Record<string, unknown>) => CannonRequest;
}

interface CannonOptions {
  url: string;
  connections: number;
  duration: number;
  headers?: Record<string, string>;
  requests?: CannonRequest[];
}

interface CannonHistogram {
  mean: number;
  stddev: number;
  min: number;
  max: number;
  p50: number;
  p90: number;
  p99: number;
}

interface CannonResult {
  requests: CannonHistogram & { total: number; sent: number };
  latency: CannonHistogram;
  errors: number;
  timeouts: number;
  non2xx: number;
  statusCodeStats: Record<string, { count: number }>;
}

interface CannonRun extends Promise<CannonResult> {
  stop(): void;
  on(event: 'reqError', listener: (err: Error) => void): unknown;
}

const require = createRequire(import.meta.url);
const autocannon = require('autocannon') as (opts: CannonOptions) => CannonRun;
const FASTIFY_VERSION = (require('fastify/package.json') as { version: string }).version;

// ------------------------------------------------------------------ settings

const SERVER_SCRIPT = fileURLToPath(new URL('./bench-scim-server.ts', import.meta.url));
const DEFAULT_ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres';
const ENTERPRISE = ENTERPRISE_USER_SCHEMA;

/** The targets this benchmark checks (printed, never asserted). */
const TARGETS = {
  filterSize: 100_000,
  filterMinCeilingPct: 40,
  filterMaxP99Ms: 20,
  filterConnections: 50,
  postMinRps: 2000,
};

/**
 * What runs besides the gateway: `gateway` (Temporal off, the outbox written but not delivered: the
 * gateway alone), `production` (a Temporal dev server on a file as `npm start` runs it, the outbox
 * delivered to it and a worker process beside the gateway, as the compose deployment runs them) or
 * `start` (the same with the worker inside the gateway's process, as `npm start` runs it).
 */
type Stack = 'gateway' | 'production' | 'start';
const STACKS: Stack[] = ['gateway', 'production', 'start'];
const STACK_WORDS: Record<Stack, string> = {
  gateway: 'Temporal off (outbox rows written, not delivered)',
  production: 'whole stack as deployed: Temporal dev server (SQLite file) up, outbox delivered to it, a worker process beside the gateway',
  start: 'whole stack as `npm start` runs it: Temporal dev server (SQLite file) up, outbox delivered, the worker inside the gateway process',
};

interface Settings {
  stack: Stack;
  sizes: number[];
  logLevels: string[];
  connections: number;
  durationS: number;
  warmupS: number;
  adminUrl: string;
  json: boolean;
  out: string;
  /** Keys of the gateway scenarios to run (all by default). */
  only: string[];
}

function positiveInt(name: string, fallback: number, min = 1): number {
  const raw = process.env[name]?.trim();
  if (!raw) return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min) throw new Error(`${name} must be a whole number ≥ ${min}, got "${raw}"`);
  return Number(raw);
}

/** The gateway scenarios' keys, in the order they run (`BENCH_SCENARIOS` picks some). */
const SCENARIO_KEYS = ['filter', 'list', 'post', 'patch'];

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function loadSettings(argv: string[]): Settings {
  const quick = argv.includes('--quick');
  const sizesRaw = process.env.BENCH_SIZES?.trim() || (quick ? '1000' : '10000,100000');
  const sizes = sizesRaw.split(',').map((s) => s.trim());
  if (sizes.some((s) => !/^\d+$/.test(s) || Number(s) < 100)) {
    throw new Error(`BENCH_SIZES must be comma-separated whole numbers ≥ 100, got "${sizesRaw}"`);
  }
  const levelsRaw = process.env.BENCH_LOG_LEVELS?.trim() || 'info,silent';
  const logLevels = levelsRaw.split(',').map((s) => s.trim());
  if (logLevels.some((l) => !LOG_LEVELS.includes(l))) throw new Error(`BENCH_LOG_LEVELS must be comma-separated log levels (${LOG_LEVELS.join(', ')}), got "${levelsRaw}"`);
  const unknown = argv.filter((a) => a !== '--json' && a !== '--quick');
  if (unknown.length) throw new Error(`unknown argument(s): ${unknown.join(' ')} (only --json and --quick are accepted)`);
  const onlyRaw = process.env.BENCH_SCENARIOS?.trim() || SCENARIO_KEYS.join(',');
  const only = onlyRaw.split(',').map((s) => s.trim());
  if (only.some((k) => !SCENARIO_KEYS.includes(k))) throw new Error(`BENCH_SCENARIOS must be comma-separated scenario keys (${SCENARIO_KEYS.join(', ')}), got "${onlyRaw}"`);
  const stack = (process.env.BENCH_STACK?.trim() || 'gateway') as Stack;
  if (!STACKS.includes(stack)) throw new Error(`BENCH_STACK must be one of ${STACKS.join(', ')}, got "${stack}"`);
  return {
    stack,
    sizes: sizes.map(Number),
    logLevels,
    connections: positiveInt('BENCH_CONNECTIONS', quick ? 10 : 50),
    durationS: positiveInt('BENCH_DURATION', quick ? 1 : 10),
    warmupS: positiveInt('BENCH_WARMUP', quick ? 0 : 2, 0),
    adminUrl: process.env.BENCH_DATABASE_URL?.trim() || DEFAULT_ADMIN_URL,
    json: argv.includes('--json'),
    out: process.env.BENCH_OUT?.trim() || 'bench-scim-results.json',
    only,
  };
}

// ------------------------------------------------------------------ clean-up on every exit path

/** Undo steps, run newest first: stop children, then drop databases. */
const cleanups: Array<{ name: string; run: () => Promise<void> }> = [];
let currentRun: CannonRun | undefined;

function onCleanup(name: string, run: () => Promise<void>): () => Promise<void> {
  const entry = { name, run };
  cleanups.push(entry);
  // Running it early (the normal path) removes it, so it never runs twice.
  return async () => {
    const i = cleanups.indexOf(entry);
    if (i >= 0) cleanups.splice(i, 1);
    await run();
  };
}

async function cleanupAll(): Promise<void> {
  while (cleanups.length) {
    const step = cleanups.pop()!;
    try {
      await step.run();
    } catch (err) {
      process.stderr.write(`clean-up "${step.name}" failed: ${String(err)}\n`);
    }
  }
}

function installSignalHandlers(): void {
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write(`\n${signal}: stopping, killing the servers and dropping the benchmark databases…\n`);
    currentRun?.stop();
    void cleanupAll().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

// ------------------------------------------------------------------ databases

function databaseUrl(adminUrl: string, name: string): string {
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

async function adminQuery<T extends pg.QueryResultRow = pg.QueryResultRow>(adminUrl: string, sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end().catch(() => {});
  }
}

/** Creates an empty database and registers its removal; returns its URL. */
async function createDatabase(adminUrl: string): Promise<{ url: string; name: string; drop: () => Promise<void> }> {
  const name = `bench_scim_${randomBytes(6).toString('hex')}`;
  await adminQuery(adminUrl, `CREATE DATABASE ${name}`);
  const drop = onCleanup(`drop database ${name}`, async () => {
    // FORCE: a server child killed mid-request may leave a backend behind for a moment.
    await adminQuery(adminUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  });
  return { url: databaseUrl(adminUrl, name), name, drop };
}

const GIVEN_NAMES = ['Ada', 'Grace', 'Alan', 'Barbara', 'Edsger', 'Frances', 'Donald', 'Margaret', 'Ken', 'Radia', 'Dennis', 'Sophie', 'Tim', 'Hedy', 'Linus', 'Katherine', 'John', 'Shafi', 'Niklaus', 'Lynn'];
const FAMILY_NAMES = ['Lovelace', 'Hopper', 'Turing', 'Liskov', 'Dijkstra', 'Allen', 'Knuth', 'Hamilton', 'Thompson', 'Perlman', 'Ritchie', 'Wilson', 'Berners-Lee', 'Lamarr', 'Torvalds', 'Johnson', 'McCarthy', 'Goldwasser', 'Wirth', 'Conway', 'Backus', 'Kay', 'Goldberg', 'Hoare', 'Sammet'];
const DEPARTMENTS = ['Engineering', 'Sales', 'Marketing', 'Finance', 'Support', 'Operations', 'Legal', 'People'];

/**
 * Seeds users 1..n in one statement, stored exactly as the directory stores them (canonical SCIM
 * attributes without id and meta). created_at increases with i, so list pages have a stable order.
 */
export async function seedUsers(db: Db, n: number): Promise<void> {
  await db.query(
    `INSERT INTO users (id, user_name, display_name, active, resource, created_at, updated_at)
     SELECT gen_random_uuid(), d.user_name, d.display_name, true,
            jsonb_build_object(
              'schemas', jsonb_build_array($2::text, $3::text),
              'userName', d.user_name,
              'name', jsonb_build_object('givenName', p.given, 'familyName', p.family),
              'displayName', d.display_name,
              'emails', jsonb_build_array(jsonb_build_object('value', d.user_name, 'type', 'work', 'primary', true)),
              'active', true,
              $3::text, jsonb_build_object('department', p.department)),
            d.at, d.at
       FROM generate_series(1, $1::int) AS i
       CROSS JOIN LATERAL (
         SELECT ($4::text[])[1 + i % cardinality($4::text[])] AS given,
                ($5::text[])[1 + (i / cardinality($4::text[])) % cardinality($5::text[])] AS family,
                ($6::text[])[1 + i % cardinality($6::text[])] AS department
       ) p
       CROSS JOIN LATERAL (
         SELECT 'user' || i || '@bench.example' AS user_name,
                p.given || ' ' || p.family AS display_name,
                now() - make_interval(secs => $1::int - i) AS at
       ) d`,
    [n, USER_SCHEMA, ENTERPRISE, GIVEN_NAMES, FAMILY_NAMES, DEPARTMENTS],
  );
  // As autovacuum would: fresh statistics, and a visibility map that lets counts and deep pages use index-only scans.
  await db.query('VACUUM ANALYZE users');
}

// ------------------------------------------------------------------ server children

interface ServerChild {
  port: number;
  pid: number;
  stop: () => Promise<void>;
}

/**
 * Starts scripts/bench-scim-server.ts in `mode` and waits for the port it sends over the IPC channel.
 * Its stdout (the gateway's log lines) is read and dropped, as a log collector would take it.
 */
async function startServer(mode: 'gateway' | 'ceiling', env: Record<string, string>): Promise<ServerChild> {
  const profileDir = process.env.BENCH_PROFILE_DIR?.trim();
  const profile = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [];
  const child: ChildProcess = spawn(process.execPath, [...profile, '--import', 'tsx', SERVER_SCRIPT, mode], {
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'inherit', 'ipc'],
  });
  child.stdout!.resume();
  let exited = false;
  let stopRequested = false;
  const exit = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      resolve();
    }),
  );
  const stop = onCleanup(`stop ${mode} server`, async () => {
    stopRequested = true;
    if (exited) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exit;
    clearTimeout(timer);
  });

  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${mode} server did not start within 120 s`)), 120_000);
    child.once('message', (message: unknown) => {
      clearTimeout(timer);
      const port = (message as { port?: unknown } | null)?.port;
      if (typeof port === 'number' && Number.isInteger(port) && port > 0) resolve(port);
      else reject(new Error(`${mode} server sent ${JSON.stringify(message)} instead of its port`));
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${mode} server exited during start-up (${signal ?? `code ${code}`})`));
    });
  }).catch(async (err: unknown) => {
    await stop();
    throw err;
  });

  child.once('exit', (code, signal) => {
    // Requests to it now fail; the scenario reports them, this says why.
    if (!stopRequested) log(`!!! the ${mode} server exited unexpectedly (${signal ?? `code ${code}`})`);
  });
  return { port, pid: child.pid!, stop };
}

const WORKER_SCRIPT = fileURLToPath(new URL('../workflows/worker.ts', import.meta.url));

/**
 * The worker as its own process (`npm run worker`), its logs read and dropped like the gateway's;
 * resolves once it polls the task queue.
 */
async function startWorkerProcess(env: Record<string, string>, temporalAddress: string): Promise<{ pid: number; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', WORKER_SCRIPT], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  child.stdout.resume();
  const exit = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = onCleanup('stop worker', async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exit;
    clearTimeout(timer);
  });
  const connection = await Connection.connect({ address: temporalAddress });
  try {
    const { taskQueue, temporalNamespace } = loadGatewayConfig({});
    const deadline = Date.now() + 120_000;
    for (;;) {
      const { pollers } = await connection.workflowService.describeTaskQueue({ namespace: temporalNamespace, taskQueue: { name: taskQueue }, taskQueueType: 1 });
      if (pollers?.length) break;
      if (child.exitCode !== null) throw new Error(`the worker exited during start-up (code ${child.exitCode})`);
      if (Date.now() > deadline) throw new Error('the worker did not poll its task queue within 120 s');
      await new Promise((r) => setTimeout(r, 250));
    }
  } catch (err) {
    await stop();
    throw err;
  } finally {
    await connection.close();
  }
  return { pid: child.pid!, stop };
}

/** Peak resident memory of some processes, read from /proc every 250 ms until stop(). */
function sampleRss(pids: Record<string, number>): { stop(): Record<string, number> } {
  const peak: Record<string, number> = Object.fromEntries(Object.keys(pids).map((k) => [k, 0]));
  const read = () => {
    for (const [name, pid] of Object.entries(pids)) {
      try {
        const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
        if (kb) peak[name] = Math.max(peak[name]!, Number(kb) / 1024);
      } catch {
        // The process has ended, or /proc is not there (not Linux): nothing to read.
      }
    }
  };
  read();
  const timer = setInterval(read, 250);
  return {
    stop() {
      clearInterval(timer);
      read();
      return peak;
    },
  };
}

// ------------------------------------------------------------------ scenarios

interface HttpCall {
  method: 'GET' | 'POST' | 'PATCH';
  path: string;
  body?: string;
}

interface Scenario {
  key: string;
  label: string;
  target: 'ceiling' | 'gateway';
  /** A new request each call (random user, next counter value). */
  next: () => HttpCall;
}

const randomInt = (min: number, max: number) => min + Math.floor(Math.random() * (max - min + 1));

/** The bare Fastify server's one route, measured right before each gateway scenario. */
const CEILING: Scenario = {
  key: 'ceiling',
  label: 'ceiling GET (bare Fastify)',
  target: 'ceiling',
  next: () => ({ method: 'GET', path: '/scim/v2/Users/3f1c9a52-8a0e-4d5b-9a51-6f2f2f1d8c41' }),
};

/**
 * The gateway's scenarios. `patches` counts PATCHes over the whole seed-size round (every log level),
 * so the round robin goes on where the previous gateway run left it.
 */
function scenarios(size: number, ids: string[], runTag: string, patches: { count: number }): Scenario[] {
  let created = 0;
  // Round robin over the sampled users, and each pass flips `active` (seeded true: the first pass
  // deactivates), so every PATCH is a real write, as an identity provider's deactivation is.
  const patchBodies = [false, true].map((active) => JSON.stringify({ schemas: [PATCH_OP_SCHEMA], Operations: [{ op: 'replace', value: { active } }] }));
  return [
    {
      key: 'filter',
      label: 'GET Users?filter=userName eq',
      target: 'gateway',
      next: () => ({
        method: 'GET',
        path: `/scim/v2/Users?filter=${encodeURIComponent(`userName eq "user${randomInt(1, size)}@bench.example"`)}`,
      }),
    },
    {
      key: 'list',
      label: 'GET Users page of 100',
      target: 'gateway',
      next: () => ({ method: 'GET', path: `/scim/v2/Users?startIndex=${randomInt(1, Math.max(1, size - 99))}&count=100` }),
    },
    {
      key: 'post',
      label: 'POST Users',
      target: 'gateway',
      next: () => {
        created += 1;
        const userName = `new-${runTag}-${created}@bench.example`;
        const given = GIVEN_NAMES[created % GIVEN_NAMES.length]!;
        const family = FAMILY_NAMES[created % FAMILY_NAMES.length]!;
        return {
          method: 'POST',
          path: '/scim/v2/Users',
          body: JSON.stringify({
            schemas: [USER_SCHEMA, ENTERPRISE],
            userName,
            name: { givenName: given, familyName: family },
            displayName: `${given} ${family}`,
            emails: [{ value: userName, type: 'work', primary: true }],
            active: true,
            [ENTERPRISE]: { department: DEPARTMENTS[created % DEPARTMENTS.length] },
          }),
        };
      },
    },
    {
      key: 'patch',
      label: 'PATCH Users/{id} active false/true',
      target: 'gateway',
      next: () => {
        const k = patches.count++;
        return { method: 'PATCH', path: `/scim/v2/Users/${ids[k % ids.length]}`, body: patchBodies[Math.floor(k / ids.length) % 2]! };
      },
    },
  ];
}

interface Measurement {
  requestsPerSec: number;
  latencyMeanMs: number;
  p50Ms: number;
  p99Ms: number;
  total: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  firstError: string | undefined;
}

async function cannon(baseUrl: string, token: string, connections: number, durationS: number, s: Scenario): Promise<Measurement> {
  const run = autocannon({
    url: baseUrl,
    connections,
    duration: durationS,
    headers: { authorization: `Bearer ${token}`, accept: 'application/scim+json' },
    requests: [
      {
        setupRequest: (req) => {
          const call = s.next();
          return call.body === undefined
            ? { ...req, method: call.method, path: call.path }
            : { ...req, method: call.method, path: call.path, body: call.body, headers: { ...req.headers, 'content-type': 'application/scim+json' } };
        },
      },
    ],
  });
  let firstError: string | undefined;
  run.on('reqError', (err) => {
    firstError ??= err.message;
  });
  currentRun = run;
  try {
    const r = await run;
    return {
      requestsPerSec: r.requests.mean,
      latencyMeanMs: r.latency.mean,
      p50Ms: r.latency.p50,
      p99Ms: r.latency.p99,
      total: r.requests.total,
      non2xx: r.non2xx,
      errors: r.errors,
      timeouts: r.timeouts,
      statusCodes: Object.fromEntries(Object.entries(r.statusCodeStats).map(([code, v]) => [code, v.count])),
      firstError,
    };
  } finally {
    currentRun = undefined;
  }
}

/** One request outside the load run, to show what a failing scenario answers. */
async function probe(baseUrl: string, token: string, s: Scenario): Promise<{ status: number; body: string }> {
  const call = s.next();
  const res = await fetch(baseUrl + call.path, {
    method: call.method,
    headers: { authorization: `Bearer ${token}`, accept: 'application/scim+json', ...(call.body ? { 'content-type': 'application/scim+json' } : {}) },
    ...(call.body ? { body: call.body } : {}),
  });
  return { status: res.status, body: (await res.text()).slice(0, 600) };
}

// ------------------------------------------------------------------ reporting

interface ScenarioResult extends Measurement {
  size: number;
  /** The gateway's LOG_LEVEL during the scenario. */
  logLevel: string;
  scenario: string;
  label: string;
  /** The ceiling's requests/s, measured right before this scenario. */
  ceilingRps: number;
  /** Requests/s as a percentage of `ceilingRps`. */
  ceilingPct: number | null;
  warmupNon2xx: number;
  warmupErrors: number;
  probe?: { status: number; body: string } | undefined;
  note?: string | undefined;
}

interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  os: string;
  node: string;
  postgres: string;
  fastify: string;
}

async function machineInfo(adminUrl: string): Promise<Machine> {
  const cpus = os.cpus();
  const [row] = await adminQuery<{ server_version: string }>(adminUrl, 'SHOW server_version');
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: os.availableParallelism(),
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    postgres: row?.server_version ?? 'unknown',
    fastify: FASTIFY_VERSION,
  };
}

function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const line = (r: string[]) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  return [line(rows[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n');
}

function printSize(size: number, logLevel: string, results: ScenarioResult[]): void {
  const rows = [['scenario', 'req/s', 'p50 ms', 'p99 ms', 'requests', 'non-2xx', 'errors', 'ceiling req/s', '% ceiling']];
  for (const r of results) {
    rows.push([
      r.label,
      fmt(r.requestsPerSec),
      fmt(r.p50Ms),
      fmt(r.p99Ms),
      fmt(r.total),
      r.non2xx ? `${fmt(r.non2xx)} !!` : '0',
      r.errors ? `${fmt(r.errors)} !!` : '0',
      fmt(r.ceilingRps),
      r.ceilingPct === null ? '' : `${fmt(r.ceilingPct, 1)}%`,
    ]);
  }
  process.stdout.write(`\n${fmt(size)} seeded users, gateway LOG_LEVEL=${logLevel}\n${table(rows)}\n`);
  for (const r of results) if (r.note) process.stdout.write(`  ${r.label}: ${r.note}\n`);
}

interface TargetCheck {
  target: string;
  measured: string;
  holds: boolean | null;
}

function checkTargets(settings: Settings, measured: ScenarioResult[]): TargetCheck[] {
  const checks: TargetCheck[] = [];
  // Targets are judged at the production log level when it was measured.
  const level = settings.logLevels.includes('info') ? 'info' : settings.logLevels[0]!;
  const all = measured.filter((r) => r.logLevel === level);
  const filterAt = all.find((r) => r.scenario === 'filter' && r.size === TARGETS.filterSize);
  const filterTarget = `userName eq at ${fmt(TARGETS.filterSize)} users, LOG_LEVEL=${level}: ≥ ${TARGETS.filterMinCeilingPct}% of ceiling and p99 < ${TARGETS.filterMaxP99Ms} ms at ${TARGETS.filterConnections} connections`;
  if (!filterAt) {
    const largest = all.filter((r) => r.scenario === 'filter').at(-1);
    checks.push({
      target: filterTarget,
      measured: `not measured (no ${fmt(TARGETS.filterSize)}-user round)${largest ? `; indicative at ${fmt(largest.size)} users: ${fmt(largest.ceilingPct ?? 0, 1)}% of ceiling, p99 ${fmt(largest.p99Ms)} ms` : ''}`,
      holds: null,
    });
  } else {
    const holds =
      settings.connections === TARGETS.filterConnections &&
      (filterAt.ceilingPct ?? 0) >= TARGETS.filterMinCeilingPct &&
      filterAt.p99Ms < TARGETS.filterMaxP99Ms &&
      filterAt.non2xx + filterAt.errors === 0;
    checks.push({
      target: filterTarget,
      measured: `${fmt(filterAt.ceilingPct ?? 0, 1)}% of ceiling, p99 ${fmt(filterAt.p99Ms)} ms${settings.connections === TARGETS.filterConnections ? '' : ` (at ${settings.connections} connections: not comparable)`}`,
      holds: settings.connections === TARGETS.filterConnections ? holds : null,
    });
  }
  for (const post of all.filter((r) => r.scenario === 'post')) {
    checks.push({
      target: `POST Users ≥ ${fmt(TARGETS.postMinRps)}/s (${fmt(post.size)} users, LOG_LEVEL=${level})`,
      measured: `${fmt(post.requestsPerSec)}/s`,
      holds: post.requestsPerSec >= TARGETS.postMinRps && post.non2xx + post.errors === 0,
    });
  }
  return checks;
}

// ------------------------------------------------------------------ main

/** Measures one scenario (warm-up, then the measured run) and says so. */
async function measure(settings: Settings, size: number, baseUrl: string, token: string, s: Scenario): Promise<{ m: Measurement; warm: Pick<Measurement, 'non2xx' | 'errors'> }> {
  let warm = { non2xx: 0, errors: 0 };
  if (settings.warmupS > 0) {
    log(`[${fmt(size)}] ${s.label}: warm-up ${settings.warmupS} s`);
    warm = await cannon(baseUrl, token, settings.connections, settings.warmupS, s);
  }
  log(`[${fmt(size)}] ${s.label}: measuring ${settings.durationS} s at ${settings.connections} connections`);
  return { m: await cannon(baseUrl, token, settings.connections, settings.durationS, s), warm };
}

/** Peak memory of the stack's processes over one log level's round. */
const rounds: Array<{ size: number; logLevel: string; peakMiB: Record<string, number> }> = [];

async function runSize(settings: Settings, size: number, ceiling: ServerChild, temporalAddress: string | undefined): Promise<ScenarioResult[]> {
  const t0 = Date.now();
  const database = await createDatabase(settings.adminUrl);
  log(`[${fmt(size)}] database ${database.name}: migrating and seeding ${fmt(size)} users…`);
  await migrate(database.url);
  const db = await connectPool(database.url, 2);
  let gateway: ServerChild | undefined;
  let worker: { pid: number; stop: () => Promise<void> } | undefined;
  try {
    await seedUsers(db, size);
    const { token } = await createToken(db, 'bench', ['scim:read', 'scim:write']);
    const { rows } = await db.query<{ id: string }>('SELECT id FROM users ORDER BY random() LIMIT 1000');
    const ids = rows.map((r) => r.id);
    log(`[${fmt(size)}] seeded in ${fmt((Date.now() - t0) / 1000, 1)} s`);

    const results: ScenarioResult[] = [];
    const ceilingUrl = `http://127.0.0.1:${ceiling.port}`;
    const patches = { count: 0 };
    for (const logLevel of settings.logLevels) {
      log(`[${fmt(size)}] starting the gateway with LOG_LEVEL=${logLevel}`);
      const env = { DATABASE_URL: database.url, LOG_LEVEL: logLevel, BENCH_STACK: settings.stack, ...(temporalAddress ? { TEMPORAL_ADDRESS: temporalAddress } : {}) };
      gateway = await startServer('gateway', env);
      if (settings.stack === 'production') worker = await startWorkerProcess(env, temporalAddress!);
      const memory = sampleRss({ gateway: gateway.pid, ...(worker ? { worker: worker.pid } : {}) });
      const runTag = randomBytes(3).toString('hex');
      for (const s of scenarios(size, ids, runTag, patches).filter((x) => settings.only.includes(x.key))) {
        results.push(await runScenario(settings, size, logLevel, { db, token, ids, ceilingUrl, baseUrl: `http://127.0.0.1:${gateway.port}` }, s));
      }
      rounds.push({ size, logLevel, peakMiB: memory.stop() });
      await worker?.stop();
      worker = undefined;
      await gateway.stop();
      gateway = undefined;
    }
    return results;
  } finally {
    await worker?.stop();
    await gateway?.stop();
    await db.end().catch(() => {});
    await database.drop();
  }
}

/** The ceiling, then one gateway scenario right after it, compared with each other. */
async function runScenario(
  settings: Settings,
  size: number,
  logLevel: string,
  at: { db: Db; token: string; ids: string[]; ceilingUrl: string; baseUrl: string },
  s: Scenario,
): Promise<ScenarioResult> {
  const { db, token, ids, baseUrl } = at;
  // Measured right before the scenario, so the ratio compares runs seconds apart.
  const top = await measure(settings, size, at.ceilingUrl, token, CEILING);
  const ceilingRps = top.m.requestsPerSec;
  const patchedBefore = s.key === 'patch' ? await countPatched(db) : 0;
  const since = new Date();
  const { m, warm } = await measure(settings, size, baseUrl, token, s);
  const result: ScenarioResult = {
    size,
    logLevel,
    scenario: s.key,
    label: s.label,
    ...m,
    ceilingRps,
    ceilingPct: ceilingRps > 0 ? Math.round((m.requestsPerSec / ceilingRps) * 10_000) / 100 : null,
    // A ceiling run with failures makes the ratio invalid as much as the scenario's own.
    warmupNon2xx: warm.non2xx + top.warm.non2xx + top.m.non2xx,
    warmupErrors: warm.errors + top.warm.errors + top.m.errors,
  };
  if (s.key === 'patch') {
    const changed = (await countPatched(db)) - patchedBefore;
    result.note = `${fmt(changed)} of ${fmt(m.total)} measured PATCHes changed a user (round robin over ${fmt(ids.length)} ids, active flipped each pass)`;
  }
  if (s.key === 'post' && settings.stack !== 'gateway') result.note = await drainOutbox(db, since);
  if (m.non2xx + m.errors + warm.non2xx + warm.errors > 0) {
    result.probe = await probe(baseUrl, token, s).catch((err: unknown) => ({ status: 0, body: String(err) }));
    log(
      `!!! [${fmt(size)}] ${s.label}: ${fmt(m.non2xx)} non-2xx, ${fmt(m.errors)} errors (${fmt(m.timeouts)} timeouts)` +
        ` in the measured run, ${fmt(warm.non2xx)} non-2xx and ${fmt(warm.errors)} errors in the warm-up;` +
        ` status codes ${JSON.stringify(m.statusCodes)}${m.firstError ? `; first error: ${m.firstError}` : ''}` +
        `; a probe request answered ${result.probe.status}: ${result.probe.body.slice(0, 200)}`,
    );
  }
  return result;
}

/**
 * After a burst of writes on the whole stack: waits (up to 10 minutes) for the outbox to be
 * delivered to Temporal and says how fast that went.
 */
async function drainOutbox(db: Db, since: Date): Promise<string> {
  const backlog = async () => (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM outbox WHERE delivered_at IS NULL')).rows[0]!.n;
  const t0 = Date.now();
  const atEnd = await backlog();
  while ((await backlog()) > 0 && Date.now() - t0 < 600_000) await new Promise((r) => setTimeout(r, 250));
  const left = await backlog();
  const drainedS = (Date.now() - t0) / 1000;
  const { rows } = await db.query<{ written: number; delivered: number; span: number | null }>(
    `SELECT count(*)::int AS written, count(delivered_at)::int AS delivered,
            extract(epoch FROM max(delivered_at) - $1::timestamptz)::float8 AS span
       FROM outbox WHERE created_at >= $1`,
    [since],
  );
  const r = rows[0]!;
  return (
    `outbox: ${fmt(r.written)} rows written (warm-up included); backlog ${fmt(atEnd)} when the run ended, ` +
    (left === 0 ? `empty ${fmt(drainedS, 1)} s later` : `still ${fmt(left)} after ${fmt(drainedS)} s`) +
    `; delivered to Temporal at ${r.span ? fmt(r.delivered / r.span) : '?'}/s from the first POST to the last delivery`
  );
}

async function countPatched(db: Db): Promise<number> {
  const { rows } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_events WHERE action = 'user.patched'");
  return rows[0]!.n;
}

async function main(): Promise<number> {
  const settings = loadSettings(process.argv.slice(2));
  installSignalHandlers();
  const machine = await machineInfo(settings.adminUrl);
  log(`benchmark databases on ${redactDatabaseUrl(settings.adminUrl)}; sizes ${settings.sizes.join(', ')}`);

  const ceiling = await startServer('ceiling', {});
  let temporalAddress: string | undefined;
  if (settings.stack !== 'gateway') {
    // As `npm start` runs it: the dev server keeping its state in a SQLite file.
    const dir = mkdtempSync(join(os.tmpdir(), 'bench-scim-temporal-'));
    const dev = await startTemporalDevServer({ headless: true, dbFilename: join(dir, 'temporal.sqlite') });
    onCleanup('stop the Temporal dev server', async () => {
      await dev.stop();
      rmSync(dir, { recursive: true, force: true });
    });
    temporalAddress = dev.address;
  }
  const all: ScenarioResult[] = [];
  try {
    for (const size of settings.sizes) {
      const results = await runSize(settings, size, ceiling, temporalAddress);
      all.push(...results);
    }
  } finally {
    await ceiling.stop();
  }

  const poolSize = process.env.DATABASE_POOL_SIZE?.trim() || '10';
  process.stdout.write(
    [
      '',
      'SCIM benchmark',
      `machine:  ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.os}`,
      `software: Node ${machine.node}, PostgreSQL ${machine.postgres}, Fastify ${machine.fastify}`,
      `method:   ${settings.connections} connections, ${settings.warmupS} s warm-up + ${settings.durationS} s per scenario, the ceiling measured right before each; gateway LOG_LEVEL ${settings.logLevels.join(' and ')} (logs read and dropped by the parent); gateway and ceiling in child processes; gateway DB pool ${poolSize}; ${STACK_WORDS[settings.stack]}`,
    ].join('\n') + '\n',
  );
  for (const size of settings.sizes) for (const level of settings.logLevels) printSize(size, level, all.filter((r) => r.size === size && r.logLevel === level));
  process.stdout.write('\nPeak resident memory per round\n');
  for (const r of rounds) process.stdout.write(`  ${fmt(r.size)} users, LOG_LEVEL=${r.logLevel}: ${Object.entries(r.peakMiB).map(([k, v]) => `${k} ${fmt(v)} MiB`).join(', ')}\n`);

  const checks = checkTargets(settings, all);
  process.stdout.write('\nTargets\n');
  for (const c of checks) {
    const verdict = c.holds === null ? 'n/a' : c.holds ? 'HOLDS' : 'MISSED';
    process.stdout.write(`  ${`[${verdict}]`.padEnd(8)} ${c.target}: ${c.measured}\n`);
  }

  const failed = all.filter((r) => r.non2xx + r.errors + r.warmupNon2xx + r.warmupErrors > 0);
  if (failed.length) {
    process.stdout.write(`\n!!! ${failed.length} scenario run(s) had errors or non-2xx responses; their figures are not valid:\n`);
    for (const r of failed) {
      process.stdout.write(
        `!!!   ${fmt(r.size)} users, ${r.label}: ${fmt(r.non2xx)} non-2xx, ${fmt(r.errors)} errors (warm-up: ${fmt(r.warmupNon2xx)} non-2xx, ${fmt(r.warmupErrors)} errors), status codes ${JSON.stringify(r.statusCodes)}` +
          `${r.probe ? `; a probe request answered ${r.probe.status}: ${r.probe.body.slice(0, 200)}` : ''}\n`,
      );
    }
  }

  if (settings.json) {
    const report = {
      at: new Date().toISOString(),
      machine,
      settings: { stack: settings.stack, sizes: settings.sizes, logLevels: settings.logLevels, connections: settings.connections, durationS: settings.durationS, warmupS: settings.warmupS, gatewayPoolSize: Number(poolSize) },
      results: all,
      memory: rounds,
      targets: checks,
      ok: failed.length === 0,
    };
    writeFileSync(settings.out, `${JSON.stringify(report, null, 2)}\n`);
    log(`results written to ${settings.out}`);
  }
  return failed.length ? 1 : 0;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  let code = 1;
  try {
    code = await main();
  } catch (err) {
    process.stderr.write(`bench:scim failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  } finally {
    await cleanupAll();
  }
  process.exit(code);
}
