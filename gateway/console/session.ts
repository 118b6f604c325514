/**
 * Console sessions and the cookies that carry them, written with node:crypto rather than
 * @fastify/session: the session lives in PostgreSQL (so signing out ends it everywhere and a
 * gateway restart keeps it), and the cookie is only a random id with an HMAC, which is a few lines.
 *
 * - `console_session`: `<id>.<hmac>`; the table keeps SHA-256(id). HttpOnly, SameSite=Lax, Path=/console,
 *   Secure over HTTPS. A new id at every sign-in (no session fixation).
 * - `console_login`: the state, nonce, PKCE verifier and return path of a sign-in in progress,
 *   signed, for ten minutes.
 * - `console_csrf`: a random value the local sign-in form repeats (double submit), before any session exists.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Db } from '../../core/db/pool.js';

export const SESSION_COOKIE = 'console_session';
export const LOGIN_COOKIE = 'console_login';
export const PRE_CSRF_COOKIE = 'console_csrf';

export interface ConsoleSession {
  userId: string;
  userName: string;
  displayName: string | null;
  csrf: string;
  via: 'oidc' | 'local';
  /** May use the administrators' pages: a member of CONSOLE_ADMIN_GROUP, or anyone under the local sign-in. */
  admin: boolean;
}

function b64(buf: Buffer): string {
  return buf.toString('base64url');
}

/** Equal strings, compared in constant time. */
export function sameSecret(a: string | undefined, b: string | undefined): boolean {
  if (typeof a !== 'string' || typeof b !== 'string') return false;
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export class Cookies {
  constructor(private readonly secret: string) {}

  sign(value: string): string {
    return `${value}.${b64(createHmac('sha256', this.secret).update(value).digest())}`;
  }

  /** The value of a signed cookie, or undefined when it is absent or its signature is wrong. */
  unsign(signed: string | undefined): string | undefined {
    if (!signed) return undefined;
    const dot = signed.lastIndexOf('.');
    if (dot <= 0) return undefined;
    const value = signed.slice(0, dot);
    return sameSecret(this.sign(value), signed) ? value : undefined;
  }
}

/** Cookies of the request, parsed (first value of each name). */
export function readCookies(request: FastifyRequest): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (request.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    if (!(name in out)) {
      try {
        out[name] = decodeURIComponent(part.slice(eq + 1).trim());
      } catch {
        // a malformed value is ignored
      }
    }
  }
  return out;
}

export function setCookie(request: FastifyRequest, reply: FastifyReply, name: string, value: string, maxAgeSeconds: number): void {
  const attrs = [`${name}=${encodeURIComponent(value)}`, 'Path=/console', 'HttpOnly', 'SameSite=Lax', `Max-Age=${maxAgeSeconds}`];
  if (request.protocol === 'https') attrs.push('Secure');
  const existing = reply.getHeader('set-cookie');
  const list = Array.isArray(existing) ? existing : typeof existing === 'string' ? [existing] : [];
  reply.header('set-cookie', [...list, attrs.join('; ')]);
}

export function clearCookie(request: FastifyRequest, reply: FastifyReply, name: string): void {
  setCookie(request, reply, name, '', 0);
}

export function randomToken(bytes = 32): string {
  return b64(randomBytes(bytes));
}

function hashId(id: string): Buffer {
  return createHash('sha256').update(id).digest();
}

export class SessionStore {
  constructor(
    private readonly db: Db,
    private readonly cookies: Cookies,
    private readonly ttlSeconds: number,
    /** Whether sessions of the local sign-in still count (not once an identity provider is configured). */
    private readonly acceptLocal: boolean,
    /** The directory group (displayName or id) whose direct members are console administrators. */
    private readonly adminGroup: string | undefined,
  ) {}

  /** Starts a new session for the user (a fresh id, whatever cookie came in) and sets its cookie. */
  async start(request: FastifyRequest, reply: FastifyReply, userId: string, via: 'oidc' | 'local'): Promise<void> {
    const old = this.cookies.unsign(readCookies(request)[SESSION_COOKIE]);
    if (old) await this.db.query('DELETE FROM console_sessions WHERE id_hash = $1', [hashId(old)]);
    const id = randomToken();
    await this.db.query(
      `INSERT INTO console_sessions (id_hash, user_id, csrf, via, expires_at) VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))`,
      [hashId(id), userId, randomToken(), via, this.ttlSeconds],
    );
    // Expired sessions of anyone are cleared on the way.
    await this.db.query('DELETE FROM console_sessions WHERE expires_at < now()');
    setCookie(request, reply, SESSION_COOKIE, this.cookies.sign(id), this.ttlSeconds);
  }

  /** The request's live session with its active directory user, or undefined. */
  async get(request: FastifyRequest): Promise<ConsoleSession | undefined> {
    const id = this.cookies.unsign(readCookies(request)[SESSION_COOKIE]);
    if (!id) return undefined;
    const { rows } = await this.db.query<{ user_id: string; user_name: string; display_name: string | null; csrf: string; via: 'oidc' | 'local'; admin: boolean }>(
      `SELECT s.user_id, u.user_name, u.display_name, s.csrf, s.via,
              (s.via = 'local' OR EXISTS (SELECT 1 FROM group_members m JOIN groups g ON g.id = m.group_id
                                           WHERE m.member_id = u.id AND g.deleted_at IS NULL
                                             AND (g.id::text = $3 OR lower(g.display_name) = lower($3)))) AS admin
         FROM console_sessions s JOIN users u ON u.id = s.user_id
        WHERE s.id_hash = $1 AND s.expires_at > now() AND u.deleted_at IS NULL AND u.active AND (s.via <> 'local' OR $2)`,
      [hashId(id), this.acceptLocal, this.adminGroup ?? null],
    );
    const row = rows[0];
    return row ? { userId: row.user_id, userName: row.user_name, displayName: row.display_name, csrf: row.csrf, via: row.via, admin: row.admin === true } : undefined;
  }

  /** Ends the request's session (the row is deleted, so a copy of the cookie is worthless) and clears the cookie. */
  async end(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const id = this.cookies.unsign(readCookies(request)[SESSION_COOKIE]);
    if (id) await this.db.query('DELETE FROM console_sessions WHERE id_hash = $1', [hashId(id)]);
    clearCookie(request, reply, SESSION_COOKIE);
  }
}

/**
 * Where to go after signing in: only a path inside the console (no scheme, host, `//` or
 * backslash), so a crafted sign-in link cannot send anyone elsewhere.
 */
export function safeReturnPath(raw: unknown): string {
  if (typeof raw !== 'string') return '/console';
  return /^\/console(?:[/?][A-Za-z0-9\-._~/?=&%+]*)?$/.test(raw) && !raw.includes('//') ? raw : '/console';
}
