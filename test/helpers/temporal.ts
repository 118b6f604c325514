/**
 * Temporal for tests: the dev server started once by `npm test` (TEMPORAL_TEST_ADDRESS), or, when a
 * file runs on its own under tap, a dev server started for that file.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Runtime, DefaultLogger, type Worker } from '@temporalio/worker';
import { startTemporalDevServer, type DevServer } from '../../scripts/dev-server.js';
import { createWorker, type WorkerDeps } from '../../workflows/worker.js';
import { ensureSearchAttributes } from '../../workflows/client.js';
import type { Db } from '../../core/db/pool.js';

interface Teardown {
  teardown(fn: () => void | Promise<void>): void;
}

let runtimeInstalled = false;
function quietRuntime(): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  Runtime.install({ logger: new DefaultLogger('WARN') });
}

export interface TestTemporal {
  address: string;
  namespace: string;
  client: Client;
  /** A task queue unique to this test file, so workers of other files never take its tasks. */
  taskQueue: string;
  /** Starts an in-process worker on this file's task queue (with `deps` added to the worker's); stopped at teardown. */
  startWorker(db: Db, opts?: { taskQueue?: string; deps?: Partial<WorkerDeps> }): Promise<Worker>;
}

export function uniqueTaskQueue(): string {
  return `test-${randomBytes(6).toString('hex')}`;
}

export function workflowBundle(): { code: string } | undefined {
  const path = process.env.TEMPORAL_TEST_WORKFLOW_BUNDLE;
  return path ? { code: readFileSync(path, 'utf8') } : undefined;
}

/** Starts a dev server owned by one test (for tests that stop and restart Temporal). */
export async function ownDevServer(t: Teardown, opts: { port?: number; dbFilename?: string } = {}): Promise<DevServer> {
  const server = await startTemporalDevServer({ headless: true, ...opts });
  t.teardown(() => server.stop());
  return server;
}

export async function testTemporal(t: Teardown, opts: { address?: string; taskQueue?: string } = {}): Promise<TestTemporal> {
  quietRuntime();
  let address = opts.address ?? process.env.TEMPORAL_TEST_ADDRESS;
  if (!address) address = (await ownDevServer(t)).address;
  const namespace = 'default';
  const connection = await Connection.connect({ address });
  await ensureSearchAttributes(connection, namespace);
  const client = new Client({ connection, namespace });
  const taskQueue = opts.taskQueue ?? uniqueTaskQueue();
  const workers: Array<{ worker: Worker; running: Promise<void>; conn: NativeConnection }> = [];
  t.teardown(async () => {
    for (const w of workers) {
      if (w.worker.getState() === 'RUNNING') w.worker.shutdown();
      await w.running.catch(() => {});
      await w.conn.close();
    }
    await connection.close();
  });
  return {
    address,
    namespace,
    client,
    taskQueue,
    async startWorker(db, opts = {}) {
      const conn = await NativeConnection.connect({ address });
      const bundle = workflowBundle();
      const worker = await createWorker({
        connection: conn,
        namespace,
        taskQueue: opts.taskQueue ?? taskQueue,
        db,
        ...opts.deps,
        ...(bundle ? { workflowBundle: bundle } : {}),
      });
      const running = worker.run();
      workers.push({ worker, running, conn });
      return worker;
    },
  };
}

/** Polls `fn` until it returns a truthy value or `timeoutMs` passes. */
export async function eventually<T>(fn: () => Promise<T | undefined | null | false>, timeoutMs = 30_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await fn();
      if (value) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`, { cause: lastError });
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
