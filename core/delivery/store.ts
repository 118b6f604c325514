/**
 * Deliveries: files a connector hands to one user through a one-time, expiring download link
 * (`Deliver` in the connector SDK, @scim-gateway/connector-sdk), kept in the `deliveries` table only as ciphertext
 * (see ./crypto.ts for what is stored and why the database alone cannot open it).
 *
 * Life of a link:
 *
 * 1. {@link createDeliver} (in the worker, inside a connector's activity) validates the artifact,
 *    and in one transaction wipes every still-usable link for the same user, connector and file
 *    name (`superseded`: at most one live link per file), inserts the new one, and audits
 *    `delivery.created`. Only then does it notify the user (./notify.ts), so a notified link always
 *    works. If notifying fails, the link nobody heard of is withdrawn at once (`undelivered`) and
 *    the error goes back to the connector; the engine retries the activity, and the retry makes a
 *    fresh link. A retried activity therefore never leaves two live links behind.
 * 2. {@link redeemDelivery} (the gateway's GET /downloads/:token) marks the link downloaded and
 *    takes its content in a single statement, so of two concurrent requests exactly one gets the
 *    file; the content is gone from the database from then on.
 * 3. {@link purgeDeliveries} (a sweep in every gateway) wipes the content of links that expired
 *    unused, and deletes rows once their expiry is older than the retention, so the admin listing
 *    still shows recent links and an expired link answers 410 rather than 404 for a while.
 *
 * The token and the link are never stored, logged, audited or put in an error message.
 */
import { randomUUID } from 'node:crypto';
import { PermanentError, type Artifact, type Deliver, type DeliveryLink } from '@scim-gateway/connector-sdk';
import { withTransaction, type Db } from '../db/pool.js';
import { isWellFormedToken, newToken, open, seal, tokenHash } from './crypto.js';
import type { Notify } from './notify.js';

/** Largest artifact accepted, in bytes: profiles and key bundles are a few kilobytes. */
export const MAX_ARTIFACT_BYTES = 1_048_576;
/** How long a row stays after its link expired (the content is wiped at expiry). */
export const DEFAULT_RETENTION_MS = 30 * 86_400_000;
/** A file name that needs no quoting or escaping anywhere (Content-Disposition, file systems). */
const FILENAME = /^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$/;
/** `type/subtype`, optionally with a charset; nothing that could inject a header. */
const CONTENT_TYPE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}(;\s?charset=[A-Za-z0-9._-]{1,40})?$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface DeliveryOptions {
  db: Db;
  /** The gateway's external base URL; links are `<publicUrl>/downloads/<token>`. */
  publicUrl: string;
  notify: Notify;
  /** Lifetime of a link whose artifact names none. */
  defaultTtlMs: number;
  /** Longest lifetime a link may have, whatever the artifact asks for. */
  maxTtlMs: number;
}

function invalid(message: string): PermanentError {
  return new PermanentError(`delivery: ${message}`, 'invalidArtifact');
}

/** The primary (or first) email in a SCIM user resource. */
function emailOf(resource: Record<string, unknown>): string | null {
  const emails = Array.isArray(resource.emails) ? (resource.emails as Array<{ value?: unknown; primary?: unknown }>) : [];
  const pick = emails.find((e) => e.primary === true && typeof e.value === 'string') ?? emails.find((e) => typeof e.value === 'string');
  return typeof pick?.value === 'string' ? pick.value : null;
}

/** The link for `token` under `publicUrl` (any path prefix of publicUrl is kept). */
export function downloadUrl(publicUrl: string, token: string): string {
  return `${publicUrl.replace(/\/+$/, '')}/downloads/${token}`;
}

/**
 * The `Deliver` of one connector: every delivery it makes is recorded and audited under
 * `connectorId`, whatever the artifact says.
 */
