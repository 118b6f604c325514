/**
 * What an administrator starts on a connector, the way the admin API does it, for every front end
 * that offers it (the REST API, the console): "test connection" and a reconciliation (dry run or
 * enforcing), each run in a worker through Temporal; and the address of a workflow in the Temporal UI.
 */
import type { FastifyInstance } from 'fastify';
import {
  describeReconcileRun,
  startReconcileRun,
  testConnectorConnection,
  type Client,
  type ReconcileRunState,
  type TestConnectionResult,
} from '../workflows/client.js';

type Gateway = Pick<FastifyInstance, 'db' | 'temporal' | 'config'>;

/** Why an operation was not started: no such connector (404), one already running (409), Temporal down (503). */
export interface Refused {
  ok: false;
  status: 404 | 409 | 503;
  message: string;
}

const TEMPORAL_DOWN: Refused = { ok: false, status: 503, message: 'Temporal is unreachable; try again later' };

async function clientFor(app: Gateway, connectorId: string): Promise<{ ok: true; client: Client } | Refused> {
  const { rows } = await app.db.query('SELECT 1 FROM connectors WHERE id = $1', [connectorId]);
  if (!rows[0]) return { ok: false, status: 404, message: `no connector "${connectorId}"` };
  try {
    return { ok: true, client: await app.temporal.client() };
  } catch {
    return TEMPORAL_DOWN;
  }
}

/** Runs the connector's validate() in a worker: ok, or the connector's own words for what failed. */
export async function testConnector(app: Gateway, connectorId: string): Promise<{ ok: true; result: TestConnectionResult } | Refused> {
  const got = await clientFor(app, connectorId);
  if (!got.ok) return got;
  return { ok: true, result: await testConnectorConnection(got.client, app.config.taskQueue, connectorId) };
}

/** Starts a reconciliation of the connector now (a dry run only reports); refused while one is running. */
export async function startReconcile(
  app: Gateway,
  connectorId: string,
  dryRun: boolean,
): Promise<{ ok: true; handle: NonNullable<Awaited<ReturnType<typeof startReconcileRun>>> } | Refused> {
  const got = await clientFor(app, connectorId);
  if (!got.ok) return got;
  const handle = await startReconcileRun(got.client, app.config.taskQueue, connectorId, dryRun);
  if (!handle) return { ok: false, status: 409, message: `a reconciliation of "${connectorId}" is running` };
  return { ok: true, handle };
}

/** How the reconciliation run `runId` of the connector is doing; undefined when Temporal knows no such run. */
export async function reconcileRunState(app: Gateway, connectorId: string, runId: string): Promise<ReconcileRunState | undefined | Refused> {
  let client: Client;
  try {
    client = await app.temporal.client();
  } catch {
    return TEMPORAL_DOWN;
  }
  return await describeReconcileRun(client, connectorId, runId);
}

