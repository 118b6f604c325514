/**
 * Who has what, and why: each user × entitlement held, with the reason for it. Read by the admin API
 * (`GET /api/grants`: active grants only) and by the console's "Who has what" page and its CSV
 * export (grants, and memberships applied in a target with no grant behind them, which
 * reconciliation found or which are about to be revoked).
 *
 * Reasons: `rule:<name>` (a birthright rule: its group or condition), `manual` (granted through the
 * API: who granted it), `request:<id>` (an access request: its policy, requester, justification and
 * approvers), `invitation:<id>` (an invitation redeemed), `reconcile` (no grant: the membership is
 * applied in the target, found there by a reconciliation or not revoked yet).
 */
import type { Db, Tx } from '../db/pool.js';
import { csvField } from '../audit/chain.js';

type Queryable = Pick<Db | Tx, 'query'>;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A user by id or userName (deleted ones included: their provisioning history still matters). */
export async function resolveUser(db: Queryable, idOrName: string): Promise<string | undefined> {
  const { rows } = await db.query<{ id: string }>(
    UUID.test(idOrName) ? 'SELECT id FROM users WHERE id = $1' : 'SELECT id FROM users WHERE lower(user_name) = lower($1) ORDER BY deleted_at IS NOT NULL, id LIMIT 1',
    [idOrName],
  );
  return rows[0]?.id;
}

/** An entitlement by id or "connectorId/name". */
export async function resolveEntitlement(db: Queryable, idOrName: string): Promise<string | undefined> {
  const { rows } = await db.query<{ id: string }>(
    UUID.test(idOrName) ? 'SELECT id FROM entitlements WHERE id = $1' : `SELECT id FROM entitlements WHERE connector_id || '/' || name = $1`,
    [idOrName],
  );
  return rows[0]?.id;
}

export interface RequestEvidence {
  id: string;
  policy: string | null;
  requestedBy: string | null;
  requestedAt: string | null;
  justification: string | null;
  decidedAt: string | null;
  fulfilledAt: string | null;
  /** The accepted decisions, in order. */
  decisions: Array<{ stage: number; approver: string; decision: string; comment: string | null; at: string }>;
}

export interface Holding {
  /** The grant; null for a membership held without one (reason `reconcile`). */
  id: string | null;
  userId: string;
  userName: string;
  entitlementId: string;
  connectorId: string;
  entitlement: string;
  /** manual, rule:<name>, request:<id>, invitation:<id>, or reconcile. */
  reason: string;
  validFrom: Date | null;
  validUntil: Date | null;
  /** Whether the connector has applied it in the target. */
  applied: boolean;
  /** For requested access: the request, its justification and the accepted decisions. */
  request: RequestEvidence | null;
  /** For a rule grant: the rule's group or condition (null when the rule was removed meanwhile). */
  rule: { name: string; group: string | null; condition: string | null } | null;
  /** Who granted it and when (the grant's audit event), for manual and invitation grants. */
  grantedBy: { actor: string; at: Date } | null;
  /** For `reconcile`: the reconciliation that found the membership in the target, when one did. */
  foundBy: { actor: string; at: Date } | null;
}

export interface HoldingFilter {
  userId?: string | undefined;
  entitlementId?: string | undefined;
  connectorId?: string | undefined;
  /** Only active grants (the admin API's view); otherwise memberships held without a grant too. */
  grantsOnly?: boolean;
  limit?: number;
  offset?: number;
}

const ACTIVE = `g.status = 'active' AND (g.valid_until IS NULL OR g.valid_until > now())`;