export function createDeliver(opts: DeliveryOptions, connectorId: string): Deliver {
  const actor = `connector:${connectorId}`;
  return async (artifact: Artifact): Promise<DeliveryLink> => {
    if (typeof artifact.userId !== 'string' || !UUID.test(artifact.userId)) throw invalid('userId must be the gateway id (a UUID) of a user');
    if (typeof artifact.filename !== 'string' || !FILENAME.test(artifact.filename)) {
      throw invalid('filename must be 1 to 128 letters, digits, ".", "_", "@", "+" or "-", starting with a letter or digit');
    }
    if (typeof artifact.contentType !== 'string' || !CONTENT_TYPE.test(artifact.contentType)) throw invalid('contentType must be a media type such as application/x-openvpn-profile');
    const content = typeof artifact.content === 'string' ? Buffer.from(artifact.content, 'utf8') : Buffer.from(artifact.content);
    if (content.length > MAX_ARTIFACT_BYTES) throw invalid(`content is ${content.length} bytes; at most ${MAX_ARTIFACT_BYTES} are accepted`);
    const ttl = artifact.ttlMs ?? opts.defaultTtlMs;
    if (!Number.isSafeInteger(ttl) || ttl <= 0) throw invalid('ttlMs must be a positive whole number of milliseconds');
    const ttlMs = Math.min(ttl, opts.maxTtlMs);

    const { rows: users } = await opts.db.query<{ user_name: string; resource: Record<string, unknown>; active: boolean; deleted: boolean }>(
      'SELECT user_name, resource, active, deleted_at IS NOT NULL AS deleted FROM users WHERE id = $1',
      [artifact.userId],
    );
    const user = users[0];
    if (!user) throw new PermanentError(`delivery: no user ${artifact.userId}`, 'notFound');
    // A user on the way out must not receive fresh credentials.
    if (user.deleted || !user.active) throw new PermanentError(`delivery: user ${artifact.userId} is ${user.deleted ? 'deleted' : 'inactive'}; nothing is delivered`, 'userInactive');

    const id = randomUUID();
    const token = newToken();
    const sealed = seal(token, id, content);
    const expiresAt = await withTransaction(opts.db, async (tx) => {
      const superseded = await tx.query<{ id: string }>(
        `UPDATE deliveries SET ciphertext = NULL, nonce = NULL, auth_tag = NULL, revoked_at = now(), revoked_reason = 'superseded'
          WHERE user_id = $1 AND connector_id = $2 AND filename = $3 AND ciphertext IS NOT NULL
          RETURNING id`,
        [artifact.userId, connectorId, artifact.filename],
      );
      const { rows } = await tx.query<{ expires_at: Date }>(
        `INSERT INTO deliveries (id, token_hash, user_id, connector_id, filename, content_type, ciphertext, nonce, auth_tag, size, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now() + $11 * interval '1 millisecond')
         RETURNING expires_at`,
        [id, tokenHash(token), artifact.userId, connectorId, artifact.filename, artifact.contentType, sealed.ciphertext, sealed.nonce, sealed.authTag, content.length, ttlMs],
      );
      const at = rows[0]!.expires_at;
      await tx.query(
        `INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after) VALUES ($1, 'delivery.created', 'User', $2, 'delivery', $3)`,
        [actor, artifact.userId, JSON.stringify({ deliveryId: id, connectorId, filename: artifact.filename, size: content.length, expiresAt: at.toISOString(), superseded: superseded.rows.map((r) => r.id) })],
      );
      return at;
    });

    const link: DeliveryLink = { url: downloadUrl(opts.publicUrl, token), expiresAt: expiresAt.toISOString() };
    try {
      await opts.notify({
        id,
        type: 'delivery.created',
        userId: artifact.userId,
        userName: user.user_name,
        email: emailOf(user.resource),
        connectorId,
        filename: artifact.filename,
        url: link.url,
        expiresAt: link.expiresAt,
      });
    } catch (err) {
      // Nobody is known to hold this link: withdraw it rather than keep its content until expiry.
      await withTransaction(opts.db, async (tx) => {
        const { rowCount } = await tx.query(
          `UPDATE deliveries SET ciphertext = NULL, nonce = NULL, auth_tag = NULL, revoked_at = now(), revoked_reason = 'undelivered'
            WHERE id = $1 AND ciphertext IS NOT NULL`,
          [id],
        );
        if (rowCount) {
          await tx.query(
            `INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after) VALUES ($1, 'delivery.withdrawn', 'User', $2, 'the user could not be notified', $3)`,
            [actor, artifact.userId, JSON.stringify({ deliveryId: id, connectorId, filename: artifact.filename })],
          );
        }
      }).catch(() => {});
      throw err;
    }
    return link;
  };
}

export type Redeemed =
  | { status: 'ok'; id: string; filename: string; contentType: string; content: Buffer }
  /** Known, but downloaded, superseded, withdrawn or expired. */
  | { status: 'gone' }
  /** No such link (or not even the shape of one). */
  | { status: 'notFound' };

/**
 * Serves a link once. The row is claimed, marked downloaded and stripped of its content by one
 * statement (the locking read re-checks its conditions after waiting, so a concurrent request
 * that lost the race finds nothing), and the download is audited in that same statement.
 */
