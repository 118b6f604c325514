/**
 * The activity side of the `accessRequest` workflow: loading the request, resolving a stage's
 * approvers when it opens, recording decisions and outcomes (each with its audit event),
 * automatic fulfilment through a grant that the user's userSync workflow provisions, and for an
 * invitation request the invitation (core/invitations, keyed by the request). Every one is
 * idempotent, since Temporal may run an activity more than once.
 */
import { randomUUID } from 'node:crypto';
import type { Db, Tx } from '../../core/db/pool.js';
import { withTransaction } from '../../core/db/pool.js';
import { activeGroupMembers } from '../../core/directory/store.js';
import { enqueueUserChanges } from '../../core/outbox/outbox.js';
import { INVITATION_DEFAULT_SECONDS, type AccessPolicy, type PolicyStage } from '../../core/access/policies.js';
import type { Decision, RequestStatus } from '../../core/access/requests.js';
import { matchesFilter, parseFilter } from '../../core/scim/filter/index.js';
import { SchemaRegistry } from '../../core/scim/schemas.js';
import { loadApproverFunction } from '../../core/access/approver-functions.js';
import type { AccessNotifier, AccessNoticeType } from '../../core/access/notifier.js';
import { createInvitation, withdrawUndeliveredInvitation, type InvitationNotify } from '../../core/invitations/invitations.js';
import { openAuth0Source } from '../../core/sources/import.js';
import { PermanentError } from '../../connectors/index.js';

const registry = new SchemaRegistry();

/** What the workflow needs to know about its request. */
export interface LoadedRequest {
  requesterId: string;
  status: RequestStatus;
  policy: string;
  stages: Array<
    Pick<PolicyStage, 'name' | 'rule' | 'quorum' | 'timeoutSeconds' | 'onTimeout'> & {
      approverFunction: { module: string; timeoutSeconds: number } | null;
      /** Seconds before the stage's timeout at which the undecided approvers are reminded. */
      remindBeforeSeconds: number[];
      /** Who approves, in words (for the Temporal UI), e.g. "group Security". */
      approversLabel: string;
    }
  >;
  requestTtlSeconds: number | null;
  fulfilment: 'automatic' | 'manual';
  /** How long the access lasts once given (seconds); null: until taken away. */
  durationSeconds: number | null;
  /** When the request was made (epoch ms), so its TTL counts from then even after a restart. */
  createdAt: number;
  /** How long before time-bound access ends the requester is told (seconds); null: not told. */
  expiringNoticeSeconds: number | null;
  /** For an extension: the request whose access it prolongs. */
  extendsId: string | null;
  /** `connectorId/name` of the entitlement; null for a manual-only resource. */
  entitlement: string | null;
  /**
   * An invitation request: the email invited once the request is approved (absent in requests
   * loaded before invitation requests existed).
   */
  invitee?: string | null;
  /**
   * Whether the worker that loaded the request sends notices (a notifier is configured); absent in
   * requests loaded before this was told.
   */
  notices?: boolean;
}

/** A stage's approvers, or what to do because there are none. */
export interface ResolvedStage {
  outcome: 'open' | 'skip' | 'reject' | 'approve';
  approvers: string[];
  /** How the approvers were found, for the record (e.g. "escalated to group …"). */
  note: string;
}

export interface FulfilmentOutcome {
  state: 'done' | 'failed' | 'waiting';
  reason?: string;
}

async function loadRow(db: Pick<Db | Tx, 'query'>, requestId: string) {
  const { rows } = await db.query<{
    requester_id: string;
    status: RequestStatus;
    policy: AccessPolicy;
    created_at: Date;
    duration_s: number | null;
    grant_id: string | null;
    justification: string | null;
    extends_id: string | null;
    invitee_email: string | null;
    invitee_name: string | null;
  }>(
    'SELECT requester_id, status, policy, created_at, duration_s, grant_id, justification, extends_id, invitee_email, invitee_name FROM access_requests WHERE id = $1',
    [requestId],
  );
  if (!rows[0]) throw new Error(`access request ${requestId} does not exist`);
  return rows[0];
}

export async function loadAccessRequest(db: Db, requestId: string): Promise<LoadedRequest> {
  const r = await loadRow(db, requestId);
  const stages: LoadedRequest['stages'] = [];
  for (const s of r.policy.stages) {
    stages.push({
      name: s.name,
      rule: s.rule,
      quorum: s.quorum,
      timeoutSeconds: s.timeoutSeconds,
      onTimeout: s.onTimeout ?? 'expire',
      approverFunction: s.approvers.function ?? null,
      remindBeforeSeconds: s.remindBeforeSeconds ?? [],
      approversLabel: await approversLabel(db, s),
    });
  }
  return {
    requesterId: r.requester_id,
    status: r.status,
    policy: r.policy.name,
    stages,
    requestTtlSeconds: r.policy.requestTtlSeconds,
    fulfilment: r.policy.fulfilment.mode,
    durationSeconds: r.duration_s,
    createdAt: r.created_at.getTime(),
    expiringNoticeSeconds: r.policy.durations.expiringNoticeSeconds ?? null,
    extendsId: r.extends_id,
    entitlement: r.policy.entitlement,
    invitee: r.invitee_email,
  };
}

