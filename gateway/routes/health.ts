/**
 * Liveness and readiness for load balancers and orchestrators. `/healthz` answers while the process
 * runs; `/readyz` answers 200 only when PostgreSQL and Temporal both respond.
 */
import type { FastifyPluginAsync } from 'fastify';

const CheckSchema = {
  type: 'object',
  properties: {
    status: { type: 'string', enum: ['ok', 'unavailable'] },
    checks: {
      type: 'object',
      properties: { postgres: { type: 'string' }, temporal: { type: 'string' } },
    },
  },
} as const;

const health: FastifyPluginAsync = async (app) => {
  app.get(
    '/healthz',
    { schema: { tags: ['operations'], summary: 'Liveness', response: { 200: CheckSchema } } },
    async () => ({ status: 'ok' }),
  );

  app.get(
    '/readyz',
    {
      schema: {
        tags: ['operations'],
        summary: 'Readiness: PostgreSQL and Temporal reachable',
        response: { 200: CheckSchema, 503: CheckSchema },
      },
    },
    async (_request, reply) => {
      const [postgres, temporal] = await Promise.all([
        app.db.query('SELECT 1').then(
          () => 'ok',
          () => 'unreachable',
        ),
        app.temporal.isReachable().then((ok) => (ok ? 'ok' : 'unreachable')),
      ]);
      const ready = postgres === 'ok' && temporal === 'ok';
      return reply.code(ready ? 200 : 503).send({ status: ready ? 'ok' : 'unavailable', checks: { postgres, temporal } });
    },
  );
};

export default health;
