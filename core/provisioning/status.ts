/**
 * A user's provisioning, per target (connector): whether their account there is as it should be.
 *
 * The targets are the enabled connectors where the user holds an active grant (they should have an
 * account with every granted entitlement) and those where they only have an account left (it
 * should be disabled or deleted, with no entitlement applied). A target is `provisioned` once the
 * account is active with every granted entitlement applied, `removed` once an account that should
 * go has no entitlement applied and is disabled or deleted (or, for a connector that cannot disable
 * accounts, left active without error), `failed` when the user's workflow has finished
 * its round and the target is still not as it should be (with the target's last error as the
 * reason), and `pending` otherwise (a step may be being retried: its last error is the reason).
 *
 * The user is settled once their userSync workflow has applied the latest change announced for
 * them; before that every target that is not yet as it should be is pending, since rule grants are
 * only worked out by that round. The first-login status page (core/logins/status.ts) and the
 * console's user page both read this; changes are announced on the `user_provisioning` channel
 * (core/logins/watcher.ts).
 */
import type { Db, Tx } from '../db/pool.js';

type Queryable = Pick<Db | Tx, 'query'>;

export type TargetProvisioning = 'pending' | 'provisioned' | 'removed' | 'failed';

export interface ConnectorStatus {
  connectorId: string;
  state: TargetProvisioning;
  /** Why it failed, or the error a pending step is being retried after. */
  reason?: string;
  /** Whether the user holds an active grant there (should have an account). */
  granted: boolean;
  /** The account as recorded: none (only an error so far), active, disabled, deleted; null before any step ran. */
  account: string | null;
  /** When a step last succeeded on the account (ISO 8601), or null. */
  lastSyncAt: string | null;
}

export interface ProvisioningStatus {
  /** Whether the user's workflow has applied the latest change announced for them. */
  settled: boolean;
  connectors: ConnectorStatus[];
}

export async function provisioningStatus(db: Queryable, userId: string): Promise<ProvisioningStatus> {
  const { rows: sync } = await db.query<{ last_change: string | null; synced: string | null }>(
    `SELECT (SELECT max(id) FROM outbox WHERE topic = 'user.changed' AND aggregate_id = $1) AS last_change,
            (SELECT synced_seq FROM user_sync_state WHERE user_id = $2::uuid) AS synced`,
    [userId, userId],
  );
  const settled = Number(sync[0]?.synced ?? 0) >= Number(sync[0]?.last_change ?? 0);
  const { rows } = await db.query<{
    connector_id: string;
    granted: boolean;
    applied: boolean | null;
    leftover: boolean;
    state: string | null;
    last_error: string | null;
    last_sync_at: Date | null;
  }>(
    `WITH held AS (
       SELECT e.connector_id, bool_and(ag.user_id IS NOT NULL) AS applied
         FROM grants g
         JOIN entitlements e ON e.id = g.entitlement_id
         LEFT JOIN account_grants ag ON ag.user_id = g.user_id AND ag.entitlement_id = g.entitlement_id
        WHERE g.user_id = $1 AND g.status = 'active' AND g.valid_from <= now() AND (g.valid_until IS NULL OR g.valid_until > now())
        GROUP BY e.connector_id),
     account AS (
       SELECT a.connector_id, a.state, a.last_error, a.last_sync_at,
              EXISTS (SELECT 1 FROM account_grants ag JOIN entitlements e ON e.id = ag.entitlement_id
                       WHERE ag.user_id = a.user_id AND e.connector_id = a.connector_id) AS leftover
         FROM accounts a WHERE a.user_id = $1)
     SELECT c.id AS connector_id, h.connector_id IS NOT NULL AS granted, h.applied, COALESCE(a.leftover, false) AS leftover,
            a.state, a.last_error, a.last_sync_at
       FROM connectors c
       LEFT JOIN held h ON h.connector_id = c.id
       LEFT JOIN account a ON a.connector_id = c.id
      WHERE c.enabled AND (h.connector_id IS NOT NULL OR a.connector_id IS NOT NULL)
      ORDER BY c.id`,
    [userId],
  );
  const connectors = rows.map((r): ConnectorStatus => {
    const base = { connectorId: r.connector_id, granted: r.granted, account: r.state, lastSyncAt: r.last_sync_at ? r.last_sync_at.toISOString() : null };
    const done = r.granted ? r.state === 'active' && r.applied === true : (r.state === 'disabled' || r.state === 'deleted' || r.state === 'none') && !r.leftover;
    if (done) return { ...base, state: r.granted ? 'provisioned' : 'removed' };
    // A connector that cannot disable accounts leaves them active once their entitlements are gone.
    if (!r.granted && settled && !r.leftover && !r.last_error) return { ...base, state: 'removed', reason: 'no entitlement is applied; the account itself stays active' };
    if (settled) return { ...base, state: 'failed', reason: r.last_error ?? (r.granted ? 'the account was not created' : 'the account was not removed') };
    return { ...base, state: 'pending', ...(r.last_error ? { reason: `retrying: ${r.last_error}` } : {}) };
  });
  return { settled, connectors };
}
