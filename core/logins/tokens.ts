/**
 * The short-lived signed tokens of a first login: the session token the status page is opened
 * with, and the continue token handed back to Auth0's /continue, which the post-login Action checks
 * in onContinuePostLogin. Both are compact JWS with HS256 (RFC 7515/7519 shape), written here with
 * node:crypto rather than a JWT library because the Action must verify them in plain JavaScript with
 * no npm modules (connectors/auth0/actions/gateway-login.js holds the same dozen lines), and the two
 * sides must agree byte for byte.
 *
 * Keys: the continue token is signed with the source's actionSecret itself (the Action holds it); the
 * session token with a key derived from it, so one can never pass for the other.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

function b64(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

export function signToken(key: string | Buffer, claims: Record<string, unknown>): string {
  const head = b64(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64(JSON.stringify(claims));
  const sig = createHmac('sha256', key).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

/** The claims of a token signed with `key` that has not expired; undefined otherwise. */
export function verifyToken(key: string | Buffer, token: string, now = Date.now()): Record<string, unknown> | undefined {
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  const [head, body, sig] = parts as [string, string, string];
  // The signature's text is compared, not its decoded bytes: base64url has several spellings of
  // the same bytes (the unused bits of the last character), and only the canonical one is accepted.
  const expected = Buffer.from(createHmac('sha256', key).update(`${head}.${body}`).digest('base64url'));
  const given = Buffer.from(sig);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
  let header: unknown;
  let claims: unknown;
  try {
    header = JSON.parse(Buffer.from(head, 'base64url').toString('utf8'));
    claims = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  if (!header || (header as { alg?: unknown }).alg !== 'HS256') return undefined;
  if (!claims || typeof claims !== 'object' || Array.isArray(claims)) return undefined;
  const exp = (claims as { exp?: unknown }).exp;
  if (typeof exp !== 'number' || exp * 1000 <= now) return undefined;
  return claims as Record<string, unknown>;
}

/** The claims without checking anything: only to find which source's key to verify with. */
export function peekClaims(token: string): Record<string, unknown> | undefined {
  try {
    const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as unknown;
    return claims && typeof claims === 'object' && !Array.isArray(claims) ? (claims as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

export function sessionKey(actionSecret: string): Buffer {
  return createHmac('sha256', actionSecret).update('scim-gateway login session').digest();
}

/** How long the status page may be used, and how long Auth0 accepts the continue token. */
export const SESSION_TTL_SECONDS = 600;
export const CONTINUE_TTL_SECONDS = 120;
