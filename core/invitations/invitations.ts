/**
 * Invitations: an administrator (or an approved access request, whose workflow calls
 * {@link createInvitation} with the request as idempotency key) invites an email address into a
 * source's Auth0 connection with entitlements and an expiry. The gateway keeps only the token's
 * SHA-256 (and, for a request's invitation, the token itself until the link is delivered); the Auth0 user is created
 * (with a password-change ticket, when new to the connection) or marked invited in app_metadata;
 * and the link is announced through the delivery notification channel (the signed webhook of
 * core/delivery/notify.ts). At the invitee's first login the post-login Action
 * (connectors/auth0/actions/redeem-invitation.js) redeems the token: once, before expiry, for the email
 * it was sent to, and not after revocation; then the entitlements are granted with the reason
 * `invitation:<id>` and the directory user is active, and the access request it was made for, if
 * any, is fulfilled (revoking the invitation revokes that request).
 */
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { withTransaction, type Db, type Tx } from '../db/pool.js';
import { enqueueUserChanges } from '../outbox/outbox.js';
import { PermanentError } from '../../connectors/index.js';
import { INVITATION_KEY } from '../../connectors/auth0/user.js';
import type { Auth0Source } from '../sources/auth0.js';
import { upsertSourceUser } from '../sources/store.js';
import { createSignedPost } from '../delivery/notify.js';

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
  /** The access request the invitation was made for; null: made through the admin API. */
  requestId: string | null;
}

