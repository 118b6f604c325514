/**
 * The whole provisioning stack for engine tests: an isolated database, the shared Temporal dev
 * server with a task queue of the test's own, and a gateway whose token may use SCIM and the admin
 * API; with an in-process worker unless the test runs its own worker processes.
 */
import { createTestDatabase, type TestDatabase } from './db.js';
import { startTestGateway, type TestGateway } from './gateway.js';
import { testTemporal, type TestTemporal } from './temporal.js';

interface Teardown {
  teardown(fn: () => void | Promise<void>): void;
}

export interface TestStack {
  database: TestDatabase;
  temporal: TestTemporal;
  gw: TestGateway;
}

export async function startTestStack(t: Teardown, opts: { idleMs: number; worker?: boolean; env?: Record<string, string>; consoleLocalSignIn?: boolean }): Promise<TestStack> {
  const database = await createTestDatabase(t);
  const temporal = await testTemporal(t);
  const gw = await startTestGateway(t, {
    database,
    temporalAddress: temporal.address,
    taskQueue: temporal.taskQueue,
    scopes: ['scim:read', 'scim:write', 'admin'],
    env: { USER_SYNC_IDLE_MS: String(opts.idleMs), ...opts.env },
    ...(opts.consoleLocalSignIn ? { consoleLocalSignIn: true } : {}),
  });
  if (opts.worker !== false) await temporal.startWorker(database.newPool());
  return { database, temporal, gw };
}
