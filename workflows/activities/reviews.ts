/**
 * The activity side of the `certification` workflow: opening a scheduled campaign, generating its
 * items and reviewers, its progress, the due date's policy and the reviewers' notices. Each wraps
 * core/access/reviews.ts and is safe to repeat.
 */
import { Context } from '@temporalio/activity';
import type { Db } from '../../core/db/pool.js';
import type { AccessNotifier, ReviewNotice } from '../../core/access/notifier.js';
import {
  applyDueDate,
  campaignProgress,
  closeCampaign,
  generateItems,
  markGenerated,
  openScheduledCampaign,
  pendingReviewers,
  resolveReviewers,
  type CampaignSpec,
  type CampaignStatus,
  type DueDateOutcome,
} from '../../core/access/reviews.js';
import { NOTICE_ATTEMPTS } from './access-requests.js';
import { toFailure } from './provisioning.js';
import type { SlackNotices } from './slack.js';

export interface LoadedCampaign {
  name: string;
  status: CampaignStatus;
  /** Epoch ms. */
  startsAt: number;
  dueAt: number;
  remindBeforeSeconds: number[];
}

export interface ReviewProgress {
  status: CampaignStatus;
  total: number;
  pending: number;
  kept: number;
  revoked: number;
  dueAt: number;
  escalatedUntil: number | null;
}

const beat = () => {
  try {
    Context.current().heartbeat();
  } catch {
    // Outside an activity (a benchmark calling the function directly): nothing to tell.
  }
};

export function reviewActivities(db: Db, notifier: AccessNotifier | undefined, slack?: SlackNotices) {
  const campaignRow = async (campaignId: string) => {
    const { rows } = await db.query<{ name: string; status: CampaignStatus; starts_at: Date; due_at: Date; escalated_until: Date | null; spec: CampaignSpec }>(
      'SELECT name, status, starts_at, due_at, escalated_until, spec FROM review_campaigns WHERE id = $1',
      [campaignId],
    );
    if (!rows[0]) throw new Error(`no access review ${campaignId}`);
    return rows[0];
  };
  return {
    /** A review schedule fired: opens its campaign (once per firing). */
    openScheduledCampaign: async ({ schedule, workflowId }: { schedule: string; workflowId: string }) => ({ campaignId: await openScheduledCampaign(db, schedule, workflowId) }),
    /** Reads what the workflow needs of its campaign. */
    loadCampaign: async ({ campaignId }: { campaignId: string }): Promise<LoadedCampaign> => {
      const c = await campaignRow(campaignId);
      return { name: c.name, status: c.status, startsAt: c.starts_at.getTime(), dueAt: c.due_at.getTime(), remindBeforeSeconds: c.spec.remindBeforeSeconds };
    },
    /** One item per user × entitlement in scope (idempotent). */
    generateReviewItems: async ({ campaignId }: { campaignId: string }) => ({ items: await generateItems(db, campaignId) }),
    /** Each item's reviewers; then the campaign opens for decisions. */
    resolveReviewers: async ({ campaignId }: { campaignId: string }) => {
      const resolved = await resolveReviewers(db, campaignId, 1000, beat);
      await markGenerated(db, campaignId);
      return { resolved };
    },
    /** How far the campaign got. */
    reviewProgress: async ({ campaignId }: { campaignId: string }): Promise<ReviewProgress> => {
      const c = await campaignRow(campaignId);
      return { status: c.status, ...(await campaignProgress(db, campaignId)), dueAt: c.due_at.getTime(), escalatedUntil: c.escalated_until?.getTime() ?? null };
    },
    /** The due date (or the escalation's end): the policy for items not reviewed. */
    applyReviewDueDate: async ({ campaignId }: { campaignId: string; phase: 'due' | 'escalation' }): Promise<DueDateOutcome> => await applyDueDate(db, campaignId, new Date(), beat),
    /** Every item is decided: the campaign closes. */
    closeReview: async ({ campaignId }: { campaignId: string }) => await closeCampaign(db, campaignId, 'every item was reviewed'),
    /** Tells each reviewer with pending items how many (one notice each; retried, then recorded as failed). */
    notifyReviewers: async (n: { campaignId: string; type: ReviewNotice['type']; key: string }) => {
      const out = await notifyReviewers(db, notifier, n, Context.current().info.attempt);
      // Then Slack, where the items come with Keep and Revoke buttons (each DM sent once).
      if (!slack) return out;
      try {
        return { sent: out.sent, slack: await slack.reviewers(n) };
      } catch (err) {
        throw toFailure(`Slack ${n.type}`, err);
      }
    },
  };
}

/**
 * One notice per reviewer with items pending, each sent once (its id recorded). A failing channel
 * is retried by Temporal; on the last try the failures are recorded instead. (The Slack DMs are
 * sent by the activity after these.)
 */
export async function notifyReviewers(db: Db, notifier: AccessNotifier | undefined, n: { campaignId: string; type: ReviewNotice['type']; key: string }, attempt: number): Promise<{ sent: number }> {
  if (!notifier) return { sent: 0 };
  const { rows } = await db.query<{ name: string; due_at: Date; escalated_until: Date | null }>('SELECT name, due_at, escalated_until FROM review_campaigns WHERE id = $1', [n.campaignId]);
  const c = rows[0]!;
  const deadline = (n.type === 'review.escalated' ? (c.escalated_until ?? c.due_at) : c.due_at).toISOString();
  let sent = 0;
  let failure: Error | undefined;
  for (const r of await pendingReviewers(db, n.campaignId)) {
    const id = `review:${n.campaignId}:${n.key}:${r.userId}`;
    const { rows: done } = await db.query('SELECT 1 FROM review_notifications WHERE id = $1', [id]);
    if (done.length) continue;
    const record = (status: 'sent' | 'failed', error: string | null) =>
      db.query(`INSERT INTO review_notifications (id, campaign_id, type, recipients, status, attempts, last_error) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING`, [
        id,
        n.campaignId,
        n.type,
        [r.userId],
        status,
        attempt,
        error,
      ]);
    try {
      await notifier({ id, type: n.type, campaignId: n.campaignId, campaign: c.name, deadline, pending: r.pending, recipients: [{ userId: r.userId, userName: r.userName, email: r.email }] });
    } catch (err) {
      if (attempt < NOTICE_ATTEMPTS) {
        failure = err as Error;
        continue;
      }
      await record('failed', (err as Error).message.slice(0, 1000));
      continue;
    }
    await record('sent', null);
    sent++;
    beat();
  }
  if (failure) throw failure;
  return { sent };
}