/** A stage's sources of approvers in words, as of now: "group Security, the requester's manager". */
async function approversLabel(db: Pick<Db | Tx, 'query'>, s: PolicyStage): Promise<string> {
  const parts: string[] = [];
  if (s.approvers.userIds.length) {
    const { rows } = await db.query<{ user_name: string }>('SELECT user_name FROM users WHERE id = ANY($1::uuid[]) ORDER BY user_name', [s.approvers.userIds]);
    parts.push(rows.length > 3 ? `${rows.length} listed users` : rows.map((x) => x.user_name).join(', '));
  }
  if (s.approvers.groupId) {
    const { rows } = await db.query<{ display_name: string }>('SELECT display_name FROM groups WHERE id = $1', [s.approvers.groupId]);
    parts.push(`group ${rows[0]?.display_name ?? s.approvers.groupId}`);
  }
  if (s.approvers.managerLevels !== null) parts.push(s.approvers.managerLevels === 1 ? "the requester's manager" : `the requester's manager ${s.approvers.managerLevels} levels up`);
  if (s.approvers.owners) parts.push('the owners');
  if (s.approvers.function) parts.push(`approver function ${s.approvers.function.module.split('/').pop()}`);
  return parts.join(', ') || 'nobody';
}


/** The enterprise manager `levels` levels above the user, if the chain is that long. */
async function managerOf(db: Pick<Db | Tx, 'query'>, userId: string, levels: number): Promise<string | undefined> {
  let current = userId;
  for (let i = 0; i < levels; i++) {
    const { rows } = await db.query<{ manager: string | null }>(
      `SELECT m.id AS manager FROM users u
         JOIN users m ON m.id::text = u.resource #>> '{urn:ietf:params:scim:schemas:extension:enterprise:2.0:User,manager,value}' AND m.deleted_at IS NULL
        WHERE u.id = $1`,
      [current],
    );
    if (!rows[0]?.manager) return undefined;
    current = rows[0].manager;
  }
  return current;
}

async function activeUsers(db: Pick<Db | Tx, 'query'>, ids: string[]): Promise<string[]> {
  if (ids.length === 0) return [];
  const { rows } = await db.query<{ id: string }>('SELECT id FROM users WHERE id = ANY($1::uuid[]) AND active AND deleted_at IS NULL ORDER BY id', [ids]);
  return rows.map((r) => r.id);
}

/**
 * Finds who decides stage `stage` now (listed users, group members, the manager chain, owners),
 * never the requester; applies the stage's rule for nobody (reject, skip, or escalate to the
 * fallback group); and records the stage as opened. Running it again answers the recorded result.
 */
export async function resolveStageApprovers(db: Db, requestId: string, stage: number, fromFunction: { ids: string[]; note?: string } = { ids: [] }): Promise<ResolvedStage> {
  const { rows: known } = await db.query<{ approver_ids: string[]; resolution: string; status: string }>(
    'SELECT approver_ids, resolution, status FROM access_request_stages WHERE request_id = $1 AND stage = $2',
    [requestId, stage],
  );
  if (known[0]) {
    const outcome =
      known[0].status === 'skipped' ? 'skip' : known[0].status === 'approved' && known[0].approver_ids.length === 0 ? 'approve' : known[0].approver_ids.length === 0 ? 'reject' : 'open';
    return { outcome, approvers: known[0].approver_ids, note: known[0].resolution };
  }
  const r = await loadRow(db, requestId);
  const s = r.policy.stages[stage];
  if (!s) throw new Error(`access request ${requestId} has no stage ${stage}`);
  // autoApprove describes who receives the access; an invitee is not in the directory, so an
  // invitation request (whose requester is only its sponsor) is never approved automatically.
  if (s.autoApprove && r.invitee_email === null && (await requesterMatches(db, r.requester_id, s.autoApprove))) {
    const note = `approved automatically: the requester matches ${s.autoApprove}`;
    await openStage(db, requestId, stage, s.name, [], note, 'approved', 'approve');
    return { outcome: 'approve', approvers: [], note };
  }
  const found = new Set<string>(await activeUsers(db, [...s.approvers.userIds, ...fromFunction.ids]));
  if (s.approvers.groupId) for (const id of await activeGroupMembers(db, s.approvers.groupId)) found.add(id);
  if (s.approvers.managerLevels !== null) {
    const manager = await managerOf(db, r.requester_id, s.approvers.managerLevels);
    if (manager) for (const id of await activeUsers(db, [manager])) found.add(id);
  }
  if (s.approvers.owners) {
    for (const id of await activeUsers(db, r.policy.owners.userIds)) found.add(id);
    if (r.policy.owners.groupId) for (const id of await activeGroupMembers(db, r.policy.owners.groupId)) found.add(id);
  }
  // Nobody approves their own request: the requester is never among a stage's approvers.
  found.delete(r.requester_id);
  let approvers = [...found].sort();
  let note = `${approvers.length} approver(s)${fromFunction.note ? `; ${fromFunction.note}` : ''}`;
  let outcome: ResolvedStage['outcome'] = 'open';
  if (approvers.length === 0) {
    const why = fromFunction.note ? ` (${fromFunction.note})` : '';
    note = `nobody could approve${why}`;
    if (s.whenNobody === 'escalate' && s.fallbackGroupId) {
      approvers = (await activeGroupMembers(db, s.fallbackGroupId)).filter((id) => id !== r.requester_id);
      note = approvers.length ? `${note}; escalated to the fallback group (${approvers.length} approver(s))` : `${note}, not even the fallback group`;
      if (approvers.length === 0) outcome = 'reject';
    } else if (s.whenNobody === 'skip') {
      outcome = 'skip';
      note = `${note}; the stage is skipped`;
    } else {
      outcome = 'reject';
      note = `${note}; the request is rejected`;
    }
  }
  await openStage(db, requestId, stage, s.name, outcome === 'open' ? approvers : [], note, outcome === 'skip' ? 'skipped' : outcome === 'reject' ? 'rejected' : 'open', outcome);
  return { outcome, approvers: outcome === 'open' ? approvers : [], note };
}

