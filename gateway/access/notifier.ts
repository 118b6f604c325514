/**
 * The notifier port of access requests: one function that tells people what happened (a request
 * awaits them, was decided, fulfilled, failed or expired, a task was assigned). The first channel is
 * the signed webhook that also carries delivery notices (DELIVERY_WEBHOOK_URL and its secret): the
 * receiver forwards each notice by email or chat. Notices are sent from activities, so Temporal
 * retries a failing channel; a channel that keeps failing is recorded and never holds up a request.
 */
import { PermanentError, TransientError, retryAfterMs } from '@scim-gateway/connector-sdk';
import { SIGNATURE_HEADER, TIMESTAMP_HEADER, signPayload } from '../../connectors/webhook/signature.js';

export type AccessNoticeType = 'request.awaiting-you' | 'request.decided' | 'request.fulfilled' | 'request.failed' | 'request.expired' | 'task.assigned';

/** What a receiver gets. `id` is the same for every try of one notice, so a receiver can drop repeats. */
export interface AccessNotice {
  id: string;
  type: AccessNoticeType;
  requestId: string;
  policy: string;
  displayName: string;
  status: string;
  reason: string | null;
  recipients: Array<{ userId: string; userName: string; email: string | null }>;
}

/** Sends one notice; throws TransientError (worth retrying) or PermanentError. */
export type AccessNotifier = (notice: AccessNotice) => Promise<void>;

/** The signed-webhook channel: a POST signed like delivery notices; 2xx, or 409 (already received), is delivered. */
export function createWebhookAccessNotifier(opts: { url: string; secret: string; timeoutMs?: number }): AccessNotifier {
  let where = 'the notice webhook';
  try {
    where = new URL(opts.url).origin;
  } catch {
    // keep the generic name; the URL was validated with the configuration
  }
  const timeoutMs = opts.timeoutMs ?? 10_000;
  return async (notice) => {
    const body = JSON.stringify(notice);
    const timestamp = Math.floor(Date.now() / 1000);
    let res: Response;
    try {
      res = await fetch(opts.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', [TIMESTAMP_HEADER]: String(timestamp), [SIGNATURE_HEADER]: signPayload(opts.secret, timestamp, body) },
        body,
        redirect: 'manual',
        signal: AbortSignal.timeout(timeoutMs),
      });
      await res.arrayBuffer();
    } catch (err) {
      const reason = (err as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : ((err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message);
      throw new TransientError(`access notice: notifying ${where} failed: ${reason}`);
    }
    if (res.ok || res.status === 409) return;
    const message = `access notice: notifying ${where} failed: HTTP ${res.status}`;
    if (res.status === 408 || res.status === 425 || res.status === 429 || res.status >= 500) throw new TransientError(message, retryAfterMs(res.headers.get('retry-after')));
    throw new PermanentError(message, res.status === 401 || res.status === 403 ? 'unauthorized' : 'rejected');
  };
}

/** The configured channel: the signed webhook when DELIVERY_WEBHOOK_URL and its secret are set, else none. */
export function accessNotifierFor(cfg: { deliveryWebhookUrl?: string | undefined; deliveryWebhookSecret?: string | undefined }): AccessNotifier | undefined {
  return cfg.deliveryWebhookUrl && cfg.deliveryWebhookSecret ? createWebhookAccessNotifier({ url: cfg.deliveryWebhookUrl, secret: cfg.deliveryWebhookSecret }) : undefined;
}
