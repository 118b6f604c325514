/**
 * Admin API for the audit log (`admin` scope): read events with filters and keyset paging, export
 * them as CSV or JSON, and verify the hash chain (see core/audit/chain.ts).
 */
import { Readable } from 'node:stream';
import type { FastifyReply } from 'fastify';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type, type Static } from '@sinclair/typebox';
import { sendApiError } from './errors.js';
import { apiErrors, DateTime, Nullable, StringEnum } from '../schemas.js';
import {
  CSV_COLUMNS,
  EXPORT_CONTENT_TYPES,
  exportAuditEvents,
  listAuditEvents,
  auditFilterOf,
  verifyAuditChain,
  type AuditFilter,
  type ExportFormat,
} from '../../../core/audit/chain.js';

const MAX_LIMIT = 1000;
const DEFAULT_LIMIT = 100;

const FilterProperties = {
  actor: Type.Optional(
    Type.String({ description: 'who made the change: a token name, a workflow id for provisioning, rule:<name> for rule grants, reconcile:<runId> for reconciliation' }),
  ),
  action: Type.Optional(Type.String({ description: 'e.g. user.created, group.patched, token.revoked, account.create' })),
  resourceType: Type.Optional(Type.String({ description: 'e.g. User, Group, ApiToken, Connector, Account' })),
  resourceId: Type.Optional(Type.String()),
  userId: Type.Optional(
    Type.String({ description: "everything concerning a user: the user's events, their accounts', their grants', and group events adding or removing them" }),
  ),
  since: Type.Optional(Type.String({ description: 'events at or after this instant: ISO 8601 date (UTC) or date-time with a zone' })),
  until: Type.Optional(Type.String({ description: 'events before this instant: ISO 8601 date (UTC) or date-time with a zone' })),
  afterId: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$', description: 'only events with a greater id: the nextAfterId of the previous page' })),
};

const ListQuery = Type.Object(
  {
    ...FilterProperties,
    afterChainSeq: Type.Optional(
      Type.String({
        pattern: '^[0-9]{1,15}$',
        description:
          'follow the log: only chained events with a greater chain position, in chain order; pass the chainSeq of the last event read (0 to start). Unlike afterId it never skips an event that commits later; an event appears once chained, normally within a second of its commit. Not with afterId.',
      }),
    ),
    limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$', description: `events per page, 1 to ${MAX_LIMIT} (default ${DEFAULT_LIMIT})` })),
  },
  { additionalProperties: false },
);

const ExportQuery = Type.Object(
  {
    ...FilterProperties,
    format: Type.Optional(StringEnum(['csv', 'json'], { description: 'default: csv when the Accept header asks for text/csv, json otherwise' })),
  },
  { additionalProperties: false },
);

const AuditEvent = Type.Object({
  id: Type.Integer(),
  chainSeq: Nullable(Type.Integer(), 'position in the hash chain; null until the event is chained'),
  at: DateTime('UTC, with microseconds'),
  actor: Type.String(),
  action: Type.String(),
  resourceType: Type.String(),
  resourceId: Nullable(Type.String()),
  reason: Nullable(Type.String()),
  before: Type.Unknown({ description: 'the resource before the change (JSON), or null' }),
  after: Type.Unknown({ description: 'the resource after the change (JSON), or null' }),
  prevHash: Nullable(Type.String(), 'hex SHA-256 of the previous event in the chain; null for the first event, and until the event is chained'),
  hash: Nullable(Type.String(), 'hex SHA-256 of prevHash and this event; null until the event is chained (normally within a second of its commit)'),
});

const AuditPage = Type.Object({
  events: Type.Array(AuditEvent),
  nextAfterId: Nullable(Type.Integer(), 'pass as afterId for the next page; null on the last one (and with afterChainSeq)'),
  nextAfterChainSeq: Type.Optional(Nullable(Type.Integer(), 'with afterChainSeq: pass as afterChainSeq for the next page; null on the last one')),
});

const VerifyResult = Type.Object({
  ok: Type.Boolean({ description: 'the chain is intact, and no event has stayed unchained for long' }),
  checked: Type.Integer({ description: 'chained events found intact (when not ok: before the first bad one)' }),
  firstBadId: Type.Optional(Type.Integer()),
  reason: Type.Optional(Type.String()),
  lastId: Type.Optional(Type.Integer()),
  lastHash: Type.Optional(Type.String({ description: 'record it outside the database: a later chain that lacks it was rewritten' })),
  pending: Type.Optional(Type.Integer({ description: 'events recorded but not chained yet (committed while the verification ran); absent when none' })),
});

type FilterQuery = Static<typeof ListQuery>;

function badRequest(reply: FastifyReply, message: string) {
  return sendApiError(reply, 400, message);
}

/** The filter of a query string, or the message explaining what is wrong with it. */
function toFilter(q: FilterQuery): AuditFilter | string {
  return auditFilterOf(q);
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

const audit: FastifyPluginAsyncTypebox = async (app) => {
  const admin = app.requireScope('admin');
  const tags = ['admin'];
  const security = [{ bearer: [] }];

  app.get(
    '/api/audit',
    { onRequest: admin, schema: { tags, security, summary: 'Audit events in id order (or in chain order, with afterChainSeq), filtered, a page at a time', querystring: ListQuery, response: { 200: AuditPage, ...apiErrors([400]) } } },
    async (request, reply) => {
      const filter = toFilter(request.query);
      if (typeof filter === 'string') return badRequest(reply, filter);
      const limit = request.query.limit === undefined ? DEFAULT_LIMIT : Number(request.query.limit);
      if (limit < 1 || limit > MAX_LIMIT) return badRequest(reply, `limit: must be between 1 and ${MAX_LIMIT}, got ${limit}`);
      return await listAuditEvents(app.db, filter, limit);
    },
  );

  app.get(
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
              'application/json': { schema: Type.Array(AuditEvent) },
            },
          },
          ...apiErrors([400]),
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
        response: { 200: VerifyResult, ...apiErrors([]) },
      },
    },
    async () => await verifyAuditChain(app.db),
  );
};

export default audit;
