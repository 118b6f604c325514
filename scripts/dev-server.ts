/**
 * Starts the Temporal dev server (`temporal server start-dev`: a full Temporal server on SQLite with
 * its Web UI) as a child process and waits until its frontend answers. Used by `npm start` when
 * TEMPORAL_ADDRESS is not set, and by the test runner.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname } from 'node:path';
import { Connection } from '@temporalio/client';
import { findTemporalCli } from './temporal-cli.js';

export interface DevServer {
  address: string;
  /** Web UI base URL, or undefined when started headless. */
  uiUrl: string | undefined;
  /** The server's process id, when it runs as a child of this process. */
  pid?: number | undefined;
  stop(): Promise<void>;
}

export interface DevServerOptions {
  port?: number;
  uiPort?: number;
  /** SQLite file that keeps workflows across restarts; in memory when undefined. */
  dbFilename?: string;
  headless?: boolean;
  namespace?: string;
  log?: (line: string) => void;
  startTimeoutMs?: number;
  /** Dynamic config values (`--dynamic-config-value KEY=JSON`), e.g. `{ 'matching.numTaskqueueReadPartitions': 1 }`. */
  dynamicConfig?: Record<string, unknown>;
}

/** A free TCP port on loopback, chosen by the kernel. */
export async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

async function waitForFrontend(address: string, child: ChildProcess | undefined, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null) {
      throw new Error(`temporal dev server exited with code ${child.exitCode} during start-up`);
    }
    try {
      const conn = await Connection.connect({ address, connectTimeout: 1000 });
      try {
        await conn.workflowService.getSystemInfo({});
        return;
      } finally {
        await conn.close();
      }
    } catch (err) {
      lastError = err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  throw new Error(`temporal dev server at ${address} did not answer within ${timeoutMs} ms`, { cause: lastError });
}

/**
 * Settings the dev server runs with unless `dynamicConfig` says otherwise. Eager activity
 * execution: an activity a workflow task schedules goes straight back to the worker that completed
 * the task, in the answer, instead of through a task queue poll; the Temporal server does less per
 * activity, which is most of a provisioning round (off by default in the server; set the same key
 * in a production cluster's dynamic config).
 */
export const DEV_SERVER_DYNAMIC_CONFIG: Record<string, unknown> = { 'system.enableActivityEagerExecution': true };

export async function startTemporalDevServer(opts: DevServerOptions = {}): Promise<DevServer> {
  const log = opts.log ?? (() => {});
  const port = opts.port ?? (await freePort());
  const uiPort = opts.headless ? undefined : (opts.uiPort ?? (await freePort()));
  const address = `127.0.0.1:${port}`;
  const cli = findTemporalCli({ log });
  const dynamicConfigArgs = Object.entries({ ...DEV_SERVER_DYNAMIC_CONFIG, ...opts.dynamicConfig }).flatMap(([key, value]) => ['--dynamic-config-value', `${key}=${JSON.stringify(value)}`]);

  if (!cli) {
    // No binary and no Go: let the SDK download the CLI (works on machines with internet access).
    log('Temporal CLI not found locally; downloading it through the Temporal SDK');
    const { TestWorkflowEnvironment } = await import('@temporalio/testing');
    const env = await TestWorkflowEnvironment.createLocal({
      server: {
        ip: '127.0.0.1',
        port,
        ui: !opts.headless,
        ...(uiPort !== undefined ? { uiPort } : {}),
        ...(opts.dbFilename ? { dbFilename: opts.dbFilename } : {}),
        namespace: opts.namespace ?? 'default',
        extraArgs: dynamicConfigArgs,
      },
    });
    return {
      address,
      uiUrl: uiPort !== undefined ? `http://127.0.0.1:${uiPort}` : undefined,
      stop: () => env.teardown(),
    };
  }

  const args = ['server', 'start-dev', '--ip', '127.0.0.1', '--port', String(port), '--log-level', 'warn'];
  args.push('--namespace', opts.namespace ?? 'default');
  args.push(...dynamicConfigArgs);
  if (opts.dbFilename) {
    mkdirSync(dirname(opts.dbFilename), { recursive: true });
    args.push('--db-filename', opts.dbFilename);
  }
  if (uiPort === undefined) args.push('--headless');
  else args.push('--ui-port', String(uiPort));

  const child = spawn(cli, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  // If this process exits without stopping the server, take it down too: no orphans.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);

  const stop = async () => {
    process.removeListener('exit', killOnExit);
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };

  try {
    await waitForFrontend(address, child, opts.startTimeoutMs ?? 60_000);
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}\n${stderr}`, { cause: err });
  }
  return { address, uiUrl: uiPort !== undefined ? `http://127.0.0.1:${uiPort}` : undefined, pid: child.pid, stop };
}
