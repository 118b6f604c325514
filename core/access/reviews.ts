/**
 * Access reviews (certification campaigns): who holds what in a scope, and whether someone
 * responsible confirmed it. A campaign is recorded here with a copy of its settings; its
 * `certification` workflow generates one item per user × entitlement in scope (access given by
 * grants of every kind, and memberships reconciliation found in a target that nobody granted),
 * resolves each item's reviewers, tells them, reminds them and, at the due date, applies the
 * campaign's policy to the items nobody reviewed.
 *
 * Decisions are made here, in one PostgreSQL transaction each, by the REST API and the console
 * alike: only a designated reviewer, never on one's own access, a repeat of the same decision
 * answers the same, and every refused attempt is recorded as evidence. A revocation ends the
 * grants behind the item (with the audit event saying which review and why) and has the user's
 * userSync take the access away in the target; access a rule gives (birthright) is reviewed and
 * flagged, but only changing the rule takes it away.
 */
import { randomUUID } from 'node:crypto';
import type { Db, Tx } from '../db/pool.js';
import { withTransaction } from '../db/pool.js';
import { enqueue, enqueueUserChanges } from '../outbox/outbox.js';
import { filterToSql, parseFilter } from '../scim/filter/index.js';
import { ScimError } from '../scim/errors.js';
import { SchemaRegistry } from '../scim/schemas.js';
import { activeGroupMembers, USER_TARGET } from '../directory/store.js';
import { csvField } from '../audit/chain.js';
import { spreadsheetCsvField } from '../provisioning/holdings.js';
import { loadApproverFunction, type ApproverFunctionInput } from './approver-functions.js';
import { groupId, userIds } from './policies.js';

type Queryable = Pick<Db | Tx, 'query'>;

export type ReviewDecision = 'keep' | 'revoke';
export type UnreviewedAction = 'revoke' | 'keep' | 'escalate';
export type CampaignStatus = 'generating' | 'open' | 'escalated' | 'closed';
export type ItemStatus = 'pending' | 'kept' | 'revoked';

/** A campaign's settings with every name resolved to ids (stored, and copied onto each campaign). */
export interface CampaignSpec {
  name: string;
  description: string | null;
  scope: { connectorIds: string[]; entitlementIds: string[]; userFilter: string | null };
  reviewers: {
    /** The user's manager this many levels up (1: the direct manager). */
    managerLevels: number | null;
    /** The owners of the access policies that offer the entitlement. */
    owners: boolean;
    groupId: string | null;
    userIds: string[];
    /** An approver function (as in access requests), asked once per item. */
    function: { module: string; timeoutSeconds: number } | null;
  };
  /** Reviews the items whose reviewers resolve to nobody (the user aside); null: such items wait for the due date. */
  fallbackGroupId: string | null;
  /** From the start to the due date. */
  durationSeconds: number;
  /** Reminders to reviewers with items still pending, this long before the due date. */
  remindBeforeSeconds: number[];
  onUnreviewed: {
    action: UnreviewedAction;
    /** escalate: the group that reviews what is left, for how long, and what happens after. */
    escalateToGroupId: string | null;
    escalationSeconds: number | null;
    then: 'revoke' | 'keep' | null;
  };
}

/** The body that creates a campaign (`POST /api/access-reviews`) or a schedule of them. */
export interface CampaignBody {
  name: string;
  description?: string;
  scope: { connectors?: string[]; entitlements?: string[]; userFilter?: string };
  reviewers: { manager?: number; owners?: boolean; group?: string; users?: string[]; function?: string; functionTimeoutSeconds?: number };
  fallbackGroup?: string;
  durationSeconds: number;
  remindBeforeSeconds?: number[];
  onUnreviewed?: { action: UnreviewedAction; escalateTo?: string; escalationSeconds?: number; then?: 'revoke' | 'keep' };
}

const names = { type: 'array', minItems: 1, maxItems: 200, uniqueItems: true, items: { type: 'string', minLength: 1 } } as const;

/** JSON schema of {@link CampaignBody}. */
export const CampaignBodySchema = {
  type: 'object',
  required: ['name', 'scope', 'reviewers', 'durationSeconds'],
  additionalProperties: false,
  properties: {
    name: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,62}$', description: 'a short name (the Temporal UI and the report show it)' },
    description: { type: 'string', maxLength: 4000 },
    scope: {
      type: 'object',
      additionalProperties: false,
      description: 'what is reviewed: the entitlements of the connectors and/or the entitlements listed, held by users matching the SCIM filter (all users when absent); at least one of the three',
      properties: {
        connectors: { ...names, description: 'connector ids: every entitlement of each' },
        entitlements: { ...names, description: 'entitlement ids or "connectorId/name"' },
        userFilter: { type: 'string', minLength: 1, description: 'a SCIM filter on users, e.g. department eq "Sales"' },
      },
    },
    reviewers: {
      type: 'object',
      additionalProperties: false,
      description: 'who reviews each item (all sources together); never the user whose access it is',
      properties: {
        manager: { type: 'integer', minimum: 1, maximum: 10, description: "the user's enterprise manager this many levels up" },
        owners: { type: 'boolean', description: 'the owners of the access policies offering the entitlement' },
        group: { type: 'string', minLength: 1, description: 'members (nested included) of this group' },
        users: { ...names, description: 'userNames or ids' },
        function: { type: 'string', minLength: 1, description: 'an approver function (as in access policies), asked once per item' },
        functionTimeoutSeconds: { type: 'integer', minimum: 1, maximum: 300 },
      },
    },
    fallbackGroup: { type: 'string', minLength: 1, description: 'reviews the items whose reviewers resolve to nobody' },
    durationSeconds: { type: 'integer', minimum: 1, maximum: 31_536_000, description: 'from the start to the due date' },
    remindBeforeSeconds: { type: 'array', maxItems: 10, uniqueItems: true, items: { type: 'integer', minimum: 1 }, description: 'remind reviewers with pending items this long before the due date' },
    onUnreviewed: {
      type: 'object',
      required: ['action'],
      additionalProperties: false,
      description: 'what happens to items not reviewed by the due date (default: keep)',
      properties: {
        action: { type: 'string', enum: ['revoke', 'keep', 'escalate'] },
        escalateTo: { type: 'string', minLength: 1, description: 'escalate: the group that reviews what is left' },
        escalationSeconds: { type: 'integer', minimum: 1, description: 'escalate: how long the group has' },
        then: { type: 'string', enum: ['revoke', 'keep'], description: 'escalate: what happens to items still not reviewed after that' },
      },
    },
  },
} as const;

/** A campaign body that names something missing or contradicts itself. */
export class CampaignError extends Error {}

const registry = new SchemaRegistry();

const campaignError = (message: string) => new CampaignError(message);
const userIdsOf = (db: Queryable, list: string[], where: string) => userIds(db, list, where, campaignError);
const groupIdOf = (db: Queryable, name: string | undefined, where: string) => groupId(db, name, where, campaignError);