const SELECT = `SELECT i.id, i.source_id AS source, i.email,
       ARRAY(SELECT e.connector_id || '/' || e.name FROM entitlements e WHERE e.id = ANY(i.entitlement_ids) ORDER BY 1) AS entitlements,
       i.expires_at AS "expiresAt",
       CASE WHEN i.status = 'pending' AND i.expires_at <= now() THEN 'expired' ELSE i.status END AS status,
       i.created_by AS "createdBy", i.created_at AS "createdAt", i.auth0_user_id AS "auth0UserId", i.new_user AS "newUser",
       i.delivered_at AS "deliveredAt", i.delivery_error AS "deliveryError", i.redeemed_at AS "redeemedAt", i.user_id AS "userId",
       i.revoked_at AS "revokedAt", i.request_id AS "requestId"
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

/** Sends an invitation's link; throws TransientError (worth retrying) or PermanentError. */
export type InvitationNotify = (notice: InvitationNotice) => Promise<void>;

/**
 * The delivery channel of invitation links: the signed webhook (DELIVERY_WEBHOOK_URL and its
 * secret); undefined when it is not configured. A 409 from the receiver means it has the notice
 * already (a retried delivery of the same link).
 */
export function invitationNotifierFor(cfg: { deliveryWebhookUrl?: string | undefined; deliveryWebhookSecret?: string | undefined }): InvitationNotify | undefined {
  const { deliveryWebhookUrl: url, deliveryWebhookSecret: secret } = cfg;
  return url && secret ? createSignedPost({ url, secret, label: 'invitation', alsoDelivered: [409], refusalHint: 'check DELIVERY_WEBHOOK_URL and DELIVERY_WEBHOOK_SECRET' }) : undefined;
}

/**
 * Withdraws the invitation of an access request that could not be sent (revoked, with its audit
 * event), so no link of it works; the request itself is recorded as failed by its workflow.
 */
export async function withdrawUndeliveredInvitation(db: Db, requestId: string, actor: string, reason: string): Promise<void> {
  await withTransaction(db, async (tx) => {
    const { rows } = await tx.query<{ id: string }>(
      `UPDATE invitations SET status = 'revoked', revoked_at = now(), revoked_by = $2, delivery_token = NULL WHERE request_id = $1 AND status = 'pending' RETURNING id`,
      [requestId, actor],
    );
    if (rows[0]) await audit(tx, actor, 'invitation.revoked', rows[0].id, reason, { status: 'revoked' });
  });
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
  /**
   * The access request this invitation fulfils, also its idempotency key: however often this runs
   * for the request, there is one invitation, one Auth0 user and one link (see {@link createInvitation}).
   */
  requestId?: string;
  /** How long the grants made at redemption last (seconds); absent or null: no end. */
  grantDurationSeconds?: number | null;
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
 *
 * With a `requestId` it is idempotent: the invitation is recorded once per request (with the
 * request's `invitation_id`), and a later run carries on where an earlier one stopped. The token is
 * kept (`delivery_token`) only until the link is delivered, so a retry sends the same link; whether
 * the Auth0 user was created for the invitation is recorded before it is created, so a retry that
 * finds it still sends the password-change ticket. An invitation delivered, revoked or redeemed
 * already is answered as it is.
 */
export async function createInvitation(db: Db, input: CreateInvitationInput): Promise<Invitation> {
  const { source } = input;
  if (!source.config.invitationUrl) throw new PermanentError(`source ${input.sourceId} has no invitationUrl: the application's login URL is needed for invitation links`, 'invalidConfig');
  const email = input.email.toLowerCase();
  const recorded = await withTransaction(db, async (tx) => {
    const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
    const id = randomUUID();
    const { rows } = await tx.query<{ id: string }>(
      `INSERT INTO invitations (id, source_id, email, entitlement_ids, token_hash, expires_at, created_by, request_id, delivery_token, grant_duration_s)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (request_id) DO NOTHING RETURNING id`,
      [id, input.sourceId, email, input.entitlementIds, invitationTokenHash(token), input.expiresAt, input.actor, input.requestId ?? null, input.requestId ? token : null, input.grantDurationSeconds ?? null],
    );
    if (rows[0]) {
      const reason = input.requestId ? `access request ${input.requestId}` : 'admin API';
      await audit(tx, input.actor, 'invitation.created', id, reason, {
        source: input.sourceId,
        email,
        entitlementIds: input.entitlementIds,
        expiresAt: input.expiresAt,
        ...(input.requestId ? { requestId: input.requestId, grantDurationSeconds: input.grantDurationSeconds ?? null } : {}),
      });
      if (input.requestId) await tx.query('UPDATE access_requests SET invitation_id = $2, updated_at = now() WHERE id = $1', [input.requestId, id]);
      return { id, token, newUser: null as boolean | null, auth0UserId: null as string | null, expiresAt: input.expiresAt };
    }
    // Made by an earlier run for the same request: carry on with it, or answer it as it is.
    const { rows: known } = await tx.query<{ id: string; delivery_token: string | null; status: string; new_user: boolean | null; auth0_user_id: string | null; expires_at: Date }>(
      'SELECT id, delivery_token, status, new_user, auth0_user_id, expires_at FROM invitations WHERE request_id = $1 FOR UPDATE',
      [input.requestId],
    );
    const k = known[0]!;
    if (k.status !== 'pending' || k.delivery_token === null) return { id: k.id, token: null, newUser: k.new_user, auth0UserId: k.auth0_user_id, expiresAt: k.expires_at };
    return { id: k.id, token: k.delivery_token, newUser: k.new_user, auth0UserId: k.auth0_user_id, expiresAt: k.expires_at };
  });
  const { id, token } = recorded;
  if (token === null) return (await getInvitation(db, id))!;
  const expiresAt = recorded.expiresAt;
  try {
    const mark = { [INVITED_KEY]: { pending: true, invitationId: id } };
    let user = await source.users.findByEmail('invite', email);
    let newUser: boolean;
    if (!user) {
      // Recorded before Auth0 is asked: a retry that then finds this user knows it was made for the invitation.
      await db.query('UPDATE invitations SET new_user = true WHERE id = $1', [id]);
      user = await source.api.call('auth0 source: invite', (m) =>
        m.users.create({ connection: source.config.connection, email, password: unguessablePassword(), email_verified: false, verify_email: false, app_metadata: mark }),
      );
      newUser = true;
    } else {
      newUser = recorded.newUser === true && (recorded.auth0UserId === null || recorded.auth0UserId === user.user_id);
      if (!newUser) await db.query('UPDATE invitations SET new_user = false WHERE id = $1', [id]);
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
          ttl_sec: Math.max(60, Math.min(source.config.ticketTtlSeconds ?? 432_000, Math.ceil((expiresAt.getTime() - Date.now()) / 1000))),
          mark_email_as_verified: true,
          result_url: source.config.ticketResultUrl ?? url,
        }),
      );
      passwordUrl = typeof ticket?.ticket === 'string' ? ticket.ticket : undefined;
      if (!passwordUrl) throw new PermanentError('Auth0 answered the password-change ticket without a URL', 'invalidResponse');
    }
    const entitlements = (await getInvitation(db, id))!.entitlements;
    await input.notify({ id, type: 'invitation.created', source: input.sourceId, email, url, ...(passwordUrl && { passwordUrl }), entitlements, expiresAt: expiresAt.toISOString() });
    await db.query('UPDATE invitations SET delivered_at = now(), delivery_error = NULL, delivery_token = NULL WHERE id = $1', [id]);
  } catch (err) {
    await db.query('UPDATE invitations SET delivery_error = $2 WHERE id = $1', [id, (err as Error).message]);
    throw err;
  }
  return (await getInvitation(db, id))!;
}

/**
 * Revokes a pending invitation: its link stops working. An access request waiting on it (status
 * `invited`) records `revoked`, with its audit event. Answers the invitation and the request it
 * belongs to, if any.
 */
