/**
 * Admin API for identity sources (`admin` scope): an Auth0 tenant's connection whose users the
 * gateway imports on a Temporal Schedule (core/sources/), runs on demand, and the userName clashes
 * between a source and SCIM (listed, and resolvable by handing the SCIM user to the source).
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type, type Static } from '@sinclair/typebox';
import { withTransaction } from '../../../core/db/pool.js';
import { parseAuth0SourceConfig } from '../../../core/sources/auth0.js';
import { adoptConflict, listConflicts } from '../../../core/sources/store.js';
import { ensureSourceImportSchedule, startSourceImportRun } from '../../../workflows/client.js';
import { sendApiError as fail } from './errors.js';
import { apiErrors, DateTime, Nullable, Open } from '../schemas.js';

const SourceId = Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$', description: 'stable slug, e.g. "auth0-main"' });
const SourceBody = Type.Object(
  {
    type: Type.Literal('auth0'),
    config: Type.Object({}, { additionalProperties: true, description: 'see docs/auth0.md; secrets only as env:NAME or file:/path' }),
    importEveryMinutes: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.Null()], { description: 'import on a Temporal Schedule this often; null: on demand only' })),
  },
  { additionalProperties: false },
);
const IdParams = Type.Object({ id: SourceId });

const sourceView = {
  id: Type.String(),
  type: Type.String({ description: 'auth0' }),
  config: Type.Object({}, { additionalProperties: true, description: 'as saved: secrets appear only as references' }),
  importEveryMinutes: Nullable(Type.Integer(), 'null: imported on demand only'),
};
const Source = Open(sourceView);
const ImportCounts = {
  seen: Type.Integer({ description: 'users read from the source' }),
  created: Type.Integer(),
  updated: Type.Integer(),
  deleted: Type.Integer(),
  conflicts: Type.Integer({ description: "users not imported because another owner's user holds their userName" }),
};
const SourceListItem = Open({
  ...sourceView,
  users: Type.Integer({ description: "the source's live users in the directory" }),
  conflicts: Type.Integer({ description: 'open userName conflicts' }),
  lastImport: Nullable(
    Open({ id: Type.String(), startedAt: DateTime(), finishedAt: Nullable(DateTime(), 'null while running, or when the run failed'), ...ImportCounts }),
    'the latest import run; null before the first',
  ),
});
const ImportStarted = Open({ workflowId: Type.String(), runId: Type.String({ description: "the Temporal workflow's first run id" }) });
const ImportSummary = Open({ runId: Type.String(), sourceId: Type.String(), ...ImportCounts }, { description: 'what the import did' });
const Conflict = Open({
  externalId: Type.String({ description: "the user's id in the source" }),
  userName: Type.String(),
  holderId: Nullable(Type.String(), 'the directory user holding the userName'),
  holderSource: Nullable(Type.String(), "that user's source; null: a SCIM user"),
  firstSeenAt: DateTime(),
  lastSeenAt: DateTime(),
});

const sources: FastifyPluginAsyncTypebox = async (app) => {
  const admin = app.requireScope('admin');
  const tags = ['admin'];
  const security = [{ bearer: [] }];

  app.put(
    '/api/sources/:id',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: 'Create or replace a source of users (Auth0) and its import schedule',
        params: IdParams,
        body: SourceBody,
        response: {
          200: { ...Source, description: 'replaced' },
          201: { ...Source, description: 'created' },
          ...apiErrors([400, 503], { 400: 'invalid id or configuration', 503: 'saved, but Temporal is unreachable so the import schedule is not set: PUT it again' }),
        },
      },
    },
    async (request, reply) => {
      let config;
      try {
        config = parseAuth0SourceConfig(request.body.config);
      } catch (err) {
        return fail(reply, 400, (err as Error).message);
      }
      const every = request.body.importEveryMinutes ?? null;
      const id = request.params.id;
      const created = await withTransaction(app.db, async (tx) => {
        const { rows: before } = await tx.query('SELECT type, config, import_every_minutes FROM sources WHERE id = $1 FOR UPDATE', [id]);
        await tx.query(
          `INSERT INTO sources (id, type, config, import_every_minutes) VALUES ($1, $2, $3, $4)
           ON CONFLICT (id) DO UPDATE SET type = EXCLUDED.type, config = EXCLUDED.config, import_every_minutes = EXCLUDED.import_every_minutes, updated_at = now()`,
          [id, request.body.type, config, every],
        );
        await tx.query(
          `INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, before, after) VALUES ($1, $2, 'Source', $3, 'admin API', $4, $5)`,
          [request.identity!.name, before[0] ? 'source.updated' : 'source.created', id, before[0] ? JSON.stringify(before[0]) : null, JSON.stringify({ type: request.body.type, config, importEveryMinutes: every })],
        );
        return !before[0];
      });
      try {
        await ensureSourceImportSchedule(await app.temporal.client(), app.config.taskQueue, id, every);
      } catch (err) {
        return fail(reply, 503, `source ${id} saved, but its import schedule could not be set (${(err as Error).message}); PUT it again when Temporal is reachable`);
      }
      return reply.code(created ? 201 : 200).send({ id, type: request.body.type, config, importEveryMinutes: every });
    },
  );

  app.get('/api/sources', { onRequest: admin, schema: { tags, security, summary: 'List sources with their last import', response: { 200: Type.Array(SourceListItem), ...apiErrors([]) } } }, async () => {
    const { rows } = await app.db.query<Static<typeof SourceListItem>>(
      `SELECT s.id, s.type, s.config, s.import_every_minutes AS "importEveryMinutes",
              (SELECT count(*)::int FROM users u WHERE u.source_id = s.id AND u.deleted_at IS NULL) AS users,
              (SELECT count(*)::int FROM source_conflicts c WHERE c.source_id = s.id AND c.resolved_at IS NULL) AS conflicts,
              (SELECT row_to_json(r) FROM (SELECT id, started_at AS "startedAt", finished_at AS "finishedAt", seen, created, updated, deleted, conflicts
                                             FROM source_import_runs WHERE source_id = s.id ORDER BY started_at DESC LIMIT 1) r) AS "lastImport"
         FROM sources s ORDER BY s.id`,
    );
    return rows;
  });

  app.post(
    '/api/sources/:id/import',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: 'Import the source now; with wait: true, answer the summary when done',
        params: IdParams,
        body: Type.Union([Type.Object({ wait: Type.Optional(Type.Boolean()) }, { additionalProperties: false }), Type.Null()]),
        response: {
          200: ImportSummary,
          202: { ...ImportStarted, description: 'started (without wait: true)' },
          ...apiErrors([400, 404, 409, 502, 503], {
            404: 'no such source',
            409: 'an import of the source is running already',
            502: 'the import failed (the message says why)',
            503: 'Temporal is unreachable; try again later',
          }),
        },
      },
    },
    async (request, reply) => {
      const { rows } = await app.db.query('SELECT 1 FROM sources WHERE id = $1', [request.params.id]);
      if (!rows[0]) return fail(reply, 404, `no source ${request.params.id}`);
      let client;
      try {
        client = await app.temporal.client();
      } catch {
        return fail(reply, 503, 'Temporal is unreachable; try again later');
      }
      const handle = await startSourceImportRun(client, app.config.taskQueue, request.params.id);
      if (!handle) return fail(reply, 409, `an import of ${request.params.id} is running already`);
      if (!request.body?.wait) return reply.code(202).send({ workflowId: handle.workflowId, runId: handle.firstExecutionRunId });
      try {
        return await handle.result();
      } catch (err) {
        // The workflow's failure wraps the activity's, which wraps the reason.
        let reason = err as { message?: string; cause?: unknown } | undefined;
        while (reason?.cause) reason = reason.cause;
        return fail(reply, 502, `the import failed: ${reason?.message ?? String(err)}`);
      }
    },
  );

  app.get(
    '/api/sources/:id/conflicts',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: "Source users not imported because another owner's user holds their userName",
        params: IdParams,
        response: { 200: Type.Array(Conflict), ...apiErrors([400, 404], { 400: 'invalid source id', 404: 'no such source' }) },
      },
    },
    async (request, reply) => {
      const { rows } = await app.db.query('SELECT 1 FROM sources WHERE id = $1', [request.params.id]);
      if (!rows[0]) return fail(reply, 404, `no source ${request.params.id}`);
      return await listConflicts(app.db, request.params.id);
    },
  );

  const ConflictParams = Type.Object({ id: SourceId, externalId: Type.String({ minLength: 1 }) });
  app.post(
    '/api/sources/:id/conflicts/:externalId/adopt',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: 'Hand the SCIM user holding the userName to the source (it keeps its id, accounts and grants)',
        params: ConflictParams,
        response: {
          200: Open({ userId: Type.String({ description: 'the adopted directory user, now owned by the source' }) }),
          ...apiErrors([400, 404], { 400: 'invalid source id or externalId', 404: 'no open conflict of that user held by a SCIM user' }),
        },
      },
    },
    async (request, reply) => {
      const userId = await adoptConflict(app.db, request.params.id, request.params.externalId, request.identity!.name);
      if (!userId) return fail(reply, 404, `no open conflict of ${request.params.externalId} in source ${request.params.id} held by a SCIM user`);
      app.outbox.kick();
      return { userId };
    },
  );
};

export default sources;
