/**
 * Access requests in PostgreSQL: creating one (checked against its policy, written with the outbox
 * row that starts its `accessRequest` workflow, in one transaction), reading them back, and the
 * record of decisions. The workflow owns a request's progress; these tables are what the API, the
 * auditors and a closed request's late callers read.
 */
import { randomUUID } from 'node:crypto';
import type { Db, Tx } from '../db/pool.js';
import { withTransaction } from '../db/pool.js';
import { enqueue, enqueueUserChanges } from '../outbox/outbox.js';
import { filterToSql, parseFilter } from '../scim/filter/index.js';
import type { SchemaRegistry } from '../scim/schemas.js';
import { USER_TARGET } from '../directory/store.js';
import type { AccessPolicy } from './policies.js';

type Queryable = Pick<Db | Tx, 'query'>;

export type RequestStatus = 'pending' | 'approved' | 'invited' | 'rejected' | 'cancelled' | 'expired' | 'fulfilled' | 'failed' | 'revoked';
export type Decision = 'approve' | 'reject';

/** One stage of a request as the workflow and the API present it. */
export interface StageState {
  stage: number;
  name: string;
  rule: 'any' | 'all' | 'quorum';
  quorum: number | null;
  approvers: string[];
  decisions: Record<string, Decision>;
  status: 'open' | 'approved' | 'rejected' | 'skipped' | 'closed';
}

/** A request's progress: what a decision answers, from the workflow or (once it ended) the database. */
export interface AccessRequestState {
  requestId: string;
  status: RequestStatus;
  /** The current stage (index); equal to the number of stages once every stage is through. */
  stage: number;
  reason: string | null;
  stages: StageState[];
}

/** A request as the API answers it. */
export interface AccessRequestView extends AccessRequestState {
  id: string;
  policy: string;
  displayName: string;
  requesterId: string;
  requester: string;
  justification: string | null;
  durationSeconds: number | null;
  createdBy: string;
  grantId: string | null;
  /** For an extension: the request whose access it prolongs. */
  extends: string | null;
  /** When access given by hand ends (ISO 8601); null for automatic fulfilment (see its grant) or no end. */
  accessUntil: string | null;
  /** The manual tasks of the request: giving the access and, when it ends or is revoked, taking it away. */
  tasks: Array<{ id: string; kind: 'grant' | 'revoke'; status: 'open' | 'claimed' | 'done' | 'failed' }>;
  /** An invitation request: the person invited (not in the directory when asked for); null otherwise. */
  invitee: { email: string; displayName: string | null } | null;
  /** The invitation sent once the request was approved (its link never appears here). */
  invitation: { id: string; status: 'pending' | 'redeemed' | 'revoked' | 'expired'; expiresAt: string; deliveredAt: string | null; redeemedAt: string | null; userId: string | null } | null;
  createdAt: string;
  decidedAt: string | null;
  fulfilledAt: string | null;
}

/** A request the policy does not allow; `status` is the HTTP status to answer. */
export class RequestRefused extends Error {
  constructor(
    readonly status: 400 | 403 | 409,
    message: string,
  ) {
    super(message);
  }
}

/** Whether `userId` may request under `policy` (its SCIM filter and group, when set). */
export async function isEligible(db: Queryable, registry: SchemaRegistry, policy: AccessPolicy, userId: string): Promise<boolean> {
  return await matchesAudience(db, registry, policy.eligibility, userId);
}

/** Whether `userId` may sponsor an invitation under `policy` (false when the policy does not invite). */
export async function maySponsor(db: Queryable, registry: SchemaRegistry, policy: AccessPolicy, userId: string): Promise<boolean> {
  const sponsors = policy.invitation?.sponsors;
  if (!sponsors || (!sponsors.filter && !sponsors.groupId)) return false;
  return await matchesAudience(db, registry, sponsors, userId);
}