export async function revokeInvitation(db: Db, id: string, actor: string, reason = 'admin API'): Promise<Invitation | 'not-found' | 'not-pending'> {
  return await withTransaction(db, async (tx) => {
    const { rows } = await tx.query<{ status: string; request_id: string | null }>(
      'SELECT status, request_id FROM invitations WHERE id = $1 FOR UPDATE',
      [id],
    );
    if (!rows[0]) return 'not-found';
    if (rows[0].status !== 'pending') return 'not-pending';
    await tx.query(`UPDATE invitations SET status = 'revoked', revoked_at = now(), revoked_by = $2, delivery_token = NULL WHERE id = $1`, [id, actor]);
    await audit(tx, actor, 'invitation.revoked', id, reason, { status: 'revoked' });
    const requestId = rows[0].request_id;
    if (requestId) {
      const why = `the invitation was revoked by ${actor}${reason !== 'admin API' ? `: ${reason}` : ''}`;
      const { rows: moved } = await tx.query(
        `UPDATE access_requests SET status = 'revoked', status_reason = $2, updated_at = now() WHERE id = $1 AND status IN ('approved', 'invited') RETURNING id`,
        [requestId, why],
      );
      if (moved[0]) {
        await tx.query(`INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after) VALUES ($1, 'access-request.revoked', 'AccessRequest', $2, $3, $4)`, [
          actor,
          requestId,
          why,
          JSON.stringify({ status: 'revoked', invitationId: id }),
        ]);
      }
    }
    return (await getInvitation(tx, id))!;
  });
}

export type RedeemRefusal = 'unknown' | 'used' | 'expired' | 'revoked' | 'wrong-email' | 'conflict';

export type RedeemResult =
  | { ok: true; invitationId: string; userId: string; entitlements: string[]; /** The access request the invitation fulfils, if any (not part of the API answer). */ requestId?: string }
  | { ok: false; reason: RedeemRefusal; message: string };

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
    const { rows } = await tx.query<{ id: string; email: string; status: string; expired: boolean; token_hash: Buffer; entitlement_ids: string[]; request_id: string | null; grant_duration_s: number | null }>(
      'SELECT id, email, status, expires_at <= now() AS expired, token_hash, entitlement_ids, request_id, grant_duration_s FROM invitations WHERE id = $1 FOR UPDATE',
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
    // Time-bound when the invitation was made for a request with a duration: from now, for that long.
    const { rows: granted } = await tx.query<{ id: string; entitlement_id: string }>(
      `WITH g AS (
         INSERT INTO grants (id, user_id, entitlement_id, reason, valid_until)
         SELECT gen_random_uuid(), $1, e, $2, CASE WHEN $4::integer IS NULL THEN NULL ELSE now() + $4::integer * interval '1 second' END FROM unnest($3::uuid[]) AS e
         ON CONFLICT (user_id, entitlement_id, reason) DO UPDATE SET status = 'active', ended_at = NULL, valid_until = EXCLUDED.valid_until
         RETURNING id, user_id, entitlement_id, reason, status, valid_from, valid_until),
       a AS (
         INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after)
         SELECT $2, 'grant.created', 'Grant', g.id::text, 'invitation redeemed',
                jsonb_build_object('id', g.id, 'userId', g.user_id, 'entitlementId', g.entitlement_id, 'reason', g.reason, 'status', g.status,
                                   'validFrom', g.valid_from, 'validUntil', g.valid_until)
           FROM g)
       SELECT id, entitlement_id FROM g`,
      [userId, reason, inv.entitlement_ids, inv.grant_duration_s],
    );
    await tx.query(`UPDATE invitations SET status = 'redeemed', redeemed_at = now(), user_id = $2, auth0_user_id = $3, delivery_token = NULL WHERE id = $1`, [inv.id, userId, input.auth0UserId]);
    await audit(tx, `auth0:${input.auth0UserId}`, 'invitation.redeemed', inv.id, 'first login', { userId, email: input.email.toLowerCase() });
    if (inv.request_id) {
      // The access request that invited: fulfilled by this redemption, its grant the one just made.
      const { rows: moved } = await tx.query(
        `UPDATE access_requests SET status = 'fulfilled', fulfilled_at = now(), updated_at = now(), status_reason = $3,
                grant_id = (SELECT g FROM unnest($4::uuid[], $5::uuid[]) AS x(g, e) WHERE e = (policy->>'entitlementId')::uuid LIMIT 1)
          WHERE id = $1 AND status IN ('approved', 'invited') AND invitation_id = $2 RETURNING id`,
        [inv.request_id, inv.id, `the invitation was redeemed at the first login of ${input.email.toLowerCase()}`, granted.map((g) => g.id), granted.map((g) => g.entitlement_id)],
      );
      if (moved[0]) {
        await tx.query(`INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after) VALUES ($1, 'access-request.fulfilled', 'AccessRequest', $2, 'invitation redeemed', $3)`, [
          `auth0:${input.auth0UserId}`,
          inv.request_id,
          JSON.stringify({ status: 'fulfilled', invitationId: inv.id, userId }),
        ]);
      }
    }
    await enqueueUserChanges(tx, [userId]);
    const { rows: names } = await tx.query<{ n: string }>(`SELECT e.connector_id || '/' || e.name AS n FROM entitlements e WHERE e.id = ANY($1) ORDER BY 1`, [inv.entitlement_ids]);
    return { ok: true, invitationId: inv.id, userId, entitlements: names.map((r) => r.n), ...(inv.request_id ? { requestId: inv.request_id } : {}) };
  });
}
