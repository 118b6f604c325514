/**
 * Prometheus metrics of a worker process, served at `/metrics` on WORKER_METRICS_ADDRESS (a port of
 * its own: a worker serves no other HTTP). The Temporal SDK's own worker metrics (task slots, poll
 * and task latencies, …) are a separate endpoint, TEMPORAL_METRICS_ADDRESS, exported by the SDK's
 * runtime. Both are unauthenticated: bind them to an interface only the scraper reaches.
 *
 * Activities are instrumented by wrapping them ({@link instrumentActivities}), and provisioning steps
 * through the observer the activities are given ({@link WorkerMetrics.observeStep}; one activity may
 * apply several steps), so the activity code itself stays free of metrics:
 * - `scimgw_provisioning_steps_total{connector,action,outcome}`: each try of a provisioning step
 *   (createAccount, grantEntitlement, …); `outcome` is `ok` or `error` (Temporal retries errors).
 * - `scimgw_connector_call_duration_seconds{connector,operation,outcome}` and
 *   `scimgw_connector_call_errors_total{connector,operation}`: every activity that talks to a
 *   connector's target (steps, validation, reconcile listings).
 * - `scimgw_reconcile_drift_total{connector,kind,action}`: differences reconciliation runs found.
 */
import { createServer, type Server } from 'node:http';
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';

/** Activities whose work is calls to a connector's target, other than provisioning steps. */
const CONNECTOR_ACTIVITIES = new Set(['validateConnector', 'listTargetAccounts', 'listTargetGrants']);

/** Buckets (seconds) for connector calls: fast APIs to slow, throttled ones. */
const CALL_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** The worker's metrics, in a registry of their own. */
export class WorkerMetrics {
  readonly registry = new Registry();
  readonly steps = new Counter({
    name: 'scimgw_provisioning_steps_total',
    help: 'Tries of provisioning steps, by connector, action and outcome (ok or error)',
    labelNames: ['connector', 'action', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly callDuration = new Histogram({
    name: 'scimgw_connector_call_duration_seconds',
    help: 'Duration of activities calling a connector target, by connector, operation and outcome',
    labelNames: ['connector', 'operation', 'outcome'] as const,
    buckets: CALL_BUCKETS,
    registers: [this.registry],
  });
  readonly callErrors = new Counter({
    name: 'scimgw_connector_call_errors_total',
    help: 'Failed activities calling a connector target, by connector and operation',
    labelNames: ['connector', 'operation'] as const,
    registers: [this.registry],
  });
  readonly drift = new Counter({
    name: 'scimgw_reconcile_drift_total',
    help: 'Differences found by reconciliation runs, by connector, kind and action taken',
    labelNames: ['connector', 'kind', 'action'] as const,
    registers: [this.registry],
  });

  constructor(opts: { processMetrics?: boolean } = {}) {
    if (opts.processMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  /** Records one try of a provisioning step: a step, and a call to the connector's target. */
  observeStep(connector: string, action: string, outcome: 'ok' | 'error', seconds: number): void {
    this.steps.inc({ connector, action, outcome });
    this.callDuration.observe({ connector, operation: action, outcome }, seconds);
    if (outcome === 'error') this.callErrors.inc({ connector, operation: action });
  }
}

type AnyActivity = (input: never) => Promise<unknown>;

function connectorOf(input: unknown): string | undefined {
  const id = (input as { connectorId?: unknown } | undefined)?.connectorId;
  return typeof id === 'string' ? id : undefined;
}

/** The same activities, each recording its metrics around the call. */
export function instrumentActivities<A extends Record<string, AnyActivity>>(activities: A, metrics: WorkerMetrics): A {
  const wrapped: Record<string, AnyActivity> = {};
  for (const [name, fn] of Object.entries(activities)) {
    wrapped[name] = async (input: never) => {
      const connector = connectorOf(input);
      const started = process.hrtime.bigint();
      let outcome: 'ok' | 'error' = 'error';
      try {
        const result = await fn(input);
        outcome = 'ok';
        if (name === 'compareAndFix') recordDrift(metrics, result);
        return result;
      } finally {
        if (connector !== undefined && CONNECTOR_ACTIVITIES.has(name)) {
          const seconds = Number(process.hrtime.bigint() - started) / 1e9;
          metrics.callDuration.observe({ connector, operation: name, outcome }, seconds);
          if (outcome === 'error') metrics.callErrors.inc({ connector, operation: name });
        }
      }
    };
  }
  return wrapped as A;
}

function recordDrift(metrics: WorkerMetrics, result: unknown): void {
  const summary = result as { connectorId?: string; drift?: Array<{ kind: string; action: string; count: number }> };
  if (!summary.connectorId || !Array.isArray(summary.drift)) return;
  for (const d of summary.drift) metrics.drift.inc({ connector: summary.connectorId, kind: d.kind, action: d.action }, d.count);
}

/** Serves `registry` at `GET /metrics` on `host:port`; resolves once listening. */
export async function serveMetrics(registry: Registry, address: string): Promise<Server> {
  const at = address.lastIndexOf(':');
  const host = address.slice(0, at).replace(/^\[(.*)\]$/, '$1');
  const port = Number(address.slice(at + 1));
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      () => res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable\n'),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}
