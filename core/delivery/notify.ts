/**
 * Telling a user about a new download link, without the link passing through any log.
 *
 * The one channel today is a signed webhook (DELIVERY_WEBHOOK_URL): the gateway POSTs a
 * {@link DeliveryNotice} as JSON, signed like the webhook connector's deliveries
 * (the connector SDK (`@scim-gateway/connector-sdk/signature`): `x-scim-gateway-timestamp` and `x-scim-gateway-signature`, an
 * HMAC-SHA256 over "<timestamp>.<raw body>" with DELIVERY_WEBHOOK_SECRET), and the receiver forwards
 * it by email or chat. A 2xx answer means the receiver has taken responsibility for the notice.
 *
 * Errors never contain the link, the body sent or the body received (a receiver may echo what it
 * got), and name the receiver by origin only: a chat webhook URL often carries its own credential in
 * the path.
 */
import { PermanentError, TransientError, retryAfterMs } from '@scim-gateway/connector-sdk';
import { SIGNATURE_HEADER, TIMESTAMP_HEADER, signPayload } from '@scim-gateway/connector-sdk/signature';

/** What the receiver gets. `url` is the one-time link: a secret until it is used. */
export interface DeliveryNotice {
  /** The delivery's id, unique per link: receivers may use it to refuse a replayed notice. */
  id: string;
  type: 'delivery.created';
  userId: string;
  userName: string;
  email: string | null;
  connectorId: string;
  filename: string;
  url: string;
  expiresAt: string;
}

/** Sends a notice; throws TransientError (worth retrying) or PermanentError. */
export type Notify = (notice: DeliveryNotice) => Promise<void>;

export interface WebhookNotifyOptions {
  url: string;
  secret: string;
  /** Deadline for one POST, from connecting to the end of the answer (default 10 s). */
  timeoutMs?: number;
}

export const DEFAULT_NOTIFY_TIMEOUT_MS = 10_000;

function origin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return 'the webhook';
  }
}

/** Options of {@link createSignedPost}. */
export interface SignedPostOptions extends WebhookNotifyOptions {
  /** Names the sender at the start of every error ("delivery", "access notice"). */
  label: string;
  /** Statuses besides 2xx that mean the receiver already has the notice (a replay it refused). */
  alsoDelivered?: number[];
  /** Said after a permanent refusal, to point the operator at the setting to check. */
  refusalHint?: string;
}

/**
 * A sender of JSON notices to one webhook, each POST signed like the webhook connector's deliveries.
 * Throws TransientError for what is worth retrying (no answer, 408, 425, 429, 5xx; Retry-After
 * honoured) and PermanentError for any other refusal. Every signed notice of the gateway goes out
 * through one of these.
 */
export function createSignedPost(opts: SignedPostOptions): (notice: unknown) => Promise<void> {
  const where = origin(opts.url);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_NOTIFY_TIMEOUT_MS;
  return async (notice) => {
    const body = JSON.stringify(notice);
    const timestamp = Math.floor(Date.now() / 1000);
    let res: Response;
    try {
      res = await fetch(opts.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          [TIMESTAMP_HEADER]: String(timestamp),
          [SIGNATURE_HEADER]: signPayload(opts.secret, timestamp, body),
        },
        body,
        redirect: 'manual',
        signal: AbortSignal.timeout(timeoutMs),
      });
      // Read (and drop) the answer within the deadline, so the connection is released.
      await res.arrayBuffer();
    } catch (err) {
      const reason = (err as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : ((err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message);
      throw new TransientError(`${opts.label}: notifying ${where} failed: ${reason}`);
    }
    if (res.ok || opts.alsoDelivered?.includes(res.status)) return;
    const message = `${opts.label}: notifying ${where} failed: HTTP ${res.status}`;
    if (res.status === 408 || res.status === 425 || res.status === 429 || res.status >= 500) {
      throw new TransientError(message, retryAfterMs(res.headers.get('retry-after')));
    }
    throw new PermanentError(opts.refusalHint ? `${message} (${opts.refusalHint})` : message, res.status === 401 || res.status === 403 ? 'unauthorized' : 'rejected');
  };
}

export function createWebhookNotify(opts: WebhookNotifyOptions): Notify {
  return createSignedPost({ ...opts, label: 'delivery', refusalHint: 'check DELIVERY_WEBHOOK_URL and DELIVERY_WEBHOOK_SECRET' });
}
