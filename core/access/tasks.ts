/**
 * Manual fulfilment tasks in PostgreSQL: the fulfilment group's inbox, claiming a task, and the
 * audit record of refused attempts. Closing a task (done or failed) goes through the request's
 * workflow, which waits for it.
 */
import type { Db, Tx } from '../db/pool.js';

type Queryable = Pick<Db | Tx, 'query'>;

/** A task as the API answers it. */
export interface AccessTaskView {
  id: string;
  requestId: string;
  kind: 'grant' | 'revoke';
  policy: string;
  displayName: string;
  requester: string;
  instructions: string | null;
  status: 'open' | 'claimed' | 'done' | 'failed';
  claimedBy: string | null;
  /** Who reported the task done or failed (userName). */
  closedBy: string | null;
  note: string | null;
  createdAt: string;
}

const COLUMNS = `t.id, t.request_id AS "requestId", t.kind, r.policy->>'name' AS policy, r.policy->>'displayName' AS "displayName",
  u.user_name AS requester, t.instructions, t.status, c.user_name AS "claimedBy", x.user_name AS "closedBy", t.note, t.created_at AS "createdAt", t.assignee_ids`;
const FROM = `access_tasks t JOIN access_requests r ON r.id = t.request_id JOIN users u ON u.id = r.requester_id LEFT JOIN users c ON c.id = t.claimed_by
  LEFT JOIN users x ON x.id = t.closed_by`;

type Row = AccessTaskView & { assignee_ids: string[]; createdAt: Date | string };

function view({ assignee_ids: _a, ...row }: Row): AccessTaskView {
  return { ...row, createdAt: new Date(row.createdAt).toISOString() };
}

/** Open and claimed tasks `userId` is an assignee of, oldest first (`limit` of them after skipping `offset`). */
export async function tasksOf(db: Queryable, userId: string, limit = 200, offset = 0): Promise<AccessTaskView[]> {
  const { rows } = await db.query<Row>(
    `SELECT ${COLUMNS} FROM ${FROM} WHERE t.status IN ('open', 'claimed') AND $1 = ANY (t.assignee_ids) ORDER BY t.created_at, t.id LIMIT $2 OFFSET $3`,
    [userId, limit, offset],
  );
  return rows.map(view);
}

/** A task and its assignees, or undefined. */
export async function getTask(db: Queryable, id: string): Promise<{ task: AccessTaskView; assignees: string[] } | undefined> {
  const { rows } = await db.query<Row>(`SELECT ${COLUMNS} FROM ${FROM} WHERE t.id = $1`, [id]);
  return rows[0] ? { task: view(rows[0]), assignees: rows[0].assignee_ids } : undefined;
}

/** Claims an open task for `userId` (an assignee); answers false when it is not open any more. */
export async function claimTask(db: Db, id: string, userId: string, userName: string): Promise<boolean> {
  const { rows } = await db.query(
    `WITH claimed AS (
       UPDATE access_tasks SET status = 'claimed', claimed_by = $2, claimed_at = now() WHERE id = $1 AND status = 'open' AND $2 = ANY (assignee_ids) RETURNING id, request_id)
     INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after)
     SELECT $3, 'access-task.claimed', 'AccessTask', id::text, 'claimed', jsonb_build_object('requestId', request_id) FROM claimed RETURNING id`,
    [id, userId, userName],
  );
  return rows.length > 0;
}

/** An attempt at a task that was refused: who tried what, and why. */
export interface RefusedTaskAttempt {
  taskId: string;
  requestId: string;
  kind: 'grant' | 'revoke';
  /** The acting user (userName). */
  actor: string;
  attempt: 'claim' | 'complete';
  /** For `complete`: the outcome reported. */
  outcome?: 'done' | 'failed';
  reason: string;
}

/**
 * Records a refused claim or report of a task as the audit event `access-task.refused` (actor,
 * task, reason), so attempts by people who may not act on a task are evidence too.
 */
export async function recordRefusedTaskAttempt(db: Db, a: RefusedTaskAttempt): Promise<void> {
  await db.query(
    `INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after) VALUES ($1, 'access-task.refused', 'AccessTask', $2, $3, $4)`,
    [a.actor, a.taskId, a.reason, JSON.stringify({ requestId: a.requestId, kind: a.kind, attempt: a.attempt, ...(a.outcome ? { outcome: a.outcome } : {}) })],
  );
}
