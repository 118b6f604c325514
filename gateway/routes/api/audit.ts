/**
 * Admin API for the audit log (`admin` scope): read events with filters and keyset paging, export
 * them as CSV or JSON, and verify the hash chain (see core/audit/chain.ts).
 */
import { Readable } from 'node:stream';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import { sendApiError } from './errors.js';
import {
  CSV_COLUMNS,
  EXPORT_CONTENT_TYPES,
  exportAuditEvents,
  listAuditEvents,
  parseInstant,
  verifyAuditChain,
  type AuditFilter,
  type ExportFormat,
} from '../../../core/audit/chain.js';

const MAX_LIMIT = 1000;
const DEFAULT_LIMIT = 100;

const FilterProperties = {
  actor: { type: 'string', description: 'who made the change: a token name, a workflow id for provisioning, rule:<name> for rule grants, reconcile:<runId> for reconciliation' },
  action: { type: 'string', description: 'e.g. user.created, group.patched, token.revoked, account.create' },
  resourceType: { type: 'string', description: 'e.g. User, Group, ApiToken, Connector, Account' },
  resourceId: { type: 'string' },
  userId: { type: 'string', description: "everything concerning a user: the user's events, their accounts', their grants', and group events adding or removing them" },
  since: { type: 'string', description: 'events at or after this instant: ISO 8601 date (UTC) or date-time with a zone' },
  until: { type: 'string', description: 'events before this instant: ISO 8601 date (UTC) or date-time with a zone' },
  afterId: { type: 'string', pattern: '^[0-9]{1,15}$', description: 'only events with a greater id: the nextAfterId of the previous page' },
} as const;

const ListQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    ...FilterProperties,
    limit: { type: 'string', pattern: '^[0-9]{1,4}$', description: `events per page, 1 to ${MAX_LIMIT} (default ${DEFAULT_LIMIT})` },
  },
} as const;

const ExportQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    ...FilterProperties,
    format: { type: 'string', enum: ['csv', 'json'], description: 'default: csv when the Accept header asks for text/csv, json otherwise' },
  },
} as const;

const AuditEvent = {
  type: 'object',
  properties: {
    id: { type: 'integer' },
    at: { type: 'string', format: 'date-time', description: 'UTC, with microseconds' },
    actor: { type: 'string' },
    action: { type: 'string' },
    resourceType: { type: 'string' },
    resourceId: { type: ['string', 'null'] },
    reason: { type: ['string', 'null'] },
    before: { description: 'the resource before the change (JSON), or null' },
    after: { description: 'the resource after the change (JSON), or null' },
    prevHash: { type: ['string', 'null'], description: 'hex SHA-256 of the previous event in the chain' },
    hash: { type: 'string', description: 'hex SHA-256 of prevHash and this event' },
  },
} as const;

const AuditPage = {
  type: 'object',
  properties: {
    events: { type: 'array', items: AuditEvent },
    nextAfterId: { type: ['integer', 'null'], description: 'pass as afterId for the next page; null on the last one' },
  },
} as const;

const VerifyResult = {
  type: 'object',
  properties: {
    ok: { type: 'boolean' },
    checked: { type: 'integer', description: 'events found intact (when not ok: before the first bad one)' },
    firstBadId: { type: 'integer' },
    reason: { type: 'string' },
    lastId: { type: 'integer' },
    lastHash: { type: 'string', description: 'record it outside the database: a later chain that lacks it was rewritten' },
  },
} as const;

type FilterQuery = Partial<Record<keyof typeof FilterProperties, string>>;

function badRequest(reply: FastifyReply, message: string) {
  return sendApiError(reply, 400, message);
}