/** Whether `userId` is an active user matching the SCIM filter and in the group (nested), each when set. */
async function matchesAudience(db: Queryable, registry: SchemaRegistry, audience: { filter: string | null; groupId: string | null }, userId: string): Promise<boolean> {
  const params: unknown[] = [userId];
  const conditions = ['u.id = $1', 'u.deleted_at IS NULL', 'u.active'];
  if (audience.filter) conditions.push(`(${filterToSql(parseFilter(audience.filter), USER_TARGET, registry, params)})`);
  if (audience.groupId) {
    params.push(audience.groupId);
    conditions.push(`EXISTS (
      WITH RECURSIVE reach(group_id) AS (
        SELECT m.group_id FROM group_members m WHERE m.member_type = 'User' AND m.member_id = u.id
        UNION
        SELECT m.group_id FROM reach r JOIN group_members m ON m.member_type = 'Group' AND m.member_id = r.group_id
      ) SELECT 1 FROM reach WHERE group_id = $${params.length})`);
  }
  const { rows } = await db.query(`SELECT 1 FROM users u WHERE ${conditions.join(' AND ')}`, params);
  return rows.length > 0;
}

export interface NewRequest {
  policy: AccessPolicy;
  requesterId: string;
  justification?: string;
  durationSeconds?: number;
  permanent?: boolean;
  /** The requester's fulfilled, time-bound request whose access this one prolongs. */
  extendsId?: string;
  /**
   * Ask for access for someone not in the directory yet: the requester sponsors an invitation of
   * this email (under a policy with `invitation`).
   */
  invitee?: { email: string; displayName?: string };
  /** The token that made the request (for the audit log). */
  createdBy: string;
}

/** Whether someone in the directory (not deleted) has this email as userName or as one of their emails. */
async function inDirectory(db: Queryable, email: string): Promise<boolean> {
  const { rows } = await db.query(
    `SELECT 1 FROM users u WHERE u.deleted_at IS NULL AND (lower(u.user_name) = $1 OR EXISTS (
       SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof(u.resource->'emails') = 'array' THEN u.resource->'emails' ELSE '[]'::jsonb END) e
        WHERE lower(e->>'value') = $1)) LIMIT 1`,
    [email],
  );
  return rows.length > 0;
}

/**
 * Checks a request against its policy and records it with its outbox row (which starts the
 * workflow) and an audit event, in one transaction. Throws {@link RequestRefused}.
 */