/** Whether the requester matches a SCIM filter (evaluated like birthright rule conditions). */
async function requesterMatches(db: Db, userId: string, filter: string): Promise<boolean> {
  const { rows } = await db.query<{ resource: Record<string, unknown> }>('SELECT resource FROM users WHERE id = $1', [userId]);
  if (!rows[0]) return false;
  try {
    return matchesFilter(parseFilter(filter), { ...rows[0].resource, id: userId }, registry, 'User');
  } catch {
    return false; // a condition the API accepted but that no longer parses approves nothing
  }
}

/** Records a stage as opened (once) with its approvers and how they were found, and audits it. */
async function openStage(db: Db, requestId: string, stage: number, name: string, approvers: string[], note: string, status: string, outcome: string): Promise<void> {
  await withTransaction(db, async (tx) => {
    const inserted = await tx.query(
      `INSERT INTO access_request_stages (request_id, stage, approver_ids, resolution, status) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`,
      [requestId, stage, approvers, note, status],
    );
    if ((inserted.rowCount ?? 0) === 0) return;
    await tx.query('UPDATE access_requests SET stage = $2, updated_at = now() WHERE id = $1', [requestId, stage]);
    await tx.query(
      `INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after) VALUES ($1, 'access-request.stage-opened', 'AccessRequest', $2, $3, $4)`,
      [`access-request:${requestId}`, requestId, note, JSON.stringify({ stage, name, approverIds: approvers, outcome })],
    );
  });
}

/** Records an accepted decision and its audit event (once, however often it runs). */
export async function recordDecision(db: Db, d: DecisionRecord): Promise<void> {
  await withTransaction(db, async (tx) => {
    await recordDecisionIn(tx, d);
  });
}

export interface DecisionRecord {
  requestId: string;
  stage: number;
  approverId: string;
  decision: Decision;
  comment?: string;
}

async function recordDecisionIn(tx: Tx, d: DecisionRecord): Promise<void> {
  const { rows } = await tx.query<{ id: number }>(
    `INSERT INTO access_request_decisions (request_id, stage, approver_id, decision, comment, accepted) VALUES ($1, $2, $3, $4, $5, true)
     ON CONFLICT (request_id, stage, approver_id) WHERE accepted DO NOTHING RETURNING id`,
    [d.requestId, d.stage, d.approverId, d.decision, d.comment ?? null],
  );
  if (!rows[0]) return;
  await tx.query(
    `INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after)
     SELECT u.user_name, 'access-request.decided', 'AccessRequest', $2, COALESCE($3, $4), $5 FROM users u WHERE u.id = $1`,
    [d.approverId, d.requestId, d.comment ?? null, d.decision, JSON.stringify({ approverId: d.approverId, decision: d.decision, stage: d.stage })],
  );
}

/**
 * What a decision that closes its stage brings about, recorded with the decision: the statuses the
 * request moves through (each as {@link recordRequestStatus} records it) and, for an approved
 * request fulfilled automatically, its grant.
 */
export interface DecisionOutcomeRecord {
  statuses: RequestStatusChange[];
  grant?: boolean;
}

/** What the workflow learns from {@link recordDecisionAndOutcome}. */
export interface RecordedOutcome {
  /** With `grant`: the grant's id and whether its access is in the target already. */
  grantId?: string;
  fulfilment?: FulfilmentOutcome;
}

/**
 * Records an accepted decision and, when it closes its stage, what follows, in one transaction:
 * the stage and request statuses with their audit events and, for an approved request fulfilled
 * automatically, the grant and the outbox row that has userSync provision it. So the approver's
 * answer waits for one PostgreSQL transaction, and provisioning can begin as soon as it commits.
 * Idempotent like the steps it joins.
 */
