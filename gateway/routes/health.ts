/**
 * Liveness and readiness for load balancers and orchestrators. `/healthz` answers while the process
 * runs; `/readyz` answers 200 only when PostgreSQL and Temporal both respond.
 *
 * `/readyz` also reports the outbox: rows waiting, the age of the oldest, and dead letters. Dead
 * letters make the status `degraded` but keep the answer 200: taking this gateway out of a load
 * balancer would not deliver them (a re-drive through the admin API does), yet the state must not
 * look healthy.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { outboxStats, type OutboxStats } from '../../core/outbox/dead-letters.js';
import { apiErrors, StringEnum } from './schemas.js';

const CheckSchema = Type.Object({
  status: StringEnum(['ok', 'degraded', 'unavailable']),
  checks: Type.Optional(
    Type.Object({
      postgres: Type.Optional(Type.String()),
      temporal: Type.Optional(Type.String()),
      outbox: Type.Optional(Type.String({ description: 'ok, or "dead letters" while any row is parked' })),
    }),
  ),
  outbox: Type.Optional(
    Type.Object(
      { pending: Type.Integer(), oldestPendingAgeSeconds: Type.Number(), deadLetters: Type.Integer() },
      { description: 'absent when PostgreSQL is unreachable' },
    ),
  ),
});

const health: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/healthz',
    { schema: { tags: ['operations'], summary: 'Liveness', response: { 200: CheckSchema, ...apiErrors([], {}, false) } } },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      schema: {
        tags: ['operations'],
        summary: 'Readiness: PostgreSQL and Temporal reachable; outbox backlog and dead letters',
        response: { 200: CheckSchema, 503: { ...CheckSchema, description: 'PostgreSQL or Temporal is unreachable' }, ...apiErrors([], {}, false) },
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