/** Holdings in userName, connector, entitlement, reason order. */
export async function listHoldings(db: Queryable, filter: HoldingFilter): Promise<Holding[]> {
  const params: unknown[] = [filter.userId ?? null, filter.entitlementId ?? null, filter.connectorId ?? null];
  let page = '';
  if (filter.limit !== undefined) {
    params.push(filter.limit, filter.offset ?? 0);
    page = `LIMIT $4 OFFSET $5`;
  }
  const ungranted = filter.grantsOnly
    ? ''
    : `UNION ALL
       SELECT NULL::uuid, ag.user_id, ag.entitlement_id, 'reconcile', NULL::timestamptz, NULL::timestamptz FROM account_grants ag
        WHERE ($1::uuid IS NULL OR ag.user_id = $1) AND ($2::uuid IS NULL OR ag.entitlement_id = $2)
          AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.user_id = ag.user_id AND g.entitlement_id = ag.entitlement_id AND ${ACTIVE})`;
  const { rows } = await db.query<Holding>(
    `WITH held AS (
       SELECT g.id, g.user_id, g.entitlement_id, g.reason, g.valid_from, g.valid_until FROM grants g
        WHERE ${ACTIVE} AND ($1::uuid IS NULL OR g.user_id = $1) AND ($2::uuid IS NULL OR g.entitlement_id = $2)
       ${ungranted})
     SELECT h.id, h.user_id AS "userId", u.user_name AS "userName", h.entitlement_id AS "entitlementId",
            e.connector_id AS "connectorId", e.name AS "entitlement", h.reason, h.valid_from AS "validFrom",
            h.valid_until AS "validUntil", (ag.user_id IS NOT NULL) AS applied,
            -- Requested access carries its evidence: the request, its justification and who approved it.
            CASE WHEN r.id IS NULL THEN NULL ELSE jsonb_build_object(
              'id', r.id, 'policy', r.policy->>'name', 'requestedBy', ru.user_name, 'requestedAt', r.created_at,
              'justification', r.justification, 'decidedAt', r.decided_at, 'fulfilledAt', r.fulfilled_at,
              'decisions', COALESCE((
                SELECT jsonb_agg(jsonb_build_object('stage', d.stage, 'approver', du.user_name, 'decision', d.decision, 'comment', d.comment, 'at', d.at) ORDER BY d.id)
                  FROM access_request_decisions d JOIN users du ON du.id = d.approver_id
                 WHERE d.request_id = r.id AND d.accepted), '[]'::jsonb)) END AS request,
            CASE WHEN rl.id IS NULL THEN NULL ELSE jsonb_build_object('name', rl.name, 'group', rg.display_name, 'condition', rl.condition) END AS rule,
            CASE WHEN gb.actor IS NULL THEN NULL ELSE jsonb_build_object('actor', gb.actor, 'at', gb.at) END AS "grantedBy",
            CASE WHEN fb.actor IS NULL THEN NULL ELSE jsonb_build_object('actor', fb.actor, 'at', fb.at) END AS "foundBy"
       FROM held h JOIN users u ON u.id = h.user_id JOIN entitlements e ON e.id = h.entitlement_id
       LEFT JOIN account_grants ag ON ag.user_id = h.user_id AND ag.entitlement_id = h.entitlement_id
       LEFT JOIN access_requests r ON h.reason LIKE 'request:%' AND r.id::text = substr(h.reason, 9)
       LEFT JOIN users ru ON ru.id = r.requester_id
       LEFT JOIN rules rl ON h.reason LIKE 'rule:%' AND rl.name = substr(h.reason, 6)
       LEFT JOIN groups rg ON rg.id = rl.group_id
       LEFT JOIN LATERAL (
         SELECT ev.actor, ev.at FROM audit_events ev
          WHERE ev.resource_type = 'Grant' AND ev.resource_id = h.id::text AND ev.action = 'grant.created'
          ORDER BY ev.id DESC LIMIT 1) gb ON h.id IS NOT NULL AND (h.reason = 'manual' OR h.reason LIKE 'invitation:%')
       LEFT JOIN LATERAL (
         SELECT ev.actor, ev.at FROM audit_events ev
          WHERE ev.resource_type = 'Account' AND ev.resource_id = e.connector_id || ':' || h.user_id AND ev.action = 'account.membershipFound'
            AND ev.after->>'entitlementId' = h.entitlement_id::text
          ORDER BY ev.id DESC LIMIT 1) fb ON h.id IS NULL
      WHERE ($3::text IS NULL OR e.connector_id = $3)
      ORDER BY u.user_name, e.connector_id, e.name, h.reason
      ${page}`,
    params,
  );
  return rows.map((r) => ({
    ...r,
    grantedBy: r.grantedBy ? { actor: r.grantedBy.actor, at: new Date(r.grantedBy.at) } : null,
    foundBy: r.foundBy ? { actor: r.foundBy.actor, at: new Date(r.foundBy.at) } : null,
  }));
}