export async function recordDecisionAndOutcome(db: Db, d: DecisionRecord & { outcome?: DecisionOutcomeRecord }): Promise<RecordedOutcome> {
  return await withTransaction(db, async (tx) => {
    const { outcome, ...decision } = d;
    await recordDecisionIn(tx, decision);
    for (const change of outcome?.statuses ?? []) await recordRequestStatusIn(tx, { requestId: d.requestId, ...change });
    if (!outcome?.grant) return {};
    const { grantId } = await grantRequestedAccessIn(tx, d.requestId);
    return { grantId, fulfilment: await checkFulfilment(tx, d.requestId) };
  });
}

/** A move of the request to `status` (and of its open stage to `stageStatus`), as {@link recordRequestStatus} takes it. */
export interface RequestStatusChange {
  status: RequestStatus;
  stage: number;
  reason: string;
  stageStatus?: 'approved' | 'rejected' | 'closed';
  actor?: string;
}

/**
 * Moves the request to `status` (and its open stage to `stageStatus`) with an audit event; a
 * request already in a final state is left alone, so a late retry never reopens anything.
 */
export async function recordRequestStatus(db: Db, u: { requestId: string } & RequestStatusChange): Promise<void> {
  await withTransaction(db, async (tx) => {
    await recordRequestStatusIn(tx, u);
  });
}

async function recordRequestStatusIn(tx: Tx, u: { requestId: string } & RequestStatusChange): Promise<void> {
  if (u.stageStatus) {
    // A pending request moves on to stage `u.stage`: the stage closing is the one before it.
    await tx.query(`UPDATE access_request_stages SET status = $3, closed_at = now() WHERE request_id = $1 AND stage = $2 AND status = 'open'`, [
      u.requestId,
      u.status === 'pending' ? u.stage - 1 : u.stage,
      u.stageStatus,
    ]);
  }
  // An invitation request is `invited` once its invitation is sent, and `expired` when it was not redeemed in time.
  const from = u.status === 'fulfilled' || u.status === 'failed' || u.status === 'invited' ? ['pending', 'approved'] : u.status === 'expired' ? ['pending', 'invited'] : ['pending'];
  if (u.status === 'pending') {
    await tx.query('UPDATE access_requests SET stage = $2, updated_at = now() WHERE id = $1 AND status = $3', [u.requestId, u.stage, 'pending']);
    return;
  }
  const { rows } = await tx.query<{ id: string }>(
    `UPDATE access_requests SET status = $2, stage = $3, status_reason = $4, updated_at = now(),
            decided_at = CASE WHEN $2 IN ('approved', 'rejected') THEN now() ELSE decided_at END,
            fulfilled_at = CASE WHEN $2 = 'fulfilled' THEN now() ELSE fulfilled_at END
      WHERE id = $1 AND status = ANY($5) RETURNING id`,
    [u.requestId, u.status, u.stage, u.reason, from],
  );
  if (!rows[0]) return;
  // A closed request has no open stage left.
  await tx.query(`UPDATE access_request_stages SET status = 'closed', closed_at = now() WHERE request_id = $1 AND status = 'open'`, [u.requestId]);
  await tx.query(
    `INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after) VALUES ($1, $2, 'AccessRequest', $3, $4, $5)`,
    [u.actor ?? `access-request:${u.requestId}`, `access-request.${u.status}`, u.requestId, u.reason, JSON.stringify({ status: u.status, stage: u.stage })],
  );
}

/**
 * Automatic fulfilment: the grant `request:<id>` for the requested duration, starting now, with its
 * audit event and the outbox row that has the user's userSync provision it. Answers the grant's id;
 * running it again answers the same grant.
 */
export async function grantRequestedAccess(db: Db, requestId: string): Promise<{ grantId: string }> {
  return await withTransaction(db, async (tx) => await grantRequestedAccessIn(tx, requestId));
}

async function grantRequestedAccessIn(tx: Tx, requestId: string): Promise<{ grantId: string }> {
  const { rows: locked } = await tx.query<{ grant_id: string | null }>('SELECT grant_id FROM access_requests WHERE id = $1 FOR UPDATE', [requestId]);
  if (locked[0]?.grant_id) return { grantId: locked[0].grant_id };
  const r = await loadRow(tx, requestId);
  if (!r.policy.entitlementId) throw new Error(`access request ${requestId}: "${r.policy.name}" has no entitlement to grant`);
  // An extension starts where the access it prolongs ends, so the access never lapses between them.
  const { rows } = await tx.query<{ id: string } & Record<string, unknown>>(
    `WITH start AS (
       SELECT GREATEST(now(), COALESCE((SELECT g.valid_until FROM access_requests x JOIN access_requests o ON o.id = x.extends_id
                                          JOIN grants g ON g.id = o.grant_id AND g.status = 'active' WHERE x.id = $6), now())) AS at)
     INSERT INTO grants (id, user_id, entitlement_id, reason, valid_from, valid_until)
     SELECT $1, $2, $3, $4, start.at, CASE WHEN $5::integer IS NULL THEN NULL ELSE start.at + $5::integer * interval '1 second' END FROM start
     ON CONFLICT (user_id, entitlement_id, reason) DO UPDATE
       SET status = 'active', ended_at = NULL, valid_from = EXCLUDED.valid_from, valid_until = EXCLUDED.valid_until
     RETURNING id, user_id AS "userId", entitlement_id AS "entitlementId", reason, valid_from AS "validFrom", valid_until AS "validUntil"`,
    [randomUUID(), r.requester_id, r.policy.entitlementId, `request:${requestId}`, r.duration_s, requestId],
  );
  const grant = rows[0]!;
  await tx.query('UPDATE access_requests SET grant_id = $2, updated_at = now() WHERE id = $1', [requestId, grant.id]);
  await tx.query(
    `INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after) VALUES ($1, 'grant.created', 'Grant', $2, $3, $4)`,
    [`access-request:${requestId}`, grant.id, `request:${requestId}`, JSON.stringify(grant)],
  );
  await enqueueUserChanges(tx, [r.requester_id]);
  return { grantId: grant.id };
}

