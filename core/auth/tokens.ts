/**
 * API bearer tokens. A token is shown once, when created; the database keeps only its SHA-256
 * digest. Tokens are high-entropy random strings, so a fast digest is safe here (unlike passwords),
 * and looking a digest up by index reveals nothing about the token; the stored digest is still
 * compared with `timingSafeEqual` before a token is accepted.
 */
import { hash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type { Db, Tx } from '../db/pool.js';
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
  db: Pick<Tx, 'query'>,
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

export async function revokeToken(db: Pick<Tx, 'query'>, name: string): Promise<boolean> {
  const res = await db.query('UPDATE api_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL', [name]);
  return (res.rowCount ?? 0) > 0;
}

// ------------------------------------------------------------------ administration (admin API and console)

/** What a token's name may be made of (one word: letters, digits and . _ : -), at most 200 characters. */
export const TOKEN_NAME_PATTERN = '^[A-Za-z0-9._:-]+$';
export const TOKEN_NAME_MAX = 200;

/** The live directory user (by id or userName, any case) a personal token is for; undefined when there is none. */
export async function tokenUserId(db: Pick<Tx, 'query'>, user: string): Promise<string | undefined> {
  const { rows } = await db.query<{ id: string }>('SELECT id FROM users WHERE deleted_at IS NULL AND (id::text = $1 OR lower(user_name) = lower($1))', [user]);
  return rows[0]?.id;
}

/** Who manages a token, for the audit log: the actor, and the channel as the event's reason ("admin API", "console"). */
export interface TokenAdmin {
  actor: string;
  reason: string;
}

/** An active token as administrators see it: never its secret nor its digest. */
export interface TokenListing extends TokenIdentity {
  createdAt: Date;
  lastUsedAt: Date | null;
}

/** An active token already has the name asked for. */
export class TokenNameTaken extends Error {
  constructor(name: string) {
    super(`an active token named "${name}" exists`);
    this.name = 'TokenNameTaken';
  }
}

async function auditToken(tx: Pick<Tx, 'query'>, by: TokenAdmin, action: string, name: string, scopes?: string[]): Promise<void> {
  await tx.query(`INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after) VALUES ($1, $2, 'ApiToken', $3, $4, $5)`, [
    by.actor,
    action,
    name,
    by.reason,
    scopes ? JSON.stringify({ scopes }) : null,
  ]);
}

/** Active tokens by name. */
export async function listActiveTokens(db: Pick<Tx, 'query'>): Promise<TokenListing[]> {
  const { rows } = await db.query<{ id: string; name: string; scopes: TokenScope[]; user_id: string | null; created_at: Date; last_used_at: Date | null }>(
    'SELECT id, name, scopes, user_id, created_at, last_used_at FROM api_tokens WHERE revoked_at IS NULL ORDER BY name',
  );
  return rows.map((r) => ({ id: r.id, name: r.name, scopes: r.scopes, ...(r.user_id ? { userId: r.user_id } : {}), createdAt: r.created_at, lastUsedAt: r.last_used_at }));
}

/** Issues a token and audits it (`token.created`); throws {@link TokenNameTaken}. The secret is in the answer only. */
export async function issueToken(
  db: Db,
  by: TokenAdmin,
  input: { name: string; scopes: TokenScope[]; userId?: string | undefined },
): Promise<{ identity: TokenIdentity; token: string; createdAt: Date }> {
  try {
    return await withTransaction(db, async (tx) => {
      const issued = await createToken(tx, input.name, input.scopes, undefined, input.userId);
      await auditToken(tx, by, 'token.created', input.name, input.scopes);
      return { ...issued, createdAt: new Date() };
    });
  } catch (err) {
    if ((err as { code?: string }).code === '23505') throw new TokenNameTaken(input.name);
    throw err;
  }
}

/**
 * Revokes the active token called `name` and issues a new one with the same name, scopes and user,
 * audited as `token.rotated`; undefined when there is no such token. `revokedDigest` is the old
 * token's digest (for {@link TokenVerifier.forget}).
 */
export async function rotateToken(
  db: Db,
  by: TokenAdmin,
  name: string,
): Promise<{ identity: TokenIdentity; token: string; createdAt: Date; revokedDigest: Buffer } | undefined> {
  return await withTransaction(db, async (tx) => {
    const { rows } = await tx.query<{ id: string; scopes: TokenScope[]; user_id: string | null; token_hash: Buffer }>(
      'SELECT id, scopes, user_id, token_hash FROM api_tokens WHERE name = $1 AND revoked_at IS NULL FOR UPDATE',
      [name],
    );
    const old = rows[0];
    if (!old) return undefined;
    await tx.query('UPDATE api_tokens SET revoked_at = now() WHERE id = $1', [old.id]);
    const issued = await createToken(tx, name, old.scopes, undefined, old.user_id ?? undefined);
    await auditToken(tx, by, 'token.rotated', name, old.scopes);
    return { ...issued, createdAt: new Date(), revokedDigest: old.token_hash };
  });
}

/** Revokes the active token called `name`, audited as `token.revoked`; answers its digest, or undefined when there is no such token. */
export async function revokeNamedToken(db: Db, by: TokenAdmin, name: string): Promise<Buffer | undefined> {
  return await withTransaction(db, async (tx) => {
    const { rows } = await tx.query<{ token_hash: Buffer }>('UPDATE api_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL RETURNING token_hash', [name]);
    if (!rows[0]) return undefined;
    await auditToken(tx, by, 'token.revoked', name);
    return rows[0].token_hash;
  });
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

  /** Drops what is cached for the token with this digest (just revoked here), so this process refuses it at once. */
  forget(digest: Buffer): void {
    this.cache.delete(digest.toString('base64'));
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