/** Checks a campaign body and resolves its names; throws {@link CampaignError}. */
export async function resolveCampaign(db: Queryable, body: CampaignBody): Promise<CampaignSpec> {
  const s = body.scope;
  if (!s.connectors?.length && !s.entitlements?.length && s.userFilter === undefined) throw new CampaignError('scope: name connectors, entitlements or a userFilter');
  const connectorIds: string[] = [];
  for (const c of s.connectors ?? []) {
    const { rows } = await db.query<{ id: string }>('SELECT id FROM connectors WHERE id = $1', [c]);
    if (!rows[0]) throw new CampaignError(`scope.connectors: no connector ${c}`);
    connectorIds.push(rows[0].id);
  }
  const entitlementIds: string[] = [];
  for (const e of s.entitlements ?? []) {
    const { rows } = await db.query<{ id: string }>(`SELECT id FROM entitlements WHERE id::text = $1 OR connector_id || '/' || name = $1`, [e]);
    if (!rows[0]) throw new CampaignError(`scope.entitlements: no entitlement ${e}`);
    entitlementIds.push(rows[0].id);
  }
  if (s.userFilter !== undefined) {
    try {
      const params: unknown[] = [];
      filterToSql(parseFilter(s.userFilter), USER_TARGET, registry, params);
    } catch (err) {
      throw new CampaignError(`scope.userFilter: ${err instanceof ScimError ? err.detail : String(err)}`);
    }
  }
  const r = body.reviewers;
  if (r.manager === undefined && !r.owners && r.group === undefined && !r.users?.length && r.function === undefined) throw new CampaignError('reviewers: name at least one source of reviewers');
  const remind = [...(body.remindBeforeSeconds ?? [])].sort((a, b) => b - a);
  const late = remind.filter((x) => x >= body.durationSeconds);
  if (late.length) throw new CampaignError(`remindBeforeSeconds: ${late.join(', ')} is not shorter than durationSeconds (${body.durationSeconds})`);
  const u = body.onUnreviewed ?? { action: 'keep' as const };
  if (u.action === 'escalate') {
    if (u.escalateTo === undefined || u.escalationSeconds === undefined || u.then === undefined) throw new CampaignError('onUnreviewed: escalate needs escalateTo, escalationSeconds and then');
  } else if (u.escalateTo !== undefined || u.escalationSeconds !== undefined || u.then !== undefined) {
    throw new CampaignError('onUnreviewed: escalateTo, escalationSeconds and then go with action "escalate" only');
  }
  return {
    name: body.name,
    description: body.description ?? null,
    scope: { connectorIds, entitlementIds, userFilter: s.userFilter ?? null },
    reviewers: {
      managerLevels: r.manager ?? null,
      owners: r.owners ?? false,
      groupId: await groupIdOf(db, r.group, 'reviewers.group'),
      userIds: await userIdsOf(db, r.users ?? [], 'reviewers.users'),
      function: r.function !== undefined ? { module: r.function, timeoutSeconds: r.functionTimeoutSeconds ?? 10 } : null,
    },
    fallbackGroupId: await groupIdOf(db, body.fallbackGroup, 'fallbackGroup'),
    durationSeconds: body.durationSeconds,
    remindBeforeSeconds: remind,
    onUnreviewed: {
      action: u.action,
      escalateToGroupId: await groupIdOf(db, u.escalateTo, 'onUnreviewed.escalateTo'),
      escalationSeconds: u.escalationSeconds ?? null,
      then: u.then ?? null,
    },
  };
}

export const certificationWorkflowId = (campaignId: string) => `certification:${campaignId}`;

/**
 * Records a campaign that starts now (or at `startsAt`) with the outbox row that starts its
 * `certification` workflow, and its audit event, in one transaction. Answers its id.
 */
export async function createCampaign(db: Db, spec: CampaignSpec, actor: string, startsAt?: Date): Promise<string> {
  const id = randomUUID();
  const start = startsAt ?? new Date();
  await withTransaction(db, async (tx) => {
    await insertCampaign(tx, id, spec, actor, start, certificationWorkflowId(id), null);
    await enqueue(tx, { topic: 'review-campaign.created', aggregateId: id, payload: { name: spec.name } });
  });
  return id;
}

async function insertCampaign(tx: Tx, id: string, spec: CampaignSpec, actor: string, start: Date, workflowId: string, schedule: string | null): Promise<void> {
  await tx.query(
    `INSERT INTO review_campaigns (id, name, schedule_name, spec, starts_at, due_at, workflow_id, created_by)
     VALUES ($1, $2, $3, $4, $5, $5::timestamptz + $6 * interval '1 second', $7, $8)`,
    [id, spec.name, schedule, JSON.stringify(spec), start, spec.durationSeconds, workflowId, actor],
  );
  await tx.query(`INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after) VALUES ($1, 'access-review.created', 'AccessReview', $2, $3, $4)`, [
    actor,
    id,
    schedule ? `scheduled access review ${schedule}` : 'access review',
    JSON.stringify({ name: spec.name, scope: spec.scope, startsAt: start.toISOString(), durationSeconds: spec.durationSeconds, onUnreviewed: spec.onUnreviewed }),
  ]);
}

/** A firing of schedule `schedule` opens its campaign, once per workflow id. Answers the campaign id. */
export async function openScheduledCampaign(db: Db, schedule: string, workflowId: string): Promise<string> {
  return await withTransaction(db, async (tx) => {
    const { rows: existing } = await tx.query<{ id: string }>('SELECT id FROM review_campaigns WHERE workflow_id = $1', [workflowId]);
    if (existing[0]) return existing[0].id;
    const { rows } = await tx.query<{ spec: CampaignSpec }>('SELECT spec FROM review_schedules WHERE name = $1', [schedule]);
    if (!rows[0]) throw new CampaignError(`no review schedule ${schedule}`);
    const id = randomUUID();
    await insertCampaign(tx, id, rows[0].spec, `schedule ${schedule}`, new Date(), workflowId, schedule);
    return id;
  });
}

/** How often a scheduled review runs. */
export interface ReviewScheduleSpec {
  /** A named cadence (quarterly: 1 Jan, Apr, Jul, Oct at 09:00 UTC) or an interval in seconds. */
  every?: 'weekly' | 'monthly' | 'quarterly' | 'yearly';
  everySeconds?: number;
  /** A cron expression (UTC), instead. */
  cron?: string;
}

/** The cron expression (or interval in seconds) of a schedule; throws {@link CampaignError}. */
export function scheduleCadence(s: ReviewScheduleSpec): { cron: string } | { seconds: number } {
  const given = [s.every, s.everySeconds, s.cron].filter((x) => x !== undefined).length;
  if (given !== 1) throw new CampaignError('schedule: give exactly one of every, everySeconds and cron');
  if (s.cron !== undefined) return { cron: s.cron };
  if (s.everySeconds !== undefined) return { seconds: s.everySeconds };
  const cron = { weekly: '0 9 * * 1', monthly: '0 9 1 * *', quarterly: '0 9 1 1,4,7,10 *', yearly: '0 9 1 1 *' }[s.every!];
  return { cron };
}

