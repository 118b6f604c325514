/**
 * The notifier port of access requests: one function that tells people what happened (a request
 * awaits them, was decided, fulfilled, failed or expired, a task was assigned). The first channel is
 * the signed webhook that also carries delivery notices (DELIVERY_WEBHOOK_URL and its secret): the
 * receiver forwards each notice by email or chat. Notices are sent from activities, so Temporal
 * retries a failing channel; a channel that keeps failing is recorded and never holds up a request.
 */
import { createSignedPost } from '../delivery/notify.js';

export type AccessNoticeType =
  | 'request.awaiting-you'
  | 'request.decided'
  | 'request.fulfilled'
  | 'request.failed'
  | 'request.expired'
  | 'task.assigned'
  /** A stage's timeout is near: to the approvers who have not decided yet. */
  | 'request.reminder'
  /** Time-bound access ends soon: to the requester. */
  | 'request.expiring'
  /** An invitation request's invitation was sent to the invitee: to the requester (the sponsor). */
  | 'request.invited';

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
  /** `request.reminder`: the stage (index) awaiting a decision. */
  stage?: number;
  /** `request.reminder`: when the stage times out; `request.expiring`: when the access ends (ISO 8601). */
  deadline?: string;
}

/** What an access review tells its reviewers (one notice per reviewer). */
export interface ReviewNotice {
  id: string;
  /** `review.awaiting-you`: the campaign opened; `review.reminder`: the due date is near; `review.escalated`: items not reviewed in time came to the escalation group. */
  type: 'review.awaiting-you' | 'review.reminder' | 'review.escalated';
  campaignId: string;
  campaign: string;
  /** When undecided items follow the campaign's policy (ISO 8601). */
  deadline: string;
  /** How many items wait on this reviewer. */
  pending: number;
  recipients: Array<{ userId: string; userName: string; email: string | null }>;
}

/** Sends one notice; throws TransientError (worth retrying) or PermanentError. */
export type AccessNotifier = (notice: AccessNotice | ReviewNotice) => Promise<void>;

/** The signed-webhook channel: a POST signed like delivery notices; 2xx, or 409 (already received), is delivered. */
export function createWebhookAccessNotifier(opts: { url: string; secret: string; timeoutMs?: number }): AccessNotifier {
  return createSignedPost({ ...opts, label: 'access notice', alsoDelivered: [409] });
}

/** The configured channel: the signed webhook when DELIVERY_WEBHOOK_URL and its secret are set, else none. */
export function accessNotifierFor(cfg: { deliveryWebhookUrl?: string | undefined; deliveryWebhookSecret?: string | undefined }): AccessNotifier | undefined {
  return cfg.deliveryWebhookUrl && cfg.deliveryWebhookSecret ? createWebhookAccessNotifier({ url: cfg.deliveryWebhookUrl, secret: cfg.deliveryWebhookSecret }) : undefined;
}
