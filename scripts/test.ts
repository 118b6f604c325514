/**
 * `npm test`: makes sure the real services the suite needs are there, then runs tap.
 *
 * 1. PostgreSQL answers at TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres);
 *    on a Debian machine where the local cluster is down, it is started with pg_ctlcluster.
 * 2. The Temporal CLI exists (built with Go when missing, see scripts/temporal-cli.ts), and one dev
 *    server runs for the whole suite; test files reach it through TEMPORAL_TEST_ADDRESS.
 * 3. The workflow bundle is built once and shared through TEMPORAL_TEST_WORKFLOW_BUNDLE.
 *
 * Arguments are passed to tap (`npm test -- test/gateway/outbox.test.ts`).
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

async function main(): Promise<number> {
  const started = Date.now();
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
  const tapBin = join(process.cwd(), 'node_modules', '.bin', 'tap');
  const child = spawn(tapBin, process.argv.slice(2), { env, stdio: ['ignore', 'pipe', 'inherit'] });
  let tail = '';
  child.stdout.on('data', (d: Buffer) => {
    process.stdout.write(d);
    tail = (tail + d.toString()).slice(-2000);
  });
  const forward = (sig: NodeJS.Signals) => child.kill(sig);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  const code = await new Promise<number>((resolve) => child.on('exit', (c, s) => resolve(c ?? (s ? 1 : 0))));

  await server.stop();
  rmSync(work, { recursive: true, force: true });

  // tap ends with "# { total: N, pass: N, fail: N, skip: N }"; restate it as a plain line.
  const summary = /#\s*\{([^}]*)\}\s*$/m.exec(tail)?.[1] ?? '';
  const count = (k: string) => Number(new RegExp(`${k}:\\s*(\\d+)`).exec(summary)?.[1] ?? 0);
  const skipped = count('skip') + count('todo');
  process.stdout.write(`\n${count('pass')} passed, ${count('fail')} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
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