/** Creates or replaces schedule `name` (its Temporal Schedule is made by the caller). Answers whether it existed. */
export async function saveReviewSchedule(db: Db, spec: CampaignSpec, schedule: ReviewScheduleSpec, actor: string): Promise<boolean> {
  return await withTransaction(db, async (tx) => {
    const { rows } = await tx.query<{ spec: unknown }>('SELECT spec FROM review_schedules WHERE name = $1 FOR UPDATE', [spec.name]);
    await tx.query(
      `INSERT INTO review_schedules (name, spec, schedule) VALUES ($1, $2, $3)
       ON CONFLICT (name) DO UPDATE SET spec = $2, schedule = $3, updated_at = now()`,
      [spec.name, JSON.stringify(spec), JSON.stringify(schedule)],
    );
    await tx.query(`INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, before, after) VALUES ($1, 'access-review-schedule.saved', 'AccessReviewSchedule', $2, 'admin API', $3, $4)`, [
      actor,
      spec.name,
      rows[0] ? JSON.stringify(rows[0].spec) : null,
      JSON.stringify({ spec, schedule }),
    ]);
    return rows.length > 0;
  });
}

export interface ReviewScheduleView {
  name: string;
  spec: CampaignSpec;
  schedule: ReviewScheduleSpec;
  createdAt: string;
  updatedAt: string;
}

export async function listReviewSchedules(db: Queryable): Promise<ReviewScheduleView[]> {
  const { rows } = await db.query<{ name: string; spec: CampaignSpec; schedule: ReviewScheduleSpec; created_at: Date; updated_at: Date }>('SELECT * FROM review_schedules ORDER BY name');
  return rows.map((r) => ({ name: r.name, spec: r.spec, schedule: r.schedule, createdAt: r.created_at.toISOString(), updatedAt: r.updated_at.toISOString() }));
}

/** Removes a schedule (campaigns it opened stay); answers whether it existed. */
export async function deleteReviewSchedule(db: Db, name: string, actor: string): Promise<boolean> {
  return await withTransaction(db, async (tx) => {
    const { rows } = await tx.query<{ spec: unknown }>('DELETE FROM review_schedules WHERE name = $1 RETURNING spec', [name]);
    if (!rows[0]) return false;
    await tx.query(`INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, before) VALUES ($1, 'access-review-schedule.deleted', 'AccessReviewSchedule', $2, 'admin API', $3)`, [
      actor,
      name,
      JSON.stringify(rows[0].spec),
    ]);
    return true;
  });
}

// ------------------------------------------------------------------ campaigns as read back

export interface CampaignProgress {
  total: number;
  pending: number;
  kept: number;
  revoked: number;
}

export interface CampaignView {
  id: string;
  name: string;
  schedule: string | null;
  spec: CampaignSpec;
  status: CampaignStatus;
  startsAt: string;
  dueAt: string;
  escalatedUntil: string | null;
  workflowId: string;
  createdBy: string;
  generatedAt: string | null;
  closedAt: string | null;
  createdAt: string;
  progress: CampaignProgress;
}

interface CampaignRow {
  id: string;
  name: string;
  schedule_name: string | null;
  spec: CampaignSpec;
  status: CampaignStatus;
  starts_at: Date;
  due_at: Date;
  escalated_until: Date | null;
  workflow_id: string;
  created_by: string;
  generated_at: Date | null;
  closed_at: Date | null;
  created_at: Date;
}

const isoOrNull = (d: Date | null) => (d ? d.toISOString() : null);

export async function campaignProgress(db: Queryable, campaignId: string): Promise<CampaignProgress> {
  const { rows } = await db.query<CampaignProgress>(
    `SELECT count(*)::int AS total, (count(*) FILTER (WHERE status = 'pending'))::int AS pending,
            (count(*) FILTER (WHERE status = 'kept'))::int AS kept, (count(*) FILTER (WHERE status = 'revoked'))::int AS revoked
       FROM review_items WHERE campaign_id = $1`,
    [campaignId],
  );
  return rows[0]!;
}

async function toCampaignView(db: Queryable, r: CampaignRow): Promise<CampaignView> {
  return {
    id: r.id,
    name: r.name,
    schedule: r.schedule_name,
    spec: r.spec,
    status: r.status,
    startsAt: r.starts_at.toISOString(),
    dueAt: r.due_at.toISOString(),
    escalatedUntil: isoOrNull(r.escalated_until),
    workflowId: r.workflow_id,
    createdBy: r.created_by,
    generatedAt: isoOrNull(r.generated_at),
    closedAt: isoOrNull(r.closed_at),
    createdAt: r.created_at.toISOString(),
    progress: await campaignProgress(db, r.id),
  };
}

export async function getCampaign(db: Queryable, id: string): Promise<CampaignView | undefined> {
  const { rows } = await db.query<CampaignRow>('SELECT * FROM review_campaigns WHERE id = $1', [id]);
  return rows[0] ? await toCampaignView(db, rows[0]) : undefined;
}

export async function listCampaigns(db: Queryable, limit = 200, offset = 0): Promise<CampaignView[]> {
  const { rows } = await db.query<CampaignRow>('SELECT * FROM review_campaigns ORDER BY created_at DESC, id LIMIT $1 OFFSET $2', [limit, offset]);
  return await Promise.all(rows.map((r) => toCampaignView(db, r)));
}

// ------------------------------------------------------------------ generating the items

/**
 * Creates the campaign's items: one per user × entitlement in scope held by an active user, from
 * active grants (every reason), memberships recorded as applied with no grant, and memberships the
 * latest reconciliation of a connector found in the target unrecorded and nobody granted. Safe to
 * repeat (an item exists once per user × entitlement). Answers how many items the campaign has.
 */
