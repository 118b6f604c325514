/**
 * Invitations: an administrator invites an email address into a source's Auth0 connection with
 * entitlements and an expiry. The gateway keeps only the token's SHA-256; the Auth0 user is created
 * (with a password-change ticket, when new to the connection) or marked invited in app_metadata;
 * and the link is announced through the delivery notification channel (the signed webhook of
 * core/delivery/notify.ts). At the invitee's first login the post-login Action
 * (connectors/auth0/actions/gateway-login.js) redeems the token: once, before expiry, for the email
 * it was sent to, and not after revocation; then the entitlements are granted with the reason
 * `invitation:<id>` and the directory user is active.
 */
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { withTransaction, type Db, type Tx } from '../db/pool.js';
import { enqueueUserChanges } from '../outbox/outbox.js';
import { PermanentError } from '../../connectors/index.js';
import { INVITATION_KEY } from '../../connectors/auth0/user.js';
import type { Auth0Source } from '../sources/auth0.js';
import { upsertSourceUser } from '../sources/store.js';

/** The app_metadata key of an invitation waiting for its first login (the connector's key). */
export const INVITED_KEY = INVITATION_KEY;
export const TOKEN_PREFIX = 'inv_';

export function invitationTokenHash(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

export interface Invitation {
  id: string;
  source: string;
  email: string;
  entitlements: string[];
  expiresAt: Date;
  status: 'pending' | 'redeemed' | 'revoked' | 'expired';
  createdBy: string;
  createdAt: Date;
  auth0UserId: string | null;
  newUser: boolean | null;
  deliveredAt: Date | null;
  deliveryError: string | null;
  redeemedAt: Date | null;
  userId: string | null;
  revokedAt: Date | null;
}

const SELECT = `SELECT i.id, i.source_id AS source, i.email,
       ARRAY(SELECT e.connector_id || '/' || e.name FROM entitlements e WHERE e.id = ANY(i.entitlement_ids) ORDER BY 1) AS entitlements,
       i.expires_at AS "expiresAt",
       CASE WHEN i.status = 'pending' AND i.expires_at <= now() THEN 'expired' ELSE i.status END AS status,
       i.created_by AS "createdBy", i.created_at AS "createdAt", i.auth0_user_id AS "auth0UserId", i.new_user AS "newUser",
       i.delivered_at AS "deliveredAt", i.delivery_error AS "deliveryError", i.redeemed_at AS "redeemedAt", i.user_id AS "userId",
       i.revoked_at AS "revokedAt"
  FROM invitations i`;

export async function getInvitation(db: Db | Tx, id: string): Promise<Invitation | undefined> {
  const { rows } = await db.query<Invitation>(`${SELECT} WHERE i.id = $1`, [id]);
  return rows[0];
}

export async function listInvitations(db: Db, filter: { source?: string; email?: string }): Promise<Invitation[]> {
  const { rows } = await db.query<Invitation>(
    `${SELECT} WHERE ($1::text IS NULL OR i.source_id = $1) AND ($2::text IS NULL OR lower(i.email) = lower($2)) ORDER BY i.created_at DESC, i.id LIMIT 500`,
    [filter.source ?? null, filter.email ?? null],
  );
  return rows;
}

async function audit(tx: Db | Tx, actor: string, action: string, id: string, reason: string, after: unknown): Promise<void> {
  await tx.query(`INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after) VALUES ($1, $2, 'Invitation', $3, $4, $5)`, [
    actor,
    action,
    id,
    reason,
    JSON.stringify(after),
  ]);
}

/** What the invitee is sent, through the delivery notification channel. `url` and `passwordUrl` are secrets. */
export interface InvitationNotice {
  id: string;
  type: 'invitation.created';
  source: string;
  email: string;
  /** The sign-in link carrying the invitation token. */
  url: string;
  /** Auth0's password-change ticket, for an invitee new to the connection: set a password first. */
  passwordUrl?: string;
  entitlements: string[];
  expiresAt: string;
}

export interface CreateInvitationInput {
  sourceId: string;
  source: Auth0Source;
  email: string;
  /** Entitlement ids. */
  entitlementIds: string[];
  expiresAt: Date;
  actor: string;
  notify: (notice: InvitationNotice) => Promise<void>;
}

function unguessablePassword(): string {
  return `${randomBytes(32).toString('base64url')}aZ7!`;
}

function invitationLink(base: string, token: string): string {
  const url = new URL(base);
  url.searchParams.set('scim_invitation', token);
  return url.toString();
}

/**
 * Records the invitation, then creates or marks the Auth0 user and sends the link. The invitation
 * is recorded first: when Auth0 or the notification channel fails, it stays with the reason in
 * `deliveryError` (and can be revoked), and the error is thrown.
 */
export async function createInvitation(db: Db, input: CreateInvitationInput): Promise<Invitation> {
  const { source } = input;
  if (!source.config.invitationUrl) throw new PermanentError(`source ${input.sourceId} has no invitationUrl: the application's login URL is needed for invitation links`, 'invalidConfig');
  const email = input.email.toLowerCase();
  const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
  const id = randomUUID();
  await withTransaction(db, async (tx) => {
    await tx.query(
      `INSERT INTO invitations (id, source_id, email, entitlement_ids, token_hash, expires_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [id, input.sourceId, email, input.entitlementIds, invitationTokenHash(token), input.expiresAt, input.actor],
    );
    await audit(tx, input.actor, 'invitation.created', id, 'admin API', { source: input.sourceId, email, entitlementIds: input.entitlementIds, expiresAt: input.expiresAt });
  });
  try {
    const mark = { [INVITED_KEY]: { pending: true, invitationId: id } };
    let user = await source.users.findByEmail('invite', email);
    let newUser = false;
    if (!user) {
      user = await source.api.call('auth0 source: invite', (m) =>
        m.users.create({ connection: source.config.connection, email, password: unguessablePassword(), email_verified: false, verify_email: false, app_metadata: mark }),
      );
      newUser = true;
    } else {
      await source.api.call('auth0 source: invite', (m) => m.users.update(user!.user_id!, { app_metadata: mark }));
    }
    const auth0UserId = user.user_id!;
    await db.query('UPDATE invitations SET auth0_user_id = $2, new_user = $3 WHERE id = $1', [id, auth0UserId, newUser]);
    const url = invitationLink(source.config.invitationUrl, token);
    let passwordUrl: string | undefined;
    if (newUser) {
      const ticket = await source.api.call('auth0 source: invite', (m) =>
        m.tickets.changePassword({
          user_id: auth0UserId,
          ttl_sec: Math.max(60, Math.min(source.config.ticketTtlSeconds ?? 432_000, Math.ceil((input.expiresAt.getTime() - Date.now()) / 1000))),
          mark_email_as_verified: true,
          result_url: source.config.ticketResultUrl ?? url,
        }),
      );
      passwordUrl = typeof ticket?.ticket === 'string' ? ticket.ticket : undefined;
      if (!passwordUrl) throw new PermanentError('Auth0 answered the password-change ticket without a URL', 'invalidResponse');
    }
    const entitlements = (await getInvitation(db, id))!.entitlements;
    await input.notify({ id, type: 'invitation.created', source: input.sourceId, email, url, ...(passwordUrl && { passwordUrl }), entitlements, expiresAt: input.expiresAt.toISOString() });
    await db.query('UPDATE invitations SET delivered_at = now(), delivery_error = NULL WHERE id = $1', [id]);
  } catch (err) {
    await db.query('UPDATE invitations SET delivery_error = $2 WHERE id = $1', [id, (err as Error).message]);
    throw err;
  }
  return (await getInvitation(db, id))!;
}

export async function revokeInvitation(db: Db, id: string, actor: string): Promise<Invitation | 'not-found' | 'not-pending'> {
  return await withTransaction(db, async (tx) => {
    const { rows } = await tx.query<{ status: string }>('SELECT status FROM invitations WHERE id = $1 FOR UPDATE', [id]);
    if (!rows[0]) return 'not-found';
    if (rows[0].status !== 'pending') return 'not-pending';
    await tx.query(`UPDATE invitations SET status = 'revoked', revoked_at = now(), revoked_by = $2 WHERE id = $1`, [id, actor]);
    await audit(tx, actor, 'invitation.revoked', id, 'admin API', { status: 'revoked' });
    return (await getInvitation(tx, id))!;
  });
}

export type RedeemRefusal = 'unknown' | 'used' | 'expired' | 'revoked' | 'wrong-email' | 'conflict';

export type RedeemResult = { ok: true; invitationId: string; userId: string; entitlements: string[] } | { ok: false; reason: RedeemRefusal; message: string };

/** What the login page says for each refusal. */
export const REFUSAL_MESSAGES: Record<RedeemRefusal, string> = {
  unknown: 'This invitation link is not valid. Ask for a new invitation.',
  used: 'This invitation has already been used. Sign in normally, or ask for a new invitation.',
  expired: 'This invitation has expired. Ask for a new invitation.',
  revoked: 'This invitation has been withdrawn. Contact your administrator.',
  'wrong-email': 'This invitation was sent to a different email address. Sign in with the address that received it.',
  conflict: 'Your account could not be set up because another account has the same user name. Contact your administrator.',
};

function refuse(reason: RedeemRefusal): RedeemResult {
  return { ok: false, reason, message: REFUSAL_MESSAGES[reason] };
}

/**
 * Redeems the invitation with this token for the Auth0 user logging in. The invitation row is
 * locked for the whole redemption, so of concurrent redemptions exactly one succeeds; the others
 * find it used. A refusal changes nothing (a wrong email does not use the invitation up).
 */
export async function redeemInvitation(
  db: Db,
  input: { sourceId: string; token: string; email: string; auth0UserId: string; name?: string | undefined },
): Promise<RedeemResult> {
  const hash = invitationTokenHash(input.token);
  const found = await db.query<{ id: string }>('SELECT id FROM invitations WHERE token_hash = $1 AND source_id = $2', [hash, input.sourceId]);
  if (!found.rows[0]) return refuse('unknown');
  return await withTransaction(db, async (tx) => {
    const { rows } = await tx.query<{ id: string; email: string; status: string; expired: boolean; token_hash: Buffer; entitlement_ids: string[] }>(
      'SELECT id, email, status, expires_at <= now() AS expired, token_hash, entitlement_ids FROM invitations WHERE id = $1 FOR UPDATE',
      [found.rows[0]!.id],
    );
    const inv = rows[0]!;
    if (!timingSafeEqual(inv.token_hash, hash)) return refuse('unknown');
    if (inv.status === 'revoked') return refuse('revoked');
    if (inv.status === 'redeemed') return refuse('used');
    if (inv.expired) return refuse('expired');
    if (inv.email.toLowerCase() !== input.email.toLowerCase()) return refuse('wrong-email');
    // The invitee's directory user, owned by the source (created now if no import brought it yet).
    const { rows: known } = await tx.query('SELECT 1 FROM users WHERE source_id = $1 AND external_id = $2 AND deleted_at IS NULL', [input.sourceId, input.auth0UserId]);
    const write = known[0] ? 'unchanged' : await upsertSourceUser(
      db,
      input.sourceId,
      {
        schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'],
        userName: input.email.toLowerCase(),
        externalId: input.auth0UserId,
        active: true,
        ...(input.name && input.name !== input.email ? { displayName: input.name } : {}),
        emails: [{ value: input.email.toLowerCase(), primary: true, type: 'work' }],
      },
      `invitation:${inv.id}`,
    );
    if (write === 'conflict') return refuse('conflict');
    const { rows: user } = await tx.query<{ id: string }>('SELECT id FROM users WHERE source_id = $1 AND external_id = $2 AND deleted_at IS NULL', [input.sourceId, input.auth0UserId]);
    const userId = user[0]!.id;
    const reason = `invitation:${inv.id}`;
    await tx.query(
      `WITH g AS (
         INSERT INTO grants (id, user_id, entitlement_id, reason) SELECT gen_random_uuid(), $1, e, $2 FROM unnest($3::uuid[]) AS e
         ON CONFLICT (user_id, entitlement_id, reason) DO UPDATE SET status = 'active', ended_at = NULL
         RETURNING id, user_id, entitlement_id, reason, status, valid_from, valid_until)
       INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after)
       SELECT $2, 'grant.created', 'Grant', g.id::text, 'invitation redeemed',
              jsonb_build_object('id', g.id, 'userId', g.user_id, 'entitlementId', g.entitlement_id, 'reason', g.reason, 'status', g.status,
                                 'validFrom', g.valid_from, 'validUntil', g.valid_until)
         FROM g`,
      [userId, reason, inv.entitlement_ids],
    );
    await tx.query(`UPDATE invitations SET status = 'redeemed', redeemed_at = now(), user_id = $2, auth0_user_id = $3 WHERE id = $1`, [inv.id, userId, input.auth0UserId]);
    await audit(tx, `auth0:${input.auth0UserId}`, 'invitation.redeemed', inv.id, 'first login', { userId, email: input.email.toLowerCase() });
    await enqueueUserChanges(tx, [userId]);
    const { rows: names } = await tx.query<{ n: string }>(`SELECT e.connector_id || '/' || e.name AS n FROM entitlements e WHERE e.id = ANY($1) ORDER BY 1`, [inv.entitlement_ids]);
    return { ok: true, invitationId: inv.id, userId, entitlements: names.map((r) => r.n) };
  });
}