const day = (d: Date | string) => new Date(d).toISOString().slice(0, 10);

/** Why the user holds it, in words ("rule engineering (members of Engineering)"). */
export function describeWhy(h: Holding): string {
  if (h.reason.startsWith('rule:')) {
    const name = h.reason.slice(5);
    if (!h.rule) return `rule ${name} (removed since; the grant ends at the user's next sync)`;
    return `rule ${name} (${h.rule.group !== null ? `members of ${h.rule.group}` : `users matching ${h.rule.condition ?? ''}`})`;
  }
  if (h.reason.startsWith('request:')) {
    const r = h.request;
    if (!r) return `access request ${h.reason.slice(8)}`;
    const approvals = r.decisions.filter((d) => d.decision === 'approve').map((d) => d.approver);
    const approved = approvals.length ? `approved by ${[...new Set(approvals)].join(', ')}` : 'no approval needed';
    return `access request for ${r.policy ?? r.id} by ${r.requestedBy ?? 'someone'}, ${approved}${r.justification ? `; justification: ${r.justification}` : ''}`;
  }
  if (h.reason === 'manual') return h.grantedBy ? `granted directly by ${h.grantedBy.actor} on ${day(h.grantedBy.at)}` : 'granted directly';
  if (h.reason.startsWith('invitation:')) return `invitation ${h.reason.slice(11)} redeemed${h.grantedBy ? ` on ${day(h.grantedBy.at)}` : ''}`;
  if (h.reason === 'reconcile') {
    return h.foundBy
      ? `found in the target by reconciliation (${h.foundBy.actor}, ${day(h.foundBy.at)}); no grant, so the user's next sync revokes it`
      : "applied in the target with no grant left; the user's next sync revokes it";
  }
  return h.reason;
}

/** Who approved a requested grant (accepted approvals), or empty. */
export function approversOf(h: Holding): string[] {
  return [...new Set((h.request?.decisions ?? []).filter((d) => d.decision === 'approve').map((d) => d.approver))];
}

/**
 * A CSV field a spreadsheet opens as text: a value starting with =, +, -, @, tab or carriage return
 * would be read as a formula, so it gets a leading single quote; then RFC 4180 quoting.
 */
export function spreadsheetCsvField(value: string | null): string {
  if (value === null) return '';
  return csvField(/^[=+\-@\t\r]/.test(value) ? `'${value}` : value);
}

export const HOLDINGS_CSV_COLUMNS = ['userName', 'userId', 'connector', 'entitlement', 'reason', 'why', 'approvers', 'validFrom', 'validUntil', 'applied'] as const;

/** One holding as a CSV record (CRLF ended), columns as {@link HOLDINGS_CSV_COLUMNS}. */
export function holdingCsvRecord(h: Holding): string {
  const iso = (d: Date | null) => (d ? new Date(d).toISOString() : null);
  const cells = [h.userName, h.userId, h.connectorId, h.entitlement, h.reason, describeWhy(h), approversOf(h).join('; '), iso(h.validFrom), iso(h.validUntil), h.applied ? 'yes' : 'no'];
  return `${cells.map(spreadsheetCsvField).join(',')}\r\n`;
}

/**
 * Every matching holding as CSV text chunks, a batch of rows per query; the first chunk (the header
 * row with the first batch) comes only once the first query has succeeded.
 */
export async function* holdingsCsv(db: Queryable, filter: Omit<HoldingFilter, 'limit' | 'offset'>, batchSize = 1000): AsyncGenerator<string> {
  let header = `${HOLDINGS_CSV_COLUMNS.join(',')}\r\n`;
  for (let offset = 0; ; offset += batchSize) {
    const rows = await listHoldings(db, { ...filter, limit: batchSize, offset });
    if (header || rows.length) yield header + rows.map(holdingCsvRecord).join('');
    header = '';
    if (rows.length < batchSize) return;
  }
}
