/**
 * Admin API for the outbox (`admin` scope): its state, the rows dead-lettered after their tries ran
 * out, and re-driving them (one, or all at once, e.g. after a long Temporal outage). A re-drive
 * gives the row a fresh set of tries, is audited, and wakes this gateway's dispatcher at once.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { listDeadLetters, outboxStats, redriveDeadLetters } from '../../../core/outbox/dead-letters.js';
import { sendApiError } from './errors.js';
import { apiErrors, DateTime } from '../schemas.js';

const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;

const DeadLetter = Type.Object({
  id: Type.Integer({ description: 'outbox sequence number' }),
  topic: Type.String({ description: 'user.changed or connector.changed' }),
  aggregateId: Type.String({ description: 'the user id or connector id the message is about' }),
  attempts: Type.Integer({ description: 'delivery tries made before it was parked' }),
  reason: Type.String({ description: 'the error of the last try' }),
  createdAt: DateTime(),
  deadLetteredAt: DateTime(),
});

const Redriven = Type.Object({ redriven: Type.Array(Type.Integer(), { description: 'ids put back in the queue' }) });

const outbox: FastifyPluginAsyncTypebox = async (app) => {
  const admin = app.requireScope('admin');
  const tags = ['admin'];
  const security = [{ bearer: [] }];

  app.get(
    '/api/outbox',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: 'Outbox state: pending rows, age of the oldest, dead letters',
        response: {
          200: Type.Object({ pending: Type.Integer(), oldestPendingAgeSeconds: Type.Number(), deadLetters: Type.Integer() }),
          ...apiErrors([]),
        },
      },
    },
    async () => await outboxStats(app.db),
  );

  app.get(
    '/api/outbox/dead-letters',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: 'Dead-lettered outbox rows in id order, a page at a time',
        querystring: Type.Object(
          {
            limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$', description: `1 to ${MAX_LIMIT} (default ${DEFAULT_LIMIT})` })),
            afterId: Type.Optional(Type.String({ pattern: '^[0-9]{1,18}$', description: 'the last id of the previous page' })),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Array(DeadLetter), ...apiErrors([400]) },
      },
    },
    async (request, reply) => {
      const limit = request.query.limit === undefined ? DEFAULT_LIMIT : Number(request.query.limit);
      if (limit < 1 || limit > MAX_LIMIT) return sendApiError(reply, 400, `limit: must be between 1 and ${MAX_LIMIT}, got ${limit}`);
      return await listDeadLetters(app.db, limit, Number(request.query.afterId ?? 0));
    },
  );

  app.post(
    '/api/outbox/dead-letters/:id/redrive',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: 'Re-drive one dead letter: back in the queue with a fresh set of tries',
        params: Type.Object({ id: Type.String({ pattern: '^[0-9]{1,18}$' }) }),
        response: { 200: Redriven, ...apiErrors([400, 404], { 404: 'no dead letter with that id' }) },
      },
    },
    async (request, reply) => {
      const redriven = await redriveDeadLetters(app.db, request.identity!.name, Number(request.params.id));
      if (redriven.length === 0) return sendApiError(reply, 404, `no dead letter with id ${request.params.id}`);
      app.outbox.kick();
      return { redriven };
    },
  );

  app.post(
    '/api/outbox/dead-letters/redrive',
    { onRequest: admin, schema: { tags, security, summary: 'Re-drive every dead letter', response: { 200: Redriven, ...apiErrors([]) } } },
    async (request) => {
      const redriven = await redriveDeadLetters(app.db, request.identity!.name);
      if (redriven.length > 0) app.outbox.kick();
      return { redriven };
    },
  );
};

export default outbox;