export async function generateItems(db: Db, campaignId: string): Promise<number> {
  const { rows } = await db.query<CampaignRow>('SELECT * FROM review_campaigns WHERE id = $1', [campaignId]);
  const c = rows[0];
  if (!c) throw new CampaignError(`no access review ${campaignId}`);
  if (c.generated_at) return (await campaignProgress(db, campaignId)).total;
  const scope = c.spec.scope;
  const params: unknown[] = [campaignId];
  const conditions = ['u.deleted_at IS NULL', 'u.active'];
  if (scope.connectorIds.length || scope.entitlementIds.length) {
    params.push(scope.connectorIds, scope.entitlementIds);
    conditions.push('(e.connector_id = ANY($2::text[]) OR e.id = ANY($3::uuid[]))');
  }
  if (scope.userFilter) conditions.push(`(${filterToSql(parseFilter(scope.userFilter), USER_TARGET, registry, params)})`);
  const ACTIVE = `g.status = 'active' AND (g.valid_until IS NULL OR g.valid_until > now())`;
  await db.query(
    `WITH held AS (
       SELECT g.user_id, g.entitlement_id, g.reason, g.id AS grant_id, false AS unrecorded FROM grants g WHERE ${ACTIVE}
       UNION ALL
       SELECT ag.user_id, ag.entitlement_id, 'reconcile', NULL::uuid, false FROM account_grants ag
        WHERE NOT EXISTS (SELECT 1 FROM grants g WHERE g.user_id = ag.user_id AND g.entitlement_id = ag.entitlement_id AND ${ACTIVE})
       UNION ALL
       SELECT d.user_id, d.entitlement_id, 'reconcile', NULL::uuid, true
         FROM (SELECT DISTINCT ON (connector_id) id FROM reconcile_runs WHERE finished_at IS NOT NULL ORDER BY connector_id, started_at DESC) run
         JOIN drift d ON d.run_id = run.id
        WHERE d.kind = 'unexpectedMembership' AND d.user_id IS NOT NULL AND d.entitlement_id IS NOT NULL AND d.action <> 'fixed'
          AND NOT EXISTS (SELECT 1 FROM account_grants ag WHERE ag.user_id = d.user_id AND ag.entitlement_id = d.entitlement_id)
          AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.user_id = d.user_id AND g.entitlement_id = d.entitlement_id AND ${ACTIVE}))
     INSERT INTO review_items (id, campaign_id, user_id, entitlement_id, reasons, grant_ids, birthright, found_unrecorded)
     SELECT gen_random_uuid(), $1, h.user_id, h.entitlement_id, array_agg(DISTINCT h.reason ORDER BY h.reason),
            COALESCE(array_agg(DISTINCT h.grant_id) FILTER (WHERE h.grant_id IS NOT NULL), '{}'), bool_or(h.reason LIKE 'rule:%'), bool_and(h.unrecorded)
       FROM held h JOIN users u ON u.id = h.user_id JOIN entitlements e ON e.id = h.entitlement_id
      WHERE ${conditions.join(' AND ')}
      GROUP BY h.user_id, h.entitlement_id
     ON CONFLICT (campaign_id, user_id, entitlement_id) DO NOTHING`,
    params,
  );
  return (await campaignProgress(db, campaignId)).total;
}

/** Active, not deleted users among `ids`. */
async function activeUserSet(db: Queryable, ids: string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const { rows } = await db.query<{ id: string }>('SELECT id FROM users WHERE id = ANY($1::uuid[]) AND active AND deleted_at IS NULL', [ids]);
  return new Set(rows.map((r) => r.id));
}


const MANAGER_PATH = '{urn:ietf:params:scim:schemas:extension:enterprise:2.0:User,manager,value}';

/**
 * Resolves the reviewers of the campaign's items that have none yet, `batchSize` at a time: the
 * sources the campaign names, never the user themself, the fallback group when that leaves nobody.
 * An approver function is asked once per item (a failing one adds nobody, noted on the item).
 * Safe to repeat. Answers how many items were resolved.
 */
export async function resolveReviewers(db: Db, campaignId: string, batchSize = 1000, onBatch?: () => void): Promise<number> {
  const { rows: cs } = await db.query<{ spec: CampaignSpec; name: string }>('SELECT spec, name FROM review_campaigns WHERE id = $1', [campaignId]);
  const spec = cs[0]!.spec;
  const r = spec.reviewers;
  const fixed = [...r.userIds, ...(r.groupId ? await activeGroupMembers(db, r.groupId) : [])];
  const fallback = spec.fallbackGroupId ? await activeGroupMembers(db, spec.fallbackGroupId) : [];
  const ownersByEntitlement = new Map<string, string[]>();
  if (r.owners) {
    const { rows } = await db.query<{ entitlement_id: string; owner_user_ids: string[]; owner_group_id: string | null }>(
      'SELECT entitlement_id, owner_user_ids, owner_group_id FROM access_policies WHERE entitlement_id IS NOT NULL',
    );
    for (const p of rows) {
      const list = ownersByEntitlement.get(p.entitlement_id) ?? [];
      list.push(...p.owner_user_ids, ...(p.owner_group_id ? await activeGroupMembers(db, p.owner_group_id) : []));
      ownersByEntitlement.set(p.entitlement_id, list);
    }
  }
  let managers: Map<string, string> | undefined;
  if (r.managerLevels !== null) {
    const { rows } = await db.query<{ id: string; manager: string | null }>(
      `SELECT u.id, m.id AS manager FROM users u JOIN users m ON m.id::text = u.resource #>> '${MANAGER_PATH}' AND m.deleted_at IS NULL WHERE u.deleted_at IS NULL`,
    );
    managers = new Map(rows.map((x) => [x.id, x.manager!]));
  }
  let fn: Awaited<ReturnType<typeof loadApproverFunction>> | undefined;
  let fnNote: string | undefined;
  if (r.function) {
    try {
      fn = await loadApproverFunction(r.function.module);
    } catch (err) {
      // A function that cannot be loaded adds nobody; each item says why.
      fnNote = (err as Error).message;
    }
  }
  let resolved = 0;
  for (;;) {
    const { rows: items } = await db.query<{ id: string; user_id: string; user_name: string; entitlement_id: string; entitlement: string; reasons: string[] }>(
      `SELECT i.id, i.user_id, u.user_name, i.entitlement_id, e.connector_id || '/' || e.name AS entitlement, i.reasons
         FROM review_items i JOIN users u ON u.id = i.user_id JOIN entitlements e ON e.id = i.entitlement_id
        WHERE i.campaign_id = $1 AND i.reviewer_ids IS NULL ORDER BY i.id LIMIT $2`,
      [campaignId, batchSize],
    );
    if (items.length === 0) return resolved;
    const updates: Array<{ id: string; ids: string; note: string }> = [];
    const candidates = new Map<string, { ids: string[]; notes: string[] }>();
    for (const item of items) {
      const ids = [...fixed, ...(ownersByEntitlement.get(item.entitlement_id) ?? [])];
      const notes: string[] = [];
      if (managers) {
        let current: string | undefined = item.user_id;
        for (let i = 0; i < r.managerLevels! && current; i++) current = managers.get(current);
        if (current) ids.push(current);
        else notes.push(r.managerLevels === 1 ? 'the user has no manager' : `the user has no manager ${r.managerLevels} levels up`);
      }
      if (fnNote) notes.push(fnNote);
      if (fn) {
        const input: ApproverFunctionInput & { review: { campaignId: string; itemId: string; reasons: string[] } } = {
          requestId: item.id,
          requester: { id: item.user_id, userName: item.user_name },
          policy: spec.name,
          entitlement: item.entitlement,
          stage: { index: 0, name: 'access review' },
          justification: null,
          review: { campaignId, itemId: item.id, reasons: item.reasons },
        };
        try {
          const answer = await withTimeout(Promise.resolve(fn(input)), r.function!.timeoutSeconds * 1000);
          if (!Array.isArray(answer) || answer.some((x) => typeof x !== 'string')) throw new Error('it did not answer a list of user ids or userNames');
          if (answer.length) {
            const { rows: found } = await db.query<{ id: string }>('SELECT id FROM users WHERE deleted_at IS NULL AND (id::text = ANY($1) OR lower(user_name) = ANY($2))', [
              answer,
              answer.map((x) => x.toLowerCase()),
            ]);
            ids.push(...found.map((x) => x.id));
          }
        } catch (err) {
          notes.push(`the approver function failed: ${(err as Error).message}`);
        }
      }
      candidates.set(item.id, { ids, notes });
    }
    const live = await activeUserSet(db, [...new Set([...candidates.values()].flatMap((c) => c.ids))]);
    for (const item of items) {
      const c = candidates.get(item.id)!;
      let ids = [...new Set(c.ids.filter((id) => live.has(id) && id !== item.user_id))].sort();
      if (ids.length === 0 && fallback.length) {
        ids = fallback.filter((id) => id !== item.user_id);
        c.notes.push('nobody else to review it: the fallback group reviews it');
      }
      if (ids.length === 0) c.notes.push('nobody to review it: it follows the due-date policy');
      updates.push({ id: item.id, ids: `{${ids.join(',')}}`, note: c.notes.join('; ') });
    }
    await db.query(
      `UPDATE review_items r SET reviewer_ids = x.ids::uuid[], reviewer_note = NULLIF(x.note, '')
         FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, ids text, note text) WHERE r.id = x.id`,
      [JSON.stringify(updates)],
    );
    resolved += items.length;
    onBatch?.();
  }
}

