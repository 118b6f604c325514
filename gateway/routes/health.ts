/**
 * Liveness and readiness for load balancers and orchestrators. `/healthz` answers while the process
 * runs; `/readyz` answers 200 only when PostgreSQL and Temporal both respond.
 *
 * `/readyz` also reports the outbox: rows waiting, the age of the oldest, and dead letters. Dead
 * letters make the status `degraded` but keep the answer 200: taking this gateway out of a load
 * balancer would not deliver them (a re-drive through the admin API does), yet the state must not
 * look healthy.
 */
import type { FastifyPluginAsync } from 'fastify';
import { outboxStats, type OutboxStats } from '../../core/outbox/dead-letters.js';

const CheckSchema = {
  type: 'object',
  properties: {
    status: { type: 'string', enum: ['ok', 'degraded', 'unavailable'] },
    checks: {
      type: 'object',
      properties: { postgres: { type: 'string' }, temporal: { type: 'string' }, outbox: { type: 'string', description: 'ok, or "dead letters" while any row is parked' } },
    },
    outbox: {
      type: 'object',
      description: 'absent when PostgreSQL is unreachable',
      properties: { pending: { type: 'integer' }, oldestPendingAgeSeconds: { type: 'number' }, deadLetters: { type: 'integer' } },
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
        summary: 'Readiness: PostgreSQL and Temporal reachable; outbox backlog and dead letters',
        response: { 200: CheckSchema, 503: CheckSchema },
      },
    },
    async (_request, reply) => {
      const [outbox, temporal] = await Promise.all([
        outboxStats(app.db).catch((): OutboxStats | undefined => undefined),
        app.temporal.isReachable().then((ok) => (ok ? 'ok' : 'unreachable')),
      ]);
      const postgres = outbox ? 'ok' : 'unreachable';
      const ready = postgres === 'ok' && temporal === 'ok';
      const dead = (outbox?.deadLetters ?? 0) > 0;
      const status = !ready ? 'unavailable' : dead ? 'degraded' : 'ok';
      const checks = { postgres, temporal, ...(outbox ? { outbox: dead ? 'dead letters' : 'ok' } : {}) };
      return reply.code(ready ? 200 : 503).send({ status, checks, ...(outbox ? { outbox } : {}) });
    },
  );
};

export default health;
