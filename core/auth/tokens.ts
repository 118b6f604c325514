/**
 * API bearer tokens. A token is shown once, when created; the database keeps only its SHA-256
 * digest. Tokens are high-entropy random strings, so a fast digest is safe here (unlike passwords),
 * and looking a digest up by index reveals nothing about the token; the stored digest is still
 * compared with `timingSafeEqual` before a token is accepted.
 */
import { hash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type { Db } from '../db/pool.js';
import { withTransaction } from '../db/pool.js';

/**
 * What a token may do: read SCIM resources, write them, use the admin API, scrape /metrics, make
 * access requests and decisions (`requests`: as the token's own user, or with `requests:act-as`
 * as any user the caller names, for a trusted front end such as a chat app or a portal).
 */
export const TOKEN_SCOPES = ['scim:read', 'scim:write', 'admin', 'metrics:read', 'requests', 'requests:act-as'] as const;
export type TokenScope = (typeof TOKEN_SCOPES)[number];

export interface TokenIdentity {
  id: string;
  name: string;
  scopes: TokenScope[];
  /** The directory user a personal token acts as; absent for a token of no person. */
  userId?: string;
}

export const TOKEN_PREFIX = 'scimgw_';

export function hashToken(token: string): Buffer {
  // The one-shot form: this runs on every authenticated request.
  return hash('sha256', token, 'buffer');
}

export function generateToken(): string {
  return TOKEN_PREFIX + randomBytes(32).toString('base64url');
}

export async function createToken(
  db: Db,
  name: string,
  scopes: TokenScope[],
  token: string = generateToken(),
  userId?: string,
): Promise<{ identity: TokenIdentity; token: string }> {
  const id = randomUUID();
  await db.query('INSERT INTO api_tokens (id, name, scopes, token_hash, user_id) VALUES ($1, $2, $3, $4, $5)', [
    id,
    name,
    scopes,
    hashToken(token),
    userId ?? null,
  ]);
  return { identity: { id, name, scopes, ...(userId ? { userId } : {}) }, token };
}

export async function revokeToken(db: Db, name: string): Promise<boolean> {
  const res = await db.query('UPDATE api_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL', [name]);
  return (res.rowCount ?? 0) > 0;
}

/**
 * Makes `token` the active token called `name` (used for SCIM_TOKEN at start-up): nothing happens
 * if it already is; otherwise the previous token of that name is revoked. Safe when several
 * gateways start at once.
 */
export async function ensureNamedToken(db: Db, name: string, scopes: TokenScope[], token: string): Promise<void> {
  const digest = hashToken(token);
  await withTransaction(db, async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`api_tokens:${name}`]);
    const { rows } = await tx.query<{ token_hash: Buffer; scopes: string[] }>(
      'SELECT token_hash, scopes FROM api_tokens WHERE name = $1 AND revoked_at IS NULL',
      [name],
    );
    const current = rows[0];
    if (current && timingSafeEqual(current.token_hash, digest) && sameScopes(current.scopes, scopes)) return;
    await tx.query('UPDATE api_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL', [name]);
    // The same secret may have been configured before: revive that row rather than duplicate it.
    const revived = await tx.query(
      'UPDATE api_tokens SET name = $2, scopes = $3, revoked_at = NULL WHERE token_hash = $1',
      [digest, name, scopes],
    );
    if ((revived.rowCount ?? 0) > 0) return;
    await tx.query('INSERT INTO api_tokens (id, name, scopes, token_hash) VALUES ($1, $2, $3, $4)', [
      randomUUID(),
      name,
      scopes,
      digest,
    ]);
  });
}

function sameScopes(a: string[], b: string[]): boolean {
  return a.length === b.length && [...a].sort().join() === [...b].sort().join();
}

export interface CacheEntry {
  identity: TokenIdentity | null;
  expires: number;
}

/**
 * Verifies bearer tokens against the database with a short in-memory cache, so a busy SCIM client
 * costs one lookup per token every few seconds instead of one per request. A revoked token stops
 * working within `cacheMs`.
 */
export class TokenVerifier {
  private readonly cache = new Map<string, CacheEntry>();

  constructor(
    private readonly db: Db,
    private readonly cacheMs = 5000,
  ) {}

  /** The cached answer for `token` (identity, or null for a refused token) and until when it holds; undefined when not known. */
  cached(token: string): CacheEntry | undefined {
    const hit = this.cache.get(hashToken(token).toString('base64'));
    return hit && hit.expires > Date.now() ? hit : undefined;
  }

  async verify(token: string): Promise<TokenIdentity | null> {
    const digest = hashToken(token);
    const key = digest.toString('base64');
    const now = Date.now();
    const hit = this.cache.get(key);
    if (hit && hit.expires > now) return hit.identity;

    const { rows } = await this.db.query<{ id: string; name: string; scopes: TokenScope[]; token_hash: Buffer; user_id: string | null }>(
      'SELECT id, name, scopes, token_hash, user_id FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL',
      [digest],
    );
    const row = rows[0];
    const identity =
      row && timingSafeEqual(row.token_hash, digest) ? { id: row.id, name: row.name, scopes: row.scopes, ...(row.user_id ? { userId: row.user_id } : {}) } : null;
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(key, { identity, expires: now + this.cacheMs });
    if (identity) {
      // Best effort; at most one write per token per cache period.
      this.db.query('UPDATE api_tokens SET last_used_at = now() WHERE id = $1', [identity.id]).catch(() => undefined);
    }
    return identity;
  }
}
