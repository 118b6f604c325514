/**
 * Slack's request signing (version v0): `v0=` + hex HMAC-SHA256, keyed by the app's signing
 * secret, of `v0:<X-Slack-Request-Timestamp>:<raw body>`. A request is believed only when the
 * signature matches (compared in constant time) and its timestamp is within five minutes of now.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

/** How far a request's timestamp may be from now (s). */
export const SLACK_SIGNATURE_WINDOW_SECONDS = 300;

export function slackSignature(secret: string, timestamp: string, rawBody: string | Buffer): string {
  return `v0=${createHmac('sha256', secret).update(`v0:${timestamp}:`).update(rawBody).digest('hex')}`;
}

/** Why a request is not believed, or undefined when it is. */
export function checkSlackSignature(
  secret: string,
  headers: { timestamp: string | undefined; signature: string | undefined },
  rawBody: string | Buffer,
  nowSeconds = Math.floor(Date.now() / 1000),
): string | undefined {
  const { timestamp, signature } = headers;
  if (!timestamp || !signature) return 'missing X-Slack-Request-Timestamp or X-Slack-Signature';
  if (!/^\d{1,12}$/.test(timestamp)) return 'malformed X-Slack-Request-Timestamp';
  if (Math.abs(nowSeconds - Number(timestamp)) > SLACK_SIGNATURE_WINDOW_SECONDS) return 'the request is too old (or from the future)';
  const expected = Buffer.from(slackSignature(secret, timestamp, rawBody));
  const given = Buffer.from(signature);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'the signature does not match';
  return undefined;
}