async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Marks the campaign open once its items and reviewers are all there (idempotent). */
export async function markGenerated(db: Db, campaignId: string): Promise<void> {
  await withTransaction(db, async (tx) => {
    const res = await tx.query(`UPDATE review_campaigns SET status = 'open', generated_at = now() WHERE id = $1 AND status = 'generating'`, [campaignId]);
    if ((res.rowCount ?? 0) === 0) return;
    const p = await campaignProgress(tx, campaignId);
    await tx.query(`INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after) VALUES ('access review', 'access-review.opened', 'AccessReview', $1, $2, $3)`, [
      campaignId,
      `${p.total} items to review`,
      JSON.stringify(p),
    ]);
  });
}

// ------------------------------------------------------------------ items and decisions

export interface ReviewItemView {
  id: string;
  campaignId: string;
  campaign: string;
  userId: string;
  userName: string;
  entitlementId: string;
  /** `connectorId/name`. */
  entitlement: string;
  reasons: string[];
  /** A rule gives it: reviewed, but only changing the rule takes it away. */
  birthright: boolean;
  /** The rules that give it. */
  rules: string[];
  /** Nobody granted it: found in the target by reconciliation. */
  ungranted: boolean;
  reviewerIds: string[];
  reviewers: string[];
  reviewerNote: string | null;
  status: ItemStatus;
  decision: ReviewDecision | null;
  decidedBy: string | null;
  comment: string | null;
  decidedAt: string | null;
  /** What the decision changed. */
  outcome: string | null;
  escalated: boolean;
}

const ITEM_COLUMNS = `i.id, i.campaign_id, c.name AS campaign, i.user_id, u.user_name, i.entitlement_id, e.connector_id || '/' || e.name AS entitlement,
  i.reasons, i.birthright, i.grant_ids, i.found_unrecorded, COALESCE(i.reviewer_ids, '{}') AS reviewer_ids,
  ARRAY(SELECT ru.user_name FROM users ru WHERE ru.id = ANY (i.reviewer_ids) ORDER BY ru.user_name) AS reviewers,
  i.reviewer_note, i.status, i.decision, COALESCE(du.user_name, i.decided_actor) AS decided_by, i.comment, i.decided_at, i.outcome, i.escalated`;
const ITEM_FROM = `review_items i JOIN review_campaigns c ON c.id = i.campaign_id JOIN users u ON u.id = i.user_id
  JOIN entitlements e ON e.id = i.entitlement_id LEFT JOIN users du ON du.id = i.decided_by`;

interface ItemRow {
  id: string;
  campaign_id: string;
  campaign: string;
  user_id: string;
  user_name: string;
  entitlement_id: string;
  entitlement: string;
  reasons: string[];
  birthright: boolean;
  grant_ids: string[];
  found_unrecorded: boolean;
  reviewer_ids: string[];
  reviewers: string[];
  reviewer_note: string | null;
  status: ItemStatus;
  decision: ReviewDecision | null;
  decided_by: string | null;
  comment: string | null;
  decided_at: Date | null;
  outcome: string | null;
  escalated: boolean;
}

function toItemView(r: ItemRow): ReviewItemView {
  return {
    id: r.id,
    campaignId: r.campaign_id,
    campaign: r.campaign,
    userId: r.user_id,
    userName: r.user_name,
    entitlementId: r.entitlement_id,
    entitlement: r.entitlement,
    reasons: r.reasons,
    birthright: r.birthright,
    rules: r.reasons.filter((x) => x.startsWith('rule:')).map((x) => x.slice(5)),
    ungranted: r.reasons.length === 1 && r.reasons[0] === 'reconcile',
    reviewerIds: r.reviewer_ids,
    reviewers: r.reviewers,
    reviewerNote: r.reviewer_note,
    status: r.status,
    decision: r.decision,
    decidedBy: r.decided_by,
    comment: r.comment,
    decidedAt: isoOrNull(r.decided_at),
    outcome: r.outcome,
    escalated: r.escalated,
  };
}

export async function getItem(db: Queryable, itemId: string): Promise<ReviewItemView | undefined> {
  const { rows } = await db.query<ItemRow>(`SELECT ${ITEM_COLUMNS} FROM ${ITEM_FROM} WHERE i.id = $1`, [itemId]);
  return rows[0] ? toItemView(rows[0]) : undefined;
}

export interface ItemFilter {
  status?: ItemStatus | undefined;
  reviewerId?: string | undefined;
  limit?: number;
  offset?: number;
}

/** A campaign's items in userName, entitlement order. */
export async function listItems(db: Queryable, campaignId: string, f: ItemFilter = {}): Promise<ReviewItemView[]> {
  const { rows } = await db.query<ItemRow>(
    `SELECT ${ITEM_COLUMNS} FROM ${ITEM_FROM}
      WHERE i.campaign_id = $1 AND ($2::text IS NULL OR i.status = $2) AND ($3::uuid IS NULL OR $3 = ANY (i.reviewer_ids))
      ORDER BY u.user_name, e.connector_id, e.name LIMIT $4 OFFSET $5`,
    [campaignId, f.status ?? null, f.reviewerId ?? null, f.limit ?? 1000, f.offset ?? 0],
  );
  return rows.map(toItemView);
}

/** The items waiting on `reviewerId` in campaigns open for decisions, oldest campaign first. */
export async function reviewsOf(db: Queryable, reviewerId: string, limit = 500, offset = 0): Promise<ReviewItemView[]> {
  const { rows } = await db.query<ItemRow>(
    `SELECT ${ITEM_COLUMNS} FROM ${ITEM_FROM}
      WHERE i.status = 'pending' AND $1 = ANY (i.reviewer_ids) AND c.status IN ('open', 'escalated')
      ORDER BY c.due_at, c.id, u.user_name, e.connector_id, e.name LIMIT $2 OFFSET $3`,
    [reviewerId, limit, offset],
  );
  return rows.map(toItemView);
}

