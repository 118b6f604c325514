/**
 * `npm test`: makes sure the real services the suite needs are there, then runs tap.
 *
 * 1. PostgreSQL answers at TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres);
 *    on a Debian machine where the local cluster is down, it is started with pg_ctlcluster.
 * 2. The Temporal CLI exists (built with Go when missing, see scripts/temporal-cli.ts), and one dev
 *    server runs for the whole suite; test files reach it through TEMPORAL_TEST_ADDRESS.
 * 3. The workflow bundle is built once and shared through TEMPORAL_TEST_WORKFLOW_BUNDLE.
 * 4. The system programs some tests run for real (openvpn, easy-rsa) are installed; if not, one
 *    line says what to install, before anything runs.
 *
 * With no arguments, tap runs every test file on PostgreSQL, then runs the files in
 * EMBEDDED_SUITE again on the embedded database (TEST_DATABASE=embedded, see test/helpers/db.ts),
 * so the `npm start` default cannot drift from PostgreSQL. Arguments are passed to tap instead
 * (`npm test -- test/gateway/outbox/dispatcher.test.ts`), on the database TEST_DATABASE names.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { bundleWorkflowCode } from '@temporalio/worker';
import { WORKFLOWS_PATH } from '../workflows/worker.js';
import { startTemporalDevServer } from './dev-server.js';
import { findTemporalCli } from './temporal-cli.js';

const say = (line: string) => process.stderr.write(`[test] ${line}\n`);

async function pgAnswers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

async function ensurePostgres(url: string): Promise<void> {
  if (await pgAnswers(url)) return;
  if (existsSync('/etc/postgresql')) {
    for (const version of readdirSync('/etc/postgresql')) {
      say(`PostgreSQL not answering; starting cluster ${version}/main`);
      try {
        execFileSync('pg_ctlcluster', ['--skip-systemctl-redirect', version, 'main', 'start'], { stdio: 'inherit' });
      } catch {
        // reported below if it still does not answer
      }
    }
    for (let i = 0; i < 20 && !(await pgAnswers(url)); i++) await new Promise((r) => setTimeout(r, 500));
  }
  if (!(await pgAnswers(url))) {
    say(`PostgreSQL does not answer at ${url}; set TEST_DATABASE_URL to a server the tests may create databases on`);
    process.exit(1);
  }
}

/**
 * The files that run a second time on the embedded database: the SCIM contract with every error
 * path, the admin API, the directory, the outbox and the engine's workflows. Left out: files that
 * start separate worker processes against the database (the embedded database serves one
 * process, see core/db/embedded.ts) and files about one connector's target.
 */
const EMBEDDED_SUITE = [
  'test/gateway/routes/scim/*.test.ts',
  'test/gateway/routes/api/*.test.ts',
  'test/core/directory/*.test.ts',
  'test/gateway/outbox/*.test.ts',
  'test/workflows/provisioning.test.ts',
  'test/workflows/reconcile.test.ts',
  'test/workflows/user-sync.test.ts',
  // npm start's console: its status stream polls there (no LISTEN on the single connection).
  'test/gateway/console/admin-directory.test.ts',
];

/** Programs that tests run for real, from Debian's packages: [path, package]. */
const SYSTEM_PROGRAMS: Array<[string, string]> = [
  ['/usr/sbin/openvpn', 'openvpn'],
  ['/usr/share/easy-rsa/easyrsa', 'easy-rsa'],
  ['/usr/bin/openssl', 'openssl'],
];

function missingPackages(): string[] {
  return SYSTEM_PROGRAMS.filter(([path]) => !existsSync(path)).map(([, pkg]) => pkg);
}

interface TapRun {
  code: number;
  pass: number;
  fail: number;
  skip: number;
}

async function runTap(args: string[], env: NodeJS.ProcessEnv): Promise<TapRun> {
  const tapBin = join(process.cwd(), 'node_modules', '.bin', 'tap');
  const child = spawn(tapBin, args, { env, stdio: ['ignore', 'pipe', 'inherit'] });
  let tail = '';
  child.stdout.on('data', (d: Buffer) => {
    process.stdout.write(d);
    tail = (tail + d.toString()).slice(-2000);
  });
  const forward = (sig: NodeJS.Signals) => child.kill(sig);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  const code = await new Promise<number>((resolve) => child.on('exit', (c, sig) => resolve(c ?? (sig ? 1 : 0))));
  process.off('SIGINT', forward);
  process.off('SIGTERM', forward);
  // tap ends with "# { total: N, pass: N, fail: N, skip: N }".
  const summary = /#\s*\{([^}]*)\}\s*$/m.exec(tail)?.[1] ?? '';
  const count = (k: string) => Number(new RegExp(`${k}:\\s*(\\d+)`).exec(summary)?.[1] ?? 0);
  return { code, pass: count('pass'), fail: count('fail'), skip: count('skip') + count('todo') };
}

async function main(): Promise<number> {
  const started = Date.now();
  const missing = missingPackages();
  if (missing.length > 0) {
    say(`missing system packages for the tests: ${missing.join(' ')} (Debian/Ubuntu: apt-get install ${missing.join(' ')})`);
    return 1;
  }
  const pgUrl = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  await ensurePostgres(pgUrl);
  say(`PostgreSQL answers at ${new URL(pgUrl).host}`);

  const cliStarted = Date.now();
  const cli = findTemporalCli({ log: say });
  if (cli) say(`Temporal CLI: ${cli} (${Math.round((Date.now() - cliStarted) / 1000)} s)`);
  const server = await startTemporalDevServer({ headless: true, log: say });
  say(`Temporal dev server at ${server.address}`);

  const work = mkdtempSync(join(tmpdir(), 'scimgw-test-'));
  const bundlePath = join(work, 'workflow-bundle.js');
  const bundle = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quietLogger });
  writeFileSync(bundlePath, bundle.code);

  const env = {
    ...process.env,
    TEST_DATABASE_URL: pgUrl,
    TEMPORAL_TEST_ADDRESS: server.address,
    TEMPORAL_TEST_WORKFLOW_BUNDLE: bundlePath,
    ...(cli ? { TEMPORAL_CLI_PATH: cli } : {}),
  };
  const args = process.argv.slice(2);
  const runs: TapRun[] = [];
  if (args.length > 0) {
    runs.push(await runTap(args, env));
  } else {
    say('every test file on PostgreSQL');
    runs.push(await runTap([], { ...env, TEST_DATABASE: 'postgres' }));
    say(`the SCIM, API, directory, outbox and workflow tests again on the embedded database (${EMBEDDED_SUITE.join(' ')})`);
    runs.push(await runTap(EMBEDDED_SUITE, { ...env, TEST_DATABASE: 'embedded' }));
  }

  await server.stop();
  rmSync(work, { recursive: true, force: true });

  const total = (k: 'pass' | 'fail' | 'skip') => runs.reduce((n, r) => n + r[k], 0);
  const code = runs.find((r) => r.code !== 0)?.code ?? 0;
  const skipped = total('skip');
  process.stdout.write(`\n${total('pass')} passed, ${total('fail')} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
  say(`done in ${Math.round((Date.now() - started) / 1000)} s (exit ${code})`);
  return code;
}

const quietLogger = {
  log: () => {},
  trace: () => {},
  debug: () => {},
  info: () => {},
  warn: (m: string) => say(m),
  error: (m: string) => say(m),
};

process.exit(await main());