/**
 * Whether the request's grant is in the target yet: done once the membership is applied; failed
 * when the connector recorded an error for the user since the grant was made.
 */
export async function checkFulfilment(db: Pick<Db | Tx, 'query'>, requestId: string): Promise<FulfilmentOutcome> {
  const { rows } = await db.query<{ applied: boolean; last_error: string | null }>(
    `SELECT EXISTS (SELECT 1 FROM account_grants ag WHERE ag.user_id = g.user_id AND ag.entitlement_id = g.entitlement_id) AS applied,
            (SELECT a.last_error FROM accounts a JOIN entitlements e ON e.connector_id = a.connector_id
              WHERE e.id = g.entitlement_id AND a.user_id = g.user_id AND a.last_error_at >= g.created_at) AS last_error
       FROM access_requests r JOIN grants g ON g.id = r.grant_id WHERE r.id = $1`,
    [requestId],
  );
  const row = rows[0];
  if (!row) return { state: 'failed', reason: 'the request has no grant' };
  if (row.applied) return { state: 'done' };
  if (row.last_error) return { state: 'failed', reason: row.last_error };
  return { state: 'waiting' };
}

/** A manual fulfilment task as the workflow sees it. */
export interface OpenedTask {
  taskId: string;
  assignees: string[];
}

/**
 * Opens the request's manual task of `kind` for the members of its fulfilment group (once: running
 * it again answers the same task), with its audit event.
 */
export async function openFulfilmentTask(db: Db, requestId: string, kind: 'grant' | 'revoke'): Promise<OpenedTask> {
  const { rows: known } = await db.query<{ id: string; assignee_ids: string[] }>('SELECT id, assignee_ids FROM access_tasks WHERE request_id = $1 AND kind = $2', [requestId, kind]);
  if (known[0]) return { taskId: known[0].id, assignees: known[0].assignee_ids };
  const r = await loadRow(db, requestId);
  const groupId = r.policy.fulfilment.groupId;
  const assignees = groupId ? (await activeGroupMembers(db, groupId)).filter((id) => id !== r.requester_id) : [];
  const id = randomUUID();
  return await withTransaction(db, async (tx) => {
    const { rows } = await tx.query<{ id: string; assignee_ids: string[] }>(
      `INSERT INTO access_tasks (id, request_id, kind, group_id, assignee_ids, instructions) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (request_id, kind) DO UPDATE SET kind = EXCLUDED.kind RETURNING id, assignee_ids`,
      [id, requestId, kind, groupId, assignees, r.policy.fulfilment.instructions],
    );
    if (rows[0]!.id === id) {
      await tx.query(
        `INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after) VALUES ($1, 'access-task.opened', 'AccessTask', $2, $3, $4)`,
        [`access-request:${requestId}`, id, kind === 'grant' ? 'manual fulfilment' : 'time-bound access ended', JSON.stringify({ requestId, kind, assigneeIds: assignees })],
      );
    }
    return { taskId: rows[0]!.id, assignees: rows[0]!.assignee_ids };
  });
}

/** Records a task as done or failed by `actorId`, with its note and audit event (once). */
export async function closeFulfilmentTask(db: Db, t: { taskId: string; actorId: string; outcome: 'done' | 'failed'; note?: string }): Promise<void> {
  await withTransaction(db, async (tx) => {
    const { rows } = await tx.query<{ request_id: string; kind: string }>(
      `UPDATE access_tasks SET status = $3, closed_by = $2, note = $4, closed_at = now() WHERE id = $1 AND status IN ('open', 'claimed') RETURNING request_id, kind`,
      [t.taskId, t.actorId, t.outcome, t.note ?? null],
    );
    if (!rows[0]) return;
    await tx.query(
      `INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after)
       SELECT u.user_name, $3, 'AccessTask', $2, COALESCE($4, $5), $6 FROM users u WHERE u.id = $1`,
      [t.actorId, t.taskId, `access-task.${t.outcome}`, t.note ?? null, t.outcome, JSON.stringify({ requestId: rows[0].request_id, kind: rows[0].kind })],
    );
  });
}

/**
 * A stage timed out with `onTimeout: escalate`: the fallback group's members (never the requester)
 * join its approvers, recorded with an audit event. Answers the stage's approvers after it.
 */
