/**
 * Who had what, when: a user's access at any instant, rebuilt from the audit log alone.
 *
 * Every change to a user's access is an audit event that names the user (see `audit_event_users`
 * in migration 1732170000009): the user's own events, group events that add or remove them,
 * grant events (by a token, a rule, a request or the user's workflow) and account events (by the
 * user's workflow or a reconciliation run). Replaying those events up to an instant gives the
 * state at that instant, also for users deactivated or deleted since, whose tombstones and events
 * stay. Events recorded before membership deltas were audited (group.patched without
 * membersAdded/membersRemoved) cannot be replayed into group memberships; grants and accounts are
 * unaffected.
 */
import type { Db, Tx } from '../db/pool.js';
import { eventConcernsUser } from './event-users.js';

type Queryable = Pick<Db | Tx, 'query'>;

export interface AccessAsOf {
  userId: string;
  /** The instant asked about (UTC). */
  at: string;
  /** The user as last recorded at that instant; null before the user existed. */
  user: { userName: string | null; active: boolean; deleted: boolean } | null;
  /** Groups the user was a direct member of (indirect membership follows from nesting). */
  groups: Array<{ id: string; displayName: string | null }>;
  /** Grants in effect: active and within their validity window. */
  grants: Array<{ id: string; entitlementId: string; connectorId: string | null; entitlement: string | null; reason: string; validFrom: string | null; validUntil: string | null }>;
  /** Accounts in targets, with the entitlements applied to them. */
  accounts: Array<{ connectorId: string; state: string; remoteId: string | null; entitlements: Array<{ entitlementId: string; entitlement: string | null }> }>;
  /** The last audit event taken into account (null: none). */
  lastEventId: number | null;
}

interface EventRow {
  id: number;
  at: string;
  action: string;
  resource_type: string;
  resource_id: string | null;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
}

interface GrantState {
  entitlementId: string;
  reason: string;
  validFrom: string | null;
  validUntil: string | null;
}

type MemberRef = { value?: unknown };

const lists = (v: unknown): MemberRef[] => (Array.isArray(v) ? (v as MemberRef[]) : []);
const names = (list: unknown, userId: string) => lists(list).some((m) => m && m.value === userId);
const text = (v: unknown): string | null => (typeof v === 'string' ? v : null);

/**
 * The user's access at `at` (a string PostgreSQL reads as an instant), or undefined when no such
 * user was ever recorded.
 */
export async function accessAsOf(db: Queryable, userId: string, at: string): Promise<AccessAsOf | undefined> {
  const { rows: exists } = await db.query('SELECT 1 FROM users WHERE id::text = $1', [userId]);
  if (!exists[0]) return undefined;
  const { rows: when } = await db.query<{ at: string }>(`SELECT to_char($1::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at`, [at]);
  const { rows: events } = await db.query<EventRow>(
    `SELECT e.id, e.at, e.action, e.resource_type, e.resource_id, e.before, e.after FROM audit_events e
      WHERE ${eventConcernsUser('$1')} AND e.at <= $2::timestamptz
      ORDER BY e.id`,
    [userId, at],
  );

  let user = null as AccessAsOf['user'];
  const groups = new Map<string, string | null>();
  const grants = new Map<string, GrantState>();
  const accounts = new Map<string, { state: string; remoteId: string | null; entitlements: Set<string> }>();
  const account = (connectorId: string) => {
    let a = accounts.get(connectorId);
    if (!a) accounts.set(connectorId, (a = { state: 'none', remoteId: null, entitlements: new Set() }));
    return a;
  };

  for (const e of events) {
    const after = e.after ?? {};
    const id = e.resource_id ?? '';
    switch (e.resource_type) {
      case 'User':
        if (e.action === 'user.deleted') {
          user = { userName: user?.userName ?? text(e.before?.userName), active: false, deleted: true };
          groups.clear();
        } else if (e.after) {
          user = { userName: text(after.userName), active: after.active !== false, deleted: false };
        }
        break;
      case 'Group':
        if (e.action === 'group.deleted') groups.delete(id);
        else {
          const added = names(after.members, userId) || names(after.membersAdded, userId);
          if (names(after.membersRemoved, userId)) groups.delete(id);
          if (added) groups.set(id, text(after.displayName));
          else if (groups.has(id) && after.displayName !== undefined) groups.set(id, text(after.displayName));
        }
        break;
      case 'Grant':
        if (e.action === 'grant.ended') grants.delete(id);
        else if (e.action === 'grant.created' && typeof after.entitlementId === 'string') {
          grants.set(id, { entitlementId: after.entitlementId, reason: text(after.reason) ?? '', validFrom: text(after.validFrom), validUntil: text(after.validUntil) });
        }
        break;
      case 'Account': {
        const connectorId = id.slice(0, id.indexOf(':'));
        const a = account(connectorId);
        const entitlementId = text(after.entitlementId);
        if (text(after.remoteId)) a.remoteId = text(after.remoteId);
        switch (e.action) {
          case 'account.createAccount':
          case 'account.updateAccount':
            a.state = 'active';
            break;
          case 'account.disableAccount':
            a.state = 'disabled';
            break;
          case 'account.deleteAccount':
          case 'account.markedDeleted':
            a.state = 'deleted';
            break;
          case 'account.grantEntitlement':
          case 'account.membershipFound':
            if (entitlementId) a.entitlements.add(entitlementId);
            break;
          case 'account.revokeEntitlement':
          case 'account.membershipLost':
            if (entitlementId) a.entitlements.delete(entitlementId);
            break;
        }
        break;
      }
    }
  }

  const instant = Date.parse(when[0]!.at);
  const inEffect = [...grants.entries()].filter(
    ([, g]) => (g.validFrom === null || Date.parse(g.validFrom) <= instant) && (g.validUntil === null || Date.parse(g.validUntil) > instant),
  );
  const entitlementIds = [...new Set([...inEffect.map(([, g]) => g.entitlementId), ...[...accounts.values()].flatMap((a) => [...a.entitlements])])];
  const { rows: ents } = await db.query<{ id: string; connector_id: string; name: string }>(
    'SELECT id::text, connector_id, name FROM entitlements WHERE id::text = ANY($1)',
    [entitlementIds],
  );
  const ent = new Map(ents.map((r) => [r.id, r]));
  return {
    userId,
    at: when[0]!.at,
    user,
    groups: [...groups.entries()].map(([id, displayName]) => ({ id, displayName })).sort((a, b) => a.id.localeCompare(b.id)),
    grants: inEffect
      .map(([id, g]) => ({
        id,
        entitlementId: g.entitlementId,
        connectorId: ent.get(g.entitlementId)?.connector_id ?? null,
        entitlement: ent.get(g.entitlementId)?.name ?? null,
        reason: g.reason,
        validFrom: g.validFrom,
        validUntil: g.validUntil,
      }))
      .sort((a, b) => a.entitlementId.localeCompare(b.entitlementId) || a.reason.localeCompare(b.reason)),
    accounts: [...accounts.entries()]
      .filter(([, a]) => a.state !== 'none')
      .map(([connectorId, a]) => ({
        connectorId,
        state: a.state,
        remoteId: a.remoteId,
        entitlements: [...a.entitlements].sort().map((entitlementId) => ({ entitlementId, entitlement: ent.get(entitlementId)?.name ?? null })),
      }))
      .sort((a, b) => a.connectorId.localeCompare(b.connectorId)),
    lastEventId: events.length ? Number(events[events.length - 1]!.id) : null,
  };
}