/** The filter of a query string, or the message explaining what is wrong with it. */
function toFilter(q: FilterQuery): AuditFilter | string {
  const filter: AuditFilter = {};
  if (q.actor !== undefined) filter.actor = q.actor;
  if (q.action !== undefined) filter.action = q.action;
  if (q.resourceType !== undefined) filter.resourceType = q.resourceType;
  if (q.resourceId !== undefined) filter.resourceId = q.resourceId;
  if (q.userId !== undefined) filter.userId = q.userId;
  for (const key of ['since', 'until'] as const) {
    const value = q[key];
    if (value === undefined) continue;
    const instant = parseInstant(value);
    if (!instant) return `${key}: expected an ISO 8601 date or date-time with a zone (2024-05-01, 2024-05-01T12:00:00Z), got "${value}"`;
    filter[key] = instant;
  }
  if (q.afterId !== undefined) filter.afterId = Number(q.afterId);
  return filter;
}

/** The quality an Accept header gives a media type (0 when it excludes it; 1 when there is no header). */
function quality(accept: string, type: string): number {
  let best = -1;
  let specificity = -1;
  const [major] = type.split('/');
  for (const range of accept.split(',')) {
    const [media = '', ...params] = range.trim().toLowerCase().split(';');
    const level = media === type ? 2 : media === `${major}/*` ? 1 : media === '*/*' ? 0 : -1;
    if (level < 0 || level < specificity) continue;
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    specificity = level;
    best = q ? Number(q.slice(2)) || 0 : 1;
  }
  return Math.max(best, 0);
}

/** JSON unless the client prefers CSV (`Accept: text/csv`). */
function negotiateFormat(accept: string | undefined): ExportFormat {
  if (!accept) return 'json';
  return quality(accept, 'text/csv') > quality(accept, 'application/json') ? 'csv' : 'json';
}

const audit: FastifyPluginAsync = async (app) => {
  const admin = app.requireScope('admin');
  const tags = ['admin'];
  const security = [{ bearer: [] }];

  app.get<{ Querystring: FilterQuery & { limit?: string } }>(
    '/api/audit',
    { onRequest: admin, schema: { tags, security, summary: 'Audit events in id order, filtered, a page at a time', querystring: ListQuery, response: { 200: AuditPage } } },
    async (request, reply) => {
      const filter = toFilter(request.query);
      if (typeof filter === 'string') return badRequest(reply, filter);
      const limit = request.query.limit === undefined ? DEFAULT_LIMIT : Number(request.query.limit);
      if (limit < 1 || limit > MAX_LIMIT) return badRequest(reply, `limit: must be between 1 and ${MAX_LIMIT}, got ${limit}`);
      return await listAuditEvents(app.db, filter, limit);
    },
  );

  app.get<{ Querystring: FilterQuery & { format?: ExportFormat } }>(
    '/api/audit/export',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: 'Every matching audit event, streamed as CSV (with a header row) or as a JSON array',
        querystring: ExportQuery,
        response: {
          200: {
            description: 'the events in id order, as they were when the export started',
            content: {
              'text/csv': { schema: { type: 'string', description: `header row: ${CSV_COLUMNS.join(',')}; CRLF line ends; before and after as JSON text` } },
              'application/json': { schema: { type: 'array', items: AuditEvent } },
            },
          },
        },
      },
    },
    async (request, reply) => {
      const filter = toFilter(request.query);
      if (typeof filter === 'string') return badRequest(reply, filter);
      const format: ExportFormat = request.query.format ?? negotiateFormat(request.headers.accept);
      const chunks = exportAuditEvents(app.db, filter, format);
      // The first chunk comes after the first query: a database error still gets a proper 500
      // here, rather than a 200 whose body stops short.
      const first = await chunks.next();
      async function* body(): AsyncGenerator<string> {
        if (!first.done) yield first.value;
        yield* chunks;
      }
      return reply
        .type(EXPORT_CONTENT_TYPES[format])
        .header('content-disposition', `attachment; filename="audit-events.${format}"`)
        .send(Readable.from(body(), { objectMode: false }));
    },
  );

  app.get(
    '/api/audit/verify',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: 'Verify the hash chain of the whole audit log (reads every event: slow on a large log)',
        response: { 200: VerifyResult },
      },
    },
    async () => await verifyAuditChain(app.db),
  );
};

export default audit;