export async function escalateStage(db: Db, requestId: string, stage: number): Promise<{ approvers: string[] }> {
  const r = await loadRow(db, requestId);
  const s = r.policy.stages[stage];
  const extra = s?.fallbackGroupId ? (await activeGroupMembers(db, s.fallbackGroupId)).filter((id) => id !== r.requester_id) : [];
  return await withTransaction(db, async (tx) => {
    const { rows } = await tx.query<{ approver_ids: string[]; resolution: string }>(
      'SELECT approver_ids, resolution FROM access_request_stages WHERE request_id = $1 AND stage = $2 FOR UPDATE',
      [requestId, stage],
    );
    const before = rows[0]?.approver_ids ?? [];
    if (rows[0]?.resolution.includes('escalated after the timeout')) return { approvers: before };
    const approvers = [...new Set([...before, ...extra])].sort();
    await tx.query(`UPDATE access_request_stages SET approver_ids = $3, resolution = resolution || '; escalated after the timeout' WHERE request_id = $1 AND stage = $2`, [
      requestId,
      stage,
      approvers,
    ]);
    await tx.query(
      `INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after) VALUES ($1, 'access-request.stage-escalated', 'AccessRequest', $2, $3, $4)`,
      [`access-request:${requestId}`, requestId, `${s?.name ?? `stage ${stage + 1}`} was not decided in time`, JSON.stringify({ stage, approverIds: approvers })],
    );
    return { approvers };
  });
}

/**
 * Calls the stage's approver function and answers the user ids it names (userNames are looked up;
 * unknown and inactive users are dropped). A function that throws fails the activity, which
 * Temporal retries within the stage's limits.
 */
export async function callApproverFunction(db: Db, requestId: string, stage: number): Promise<string[]> {
  const r = await loadRow(db, requestId);
  const s = r.policy.stages[stage];
  const fn = s?.approvers.function;
  if (!fn) return [];
  const { rows: who } = await db.query<{ user_name: string }>('SELECT user_name FROM users WHERE id = $1', [r.requester_id]);
  const approve = await loadApproverFunction(fn.module);
  const answer = await approve({
    requestId,
    requester: { id: r.requester_id, userName: who[0]?.user_name ?? '' },
    policy: r.policy.name,
    entitlement: r.policy.entitlement,
    stage: { index: stage, name: s.name },
    justification: r.justification,
    invitee: r.invitee_email ? { email: r.invitee_email, displayName: r.invitee_name } : null,
  });
  if (!Array.isArray(answer) || answer.some((x) => typeof x !== 'string')) throw new Error(`approver function "${fn.module}" answered ${JSON.stringify(answer)?.slice(0, 200)}, not a list of user ids or userNames`);
  if (answer.length === 0) return [];
  const { rows } = await db.query<{ id: string }>(
    'SELECT id FROM users WHERE active AND deleted_at IS NULL AND (id::text = ANY($1) OR lower(user_name) = ANY($2)) ORDER BY id',
    [answer, answer.map((x) => x.toLowerCase())],
  );
  return rows.map((x) => x.id);
}

/** Tries of one notice before it is recorded as failed (the request goes on either way). */
export const NOTICE_ATTEMPTS = 5;

/**
 * Sends one notice about a request to `recipientIds` through `notifier` and records it. Throws a
 * channel's failure for Temporal to retry until the last try, which records the failure instead.
 * Without a notifier (none configured), does nothing.
 */
export async function notifyAccess(
  db: Db,
  notifier: AccessNotifier | undefined,
  n: { requestId: string; type: AccessNoticeType; recipientIds: string[]; key: string; stage?: number; deadline?: string },
  attempt: number,
): Promise<void> {
  if (!notifier || n.recipientIds.length === 0) return;
  const id = `${n.requestId}:${n.key}`;
  const { rows: sent } = await db.query(`SELECT 1 FROM access_notifications WHERE id = $1`, [id]);
  if (sent.length) return;
  const { rows } = await db.query<{ name: string; display: string; status: string; reason: string | null }>(
    `SELECT policy->>'name' AS name, policy->>'displayName' AS display, status, status_reason AS reason FROM access_requests WHERE id = $1`,
    [n.requestId],
  );
  const { rows: people } = await db.query<{ id: string; user_name: string; email: string | null }>(
    `SELECT id, user_name, (SELECT e->>'value' FROM jsonb_array_elements(CASE WHEN jsonb_typeof(resource->'emails') = 'array' THEN resource->'emails' ELSE '[]'::jsonb END) e
                             ORDER BY (e->>'primary')::boolean IS TRUE DESC LIMIT 1) AS email
       FROM users WHERE id = ANY($1::uuid[]) ORDER BY user_name`,
    [n.recipientIds],
  );
  const r = rows[0]!;
  const record = (status: 'sent' | 'failed', error: string | null) =>
    db.query(
      `INSERT INTO access_notifications (id, request_id, type, recipients, status, attempts, last_error) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING`,
      [id, n.requestId, n.type, n.recipientIds, status, attempt, error],
    );
  try {
    await notifier({
      id,
      type: n.type,
      requestId: n.requestId,
      policy: r.name,
      displayName: r.display,
      status: r.status,
      reason: r.reason,
      recipients: people.map((p) => ({ userId: p.id, userName: p.user_name, email: p.email })),
      ...(n.stage !== undefined ? { stage: n.stage } : {}),
      ...(n.deadline !== undefined ? { deadline: n.deadline } : {}),
    });
  } catch (err) {
    if (attempt < NOTICE_ATTEMPTS) throw err;
    await record('failed', (err as Error).message.slice(0, 1000));
    return;
  }
  await record('sent', null);
}