export type DecideOutcome = { ok: true; item: ReviewItemView } | { ok: false; status: 403 | 404 | 409; message: string; item?: ReviewItemView };

/** Why a decision (or the due-date policy) took the access away or left it, for the audit log. */
function auditReason(campaign: string, who: string, decision: ReviewDecision, comment: string | null): string {
  return `access review ${campaign}: ${decision === 'revoke' ? 'revoked' : 'kept'} by ${who}${comment ? `: ${comment}` : ''}`;
}

/**
 * Takes the item's access away inside `tx`: its grants other than rule grants end (each audited
 * with `why`), a membership found unrecorded in the target is recorded so userSync revokes it,
 * and the user's userSync is asked to converge. Answers what changed, in words.
 */
async function revokeItemAccess(tx: Tx, item: ItemRow, actor: string, why: string): Promise<string> {
  const { rows: ended } = await tx.query<Record<string, unknown> & { id: string; reason: string }>(
    `UPDATE grants SET status = 'ended', ended_at = now() WHERE id = ANY ($1::uuid[]) AND status = 'active' AND reason NOT LIKE 'rule:%'
     RETURNING id, user_id AS "userId", entitlement_id AS "entitlementId", reason, status, valid_from AS "validFrom", valid_until AS "validUntil", ended_at AS "endedAt"`,
    [item.grant_ids],
  );
  let recorded = false;
  if (item.found_unrecorded) {
    const res = await tx.query('INSERT INTO account_grants (user_id, entitlement_id) VALUES ($1, $2) ON CONFLICT DO NOTHING', [item.user_id, item.entitlement_id]);
    recorded = (res.rowCount ?? 0) > 0;
  }
  for (const g of ended) {
    await tx.query(`INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after) VALUES ($1, 'grant.ended', 'Grant', $2, $3, $4)`, [actor, g.id, why, JSON.stringify(g)]);
  }
  if (recorded) {
    const connector = item.entitlement.split('/')[0]!;
    await tx.query(
      `INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, before, after) VALUES ($1, 'account.membershipFound', 'Account', $2, $3, $4, $5)`,
      [actor, `${connector}:${item.user_id}`, why, JSON.stringify({ entitlementId: item.entitlement_id, applied: false }), JSON.stringify({ entitlementId: item.entitlement_id, applied: true, review: item.campaign_id })],
    );
  }
  await enqueueUserChanges(tx, [item.user_id]);
  const rules = item.reasons.filter((x) => x.startsWith('rule:')).map((x) => x.slice(5));
  const parts: string[] = [];
  if (ended.length) parts.push(`ended ${ended.length === 1 ? 'grant' : 'grants'} ${ended.map((g) => `${g.id} (${g.reason})`).join(', ')}`);
  if (item.reasons.includes('reconcile')) parts.push('the membership nobody granted is revoked');
  const doing = `userSync removes ${item.entitlement} from ${item.user_name}`;
  if (rules.length) return `${parts.join('; ')}; access stays through rule ${rules.join(', ')} (change the rule to take it away)`;
  return `${parts.length ? `${parts.join('; ')}; ` : ''}${doing}`;
}

/** The item locked for the transaction, with its campaign's status. */
async function lockItem(tx: Tx, itemId: string): Promise<(ItemRow & { campaign_status: CampaignStatus; deadline_passed: boolean }) | undefined> {
  const { rows } = await tx.query<ItemRow & { campaign_status: CampaignStatus; deadline_passed: boolean }>(
    `SELECT ${ITEM_COLUMNS}, c.status AS campaign_status,
            (CASE WHEN c.status = 'escalated' THEN c.escalated_until ELSE c.due_at END) <= now() AS deadline_passed
       FROM ${ITEM_FROM} WHERE i.id = $1 FOR UPDATE OF i`,
    [itemId],
  );
  return rows[0];
}

/**
 * Records `reviewer`'s decision on an item, and for `revoke` takes the access away; all in one
 * transaction. Refused (and the attempt recorded): 403 for anyone not among the item's reviewers
 * and for the user whose access it is, 409 for an item decided already, a campaign not open, or
 * revoking access only a rule gives. The same decision again by the same reviewer answers the
 * item as it is (nothing is done twice).
 */
export async function decideItem(
  db: Db,
  d: { itemId: string; reviewer: { userId: string; userName: string }; decision: ReviewDecision; comment?: string | undefined },
): Promise<DecideOutcome> {
  const comment = d.comment?.trim() || null;
  const result = await withTransaction(db, async (tx): Promise<DecideOutcome | { refused: 403 | 409; message: string }> => {
    const item = await lockItem(tx, d.itemId);
    if (!item) return { ok: false, status: 404, message: `no review item ${d.itemId}` };
    const me = d.reviewer.userId;
    if (item.status !== 'pending' && item.decision === d.decision && item.decided_by === d.reviewer.userName) {
      const { rows } = await tx.query('SELECT 1 FROM review_decisions WHERE item_id = $1 AND accepted AND reviewer_id = $2', [item.id, me]);
      if (rows.length) return { ok: true, item: toItemView(item) };
    }
    if (item.user_id === me) return { refused: 403, message: 'nobody reviews their own access' };
    if (!item.reviewer_ids.includes(me)) return { refused: 403, message: 'not a reviewer of this item' };
    if (item.status !== 'pending') return { refused: 409, message: `the item is ${item.status} already (${item.decision} by ${item.decided_by ?? 'someone'})` };
    if (item.campaign_status !== 'open' && item.campaign_status !== 'escalated') return { refused: 409, message: `the access review is ${item.campaign_status}` };
    // Past the deadline the campaign's policy decides; a late decision would race it.
    if (item.deadline_passed) return { refused: 409, message: `the access review's ${item.campaign_status === 'escalated' ? 'escalation' : 'due date'} has passed` };
    const rules = item.reasons.filter((x) => x.startsWith('rule:')).map((x) => x.slice(5));
    if (d.decision === 'revoke' && rules.length && item.reasons.every((x) => x.startsWith('rule:'))) {
      return { refused: 409, message: `given by rule ${rules.join(', ')} (birthright): it is taken away by changing the rule, not by a review` };
    }
    const why = auditReason(item.campaign, d.reviewer.userName, d.decision, comment);
    await tx.query(`INSERT INTO review_decisions (item_id, reviewer_id, actor, decision, comment, accepted) VALUES ($1, $2, $3, $4, $5, true)`, [item.id, me, d.reviewer.userName, d.decision, comment]);
    const outcome = d.decision === 'revoke' ? await revokeItemAccess(tx, item, d.reviewer.userName, why) : rules.length ? `kept (rule ${rules.join(', ')})` : 'kept';
    await tx.query(
      `UPDATE review_items SET status = $2, decision = $3, decided_by = $4, decided_actor = $5, comment = $6, decided_at = now(), outcome = $7 WHERE id = $1`,
      [item.id, d.decision === 'revoke' ? 'revoked' : 'kept', d.decision, me, d.reviewer.userName, comment, outcome],
    );
    await tx.query(`INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after) VALUES ($1, 'access-review.decided', 'AccessReviewItem', $2, $3, $4)`, [
      d.reviewer.userName,
      item.id,
      why,
      JSON.stringify({ campaignId: item.campaign_id, userId: item.user_id, entitlementId: item.entitlement_id, decision: d.decision, outcome }),
    ]);
    return { ok: true, item: toItemView((await lockItem(tx, item.id))!) };
  });
  if (!('refused' in result)) return result;
  await withTransaction(db, async (tx) => {
    await tx.query(`INSERT INTO review_decisions (item_id, reviewer_id, actor, decision, comment, accepted, refusal) VALUES ($1, $2, $3, $4, $5, false, $6)`, [
      d.itemId,
      d.reviewer.userId,
      d.reviewer.userName,
      d.decision,
      comment,
      result.message,
    ]);
    await tx.query(`INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after) VALUES ($1, 'access-review.decision-refused', 'AccessReviewItem', $2, $3, $4)`, [
      d.reviewer.userName,
      d.itemId,
      result.message,
      JSON.stringify({ reviewerId: d.reviewer.userId, decision: d.decision }),
    ]);
  });
  return { ok: false, status: result.refused, message: result.message, item: (await getItem(db, d.itemId))! };
}

