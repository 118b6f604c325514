/**
 * Admin API for the outbox (`admin` scope): its state, the rows dead-lettered after their tries ran
 * out, and re-driving them (one, or all at once, e.g. after a long Temporal outage). A re-drive
 * gives the row a fresh set of tries, is audited, and wakes this gateway's dispatcher at once.
 */
import type { FastifyPluginAsync } from 'fastify';
import { listDeadLetters, outboxStats, redriveDeadLetters } from '../../../core/outbox/dead-letters.js';
import { sendApiError } from './errors.js';

const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;

const DeadLetter = {
  type: 'object',
  properties: {
    id: { type: 'integer', description: 'outbox sequence number' },
    topic: { type: 'string', description: 'user.changed or connector.changed' },
    aggregateId: { type: 'string', description: 'the user id or connector id the message is about' },
    attempts: { type: 'integer', description: 'delivery tries made before it was parked' },
    reason: { type: 'string', description: 'the error of the last try' },
    createdAt: { type: 'string', format: 'date-time' },
    deadLetteredAt: { type: 'string', format: 'date-time' },
  },
} as const;

const Redriven = {
  type: 'object',
  properties: { redriven: { type: 'array', items: { type: 'integer' }, description: 'ids put back in the queue' } },
} as const;

const outbox: FastifyPluginAsync = async (app) => {
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
          200: {
            type: 'object',
            properties: { pending: { type: 'integer' }, oldestPendingAgeSeconds: { type: 'number' }, deadLetters: { type: 'integer' } },
          },
        },
      },
    },
    async () => await outboxStats(app.db),
  );

  app.get<{ Querystring: { limit?: string; afterId?: string } }>(
    '/api/outbox/dead-letters',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: 'Dead-lettered outbox rows in id order, a page at a time',
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            limit: { type: 'string', pattern: '^[0-9]{1,4}$', description: `1 to ${MAX_LIMIT} (default ${DEFAULT_LIMIT})` },
            afterId: { type: 'string', pattern: '^[0-9]{1,18}$', description: 'the last id of the previous page' },
          },
        },
        response: { 200: { type: 'array', items: DeadLetter } },
      },
    },
    async (request, reply) => {
      const limit = request.query.limit === undefined ? DEFAULT_LIMIT : Number(request.query.limit);
      if (limit < 1 || limit > MAX_LIMIT) return sendApiError(reply, 400, `limit: must be between 1 and ${MAX_LIMIT}, got ${limit}`);
      return await listDeadLetters(app.db, limit, Number(request.query.afterId ?? 0));
    },
  );

  app.post<{ Params: { id: string } }>(
    '/api/outbox/dead-letters/:id/redrive',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: 'Re-drive one dead letter: back in the queue with a fresh set of tries',
        params: { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: '^[0-9]{1,18}$' } } },
        response: { 200: Redriven },
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
    { onRequest: admin, schema: { tags, security, summary: 'Re-drive every dead letter', response: { 200: Redriven } } },
    async (request) => {
      const redriven = await redriveDeadLetters(app.db, request.identity!.name);
      if (redriven.length > 0) app.outbox.kick();
      return { redriven };
    },
  );
};

export default outbox;