/** When the request's access ends, as recorded now. */
export interface AccessWindow {
  /** The end (epoch ms): the grant's validity for automatic fulfilment, `access_until` for manual; null: no end. */
  until: number | null;
  /** Taken away already: the request is revoked, or its grant ended. */
  revoked: boolean;
  /** A fulfilled extension that carries the access on past `until`, if any. */
  continuedBy: string | null;
}

/** Where the request's fulfilled access stands: when it ends, whether it was taken away or extended. */
export async function whenAccessEnds(db: Db, requestId: string): Promise<AccessWindow> {
  const { rows } = await db.query<{ status: RequestStatus; mode: string; access_until: Date | null; grant_id: string | null; valid_until: Date | null; grant_status: string | null; continued_by: string | null }>(
    `SELECT r.status, r.policy->'fulfilment'->>'mode' AS mode, r.access_until, r.grant_id, g.valid_until, g.status AS grant_status,
            (SELECT x.id FROM access_requests x WHERE x.extends_id = r.id AND x.status = 'fulfilled' ORDER BY x.created_at, x.id LIMIT 1) AS continued_by
       FROM access_requests r LEFT JOIN grants g ON g.id = r.grant_id WHERE r.id = $1`,
    [requestId],
  );
  const r = rows[0];
  if (!r) throw new Error(`access request ${requestId} does not exist`);
  const until = r.mode === 'manual' ? r.access_until : r.valid_until;
  return { until: until?.getTime() ?? null, revoked: r.status === 'revoked' || (r.grant_id !== null && r.grant_status !== 'active'), continuedBy: r.continued_by };
}

/**
 * Manual access given (or, for an extension of manual access, prolonged): records when it ends,
 * the requested duration from now, or for an extension from the end of the access it prolongs,
 * so the access never lapses between them. Running it again answers the recorded end.
 */
export async function startManualAccess(db: Db, requestId: string): Promise<{ until: number | null }> {
  const { rows } = await db.query<{ access_until: Date | null }>(
    `UPDATE access_requests r SET access_until = COALESCE(r.access_until,
        CASE WHEN r.duration_s IS NULL THEN NULL
             ELSE GREATEST(now(), COALESCE((SELECT o.access_until FROM access_requests o WHERE o.id = r.extends_id AND o.status = 'fulfilled'), now()))
                  + r.duration_s * interval '1 second' END), updated_at = now()
      WHERE r.id = $1 RETURNING r.access_until`,
    [requestId],
  );
  return { until: rows[0]?.access_until?.getTime() ?? null };
}

/** The extension's original still running manual access, if any: what an extension of manual access prolongs. */
export async function extendedManualAccess(db: Db, requestId: string): Promise<{ extendsId: string; until: number } | null> {
  const { rows } = await db.query<{ id: string; access_until: Date }>(
    `SELECT o.id, o.access_until FROM access_requests r JOIN access_requests o ON o.id = r.extends_id
      WHERE r.id = $1 AND o.status = 'fulfilled' AND o.access_until > now()`,
    [requestId],
  );
  return rows[0] ? { extendsId: rows[0].id, until: rows[0].access_until.getTime() } : null;
}

/**
 * Manually fulfilled access is taken away by an administrator, or given up by its requester
 * (`release`, audited as `access-request.released`): the request records `revoked` (once) with the
 * reason and its audit event, and so do the fulfilled extensions that prolong it (the same access);
 * the workflow then opens the one revocation task.
 */
export async function recordManualRevocation(db: Db, r: { requestId: string; actor: string; reason: string; release?: { via: string } }): Promise<void> {
  await withTransaction(db, async (tx) => {
    const { rows } = await tx.query<{ id: string; root: boolean }>(
      `WITH RECURSIVE chain(id) AS (
         SELECT $1::uuid
         UNION
         SELECT x.id FROM chain JOIN access_requests x ON x.extends_id = chain.id AND x.status = 'fulfilled'
       )
       UPDATE access_requests r SET status = 'revoked', updated_at = now(),
              status_reason = CASE WHEN r.id = $1 THEN $2 ELSE 'revoked with request ' || $1 || ': ' || $2 END
         FROM chain WHERE r.id = chain.id AND r.status = 'fulfilled' RETURNING r.id, r.id = $1 AS root`,
      [r.requestId, r.reason],
    );
    if (!rows.some((x) => x.root)) return;
    for (const x of rows) {
      const released = x.root && r.release !== undefined;
      await tx.query(`INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after) VALUES ($1, $2, 'AccessRequest', $3, $4, $5)`, [
        r.actor,
        released ? 'access-request.released' : 'access-request.revoked',
        x.id,
        r.reason,
        JSON.stringify({ status: 'revoked', fulfilment: 'manual', ...(x.root ? {} : { with: r.requestId }), ...(released ? { released: true, via: r.release!.via } : {}) }),
      ]);
    }
  });
}

