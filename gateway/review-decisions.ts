/**
 * Review decisions as a directory user, the way the REST API and the console make them: each item
 * is decided by core/access/reviews.ts (one transaction: the rules, the record, the revocation),
 * then the outbox is kicked so userSync takes revoked access away at once, and the campaigns'
 * workflows are told to refresh their progress (best effort: they read it again at their next
 * timer anyway).
 */
import type { FastifyBaseLogger } from 'fastify';
import type { Client } from '@temporalio/client';
import type { Db } from '../core/db/pool.js';
import { decideItem, type DecideOutcome, type ReviewDecision } from '../core/access/reviews.js';
import { signalReviewDecided } from '../workflows/client.js';

export interface ReviewDecisionInput {
  itemId: string;
  decision: ReviewDecision;
  comment?: string | undefined;
}

export async function decideReviewsAs(
  ctx: { db: Db; temporal: { client(): Promise<Client> }; log: FastifyBaseLogger; kickOutbox: () => void },
  me: { userId: string; userName: string },
  decisions: ReviewDecisionInput[],
): Promise<Array<DecideOutcome & { itemId: string }>> {
  const results: Array<DecideOutcome & { itemId: string }> = [];
  for (const d of decisions) results.push({ itemId: d.itemId, ...(await decideItem(ctx.db, { itemId: d.itemId, reviewer: me, decision: d.decision, comment: d.comment })) });
  const decided = results.flatMap((r) => (r.ok ? [r.item.campaignId] : []));
  if (decided.length === 0) return results;
  ctx.kickOutbox();
  const { rows } = await ctx.db.query<{ workflow_id: string }>('SELECT workflow_id FROM review_campaigns WHERE id = ANY($1::uuid[])', [[...new Set(decided)]]);
  void (async () => {
    for (const r of rows) {
      try {
        await signalReviewDecided(await ctx.temporal.client(), r.workflow_id);
      } catch (err) {
        ctx.log.warn({ workflowId: r.workflow_id, err: (err as Error).message }, 'could not tell the access review of new decisions; it reads its progress again at its next timer');
      }
    }
  })();
  return results;
}
