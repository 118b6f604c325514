/**
 * Admin API for provisioning (`admin` scope): connectors, entitlements, birthright rules, who has
 * what and why, and each user's provisioning status. Every change is audited and, where it changes
 * what users should have, announced to their userSync workflows through the outbox.
 *
 * Connector configuration may name secrets only by reference (`env:NAME`, `file:/path`): a value
 * under a key that looks like a secret (token, secret, password, key…) that is not a reference is
 * refused, so the database never holds one and the API can return configuration as it is.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type, type Static } from '@sinclair/typebox';
import { loadConnector, validateConfig, PermanentError } from '../../../connectors/index.js';
import { coveredUsers, plaintextSecrets, targetProblems } from '../../../core/provisioning/checks.js';
import { withTransaction, type Tx } from '../../../core/db/pool.js';
import { accessAsOf } from '../../../core/audit/access.js';
import { parseInstant } from '../../../core/audit/chain.js';
import { enqueue, enqueueUserChanges } from '../../../core/outbox/outbox.js';
import { userSyncWorkflowId } from '../../../workflows/client.js';
import { startReconcile, testConnector } from '../../connector-operations.js';
import { latestDrift } from '../../../core/provisioning/drift.js';
import { listConnectors } from '../../../core/provisioning/connectors.js';
import { pendingSteps, type PendingStep } from '../../../core/provisioning/pending-steps.js';
import { listHoldings, resolveEntitlement, resolveUser } from '../../../core/provisioning/holdings.js';
import { parseFilter } from '../../../core/scim/filter/index.js';
import { ScimError } from '../../../core/scim/errors.js';
import { sendApiError } from './errors.js';
import { workflowUiUrl } from '../../temporal.js';
import { apiErrors, DateTime, NoContent, Nullable, Open, StringEnum } from '../schemas.js';

const fail = sendApiError;

const UserRef = Type.String({ minLength: 1, description: 'user id or userName' });
const EntitlementRef = Type.String({ minLength: 1, description: 'entitlement id or "connectorId/name" (URL-encode the slash in a path)' });
const AnyObject = (description: string) => Type.Object({}, { additionalProperties: true, description });

const ConnectorBody = Type.Object(
  {
    id: Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$', description: 'stable slug, e.g. "github-main"' }),
    type: Type.String({ minLength: 1, description: 'built-in type ("webhook", "scim"), npm package name, or path' }),
    config: Type.Optional(AnyObject('validated against the connector type; secrets only as env:NAME or file:/path')),
    mode: Type.Optional(StringEnum(['enforce', 'monitor'])),
    deprovision: Type.Optional(StringEnum(['disable', 'delete'])),
    enabled: Type.Optional(Type.Boolean()),
    reconcileEveryMinutes: Type.Optional(
      Type.Unsafe<number | null>({ type: ['integer', 'null'], minimum: 1, description: 'run reconciliation on a Temporal Schedule this often; null: on demand only' }),
    ),
  },
  { additionalProperties: false },
);

const EntitlementBody = Type.Object(
  {
    connectorId: Type.String(),
    name: Type.String({ minLength: 1, maxLength: 200 }),
    target: AnyObject("what to grant, in the connector type's terms"),
    membership: Type.Optional(StringEnum(['authoritative', 'additive'])),
  },
  { additionalProperties: false },
);

const RuleBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 200 }),
    group: Type.Optional(Type.String({ description: 'SCIM group id or displayName whose members (nested included) qualify' })),
    condition: Type.Optional(Type.String({ description: 'SCIM filter on users, e.g. urn:…:enterprise:2.0:User:department eq "Security"' })),
    entitlements: Type.Array(Type.String(), { minItems: 1, description: 'entitlement ids or "connectorId/name"' }),
  },
  { additionalProperties: false },
);

const Connector = Open({
  id: Type.String(),
  type: Type.String(),
  config: AnyObject('as saved: secrets appear only as references'),
  mode: Type.String(),
  deprovision: Type.String(),
  enabled: Type.Boolean(),
  reconcileEveryMinutes: Nullable(Type.Integer()),
  created_at: DateTime(),
  updated_at: DateTime(),
});

const Entitlement = Open({
  id: Type.String({ format: 'uuid' }),
  connectorId: Type.String(),
  name: Type.String(),
  target: AnyObject("what is granted, in the connector type's terms"),
  membership: Type.String(),
});

const Rule = Open({
  id: Type.String({ format: 'uuid' }),
  name: Type.String(),
  groupId: Nullable(Type.String()),
  groupName: Type.Optional(Nullable(Type.String())),
  condition: Nullable(Type.String()),
  entitlementIds: Type.Array(Type.String()),
});

const DriftItem = Open({
  kind: Type.String(),
  action: Type.String(),
  userId: Nullable(Type.String()),
  userName: Nullable(Type.String()),
  remoteId: Nullable(Type.String()),
  remoteUserName: Nullable(Type.String()),
  entitlementId: Nullable(Type.String()),
  entitlement: Nullable(Type.String()),
  found: Type.String({ description: 'what was found, in words' }),
  done: Type.String({ description: 'what was done about it, in words' }),
});

const ReconcileSummary = Open(
  {
    runId: Type.String(),
    connectorId: Type.String(),
    dryRun: Type.Boolean(),
    mode: Type.String(),
    accountsSeen: Type.Integer(),
    grantsSeen: Type.Integer(),
    apiCalls: Type.Integer(),
    drift: Type.Array(Open({ kind: Type.String(), action: Type.String(), count: Type.Integer() })),
    sample: Type.Array(DriftItem, { description: 'the first differences found (all of them: GET /api/connectors/{id}/drift)' }),
  },
  { description: 'the reconciliation ran: what it saw and the drift it found' },
);

const ReconcileRun = Open({
  id: Type.String(),
  dryRun: Type.Boolean(),
  mode: Type.String(),
  startedAt: DateTime(),
  finishedAt: Nullable(DateTime()),
  accountsSeen: Nullable(Type.Integer()),
  grantsSeen: Nullable(Type.Integer()),
  apiCalls: Nullable(Type.Integer()),
  driftFound: Nullable(Type.Integer()),
  workflowId: Nullable(Type.String()),
});

const RequestEvidence = Open(
  {
    id: Type.String(),
    policy: Nullable(Type.String()),
    requestedBy: Nullable(Type.String()),
    requestedAt: Nullable(Type.String()),
    justification: Nullable(Type.String()),
    decidedAt: Nullable(Type.String()),
    fulfilledAt: Nullable(Type.String()),
    decisions: Type.Array(Open({ stage: Type.Integer(), approver: Type.String(), decision: Type.String(), comment: Nullable(Type.String()), at: Type.String() })),
  },
  { description: 'for requested access: the request, its justification and the accepted decisions' },
);

const GrantRow = Open({
  id: Type.String({ format: 'uuid' }),
  userId: Type.String(),
  userName: Type.String(),
  entitlementId: Type.String(),
  connectorId: Type.String(),
  entitlement: Type.String(),
  reason: Type.String({ description: 'manual, rule:<name> or request:<id>' }),
  validFrom: Nullable(DateTime()),
  validUntil: Nullable(DateTime()),
  applied: Type.Boolean({ description: 'whether the connector has applied it' }),
  request: Nullable(RequestEvidence),
});

const CreatedGrant = Open({
  id: Type.String({ format: 'uuid' }),
  userId: Type.String(),
  entitlementId: Type.String(),
  reason: Type.String(),
  validFrom: Nullable(DateTime()),
  validUntil: Nullable(DateTime()),
});

const AccountStatus = Open({
  connectorId: Type.String(),
  remoteId: Nullable(Type.String()),
  state: Type.String(),
  lastSyncAt: Nullable(DateTime()),
  lastError: Nullable(Type.String()),
  lastErrorAt: Nullable(DateTime()),
  workflowId: Nullable(Type.String()),
  retrying: Type.Unknown({ description: 'the step being retried (attempt, last error, next attempt), {unknown} when Temporal did not answer, or null' }),
  workflowUrl: Nullable(Type.String(), 'the workflow in the Temporal UI, when TEMPORAL_UI_URL is set'),
});

const AccessAsOf = Open({
  userId: Type.String(),
  at: Type.String({ description: 'the instant asked about (UTC)' }),
  user: Nullable(Open({ userName: Nullable(Type.String()), active: Type.Boolean(), deleted: Type.Boolean() }), 'the user as recorded then; null before the user existed'),
  groups: Type.Array(Open({ id: Type.String(), displayName: Nullable(Type.String()) })),
  grants: Type.Array(
    Open({
      id: Type.String(),
      entitlementId: Type.String(),
      connectorId: Nullable(Type.String()),
      entitlement: Nullable(Type.String()),
      reason: Type.String(),
      validFrom: Nullable(Type.String()),
      validUntil: Nullable(Type.String()),
    }),
  ),
  accounts: Type.Array(
    Open({
      connectorId: Type.String(),
      state: Type.String(),
      remoteId: Nullable(Type.String()),
      entitlements: Type.Array(Open({ entitlementId: Type.String(), entitlement: Nullable(Type.String()) })),
    }),
  ),
  lastEventId: Nullable(Type.Integer(), 'the last audit event taken into account'),
});

type ConnectorRow = Static<typeof Connector>;

const TEMPORAL_DOWN = { 503: 'Temporal is unreachable; try again later' };

const provisioning: FastifyPluginAsyncTypebox = async (app) => {
  const admin = app.requireScope('admin');
  const tags = ['admin'];
  const security = [{ bearer: [] }];
  const audit = (tx: Tx, actor: string, action: string, type: string, id: string, after: unknown, before: unknown = null) =>
    tx.query(`INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, before, after) VALUES ($1, $2, $3, $4, 'admin API', $6, $5)`, [
      actor,
      action,
      type,
      id,
      JSON.stringify(after),
      before === null ? null : JSON.stringify(before),
    ]);

  // ------------------------------------------------------------------ connectors

  app.get('/api/connectors', { onRequest: admin, schema: { tags, security, summary: 'List connectors', response: { 200: Type.Array(Connector), ...apiErrors([]) } } }, async () => {
    return await listConnectors(app.db);
  });

  app.put(
    '/api/connectors/:id',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: 'Create or replace a connector',
        params: Type.Object({ id: Type.String() }),
        body: ConnectorBody,
        response: { 200: Connector, ...apiErrors([400]) },
      },
    },
    async (request, reply) => {
      const body = request.body;
      if (body.id !== request.params.id) return fail(reply, 400, 'the id in the path and in the body differ');
      const config = body.config ?? {};
      const leaked = plaintextSecrets(config);
      if (leaked.length) return fail(reply, 400, `config.${leaked.join(', config.')}: give secrets as env:NAME or file:/path references, never as values`);
      try {
        validateConfig(await loadConnector(body.type), config);
      } catch (err) {
        if (err instanceof PermanentError) return fail(reply, 400, err.message);
        throw err;
      }
      const row = await withTransaction(app.db, async (tx) => {
        const every = body.reconcileEveryMinutes ?? null;
        // What is replaced goes into the audit event (configuration holds secret references only).
        const { rows: was } = await tx.query<ConnectorRow>(
          `SELECT id, type, config, mode, deprovision, enabled, reconcile_every_minutes AS "reconcileEveryMinutes", created_at, updated_at
             FROM connectors WHERE id = $1 FOR UPDATE`,
          [body.id],
        );
        const { rows } = await tx.query<ConnectorRow>(
          `INSERT INTO connectors (id, type, config, mode, deprovision, enabled, reconcile_every_minutes) VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (id) DO UPDATE SET type = $2, config = $3, mode = $4, deprovision = $5, enabled = $6, reconcile_every_minutes = $7, updated_at = now()
           RETURNING id, type, config, mode, deprovision, enabled, reconcile_every_minutes AS "reconcileEveryMinutes", created_at, updated_at`,
          [body.id, body.type, config, body.mode ?? 'enforce', body.deprovision ?? 'disable', body.enabled ?? true, every],
        );
        await audit(tx, request.identity!.name, 'connector.saved', 'Connector', body.id, rows[0], was[0] ?? null);
        // The reconcile Schedule follows through the outbox, so saving works while Temporal is down.
        await enqueue(tx, { topic: 'connector.changed', aggregateId: body.id, payload: { reconcileEveryMinutes: body.enabled === false ? null : every } });
        return rows[0]!;
      });
      app.outbox.kick();
      return row;
    },
  );

  app.post(
    '/api/connectors/:id/reconcile',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: 'Reconcile a connector now; a dry run (or wait: true) answers with the drift found',
        params: Type.Object({ id: Type.String() }),
        body: Type.Unsafe<{ dryRun?: boolean; wait?: boolean } | null | undefined>({
          type: ['object', 'null'],
          additionalProperties: false,
          properties: { dryRun: { type: 'boolean' }, wait: { type: 'boolean' } },
        }),
        response: {
          200: ReconcileSummary,
          202: Type.Object({ workflowId: Type.String(), runId: Type.String() }, { description: 'started; follow it in Temporal or GET /api/connectors/{id}/drift later' }),
          ...apiErrors([400, 404, 409, 503], { 404: 'no such connector', 409: 'a reconciliation of the connector is running', ...TEMPORAL_DOWN }),
        },
      },
    },
    async (request, reply) => {
      const dryRun = request.body?.dryRun ?? false;
      const started = await startReconcile(app, request.params.id, dryRun);
      if (!started.ok) return fail(reply, started.status, started.message);
      const { handle } = started;
      if (!dryRun && !request.body?.wait) return reply.code(202).send({ workflowId: handle.workflowId, runId: handle.firstExecutionRunId });
      return await handle.result();
    },
  );

  app.post(
    '/api/connectors/:id/test',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: "Test a connector's configuration and credentials against its target (runs in a worker)",
        params: Type.Object({ id: Type.String() }),
        response: {
          200: Type.Object({
            ok: Type.Boolean(),
            error: Type.Optional(Type.String({ description: 'why it failed, as the connector put it' })),
            kind: Type.Optional(StringEnum(['transient', 'permanent'], { description: 'transient: try again later; permanent: fix the configuration or permissions' })),
          }),
          ...apiErrors([404, 503], { 404: 'no such connector', ...TEMPORAL_DOWN }),
        },
      },
    },
    async (request, reply) => {
      const tested = await testConnector(app, request.params.id);
      if (!tested.ok) return fail(reply, tested.status, tested.message);
      return tested.result;
    },
  );

  app.get(
    '/api/connectors/:id/drift',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: "The latest reconciliation's run and the drift it found",
        params: Type.Object({ id: Type.String() }),
        response: {
          200: Type.Object({ run: ReconcileRun, drift: Type.Array(Type.Intersect([DriftItem, Type.Object({ detectedAt: DateTime() })]), { description: 'the first 1000' }) }),
          ...apiErrors([404], { 404: 'no such connector, or it has not been reconciled yet' }),
        },
      },
    },
    async (request, reply) => {
      const latest = await latestDrift(app.db, request.params.id);
      if (!latest) return fail(reply, 404, `connector "${request.params.id}" has not been reconciled yet`);
      return latest;
    },
  );

  // ------------------------------------------------------------------ entitlements

  app.get('/api/entitlements', { onRequest: admin, schema: { tags, security, summary: 'List entitlements', response: { 200: Type.Array(Entitlement), ...apiErrors([]) } } }, async () => {
    const { rows } = await app.db.query<Static<typeof Entitlement>>('SELECT id, connector_id AS "connectorId", name, target, membership FROM entitlements ORDER BY connector_id, name');
    return rows;
  });

  app.post(
    '/api/entitlements',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: 'Create an entitlement',
        body: EntitlementBody,
        response: { 201: Entitlement, ...apiErrors([400, 409], { 409: 'the connector has an entitlement of that name' }) },
      },
    },
    async (request, reply) => {
      const { connectorId, name, target, membership } = request.body;
      const { rows: c } = await app.db.query<{ type: string }>('SELECT type FROM connectors WHERE id = $1', [connectorId]);
      if (!c[0]) return fail(reply, 400, `no connector "${connectorId}"`);
      const def = await loadConnector(c[0].type);
      const problems = targetProblems(def, target);
      if (problems.length) return fail(reply, 400, `target is not valid for a ${def.type} entitlement: ${problems.join('; ')}`);
      try {
        const row = await withTransaction(app.db, async (tx) => {
          const { rows } = await tx.query<Static<typeof Entitlement>>(
            `INSERT INTO entitlements (id, connector_id, name, target, membership) VALUES ($1, $2, $3, $4, $5)
             RETURNING id, connector_id AS "connectorId", name, target, membership`,
            [randomUUID(), connectorId, name, target, membership ?? 'additive'],
          );
          await audit(tx, request.identity!.name, 'entitlement.created', 'Entitlement', rows[0]!.id, rows[0]);
          return rows[0]!;
        });
        return reply.code(201).send(row);
      } catch (err) {
        if ((err as { code?: string }).code === '23505') return fail(reply, 409, `connector "${connectorId}" already has an entitlement "${name}"`);
        throw err;
      }
    },
  );

  // ------------------------------------------------------------------ rules

  app.get('/api/rules', { onRequest: admin, schema: { tags, security, summary: 'List birthright rules', response: { 200: Type.Array(Rule), ...apiErrors([]) } } }, async () => {
    const { rows } = await app.db.query<Static<typeof Rule>>(
      `SELECT r.id, r.name, r.group_id AS "groupId", g.display_name AS "groupName", r.condition, r.entitlement_ids AS "entitlementIds"
         FROM rules r LEFT JOIN groups g ON g.id = r.group_id ORDER BY r.name`,
    );
    return rows;
  });

  app.post(
    '/api/rules',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: 'Create a birthright rule (group or SCIM filter → entitlements)',
        body: RuleBody,
        response: { 201: Rule, ...apiErrors([400, 409], { 409: 'a rule has that name' }) },
      },
    },
    async (request, reply) => {
      const { name, group, condition, entitlements } = request.body;
      if ((group === undefined) === (condition === undefined)) return fail(reply, 400, 'give exactly one of "group" and "condition"');
      if (condition !== undefined) {
        try {
          parseFilter(condition);
        } catch (err) {
          return fail(reply, 400, `condition: ${err instanceof ScimError ? err.detail : String(err)}`);
        }
      }
      const { rows: ents } = await app.db.query<{ id: string; key: string }>(
        `SELECT id, connector_id || '/' || name AS key FROM entitlements WHERE id::text = ANY($1) OR connector_id || '/' || name = ANY($1)`,
        [entitlements],
      );
      const missing = entitlements.filter((e) => !ents.some((x) => x.id === e || x.key === e));
      if (missing.length) return fail(reply, 400, `no entitlement ${missing.join(', ')}`);
      let groupId: string | null = null;
      if (group !== undefined) {
        const { rows: g } = await app.db.query<{ id: string }>(
          'SELECT id FROM groups WHERE deleted_at IS NULL AND (id::text = $1 OR lower(display_name) = lower($1))',
          [group],
        );
        if (!g[0]) return fail(reply, 400, `no group ${group}`);
        groupId = g[0].id;
      }
      try {
        const row = await withTransaction(app.db, async (tx) => {
          const id = randomUUID();
          const { rows } = await tx.query<Static<typeof Rule>>(
            `INSERT INTO rules (id, name, group_id, condition, entitlement_ids) VALUES ($1, $2, $3, $4, $5)
             RETURNING id, name, group_id AS "groupId", condition, entitlement_ids AS "entitlementIds"`,
            [id, name, groupId, condition ?? null, ents.map((e) => e.id)],
          );
          await audit(tx, request.identity!.name, 'rule.created', 'Rule', id, rows[0]);
          // Whoever the rule may cover is re-evaluated by their userSync workflow.
          await enqueueUserChanges(tx, await coveredUsers(tx, groupId));
          return rows[0]!;
        });
        app.outbox.kick();
        return reply.code(201).send(row);
      } catch (err) {
        if ((err as { code?: string }).code === '23505') return fail(reply, 409, `a rule named "${name}" exists`);
        throw err;
      }
    },
  );

  // ------------------------------------------------------------------ removal

  app.delete(
    '/api/connectors/:id',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: 'Remove a connector that has no entitlements and no live accounts left',
        params: Type.Object({ id: Type.String() }),
        response: { 204: NoContent('removed'), ...apiErrors([404, 409], { 404: 'no such connector', 409: 'the connector still has entitlements or live accounts' }) },
      },
    },
    async (request, reply) => {
      const id = request.params.id;
      const outcome = await withTransaction(app.db, async (tx) => {
        const { rows } = await tx.query('SELECT 1 FROM connectors WHERE id = $1 FOR UPDATE', [id]);
        if (!rows[0]) return 'missing';
        const { rows: used } = await tx.query<{ entitlements: number; accounts: number }>(
          `SELECT (SELECT count(*) FROM entitlements WHERE connector_id = $1)::int AS entitlements,
                  (SELECT count(*) FROM accounts WHERE connector_id = $1 AND state IN ('active', 'disabled'))::int AS accounts`,
          [id],
        );
        if (used[0]!.entitlements > 0 || used[0]!.accounts > 0) return `connector "${id}" still has ${used[0]!.entitlements} entitlements and ${used[0]!.accounts} live accounts; remove the entitlements and let users be deprovisioned first`;
        await tx.query('DELETE FROM drift WHERE run_id IN (SELECT id FROM reconcile_runs WHERE connector_id = $1)', [id]);
        await tx.query('DELETE FROM reconcile_runs WHERE connector_id = $1', [id]);
        await tx.query('DELETE FROM accounts WHERE connector_id = $1', [id]);
        await tx.query('DELETE FROM connectors WHERE id = $1', [id]);
        await audit(tx, request.identity!.name, 'connector.deleted', 'Connector', id, null);
        await enqueue(tx, { topic: 'connector.changed', aggregateId: id, payload: { reconcileEveryMinutes: null } });
        return 'deleted';
      });
      if (outcome === 'missing') return fail(reply, 404, `no connector "${id}"`);
      if (outcome !== 'deleted') return fail(reply, 409, outcome);
      app.outbox.kick();
      return reply.code(204).send();
    },
  );

  app.delete(
    '/api/entitlements/:id',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: 'Remove an entitlement no rule, grant or account uses',
        params: Type.Object({ id: EntitlementRef }),
        response: { 204: NoContent('removed'), ...apiErrors([400, 404, 409], { 404: 'no such entitlement', 409: 'a rule, grant or account uses the entitlement' }) },
      },
    },
    async (request, reply) => {
      const id = await resolveEntitlement(app.db, request.params.id);
      if (!id) return fail(reply, 404, `no entitlement ${request.params.id}`);
      const outcome = await withTransaction(app.db, async (tx) => {
        const { rows } = await tx.query('SELECT 1 FROM entitlements WHERE id = $1 FOR UPDATE', [id]);
        if (!rows[0]) return 'missing';
        const { rows: used } = await tx.query<{ rules: number; grants: number; applied: number }>(
          `SELECT (SELECT count(*) FROM rules WHERE $1 = ANY(entitlement_ids))::int AS rules,
                  (SELECT count(*) FROM grants WHERE entitlement_id = $1 AND status = 'active')::int AS grants,
                  (SELECT count(*) FROM account_grants WHERE entitlement_id = $1)::int AS applied`,
          [id],
        );
        const u = used[0]!;
        if (u.rules + u.grants + u.applied > 0) return `entitlement ${id} is used by ${u.rules} rules, ${u.grants} active grants and ${u.applied} applied memberships`;
        await tx.query('DELETE FROM drift WHERE entitlement_id = $1', [id]);
        await tx.query('DELETE FROM grants WHERE entitlement_id = $1', [id]);
        await tx.query('DELETE FROM entitlements WHERE id = $1', [id]);
        await audit(tx, request.identity!.name, 'entitlement.deleted', 'Entitlement', id, null);
        return 'deleted';
      });
      if (outcome === 'missing') return fail(reply, 404, `no entitlement ${id}`);
      if (outcome !== 'deleted') return fail(reply, 409, outcome);
      return reply.code(204).send();
    },
  );

  app.delete(
    '/api/rules/:name',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: "Remove a rule; the grants it gave end at each covered user's next sync, which this triggers",
        params: Type.Object({ name: Type.String() }),
        response: { 204: NoContent('removed'), ...apiErrors([404], { 404: 'no such rule' }) },
      },
    },
    async (request, reply) => {
      const deleted = await withTransaction(app.db, async (tx) => {
        const { rows } = await tx.query<{ id: string; group_id: string | null }>('DELETE FROM rules WHERE name = $1 RETURNING id, group_id', [request.params.name]);
        if (!rows[0]) return false;
        await audit(tx, request.identity!.name, 'rule.deleted', 'Rule', rows[0].id, { name: request.params.name });
        await enqueueUserChanges(tx, await coveredUsers(tx, rows[0].group_id));
        return true;
      });
      if (!deleted) return fail(reply, 404, `no rule "${request.params.name}"`);
      app.outbox.kick();
      return reply.code(204).send();
    },
  );

  // ------------------------------------------------------------------ who has what, and why

  app.get(
    '/api/grants',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: 'Who should have what, and why (active grants)',
        querystring: Type.Object({ userId: Type.Optional(UserRef), entitlementId: Type.Optional(EntitlementRef) }),
        response: { 200: Type.Array(GrantRow), ...apiErrors([400, 404], { 404: 'no such user or entitlement' }) },
      },
    },
    async (request, reply) => {
      const { userId, entitlementId } = request.query;
      const user = userId === undefined ? null : await resolveUser(app.db, userId);
      if (user === undefined) return fail(reply, 404, `no user ${userId}`);
      const entitlement = entitlementId === undefined ? null : await resolveEntitlement(app.db, entitlementId);
      if (entitlement === undefined) return fail(reply, 404, `no entitlement ${entitlementId}`);
      const held = await listHoldings(app.db, { userId: user ?? undefined, entitlementId: entitlement ?? undefined, grantsOnly: true });
      return held.map((h): Static<typeof GrantRow> => ({
        id: h.id!,
        userId: h.userId,
        userName: h.userName,
        entitlementId: h.entitlementId,
        connectorId: h.connectorId,
        entitlement: h.entitlement,
        reason: h.reason,
        validFrom: h.validFrom,
        validUntil: h.validUntil,
        applied: h.applied,
        request: h.request,
      }));
    },
  );

  app.post(
    '/api/grants',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: 'Grant an entitlement to a user directly, optionally for a time window (it ends by itself)',
        body: Type.Object(
          {
            userId: UserRef,
            entitlement: Type.String({ description: 'entitlement id or "connectorId/name"' }),
            reason: Type.Optional(Type.String({ pattern: '^(manual|request:.+)$', description: 'manual (default) or request:<id>' })),
            validFrom: Type.Optional(Type.String({ format: 'date-time' })),
            validUntil: Type.Optional(Type.String({ format: 'date-time' })),
          },
          { additionalProperties: false },
        ),
        response: { 201: CreatedGrant, ...apiErrors([400], { 400: 'invalid body, or no such user or entitlement' }) },
      },
    },
    async (request, reply) => {
      const { entitlement, reason = 'manual', validFrom, validUntil } = request.body;
      if (validFrom && validUntil && Date.parse(validUntil) <= Date.parse(validFrom)) return fail(reply, 400, 'validUntil must be after validFrom');
      const userId = await resolveUser(app.db, request.body.userId);
      const { rows: u } = await app.db.query('SELECT 1 FROM users WHERE id = $1 AND deleted_at IS NULL', [userId ?? null]);
      if (!userId || !u[0]) return fail(reply, 400, `no user ${request.body.userId}`);
      const entitlementId = await resolveEntitlement(app.db, entitlement);
      if (!entitlementId) return fail(reply, 400, `no entitlement ${entitlement}`);
      const e = [{ id: entitlementId }];
      const grant = await withTransaction(app.db, async (tx) => {
        const { rows } = await tx.query<Static<typeof CreatedGrant>>(
          `INSERT INTO grants (id, user_id, entitlement_id, reason, valid_from, valid_until) VALUES ($1, $2, $3, $4, COALESCE($5::timestamptz, now()), $6)
           ON CONFLICT (user_id, entitlement_id, reason) DO UPDATE
             SET status = 'active', ended_at = NULL, valid_from = EXCLUDED.valid_from, valid_until = EXCLUDED.valid_until
           RETURNING id, user_id AS "userId", entitlement_id AS "entitlementId", reason, valid_from AS "validFrom", valid_until AS "validUntil"`,
          [randomUUID(), userId, e[0]!.id, reason, validFrom ?? null, validUntil ?? null],
        );
        await audit(tx, request.identity!.name, 'grant.created', 'Grant', rows[0]!.id, rows[0]);
        await enqueueUserChanges(tx, [userId]);
        return rows[0]!;
      });
      app.outbox.kick();
      return reply.code(201).send(grant);
    },
  );

  app.delete(
    '/api/grants/:id',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: 'End a grant (rule grants end when the rule stops applying)',
        params: Type.Object({ id: Type.String({ format: 'uuid' }) }),
        response: { 204: NoContent('ended'), ...apiErrors([400, 404], { 404: 'no active manual or request grant with that id' }) },
      },
    },
    async (request, reply) => {
      const ended = await withTransaction(app.db, async (tx) => {
        const { rows } = await tx.query<{ user_id: string; reason: string } & Record<string, unknown>>(
          `UPDATE grants SET status = 'ended', ended_at = now() WHERE id = $1 AND status = 'active' AND reason NOT LIKE 'rule:%'
           RETURNING user_id, reason, id, user_id AS "userId", entitlement_id AS "entitlementId", status,
                     valid_from AS "validFrom", valid_until AS "validUntil", ended_at AS "endedAt"`,
          [request.params.id],
        );
        if (!rows[0]) return false;
        const { user_id: _u, ...ended } = rows[0];
        // The user and entitlement are in the event, so the user's history (and access at a past date) finds it.
        await audit(tx, request.identity!.name, 'grant.ended', 'Grant', request.params.id, ended);
        await enqueueUserChanges(tx, [rows[0].user_id]);
        return true;
      });
      if (!ended) return fail(reply, 404, `no active manual or request grant ${request.params.id}`);
      app.outbox.kick();
      return reply.code(204).send();
    },
  );

  app.get(
    '/api/users/:id/provisioning',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: "A user's accounts per connector: state, last sync, last error, workflow, and any step being retried (attempt, last error, next attempt)",
        params: Type.Object({ id: UserRef }),
        response: { 200: Type.Array(AccountStatus), ...apiErrors([400, 404], { 404: 'no such user' }) },
      },
    },
    async (request, reply) => {
      const userId = await resolveUser(app.db, request.params.id);
      if (!userId) return fail(reply, 404, `no user ${request.params.id}`);
      const { rows } = await app.db.query<Omit<Static<typeof AccountStatus>, 'retrying' | 'workflowUrl'>>(
        `SELECT a.connector_id AS "connectorId", a.remote_id AS "remoteId", a.state, a.last_sync_at AS "lastSyncAt",
                a.last_error AS "lastError", a.last_error_at AS "lastErrorAt", a.workflow_id AS "workflowId"
           FROM accounts a WHERE a.user_id = $1 ORDER BY a.connector_id`,
        [userId],
      );
      // Steps still being retried live in Temporal, not in the database: ask the user's workflow.
      let pending: PendingStep[] = [];
      let pendingUnknown: string | undefined;
      try {
        pending = await pendingSteps(await app.temporal.client(), userSyncWorkflowId(userId));
      } catch (err) {
        pendingUnknown = `Temporal did not answer: ${(err as Error).message}`;
        request.log.warn({ err }, 'cannot read pending provisioning steps');
      }
      for (const p of pending) {
        if (!rows.some((r) => r.connectorId === p.connectorId)) {
          rows.push({ connectorId: p.connectorId, remoteId: null, state: 'none', lastSyncAt: null, lastError: null, lastErrorAt: null, workflowId: userSyncWorkflowId(userId) });
        }
      }
      rows.sort((a, b) => a.connectorId.localeCompare(b.connectorId));
      return rows.map((r) => {
        const retrying = pending.filter((p) => p.connectorId === r.connectorId);
        return {
          ...r,
          ...(retrying[0]?.lastError && !r.lastError ? { lastError: retrying[0].lastError } : {}),
          retrying: pendingUnknown ? { unknown: pendingUnknown } : (retrying[0] ?? null),
          workflowUrl: r.workflowId ? (workflowUiUrl(app.config.temporalUiUrl, app.config.temporalNamespace, r.workflowId) ?? null) : null,
        };
      });
    },
  );

  app.get(
    '/api/users/:id/access',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: "Who had what: a user's groups, grants and accounts at an instant (default now), rebuilt from the audit log; works for deactivated and deleted users",
        params: Type.Object({ id: Type.String({ format: 'uuid' }) }),
        querystring: Type.Object(
          { at: Type.Optional(Type.String({ description: 'ISO 8601 date (UTC) or date-time with a zone; default now' })) },
          { additionalProperties: false },
        ),
        response: { 200: AccessAsOf, ...apiErrors([400, 404], { 404: 'no such user' }) },
      },
    },
    async (request, reply) => {
      const at = request.query.at === undefined ? new Date().toISOString() : parseInstant(request.query.at);
      if (!at) return fail(reply, 400, `at: expected an ISO 8601 date or date-time with a zone (2024-05-01, 2024-05-01T12:00:00Z), got "${request.query.at}"`);
      const access = await accessAsOf(app.db, request.params.id, at);
      if (!access) return fail(reply, 404, `no user ${request.params.id}`);
      return access;
    },
  );
};

export default provisioning;
