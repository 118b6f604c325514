/**
 * What the Slack messages say, read from PostgreSQL: who asks (name, title, manager), for what,
 * how each stage ended and who decided. Shared by the activities that post and update messages and
 * by the gateway answering a stale button.
 */
import type { Db, Tx } from '../db/pool.js';
import type { AccessPolicy } from '../access/policies.js';
import type { ApprovalInfo, StageOutcome } from './messages.js';

type Queryable = Pick<Db | Tx, 'query'>;
const ENTERPRISE = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';

export interface RequestFacts {
  id: string;
  requesterId: string;
  requester: ApprovalInfo['requester'];
  policy: AccessPolicy;
  status: string;
  reason: string | null;
  stage: number;
  durationSeconds: number | null;
  justification: string | null;
  grantUntil: Date | null;
}

/** A person's name as people read it: displayName, formatted name, given + family name, or userName. */
export function personName(userName: string, resource: Record<string, unknown> | null | undefined): string {
  const r = resource ?? {};
  const name = (r.name ?? {}) as { formatted?: unknown; givenName?: unknown; familyName?: unknown };
  if (typeof r.displayName === 'string' && r.displayName.trim()) return r.displayName.trim();
  if (typeof name.formatted === 'string' && name.formatted.trim()) return name.formatted.trim();
  const parts = [name.givenName, name.familyName].filter((x): x is string => typeof x === 'string' && x.trim() !== '');
  return parts.length ? parts.join(' ') : userName;
}

export async function requestFacts(db: Queryable, requestId: string): Promise<RequestFacts | undefined> {
  const { rows } = await db.query<{
    id: string;
    requester_id: string;
    user_name: string;
    resource: Record<string, unknown>;
    policy: AccessPolicy;
    status: string;
    status_reason: string | null;
    stage: number;
    duration_s: number | null;
    justification: string | null;
    manager_name: string | null;
    manager_resource: Record<string, unknown> | null;
    valid_until: Date | null;
  }>(
    `SELECT r.id, r.requester_id, u.user_name, u.resource, r.policy, r.status, r.status_reason, r.stage, r.duration_s, r.justification,
            m.user_name AS manager_name, m.resource AS manager_resource, g.valid_until
       FROM access_requests r JOIN users u ON u.id = r.requester_id
       LEFT JOIN users m ON m.id::text = u.resource #>> '{${ENTERPRISE},manager,value}'
       LEFT JOIN grants g ON g.id = r.grant_id
      WHERE r.id = $1`,
    [requestId],
  );
  const r = rows[0];
  if (!r) return undefined;
  const managerRef = (r.resource[ENTERPRISE] as { manager?: { displayName?: string } } | undefined)?.manager;
  return {
    id: r.id,
    requesterId: r.requester_id,
    requester: {
      name: personName(r.user_name, r.resource),
      userName: r.user_name,
      title: typeof r.resource.title === 'string' ? r.resource.title : null,
      manager: r.manager_name ? personName(r.manager_name, r.manager_resource) : (managerRef?.displayName ?? null),
    },
    policy: r.policy,
    status: r.status,
    reason: r.status_reason,
    stage: r.stage,
    durationSeconds: r.duration_s,
    justification: r.justification,
    grantUntil: r.valid_until,
  };
}

export function approvalInfo(f: RequestFacts, stage: number): ApprovalInfo {
  return {
    requestId: f.id,
    requester: f.requester,
    resource: f.policy.displayName,
    policy: f.policy.name,
    durationSeconds: f.durationSeconds,
    justification: f.justification,
    stage,
    stageName: f.policy.stages[stage]?.name ?? `stage ${stage + 1}`,
    stageCount: f.policy.stages.length,
  };
}

/** A stage's status and its accepted decisions with who made them, or undefined when it never opened. */
export async function stageOutcome(db: Queryable, f: RequestFacts, stage: number): Promise<StageOutcome & { open: boolean }> {
  const { rows: s } = await db.query<{ status: string }>('SELECT status FROM access_request_stages WHERE request_id = $1 AND stage = $2', [f.id, stage]);
  const { rows: d } = await db.query<{ user_name: string; resource: Record<string, unknown>; decision: 'approve' | 'reject'; at: Date; comment: string | null }>(
    `SELECT u.user_name, u.resource, d.decision, d.at, d.comment FROM access_request_decisions d JOIN users u ON u.id = d.approver_id
      WHERE d.request_id = $1 AND d.stage = $2 AND d.accepted ORDER BY d.id`,
    [f.id, stage],
  );
  const status = s[0]?.status ?? 'open';
  const open = status === 'open' && f.status === 'pending';
  return {
    open,
    status: open ? 'pending' : f.status,
    deciders: d.map((x) => ({ name: personName(x.user_name, x.resource), decision: x.decision, at: x.at.toISOString(), comment: x.comment })),
    reason: status === 'open' || status === 'closed' ? f.reason : `${f.policy.stages[stage]?.name ?? `stage ${stage + 1}`} ${status}`,
  };
}