export async function redeemDelivery(db: Db, token: string, context: { remoteAddress?: string } = {}): Promise<Redeemed> {
  if (!isWellFormedToken(token)) return { status: 'notFound' };
  const hash = tokenHash(token);
  const { rows } = await db.query<{ id: string; filename: string; content_type: string; ciphertext: Buffer; nonce: Buffer; auth_tag: Buffer }>(
    `WITH hit AS (
       SELECT id, ciphertext, nonce, auth_tag FROM deliveries
        WHERE token_hash = $1 AND ciphertext IS NOT NULL AND expires_at > now()
          -- A user deactivated or deleted since the link was made gets nothing from it.
          AND EXISTS (SELECT 1 FROM users u WHERE u.id = deliveries.user_id AND u.deleted_at IS NULL AND u.active)
        FOR UPDATE OF deliveries
     ), taken AS (
       UPDATE deliveries d SET ciphertext = NULL, nonce = NULL, auth_tag = NULL, downloaded_at = now()
         FROM hit WHERE d.id = hit.id
       RETURNING d.id, d.user_id, d.connector_id, d.filename, d.content_type, d.size, hit.ciphertext, hit.nonce, hit.auth_tag
     ), audited AS (
       INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after)
       SELECT 'download-link', 'delivery.downloaded', 'User', taken.user_id::text, 'delivery',
              jsonb_build_object('deliveryId', taken.id, 'connectorId', taken.connector_id, 'filename', taken.filename,
                                 'size', taken.size, 'remoteAddress', $2::text)
         FROM taken
     )
     SELECT id, filename, content_type, ciphertext, nonce, auth_tag FROM taken`,
    [hash, context.remoteAddress ?? null],
  );
  const row = rows[0];
  if (row) {
    try {
      const content = open(token, row.id, { ciphertext: row.ciphertext, nonce: row.nonce, authTag: row.auth_tag });
      return { status: 'ok', id: row.id, filename: row.filename, contentType: row.content_type, content };
    } catch {
      // Only a row altered in the database fails authentication; its content is gone all the same.
      return { status: 'gone' };
    }
  }
  // Not served: wipe what an expired link (or one whose user is no longer active) still holds, and
  // tell "was a link" from "never was".
  const { rowCount } = await db.query('UPDATE deliveries SET ciphertext = NULL, nonce = NULL, auth_tag = NULL WHERE token_hash = $1', [hash]);
  return rowCount ? { status: 'gone' } : { status: 'notFound' };
}

/**
 * Wipes the content of every link that expired unused, and deletes rows whose expiry is older than
 * `retentionMs`. Safe to run from any number of gateways at once.
 */
export async function purgeDeliveries(db: Db, opts: { retentionMs?: number } = {}): Promise<{ wiped: number; deleted: number }> {
  const wiped = await db.query('UPDATE deliveries SET ciphertext = NULL, nonce = NULL, auth_tag = NULL WHERE ciphertext IS NOT NULL AND expires_at <= now()');
  const deleted = await db.query(`DELETE FROM deliveries WHERE expires_at <= now() - $1 * interval '1 millisecond'`, [opts.retentionMs ?? DEFAULT_RETENTION_MS]);
  return { wiped: wiped.rowCount ?? 0, deleted: deleted.rowCount ?? 0 };
}

export type DeliveryState = 'pending' | 'downloaded' | 'expired' | 'superseded' | 'undelivered';

export interface DeliverySummary {
  id: string;
  connectorId: string;
  filename: string;
  contentType: string;
  size: number;
  createdAt: string;
  expiresAt: string;
  downloadedAt: string | null;
  state: DeliveryState;
}

/** A user's deliveries, newest first, for administrators: never the token, link or content. */
export async function listDeliveries(db: Db, userId: string, limit = 100): Promise<DeliverySummary[]> {
  const { rows } = await db.query<{
    id: string;
    connector_id: string;
    filename: string;
    content_type: string;
    size: number;
    created_at: Date;
    expires_at: Date;
    downloaded_at: Date | null;
    revoked_reason: 'superseded' | 'undelivered' | null;
    expired: boolean;
  }>(
    `SELECT id, connector_id, filename, content_type, size, created_at, expires_at, downloaded_at, revoked_reason, expires_at <= now() AS expired
       FROM deliveries WHERE user_id = $1 ORDER BY created_at DESC, id LIMIT $2`,
    [userId, limit],
  );
  return rows.map((r) => ({
    id: r.id,
    connectorId: r.connector_id,
    filename: r.filename,
    contentType: r.content_type,
    size: r.size,
    createdAt: r.created_at.toISOString(),
    expiresAt: r.expires_at.toISOString(),
    downloadedAt: r.downloaded_at?.toISOString() ?? null,
    state: r.downloaded_at ? 'downloaded' : (r.revoked_reason ?? (r.expired ? 'expired' : 'pending')),
  }));
}
