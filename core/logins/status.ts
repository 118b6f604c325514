/**
 * Provisioning at first login: whether a user's accounts are ready, per target (connector).
 *
 * The user's targets are the enabled connectors where they hold an active grant, with their state
 * as core/provisioning/status.ts works it out (`provisioned` is `ready` here): `ready` once the
 * account is active with every granted entitlement applied, `failed` when the user's workflow has
 * finished its round and the target recorded an error (with that error as the reason), otherwise
 * `pending` (a step may be being retried: its last error is shown). Until the user's userSync
 * workflow has applied the latest change announced for them the whole status is pending, since rule
 * grants are only worked out by that round.
 */
import type { Db } from '../db/pool.js';
import { provisioningStatus } from '../provisioning/status.js';
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
  const { settled, connectors } = await provisioningStatus(db, userId);
  // At login only the targets the user should have an account in count.
  const targets: TargetStatus[] = connectors
    .filter((c) => c.granted)
    .map((c): TargetStatus => ({ target: c.connectorId, state: c.state === 'provisioned' ? 'ready' : c.state === 'failed' ? 'failed' : 'pending', ...(c.reason ? { reason: c.reason } : {}) }));
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