/** Time-bound manual access ended: the request says so (its revocation task is opened next), with an audit event (once). */
export async function recordAccessEnded(db: Db, requestId: string): Promise<void> {
  await withTransaction(db, async (tx) => {
    const { rows } = await tx.query(
      `UPDATE access_requests SET status_reason = 'the access ended; the fulfilment group takes it away', updated_at = now()
        WHERE id = $1 AND status = 'fulfilled' AND status_reason IS DISTINCT FROM 'the access ended; the fulfilment group takes it away' RETURNING id`,
      [requestId],
    );
    if (!rows[0]) return;
    await tx.query(
      `INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after)
       SELECT $2, 'access-request.access-ended', 'AccessRequest', $1::text, 'time-bound access ended', jsonb_build_object('accessUntil', access_until) FROM access_requests WHERE id = $1::uuid`,
      [requestId, `access-request:${requestId}`],
    );
  });
}

/** Tries of sending a request's invitation before the request is recorded as failed. */
export const INVITE_ATTEMPTS = 6;

/** What sending a request's invitation came to. */
export interface InvitationSent {
  state: 'invited' | 'failed';
  invitationId: string | null;
  /** When the invitation expires (epoch ms). */
  expiresAt: number | null;
  reason: string | null;
}

/**
 * An approved invitation request: invites the request's email into the policy's Auth0 source with
 * the policy's entitlement, through the same code as the admin API (core/invitations), with the
 * request's id as idempotency key (one invitation, one Auth0 user, one link however often this
 * runs). The grant made at redemption lasts the request's duration. Throws a failure worth
 * retrying until the last try; a permanent failure, or the last try, withdraws the undelivered
 * invitation and answers `failed` with the reason.
 */
export async function inviteForRequest(db: Db, notify: InvitationNotify | undefined, requestId: string, attempt: number): Promise<InvitationSent> {
  const r = await loadRow(db, requestId);
  const actor = `access-request:${requestId}`;
  const settings = r.policy.invitation;
  const failed = (reason: string): InvitationSent => ({ state: 'failed', invitationId: null, expiresAt: null, reason });
  if (!r.invitee_email) return failed('the request names no invitee');
  if (!settings || !r.policy.entitlementId) return failed(`"${r.policy.name}" does not invite (it had no invitation settings when the request was made)`);
  if (!notify) {
    await withdrawUndeliveredInvitation(db, requestId, actor, 'no delivery channel');
    return failed('invitations are sent through the delivery channel: set DELIVERY_WEBHOOK_URL and DELIVERY_WEBHOOK_SECRET for the worker');
  }
  try {
    const invitation = await createInvitation(db, {
      sourceId: settings.sourceId,
      source: await openAuth0Source(db, settings.sourceId),
      email: r.invitee_email,
      entitlementIds: [r.policy.entitlementId],
      expiresAt: new Date(Date.now() + (settings.expiresInSeconds ?? INVITATION_DEFAULT_SECONDS) * 1000),
      actor,
      notify,
      requestId,
      grantDurationSeconds: r.duration_s,
    });
    return { state: 'invited', invitationId: invitation.id, expiresAt: invitation.expiresAt.getTime(), reason: null };
  } catch (err) {
    const message = (err as Error).message;
    if (!(err instanceof PermanentError) && attempt < INVITE_ATTEMPTS) throw err;
    await withdrawUndeliveredInvitation(db, requestId, actor, `the invitation could not be sent: ${message}`);
    return failed(message);
  }
}

/** Where a request's invitation stands now, and what the request records. */
export interface InvitationProgress {
  status: 'pending' | 'redeemed' | 'revoked' | 'expired' | 'none';
  /** When the invitation expires (epoch ms). */
  expiresAt: number | null;
  requestStatus: RequestStatus;
  requestReason: string | null;
}

export async function invitationProgress(db: Db, requestId: string): Promise<InvitationProgress> {
  const { rows } = await db.query<{ status: InvitationProgress['status'] | null; expires_at: Date | null; request_status: RequestStatus; reason: string | null }>(
    `SELECT CASE WHEN i.status = 'pending' AND i.expires_at <= now() THEN 'expired' ELSE i.status END AS status, i.expires_at,
            r.status AS request_status, r.status_reason AS reason
       FROM access_requests r LEFT JOIN invitations i ON i.id = r.invitation_id WHERE r.id = $1`,
    [requestId],
  );
  const row = rows[0];
  if (!row) throw new Error(`access request ${requestId} does not exist`);
  return { status: row.status ?? 'none', expiresAt: row.expires_at?.getTime() ?? null, requestStatus: row.request_status, requestReason: row.reason };
}