export async function createRequest(db: Db, registry: SchemaRegistry, r: NewRequest): Promise<string> {
  const p = r.policy;
  const invitee = r.invitee ? { email: r.invitee.email.trim().toLowerCase(), displayName: r.invitee.displayName?.trim() || null } : undefined;
  if (invitee) {
    // The sponsor answers for the invitee: the policy names who may sponsor (its eligibility is about
    // people in the directory, and the invitee is not).
    if (!p.invitation) throw new RequestRefused(400, `"${p.name}" does not invite people who are not in the directory (the policy has no invitation settings)`);
    if (!(await maySponsor(db, registry, p, r.requesterId))) throw new RequestRefused(403, `you may not sponsor invitations under "${p.name}": the policy's invitation.sponsors do not include you`);
    if (r.extendsId !== undefined) throw new RequestRefused(400, 'extends: an invitation request cannot extend access');
    if (await inDirectory(db, invitee.email)) throw new RequestRefused(409, `${invitee.email} is in the directory already: request the access for them as a directory user, not as an invitation`);
  } else if (!(await isEligible(db, registry, p, r.requesterId))) {
    throw new RequestRefused(403, `you are not eligible to request "${p.name}"`);
  }
  const justification = r.justification?.trim() ?? '';
  if (p.justificationRequired && justification === '') throw new RequestRefused(400, `"${p.name}" needs a justification`);
  let duration: number | null;
  if (r.permanent) {
    if (r.durationSeconds !== undefined) throw new RequestRefused(400, 'give either durationSeconds or permanent, not both');
    if (!p.durations.permanentAllowed) throw new RequestRefused(400, `"${p.name}" cannot be granted permanently`);
    duration = null;
  } else {
    duration = r.durationSeconds ?? p.durations.defaultSeconds ?? (p.durations.permanentAllowed ? null : p.durations.maxSeconds);
    if (duration === null && !p.durations.permanentAllowed) throw new RequestRefused(400, `"${p.name}" needs a duration (durationSeconds)`);
    if (duration !== null && p.durations.maxSeconds !== null && duration > p.durations.maxSeconds) {
      throw new RequestRefused(400, `durationSeconds: "${p.name}" can be granted for at most ${p.durations.maxSeconds} s`);
    }
  }
  if (r.extendsId !== undefined) {
    // Running time-bound access: an active grant that has not ended, or access given by hand whose end is ahead.
    const { rows } = await db.query<{ ok: boolean }>(
      `SELECT CASE WHEN r.policy->'fulfilment'->>'mode' = 'manual' THEN r.access_until IS NOT NULL AND r.access_until > now()
                   ELSE COALESCE((SELECT g.valid_until IS NOT NULL AND g.valid_until > now() FROM grants g WHERE g.id = r.grant_id AND g.status = 'active'), false) END AS ok
         FROM access_requests r
        WHERE r.id = $1 AND r.requester_id = $2 AND r.policy_id = $3 AND r.status = 'fulfilled'`,
      [r.extendsId, r.requesterId, p.id],
    );
    if (!rows[0]?.ok) throw new RequestRefused(400, `extends: ${r.extendsId} is not your fulfilled, still running, time-bound "${p.name}" access`);
    if (duration === null) throw new RequestRefused(400, 'extends: an extension is for a duration, not permanent');
  }
  const id = randomUUID();
  try {
    await withTransaction(db, async (tx) => {
      await tx.query(
        `INSERT INTO access_requests (id, policy_id, policy, requester_id, justification, duration_s, created_by, extends_id, invitee_email, invitee_name)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
        [id, p.id, JSON.stringify(p), r.requesterId, justification || null, duration, r.createdBy, r.extendsId ?? null, invitee?.email ?? null, invitee?.displayName ?? null],
      );
      await tx.query(
        `INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after) VALUES ($1, 'access-request.created', 'AccessRequest', $2, $3, $4)`,
        [
          r.createdBy,
          id,
          justification || (invitee ? 'invitation request' : 'access request'),
          JSON.stringify({ policy: p.name, requesterId: r.requesterId, durationSeconds: duration, extends: r.extendsId ?? null, ...(invitee ? { invitee } : {}) }),
        ],
      );
      const { rows } = await tx.query<{ user_name: string }>('SELECT user_name FROM users WHERE id = $1', [r.requesterId]);
      await enqueue(tx, { topic: 'access-request.created', aggregateId: id, payload: { requester: rows[0]?.user_name ?? r.requesterId, resource: p.name } });
    });
  } catch (err) {
    if ((err as { code?: string; constraint?: string }).code === '23505') {
      if (invitee) throw new RequestRefused(409, `an invitation request for ${invitee.email} under "${p.name}" is open already`);
      throw new RequestRefused(409, `you already have a pending request for "${p.name}"`);
    }
    throw err;
  }
  return id;
}

interface RequestRow {
  id: string;
  policy: AccessPolicy;
  requester_id: string;
  requester: string;
  justification: string | null;
  duration_s: number | null;
  status: RequestStatus;
  stage: number;
  status_reason: string | null;
  created_by: string;
  grant_id: string | null;
  extends_id: string | null;
  access_until: Date | null;
  created_at: Date;
  decided_at: Date | null;
  fulfilled_at: Date | null;
  invitee_email: string | null;
  invitee_name: string | null;
  invitation: { id: string; status: 'pending' | 'redeemed' | 'revoked' | 'expired'; expiresAt: string; deliveredAt: string | null; redeemedAt: string | null; userId: string | null } | null;
}

/** The stages and decisions recorded for a request, in the shape the workflow answers. */
export async function recordedState(db: Queryable, row: Pick<RequestRow, 'id' | 'policy' | 'status' | 'stage' | 'status_reason'>): Promise<AccessRequestState> {
  const { rows: stages } = await db.query<{ stage: number; approver_ids: string[]; status: StageState['status'] }>(
    'SELECT stage, approver_ids, status FROM access_request_stages WHERE request_id = $1 ORDER BY stage',
    [row.id],
  );
  const { rows: decisions } = await db.query<{ stage: number; approver_id: string; decision: Decision }>(
    'SELECT stage, approver_id, decision FROM access_request_decisions WHERE request_id = $1 AND accepted ORDER BY id',
    [row.id],
  );
  return {
    requestId: row.id,
    status: row.status,
    stage: row.stage,
    reason: row.status_reason,
    stages: stages.map((s) => {
      const def = row.policy.stages[s.stage];
      return {
        stage: s.stage,
        name: def?.name ?? `stage ${s.stage + 1}`,
        rule: def?.rule ?? 'any',
        quorum: def?.quorum ?? null,
        approvers: s.approver_ids,
        decisions: Object.fromEntries(decisions.filter((d) => d.stage === s.stage).map((d) => [d.approver_id, d.decision])),
        status: s.status,
      };
    }),
  };
}

const REQUEST_COLUMNS = `r.id, r.policy, r.requester_id, u.user_name AS requester, r.justification, r.duration_s, r.status, r.stage, r.status_reason,
  r.created_by, r.grant_id, r.extends_id, r.access_until, r.created_at, r.decided_at, r.fulfilled_at, r.invitee_email, r.invitee_name,
  (SELECT jsonb_build_object('id', i.id, 'status', CASE WHEN i.status = 'pending' AND i.expires_at <= now() THEN 'expired' ELSE i.status END,
                             'expiresAt', i.expires_at, 'deliveredAt', i.delivered_at, 'redeemedAt', i.redeemed_at, 'userId', i.user_id)
     FROM invitations i WHERE i.id = r.invitation_id) AS invitation`;

/** A timestamp from jsonb (PostgreSQL's text form) as ISO 8601. */
const iso = (v: string | null) => (v === null ? null : new Date(v).toISOString());

async function toView(db: Queryable, r: RequestRow): Promise<AccessRequestView> {
  const { rows: tasks } = await db.query<AccessRequestView['tasks'][number]>('SELECT id, kind, status FROM access_tasks WHERE request_id = $1 ORDER BY created_at, id', [r.id]);
  return {
    ...(await recordedState(db, r)),
    id: r.id,
    policy: r.policy.name,
    displayName: r.policy.displayName,
    requesterId: r.requester_id,
    requester: r.requester,
    justification: r.justification,
    durationSeconds: r.duration_s,
    createdBy: r.created_by,
    grantId: r.grant_id,
    extends: r.extends_id,
    accessUntil: r.access_until?.toISOString() ?? null,
    tasks,
    invitee: r.invitee_email ? { email: r.invitee_email, displayName: r.invitee_name } : null,
    invitation: r.invitation ? { ...r.invitation, expiresAt: iso(r.invitation.expiresAt)!, deliveredAt: iso(r.invitation.deliveredAt), redeemedAt: iso(r.invitation.redeemedAt) } : null,
    createdAt: r.created_at.toISOString(),
    decidedAt: r.decided_at?.toISOString() ?? null,
    fulfilledAt: r.fulfilled_at?.toISOString() ?? null,
  };
}

/** One request, or undefined. */
export async function getRequest(db: Queryable, id: string): Promise<AccessRequestView | undefined> {
  const { rows } = await db.query<RequestRow>(`SELECT ${REQUEST_COLUMNS} FROM access_requests r JOIN users u ON u.id = r.requester_id WHERE r.id = $1`, [id]);
  return rows[0] ? await toView(db, rows[0]) : undefined;
}

/** A user's own requests, newest first (`limit` of them after skipping `offset`). */
export async function listRequestsOf(db: Queryable, requesterId: string, limit = 200, offset = 0): Promise<AccessRequestView[]> {
  const { rows } = await db.query<RequestRow>(
    `SELECT ${REQUEST_COLUMNS} FROM access_requests r JOIN users u ON u.id = r.requester_id WHERE r.requester_id = $1 ORDER BY r.created_at DESC, r.id LIMIT $2 OFFSET $3`,
    [requesterId, limit, offset],
  );
  return await Promise.all(rows.map((r) => toView(db, r)));
}

/** Requests waiting on `approverId`'s decision in their open stage, oldest first. */
export async function approvalsOf(db: Queryable, approverId: string, limit = 200): Promise<AccessRequestView[]> {
  const { rows } = await db.query<RequestRow>(
    `SELECT ${REQUEST_COLUMNS} FROM access_request_stages s
       JOIN access_requests r ON r.id = s.request_id AND r.stage = s.stage AND r.status = 'pending'
       JOIN users u ON u.id = r.requester_id
      WHERE s.status = 'open' AND $1 = ANY (s.approver_ids)
        AND NOT EXISTS (SELECT 1 FROM access_request_decisions d WHERE d.request_id = s.request_id AND d.stage = s.stage AND d.approver_id = $1 AND d.accepted)
      ORDER BY r.created_at, r.id LIMIT $2`,
    [approverId, limit],
  );
  return await Promise.all(rows.map((r) => toView(db, r)));
}

/** Whether `userId` is, or was, an approver of any stage of the request. */
export async function isApproverOf(db: Queryable, requestId: string, userId: string): Promise<boolean> {
  const { rows } = await db.query('SELECT 1 FROM access_request_stages WHERE request_id = $1 AND $2 = ANY (approver_ids)', [requestId, userId]);
  return rows.length > 0;
}

/**
 * Records a decision the workflow refused (with why) and its audit event, so attempts by people who
 * may not decide are evidence too.
 */
export async function recordRefusedDecision(
  db: Db,
  d: { requestId: string; stage: number; approverId: string; decision: Decision; comment?: string; refusal: string; actor: string },
): Promise<void> {
  await withTransaction(db, async (tx) => {
    await tx.query(
      `INSERT INTO access_request_decisions (request_id, stage, approver_id, decision, comment, accepted, refusal) VALUES ($1, $2, $3, $4, $5, false, $6)`,
      [d.requestId, d.stage, d.approverId, d.decision, d.comment ?? null, d.refusal],
    );
    await tx.query(
      `INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after) VALUES ($1, 'access-request.decision-refused', 'AccessRequest', $2, $3, $4)`,
      [d.actor, d.requestId, d.refusal, JSON.stringify({ approverId: d.approverId, decision: d.decision, stage: d.stage })],
    );
  });
}

/** Marks a request whose workflow has not started yet as cancelled (the workflow then ends at once). */
export async function cancelUnstarted(db: Db, requestId: string, actor: string): Promise<boolean> {
  return await withTransaction(db, async (tx) => {
    const res = await tx.query(
      `UPDATE access_requests SET status = 'cancelled', status_reason = 'cancelled by the requester', updated_at = now() WHERE id = $1 AND status = 'pending'`,
      [requestId],
    );
    if ((res.rowCount ?? 0) === 0) return false;
    await tx.query(
      `INSERT INTO audit_events (actor, action, resource_type, resource_id, reason) VALUES ($1, 'access-request.cancelled', 'AccessRequest', $2, 'cancelled by the requester')`,
      [actor, requestId],
    );
    return true;
  });
}

/** Who ends access early, for the audit log: an administrator's revocation, or the requester giving it up. */
export interface AccessEnding {
  /** Who is acting (a token's name, or the person's userName when they release their own access). */
  actor: string;
  reason: string;
  /** The requester gives up their own access (audited as `access-request.released`); `via`: the front end or token they used. */
  release?: { via: string };
}

/**
 * Takes fulfilled automatic access away before it ends: the request's grant ends, and so do the
 * grants of the fulfilled extensions that prolong it (the same access, starting where it ends), each
 * with its audit event, and the outbox row has userSync remove them from the target. The request
 * records `revoked` (the extensions `revoked with request <id>: ...`), audited as
 * `access-request.revoked`, or `access-request.released` when the requester gave it up.
 * Answers false when the request holds no active grant.
 */
export async function revokeGrantedAccess(db: Db, requestId: string, ending: AccessEnding): Promise<boolean> {
  const { actor, reason, release } = ending;
  return await withTransaction(db, async (tx) => {
    const { rows } = await tx.query<{ grant_id: string | null; requester_id: string }>(
      `SELECT grant_id, requester_id FROM access_requests WHERE id = $1 AND status = 'fulfilled' FOR UPDATE`,
      [requestId],
    );
    const r = rows[0];
    if (!r?.grant_id) return false;
    const { rows: extensions } = await tx.query<{ id: string; grant_id: string | null }>(
      `WITH RECURSIVE chain(id) AS (
         SELECT x.id FROM access_requests x WHERE x.extends_id = $1 AND x.status = 'fulfilled'
         UNION
         SELECT x.id FROM chain JOIN access_requests x ON x.extends_id = chain.id AND x.status = 'fulfilled'
       )
       SELECT a.id, a.grant_id FROM access_requests a JOIN chain ON chain.id = a.id ORDER BY a.created_at, a.id`,
      [requestId],
    );
    const grantIds = [r.grant_id, ...extensions.flatMap((x) => (x.grant_id ? [x.grant_id] : []))];
    const { rows: ended } = await tx.query<Record<string, unknown> & { id: string }>(
      `UPDATE grants SET status = 'ended', ended_at = now() WHERE id = ANY ($1::uuid[]) AND status = 'active'
       RETURNING id, user_id AS "userId", entitlement_id AS "entitlementId", reason, status, valid_from AS "validFrom", valid_until AS "validUntil", ended_at AS "endedAt"`,
      [grantIds],
    );
    for (const grant of ended) {
      await tx.query(`INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after) VALUES ($1, 'grant.ended', 'Grant', $2, $3, $4)`, [
        actor,
        grant.id,
        reason,
        JSON.stringify(grant),
      ]);
    }
    await tx.query(`UPDATE access_requests SET status = 'revoked', status_reason = $2, updated_at = now() WHERE id = $1`, [requestId, reason]);
    await tx.query(
      `INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after) VALUES ($1, $2, 'AccessRequest', $3, $4, $5)`,
      [actor, release ? 'access-request.released' : 'access-request.revoked', requestId, reason, JSON.stringify({ status: 'revoked', fulfilment: 'automatic', ...(release ? { released: true, via: release.via } : {}) })],
    );
    for (const x of extensions) {
      const why = `revoked with request ${requestId}: ${reason}`;
      await tx.query(`UPDATE access_requests SET status = 'revoked', status_reason = $2, updated_at = now() WHERE id = $1 AND status = 'fulfilled'`, [x.id, why]);
      await tx.query(`INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after) VALUES ($1, 'access-request.revoked', 'AccessRequest', $2, $3, $4)`, [
        actor,
        x.id,
        why,
        JSON.stringify({ status: 'revoked', fulfilment: 'automatic', with: requestId }),
      ]);
    }
    await enqueueUserChanges(tx, [r.requester_id]);
    return true;
  });
}

/** One item of a person's current access: running access a request gave them, or another grant of theirs. */
export interface CurrentAccess {
  /** The fulfilled request that gave the access; null for a grant by an administrator or a rule. */
  requestId: string | null;
  grantId: string | null;
  /** The policy's name and display name (the entitlement's `connectorId/name` for a grant without a request). */
  policy: string | null;
  displayName: string;
  /** `connectorId/name`; null for access given by hand. */
  entitlement: string | null;
  fulfilment: 'automatic' | 'manual' | null;
  /** Since when (ISO 8601); for an extension of automatic access that has not started yet, when it starts. */
  since: string;
  /** When it ends (ISO 8601); null: no end. */
  until: string | null;
  /** The grant's reason (`request:<id>`, `manual`, `rule:<name>`). */
  reason: string;
  justification: string | null;
  /** For an extension: the request whose access it prolongs. */
  extends: string | null;
}

/**
 * `userId`'s current access, newest first: active grants that have not ended (with the fulfilled
 * request behind each, if any) and running access given by hand.
 */
export async function currentAccessOf(db: Queryable, userId: string, limit = 200, offset = 0): Promise<CurrentAccess[]> {
  const { rows } = await db.query<Omit<CurrentAccess, 'since' | 'until'> & { since: Date; until: Date | null }>(
    `SELECT * FROM (
       SELECT r.id AS "requestId", g.id AS "grantId", COALESCE(r.policy->>'name', e.connector_id || '/' || e.name) AS policy,
              COALESCE(r.policy->>'displayName', e.connector_id || '/' || e.name) AS "displayName", e.connector_id || '/' || e.name AS entitlement,
              CASE WHEN r.id IS NULL THEN NULL ELSE 'automatic' END AS fulfilment, g.valid_from AS since, g.valid_until AS until, g.reason,
              r.justification, r.extends_id AS extends
         FROM grants g JOIN entitlements e ON e.id = g.entitlement_id
         LEFT JOIN access_requests r ON g.reason LIKE 'request:%' AND r.id::text = substr(g.reason, 9) AND r.requester_id = g.user_id AND r.status = 'fulfilled'
        WHERE g.user_id = $1 AND g.status = 'active' AND (g.valid_until IS NULL OR g.valid_until > now())
          AND (g.reason NOT LIKE 'request:%' OR r.id IS NOT NULL)
       UNION ALL
       SELECT r.id, NULL, r.policy->>'name', r.policy->>'displayName', NULL, 'manual', COALESCE(r.fulfilled_at, r.created_at), r.access_until, 'request:' || r.id::text,
              r.justification, r.extends_id
         FROM access_requests r
        WHERE r.requester_id = $1 AND r.status = 'fulfilled' AND r.policy->'fulfilment'->>'mode' = 'manual' AND (r.access_until IS NULL OR r.access_until > now())
     ) a
     ORDER BY a.since DESC, COALESCE(a."requestId", a."grantId") LIMIT $2 OFFSET $3`,
    [userId, limit, offset],
  );
  return rows.map((r) => ({ ...r, since: new Date(r.since).toISOString(), until: r.until ? new Date(r.until).toISOString() : null }));
}

/** One accepted or refused decision in an export. */
export interface ExportedDecision {
  stage: number;
  approver: string;
  decision: Decision;
  comment: string | null;
  accepted: boolean;
  refusal: string | null;
  at: string;
}

/** A refused attempt at one of the request's tasks (claiming it, reporting it done or failed), in an export. */
export interface ExportedTaskRefusal {
  task: string;
  kind: string;
  actor: string;
  attempt: string;
  outcome: string | null;
  reason: string;
  at: string;
}

/** A request with every decision, for auditors. */
export interface ExportedRequest {
  id: string;
  policy: string;
  entitlement: string | null;
  requester: string;
  /** An invitation request: the email invited (the requester is its sponsor); null otherwise. */
  invitee: string | null;
  justification: string | null;
  durationSeconds: number | null;
  status: RequestStatus;
  reason: string | null;
  createdAt: string;
  decidedAt: string | null;
  fulfilledAt: string | null;
  decisions: ExportedDecision[];
  /** Refused attempts at the request's manual tasks (audit events `access-task.refused`). */
  taskRefusals: ExportedTaskRefusal[];
}

/** Requests made in [from, to) with every decision and refused attempt, oldest first (at most `limit`). */
export async function exportRequests(db: Queryable, from: string, to: string, limit = 50_000): Promise<ExportedRequest[]> {
  const { rows } = await db.query<Omit<ExportedRequest, 'decisions' | 'taskRefusals'>>(
    `SELECT r.id, r.policy->>'name' AS policy, r.policy->>'entitlement' AS entitlement, u.user_name AS requester, r.invitee_email AS invitee, r.justification,
            r.duration_s AS "durationSeconds", r.status, r.status_reason AS reason,
            to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS "createdAt",
            to_char(r.decided_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS "decidedAt",
            to_char(r.fulfilled_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS "fulfilledAt"
       FROM access_requests r JOIN users u ON u.id = r.requester_id
      WHERE r.created_at >= $1 AND r.created_at < $2 ORDER BY r.created_at, r.id LIMIT $3`,
    [from, to, limit],
  );
  const { rows: decisions } = await db.query<ExportedDecision & { request_id: string }>(
    `SELECT d.request_id, d.stage, u.user_name AS approver, d.decision, d.comment, d.accepted, d.refusal,
            to_char(d.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS at
       FROM access_request_decisions d JOIN users u ON u.id = d.approver_id WHERE d.request_id = ANY($1::uuid[]) ORDER BY d.id`,
    [rows.map((r) => r.id)],
  );
  const { rows: refusals } = await db.query<ExportedTaskRefusal & { request_id: string }>(
    `SELECT t.request_id, e.resource_id AS task, t.kind, e.actor, e.after->>'attempt' AS attempt, e.after->>'outcome' AS outcome, e.reason,
            to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS at
       FROM access_tasks t JOIN audit_events e ON e.resource_type = 'AccessTask' AND e.resource_id = t.id::text AND e.action = 'access-task.refused'
      WHERE t.request_id = ANY($1::uuid[]) ORDER BY e.id`,
    [rows.map((r) => r.id)],
  );
  return rows.map((r) => ({
    ...r,
    decisions: decisions.filter((d) => d.request_id === r.id).map(({ request_id: _r, ...d }) => d),
    taskRefusals: refusals.filter((x) => x.request_id === r.id).map(({ request_id: _r, ...x }) => x),
  }));
}
