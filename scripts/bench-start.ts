/**
 * `npm run bench:start`: the whole stack as `npm start` runs it (gateway, worker and Temporal dev
 * server in one command, logs at the default level), once on the embedded database (PGlite, the
 * default) and once on PostgreSQL (DATABASE_URL set, a fresh database), in the same run, so the
 * embedded figures are read as ratios to PostgreSQL on the same machine.
 *
 * Per database: POST /Users (creates, each starting provisioning) and `userName eq` lookups, from
 * CONNECTIONS concurrent keep-alive clients in this process. Prints a table; nothing is asserted.
 *
 *   npm run bench:start -- [--creates 2000] [--lookups-seconds 10] [--connections 16]
 *
 * PostgreSQL is reached at BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres),
 * where a database is created for the run and dropped after.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { freePort } from './dev-server.js';
import { createBenchDatabase } from './bench-common.js';

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const CREATES = arg('creates', 2000);
const LOOKUP_SECONDS = arg('lookups-seconds', 10);
const CONNECTIONS = arg('connections', 16);
const TOKEN = `bench-${randomBytes(12).toString('hex')}`;
const say = (line: string) => process.stderr.write(`[bench] ${line}\n`);

interface Figures {
  perSec: number;
  p50: number;
  p99: number;
  count: number;
  failed: number;
}

function summarize(latencies: number[], seconds: number, failed: number): Figures {
  const sorted = [...latencies].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
  return { perSec: latencies.length / seconds, p50: at(0.5), p99: at(0.99), count: latencies.length, failed };
}

/** CONNECTIONS loops, each sending one request at a time until `more()` says stop. */
async function load(send: (i: number) => Promise<Response>, more: (i: number, elapsedMs: number) => boolean): Promise<Figures> {
  const latencies: number[] = [];
  let next = 0;
  let failed = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      for (;;) {
        const i = next++;
        if (!more(i, performance.now() - started)) return;
        const t0 = performance.now();
        const res = await send(i);
        await res.arrayBuffer();
        if (res.ok) latencies.push(performance.now() - t0);
        else failed++;
      }
    }),
  );
  return summarize(latencies, (performance.now() - started) / 1000, failed);
}

async function startStack(databaseUrl: string): Promise<{ base: string; stop(): Promise<void> }> {
  const dataDir = mkdtempSync(join(os.tmpdir(), 'scimgw-bench-start-'));
  const [port, temporalPort, uiPort] = [await freePort(), await freePort(), await freePort()];
  const child = spawn('npm', ['start'], {
    env: {
      ...process.env,
      DATABASE_URL: databaseUrl,
      TEMPORAL_ADDRESS: '',
      DATA_DIR: dataDir,
      PORT: String(port),
      HOST: '127.0.0.1',
      TEMPORAL_DEV_PORT: String(temporalPort),
      TEMPORAL_DEV_UI_PORT: String(uiPort),
      SCIM_TOKEN: TOKEN,
      LOG_LEVEL: 'info',
    },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let banner = '';
  // The logs are produced and read, as a terminal or a log shipper would; only the banner is kept.
  const onData = (d: Buffer) => {
    if (banner.length < 100_000) banner += d.toString();
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const base = await new Promise<string>((resolve, reject) => {
    const timer = setInterval(() => {
      const m = /SCIM base URL\s+(\S+)/.exec(banner);
      if (m) {
        clearInterval(timer);
        resolve(m[1]!);
      }
    }, 100);
    child.once('exit', (code) => {
      clearInterval(timer);
      reject(new Error(`npm start exited (${code}):\n${banner.slice(-2000)}`));
    });
  });
  return {
    base,
    async stop() {
      const exited = new Promise((r) => child.once('exit', r));
      process.kill(-child.pid!, 'SIGINT');
      await exited;
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function measure(label: string, databaseUrl: string): Promise<{ creates: Figures; lookups: Figures }> {
  say(`${label}: starting npm start`);
  const stack = await startStack(databaseUrl);
  try {
    const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/scim+json' };
    const body = (i: number) => JSON.stringify({ schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName: `bench.${i}@example.com` });
    const creates = await load(
      (i) => fetch(`${stack.base}/Users`, { method: 'POST', headers, body: body(i) }),
      (i) => i < CREATES,
    );
    say(`${label}: ${creates.count} creates at ${creates.perSec.toFixed(0)}/s`);
    const lookups = await load(
      (i) => fetch(`${stack.base}/Users?filter=${encodeURIComponent(`userName eq "bench.${i % CREATES}@example.com"`)}`, { headers }),
      (_i, elapsed) => elapsed < LOOKUP_SECONDS * 1000,
    );
    say(`${label}: lookups at ${lookups.perSec.toFixed(0)}/s`);
    return { creates, lookups };
  } finally {
    await stack.stop();
  }
}

async function main(): Promise<void> {
  const database = await createBenchDatabase('scimgw_bench');
  try {
    const postgres = await measure('PostgreSQL', database.url);
    const embedded = await measure('embedded', '');
    const row = (what: string, e: Figures, p: Figures) =>
      `| ${what} | ${e.perSec.toFixed(0)}/s (p50 ${e.p50.toFixed(1)} ms, p99 ${e.p99.toFixed(1)} ms) | ${p.perSec.toFixed(0)}/s (p50 ${p.p50.toFixed(1)} ms, p99 ${p.p99.toFixed(1)} ms) | ${((100 * e.perSec) / p.perSec).toFixed(0)}% |`;
    const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
    process.stdout.write(
      [
        `npm start, logs at info, worker and Temporal dev server up; ${CONNECTIONS} connections; ${os.cpus().length} × ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB; Node ${process.version}`,
        '',
        '| request | embedded (PGlite) | PostgreSQL | embedded / PostgreSQL |',
        '|---|---|---|---|',
        row(`POST /Users (${CREATES} creates)`, embedded.creates, postgres.creates),
        row(`GET userName eq (${LOOKUP_SECONDS} s)`, embedded.lookups, postgres.lookups),
        '',
        `failed requests: embedded ${embedded.creates.failed + embedded.lookups.failed}, PostgreSQL ${postgres.creates.failed + postgres.lookups.failed}`,
        '',
      ].join('\n'),
    );
  } finally {
    await database.drop();
  }
}

await main();