// ------------------------------------------------------------------ the due date

/** Items settled per transaction at the due date. */
const DUE_DATE_BATCH = 100;

/** What the due date did: items decided by the policy, or escalated to the group's members. */
export interface DueDateOutcome {
  status: CampaignStatus;
  kept: number;
  revoked: number;
  escalated: number;
  /** escalate: the group's members now reviewing (for their notice). */
  escalatedTo: string[];
  escalatedUntil: number | null;
}

/** Applies `action` to one pending item as the campaign (no reviewer), inside `tx`; null when it is no longer pending. */
async function settleItem(tx: Tx, itemId: string, action: 'keep' | 'revoke', actor: string, note: string): Promise<'kept' | 'revoked' | null> {
  const item = await lockItem(tx, itemId);
  if (!item || item.status !== 'pending') return null;
  const rules = item.reasons.filter((x) => x.startsWith('rule:')).map((x) => x.slice(5));
  const onlyRules = rules.length > 0 && item.reasons.every((x) => x.startsWith('rule:'));
  const revoke = action === 'revoke' && !onlyRules;
  const why = `access review ${item.campaign}: ${note}; ${revoke ? 'revoked' : 'kept'} by the campaign's policy`;
  const outcome = revoke
    ? await revokeItemAccess(tx, item, actor, why)
    : action === 'revoke'
      ? `not revoked: given by rule ${rules.join(', ')} (birthright); change the rule to take it away`
      : 'kept by the policy for items not reviewed';
  await tx.query(`INSERT INTO review_decisions (item_id, reviewer_id, actor, decision, comment, accepted) VALUES ($1, NULL, $2, $3, $4, true)`, [item.id, actor, revoke ? 'revoke' : 'keep', note]);
  await tx.query(
    `UPDATE review_items SET status = $2, decision = $3, decided_by = NULL, decided_actor = $4, comment = $5, decided_at = now(), outcome = $6 WHERE id = $1`,
    [item.id, revoke ? 'revoked' : 'kept', revoke ? 'revoke' : 'keep', actor, note, outcome],
  );
  await tx.query(`INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after) VALUES ($1, 'access-review.decided', 'AccessReviewItem', $2, $3, $4)`, [
    actor,
    item.id,
    why,
    JSON.stringify({ campaignId: item.campaign_id, userId: item.user_id, entitlementId: item.entitlement_id, decision: revoke ? 'revoke' : 'keep', outcome, unreviewed: true }),
  ]);
  return revoke ? 'revoked' : 'kept';
}

/**
 * The due date (or the end of an escalation) came: the campaign's policy for items nobody
 * reviewed is applied, a batch of items per transaction (so a worker that dies part way resumes
 * where it stopped and decides nothing twice), and the campaign closes; or, for
 * `escalate` at the due date, what is left goes to the escalation group. Idempotent.
 */
export async function applyDueDate(db: Db, campaignId: string, now = new Date(), beat?: () => void): Promise<DueDateOutcome> {
  const { rows } = await db.query<CampaignRow>('SELECT * FROM review_campaigns WHERE id = $1', [campaignId]);
  const c = rows[0]!;
  const out: DueDateOutcome = { status: c.status, kept: 0, revoked: 0, escalated: 0, escalatedTo: [], escalatedUntil: c.escalated_until?.getTime() ?? null };
  if (c.status === 'closed') return out;
  const policy = c.spec.onUnreviewed;
  if (c.status === 'open' && policy.action === 'escalate') {
    const members = await activeGroupMembers(db, policy.escalateToGroupId!);
    const until = new Date(now.getTime() + policy.escalationSeconds! * 1000);
    await withTransaction(db, async (tx) => {
      const { rows: moved } = await tx.query<{ id: string }>(
        `UPDATE review_items SET reviewer_ids = ARRAY(SELECT m FROM unnest($2::uuid[]) m WHERE m <> user_id), escalated = true
          WHERE campaign_id = $1 AND status = 'pending' RETURNING id`,
        [campaignId, members],
      );
      await tx.query(`UPDATE review_campaigns SET status = 'escalated', escalated_until = $2 WHERE id = $1 AND status = 'open'`, [campaignId, until]);
      await tx.query(`INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after) VALUES ('access review', 'access-review.escalated', 'AccessReview', $1, $2, $3)`, [
        campaignId,
        `${moved.length} items not reviewed by the due date go to the escalation group`,
        JSON.stringify({ items: moved.length, groupId: policy.escalateToGroupId, until: until.toISOString() }),
      ]);
      out.escalated = moved.length;
    });
    return { ...out, status: 'escalated', escalatedTo: members, escalatedUntil: until.getTime() };
  }
  const action: 'keep' | 'revoke' = c.status === 'escalated' ? policy.then! : policy.action === 'revoke' ? 'revoke' : 'keep';
  const note = c.status === 'escalated' ? 'not reviewed by the end of the escalation' : 'not reviewed by the due date';
  const actor = `access review ${c.name}`;
  // A batch of items per transaction: a worker that dies part way loses the open batch only, which
  // is settled again (never twice: each item is settled while it is still pending).
  for (;;) {
    const { rows: pending } = await db.query<{ id: string }>(`SELECT id FROM review_items WHERE campaign_id = $1 AND status = 'pending' ORDER BY id LIMIT $2`, [campaignId, DUE_DATE_BATCH]);
    if (pending.length === 0) break;
    const settled = await withTransaction(db, async (tx) => {
      const counts = { kept: 0, revoked: 0 };
      for (const p of pending) {
        const done = await settleItem(tx, p.id, action, actor, note);
        if (done) counts[done]++;
      }
      return counts;
    });
    out.kept += settled.kept;
    out.revoked += settled.revoked;
    beat?.();
  }
  await closeCampaign(db, campaignId, note);
  return { ...out, status: 'closed' };
}

