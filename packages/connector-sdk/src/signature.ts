/**
 * Signing of webhook deliveries, shared by the connector (which signs) and receivers (which verify).
 *
 * Every delivery carries two headers:
 *
 *   x-scim-gateway-timestamp: <unix seconds when the request was signed>
 *   x-scim-gateway-signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>
 *
 * The timestamp is inside the signed text, so it cannot be changed without breaking the signature,
 * and a receiver that rejects timestamps outside a small window (default five minutes) limits a
 * captured request to that window. Within it, the unique delivery `id` in the body lets a receiver
 * refuse a request it has already seen. Verification compares in constant time.
 *
 * A receiver written in Node can import this module; docs/writing-a-connector.md describes the scheme
 * for receivers in other languages.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const TIMESTAMP_HEADER = 'x-scim-gateway-timestamp';
export const SIGNATURE_HEADER = 'x-scim-gateway-signature';
/** The scheme prefix in the signature header; a future scheme gets a new prefix, not a new header. */
export const SIGNATURE_SCHEME = 'v1';
/** How far (in seconds, either direction) a timestamp may be from the receiver's clock by default. */
export const DEFAULT_TOLERANCE_SECONDS = 300;

const HMAC_HEX_LENGTH = 64;

function hmac(secret: string, timestamp: string, body: string | Uint8Array): Buffer {
  return createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest();
}

/**
 * The value of the signature header for `body` signed at `timestamp` (unix seconds). `body` must be
 * the exact bytes sent: a receiver verifies the raw body, before any JSON parsing.
 */
export function signPayload(secret: string, timestamp: number, body: string | Uint8Array): string {
  if (!Number.isSafeInteger(timestamp) || timestamp < 0) throw new RangeError('timestamp must be whole unix seconds');
  return `${SIGNATURE_SCHEME}=${hmac(secret, String(timestamp), body).toString('hex')}`;
}

export type VerifyFailure =
  /** A header is absent or empty. */
  | 'missingHeader'
  /** The timestamp is not whole unix seconds. */
  | 'malformedTimestamp'
  /** The timestamp is further from now than the tolerance: a replay, or a badly wrong clock. */
  | 'timestampOutOfTolerance'
  /** No `v1=<64 hex digits>` in the signature header. */
  | 'malformedSignature'
  /** Well formed, but made with another secret or over other bytes. */
  | 'signatureMismatch';

export type VerifyResult = { ok: true; timestamp: number } | { ok: false; reason: VerifyFailure };

export interface VerifyOptions {
  /** Allowed distance between the timestamp and now, in seconds; default {@link DEFAULT_TOLERANCE_SECONDS}. */
  toleranceSeconds?: number;
  /** The receiver's clock in unix seconds; default the system clock. */
  now?: number;
}

/**
 * Checks a delivery. `secret` may be a list so a receiver can accept the old and the new secret while
 * one is rotated. The signature header may carry several comma-separated `v1=` values; one matching
 * value is enough. Checks the timestamp before the signature, and compares every candidate in full,
 * so the time taken says nothing about how much of a signature was right.
 */
export function verifySignature(
  secret: string | readonly string[],
  body: string | Uint8Array,
  timestampHeader: string | null | undefined,
  signatureHeader: string | null | undefined,
  options: VerifyOptions = {},
): VerifyResult {
  if (!timestampHeader || !signatureHeader) return { ok: false, reason: 'missingHeader' };
  const ts = timestampHeader.trim();
  if (!/^\d{1,12}$/.test(ts)) return { ok: false, reason: 'malformedTimestamp' };
  const timestamp = Number(ts);
  const now = options.now ?? Math.floor(Date.now() / 1000);
  const tolerance = options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  if (Math.abs(now - timestamp) > tolerance) return { ok: false, reason: 'timestampOutOfTolerance' };

  const candidates: Buffer[] = [];
  for (const part of signatureHeader.split(',')) {
    const [scheme, value] = part.trim().split('=', 2);
    if (scheme === SIGNATURE_SCHEME && value && value.length === HMAC_HEX_LENGTH && /^[0-9a-fA-F]+$/.test(value)) {
      candidates.push(Buffer.from(value, 'hex'));
    }
  }
  if (candidates.length === 0) return { ok: false, reason: 'malformedSignature' };

  let matched = false;
  for (const key of typeof secret === 'string' ? [secret] : secret) {
    const expected = hmac(key, ts, body);
    for (const candidate of candidates) {
      // Deliberately no early exit: every comparison runs whatever the outcome.
      if (timingSafeEqual(expected, candidate)) matched = true;
    }
  }
  return matched ? { ok: true, timestamp } : { ok: false, reason: 'signatureMismatch' };
}
