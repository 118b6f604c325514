/**
 * Provisioning at first login: whether a user's accounts are ready, per target (connector).
 *
 * The user's targets are the enabled connectors where they hold an active grant. A target is
 * `ready` once the account is active with every granted entitlement applied, `failed` when the
 * user's workflow has finished its round and the target recorded an error (with that error as the
 * reason), otherwise `pending` (a step may be being retried: its last error is shown). The user is
 * settled once their userSync workflow has applied the latest change announced for them; before that
 * the whole status is pending, since rule grants are only worked out by that round.
 */
import type { Db } from '../db/pool.js';
import { upsertSourceUser } from '../sources/store.js';

export type TargetState = 'pending' | 'ready' | 'failed';

export interface TargetStatus {
  target: string;
  state: TargetState;
  reason?: string;
}

export interface LoginStatus {
  state: TargetState;
  targets: TargetStatus[];
}

export async function loginStatus(db: Db, userId: string): Promise<LoginStatus> {
  const { rows: sync } = await db.query<{ last_change: string | null; synced: string | null }>(
    `SELECT (SELECT max(id) FROM outbox WHERE topic = 'user.changed' AND aggregate_id = $1) AS last_change,
            (SELECT synced_seq FROM user_sync_state WHERE user_id = $2::uuid) AS synced`,
    [userId, userId],
  );
  const settled = Number(sync[0]?.synced ?? 0) >= Number(sync[0]?.last_change ?? 0);
  const { rows } = await db.query<{ target: string; state: string | null; last_error: string | null; applied: boolean }>(
    `SELECT e.connector_id AS target, a.state, a.last_error, bool_and(ag.user_id IS NOT NULL) AS applied
       FROM grants g
       JOIN entitlements e ON e.id = g.entitlement_id
       JOIN connectors c ON c.id = e.connector_id AND c.enabled
       LEFT JOIN accounts a ON a.user_id = g.user_id AND a.connector_id = e.connector_id
       LEFT JOIN account_grants ag ON ag.user_id = g.user_id AND ag.entitlement_id = g.entitlement_id
      WHERE g.user_id = $1 AND g.status = 'active' AND g.valid_from <= now() AND (g.valid_until IS NULL OR g.valid_until > now())
      GROUP BY e.connector_id, a.state, a.last_error
      ORDER BY e.connector_id`,
    [userId],
  );
  const targets: TargetStatus[] = rows.map((r) => {
    if (r.state === 'active' && r.applied) return { target: r.target, state: 'ready' };
    if (settled) return { target: r.target, state: 'failed', reason: r.last_error ?? 'the account was not created' };
    return { target: r.target, state: 'pending', ...(r.last_error ? { reason: `retrying: ${r.last_error}` } : {}) };
  });
  const state: TargetState = !settled || targets.some((t) => t.state === 'pending') ? 'pending' : targets.some((t) => t.state === 'failed') ? 'failed' : 'ready';
  return { state, targets };
}

export type LoginUser = { ok: true; userId: string } | { ok: false; message: string };

/**
 * The directory user of an Auth0 user logging in: the source's user with that user_id; else the
 * user (pushed over SCIM by another identity provider, say) whose userName is the email; else a new
 * source user, which starts its provisioning.
 */
export async function loginUser(db: Db, sourceId: string, login: { auth0UserId: string; email: string; name?: string | undefined }): Promise<LoginUser> {
  const find = async () => {
    const { rows } = await db.query<{ id: string }>(
      `SELECT id FROM users WHERE deleted_at IS NULL AND ((source_id = $1 AND external_id = $2) OR lower(user_name) = lower($3))
        ORDER BY (source_id = $1 AND external_id = $2) DESC NULLS LAST LIMIT 1`,
      [sourceId, login.auth0UserId, login.email],
    );
    return rows[0]?.id;
  };
  const existing = await find();
  if (existing) return { ok: true, userId: existing };
  const write = await upsertSourceUser(
    db,
    sourceId,
    {
      schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'],
      userName: login.email.toLowerCase(),
      externalId: login.auth0UserId,
      active: true,
      ...(login.name && login.name !== login.email ? { displayName: login.name } : {}),
      emails: [{ value: login.email.toLowerCase(), primary: true, type: 'work' }],
    },
    'first login',
  );
  const id = write === 'conflict' ? undefined : await find();
  return id ? { ok: true, userId: id } : { ok: false, message: 'Your account could not be set up. Contact your administrator.' };
}