/** Closes the campaign (all items decided, or the policy applied); idempotent. */
export async function closeCampaign(db: Db, campaignId: string, why: string): Promise<void> {
  await withTransaction(db, async (tx) => {
    const res = await tx.query(`UPDATE review_campaigns SET status = 'closed', closed_at = now() WHERE id = $1 AND status <> 'closed'`, [campaignId]);
    if ((res.rowCount ?? 0) === 0) return;
    const p = await campaignProgress(tx, campaignId);
    await tx.query(`INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after) VALUES ('access review', 'access-review.closed', 'AccessReview', $1, $2, $3)`, [
      campaignId,
      why,
      JSON.stringify(p),
    ]);
  });
}

// ------------------------------------------------------------------ reviewers' notices

/** The reviewers with items pending in the campaign, each with how many. */
export async function pendingReviewers(db: Queryable, campaignId: string): Promise<Array<{ userId: string; userName: string; email: string | null; pending: number }>> {
  const { rows } = await db.query<{ userId: string; userName: string; email: string | null; pending: number }>(
    `SELECT r.id AS "userId", u.user_name AS "userName",
            (SELECT e->>'value' FROM jsonb_array_elements(CASE WHEN jsonb_typeof(u.resource->'emails') = 'array' THEN u.resource->'emails' ELSE '[]'::jsonb END) e
              ORDER BY (e->>'primary')::boolean IS TRUE DESC LIMIT 1) AS email, r.pending
       FROM (SELECT unnest(reviewer_ids) AS id, count(*)::int AS pending FROM review_items WHERE campaign_id = $1 AND status = 'pending' GROUP BY 1) r
       JOIN users u ON u.id = r.id ORDER BY u.user_name`,
    [campaignId],
  );
  return rows;
}

// ------------------------------------------------------------------ the report for auditors

export interface ReportItem {
  itemId: string;
  userName: string;
  userId: string;
  entitlement: string;
  reasons: string[];
  birthright: boolean;
  ungranted: boolean;
  reviewers: string[];
  status: ItemStatus;
  decision: ReviewDecision | null;
  decidedBy: string | null;
  decidedAt: string | null;
  comment: string | null;
  /** What the decision changed (grants ended, or why nothing changed). */
  outcome: string | null;
  /** For a revocation: whether the access is gone from the target now. */
  removedFromTarget: boolean | null;
  /** Refused attempts at deciding the item (who, what, why). */
  refusals: Array<{ actor: string; decision: ReviewDecision; refusal: string; at: string }>;
}

export interface CampaignReport {
  campaign: Omit<CampaignView, 'spec'> & { scope: CampaignSpec['scope']; onUnreviewed: CampaignSpec['onUnreviewed'] };
  generatedAt: string;
  /** The audit chain's verification when the report was made. */
  auditChain: { ok: boolean; checked: number; lastId?: number; lastHash?: string; firstBadId?: number; reason?: string };
  items: ReportItem[];
}

/** Every item of the campaign with its reviewers, decision, time, comment and resulting change. */
export async function reportItems(db: Queryable, campaignId: string, limit = 1000, offset = 0): Promise<ReportItem[]> {
  const { rows } = await db.query<ItemRow & { removed: boolean | null; refusals: ReportItem['refusals'] }>(
    `SELECT ${ITEM_COLUMNS},
            CASE WHEN i.status = 'revoked' THEN NOT EXISTS (SELECT 1 FROM account_grants ag WHERE ag.user_id = i.user_id AND ag.entitlement_id = i.entitlement_id) END AS removed,
            COALESCE((SELECT jsonb_agg(jsonb_build_object('actor', d.actor, 'decision', d.decision, 'refusal', d.refusal,
                                                          'at', to_char(d.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')) ORDER BY d.id)
                        FROM review_decisions d WHERE d.item_id = i.id AND NOT d.accepted), '[]'::jsonb) AS refusals
       FROM ${ITEM_FROM} WHERE i.campaign_id = $1 ORDER BY u.user_name, e.connector_id, e.name, i.id LIMIT $2 OFFSET $3`,
    [campaignId, limit, offset],
  );
  return rows.map((r) => {
    const v = toItemView(r);
    return {
      itemId: v.id,
      userName: v.userName,
      userId: v.userId,
      entitlement: v.entitlement,
      reasons: v.reasons,
      birthright: v.birthright,
      ungranted: v.ungranted,
      reviewers: v.reviewers,
      status: v.status,
      decision: v.decision,
      decidedBy: v.decidedBy,
      decidedAt: v.decidedAt,
      comment: v.comment,
      outcome: v.outcome,
      removedFromTarget: r.removed,
      refusals: r.refusals,
    };
  });
}

export const REPORT_CSV_COLUMNS = [
  'itemId', 'userName', 'userId', 'entitlement', 'reasons', 'birthright', 'ungranted', 'reviewers', 'status', 'decision', 'decidedBy', 'decidedAt', 'comment', 'outcome', 'removedFromTarget', 'refusals',
] as const;

/** One report item as a CSV record (CRLF ended). */
export function reportCsvRecord(i: ReportItem): string {
  const yes = (b: boolean | null) => (b === null ? null : b ? 'yes' : 'no');
  const cells = [
    i.itemId, i.userName, i.userId, i.entitlement, i.reasons.join('; '), yes(i.birthright), yes(i.ungranted), i.reviewers.join('; '), i.status, i.decision, i.decidedBy, i.decidedAt, i.comment, i.outcome,
    yes(i.removedFromTarget), i.refusals.map((r) => `${r.at} ${r.actor} ${r.decision}: ${r.refusal}`).join(' | '),
  ];
  return `${cells.map(spreadsheetCsvField).join(',')}\r\n`;
}

/** The CSV report's preamble lines: the campaign and the audit chain's verification, as comment-free key/value rows before the header. */
export function reportCsvPreamble(r: Pick<CampaignReport, 'campaign' | 'auditChain' | 'generatedAt'>): string {
  const chain = r.auditChain.ok ? `verified: ${r.auditChain.checked} events intact, last id ${r.auditChain.lastId ?? '-'} hash ${r.auditChain.lastHash ?? '-'}` : `BROKEN at event ${r.auditChain.firstBadId ?? '?'}: ${r.auditChain.reason ?? ''}`;
  const lines = [
    ['campaign', `${r.campaign.name} (${r.campaign.id})`],
    ['status', r.campaign.status],
    ['startsAt', r.campaign.startsAt],
    ['dueAt', r.campaign.dueAt],
    ['closedAt', r.campaign.closedAt ?? ''],
    ['reportGeneratedAt', r.generatedAt],
    ['auditChain', chain],
  ];
  return `${lines.map(([k, v]) => `${csvField(k!)},${spreadsheetCsvField(v!)}`).join('\r\n')}\r\n\r\n`;
}
