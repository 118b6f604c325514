/**
 * Prometheus metrics of the gateway at `GET /metrics`, for tokens with the `metrics:read` scope (or
 * `admin`), on the same port as the API: a scraper authenticates like any client
 * (`Authorization: Bearer …` in its scrape config), and nothing new has to be exposed.
 *
 * - `scimgw_http_requests_total` and `scimgw_http_request_duration_seconds`: every answer, by route
 *   pattern (never the raw URL, so ids do not multiply series), method, status, and, for the counter,
 *   the name of the token that made it (`-` for unauthenticated requests).
 * - `scimgw_outbox_pending`, `scimgw_outbox_oldest_pending_age_seconds`, `scimgw_outbox_dead_letters`:
 *   read from PostgreSQL at scrape time, so every gateway reports the same, shared outbox.
 * - `scimgw_reconcile_last_drift`: differences the last finished reconciliation of each connector found.
 * - Node.js process metrics (`process_*`, `nodejs_*`).
 *
 * Worker-side metrics (provisioning steps, connector calls) are on the worker's own metrics port
 * (workflows/activities/metrics.ts).
 */
import fp from 'fastify-plugin';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { FastifyPluginAsync } from 'fastify';
import { outboxStats } from '../../core/outbox/dead-letters.js';

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Registry;
  }
}

/** Buckets (seconds) for request latency: sub-millisecond cache hits to slow bulk requests. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const metrics: FastifyPluginAsync = async (app) => {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  app.decorate('metrics', registry);

  const requests = new Counter({
    name: 'scimgw_http_requests_total',
    help: 'HTTP requests answered, by route pattern, method, status and client token name',
    labelNames: ['route', 'method', 'status', 'client'] as const,
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'scimgw_http_request_duration_seconds',
    help: 'Time to answer an HTTP request, by route pattern, method and status',
    labelNames: ['route', 'method', 'status'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });

  // One query per scrape feeds the three outbox gauges.
  let stats: Promise<Awaited<ReturnType<typeof outboxStats>> | undefined> | undefined;
  const outbox = () => (stats ??= outboxStats(app.db).catch(() => undefined).finally(() => setImmediate(() => (stats = undefined))));
  const outboxGauge = (name: string, help: string, pick: (s: Awaited<ReturnType<typeof outboxStats>>) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      async collect() {
        const s = await outbox();
        if (s) this.set(pick(s));
      },
    });
  outboxGauge('scimgw_outbox_pending', 'Outbox rows waiting for delivery to Temporal', (s) => s.pending);
  outboxGauge('scimgw_outbox_oldest_pending_age_seconds', 'Age of the oldest outbox row waiting for delivery (0 when none)', (s) => s.oldestPendingAgeSeconds);
  outboxGauge('scimgw_outbox_dead_letters', 'Outbox rows dead-lettered after their delivery tries ran out, waiting for a re-drive', (s) => s.deadLetters);

  new Gauge({
    name: 'scimgw_reconcile_last_drift',
    help: 'Differences found by the last finished reconciliation of each connector',
    labelNames: ['connector'] as const,
    registers: [registry],
    async collect() {
      const { rows } = await app.db
        .query<{ connector_id: string; drift_found: number }>(
          `SELECT DISTINCT ON (connector_id) connector_id, drift_found FROM reconcile_runs
            WHERE finished_at IS NOT NULL ORDER BY connector_id, finished_at DESC`,
        )
        .catch(() => ({ rows: [] }));
      this.reset();
      for (const r of rows) this.set({ connector: r.connector_id }, r.drift_found);
    },
  });

  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url ?? '(unmatched)';
    const status = String(reply.statusCode);
    requests.inc({ route, method: request.method, status, client: request.identity?.name ?? '-' });
    latency.observe({ route, method: request.method, status }, reply.elapsedTime / 1000);
    done();
  });

  app.get(
    '/metrics',
    {
      onRequest: app.requireScope('metrics:read'),
      schema: {
        tags: ['operations'],
        security: [{ bearer: [] }],
        summary: 'Prometheus metrics (scope metrics:read)',
        produces: ['text/plain'],
        response: { 200: { description: 'Prometheus text exposition format', type: 'string' } },
      },
    },
    async (_request, reply) => reply.type(registry.contentType).send(await registry.metrics()),
  );
};

export default fp(metrics, { name: 'metrics', dependencies: ['services', 'auth'], fastify: '5.x' });
