/**
 * userSync: one long-lived workflow per user (id `user-sync:<userId>`), so every change to a user
 * is applied by a single writer, in order. Changes arrive as `userChanged` signals from the outbox
 * dispatcher; each carries only a sequence number, and the workflow reloads the user from
 * PostgreSQL, so duplicated or reordered signals are harmless.
 */
import * as wf from '@temporalio/workflow';
import type { Activities } from './activities/index.js';
import { userChangedSignal, userSyncStatusQuery, type UserSyncInput } from './messages.js';

const { syncUser, planUserSync, recordProvisioningFailure } = wf.proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

/**
 * Calls to target systems: transient failures (429, 5xx, network) are retried with backoff, waiting
 * at least as long as the target asked; permanent ones are non-retryable and end that connector's
 * steps for this round.
 */
const targets = wf.proxyActivities<Activities>({
  // One call to a target (connectors time out their own requests well before this); a worker that
  // dies mid-call holds the step up to this long before another worker retries it.
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '5 minutes', maximumAttempts: 25 },
});

/** Applies the plan: connectors in parallel, each connector's steps in order. */
/** Applies the plan; answers when a grant starts or ends next, if ever. */
async function converge(userId: string, seq?: number): Promise<number | undefined> {
  const plan = await planUserSync({ userId, ...(seq !== undefined ? { seq } : {}) });
  await Promise.all(
    plan.connectors.map(async ({ connectorId, steps }) => {
      for (const step of steps) {
        const input = { userId, connectorId, ...(step.entitlementId ? { entitlementId: step.entitlementId } : {}) };
        try {
          await targets[step.action](input);
        } catch (err) {
          const message = err instanceof wf.ActivityFailure && err.cause ? err.cause.message : String(err);
          await recordProvisioningFailure({ ...input, error: message });
          return;
        }
      }
    }),
  );
  return plan.nextChangeAt;
}

/** Syncs before continuing as new, so the history of a busy user stays short. */
const MAX_SYNCS_PER_RUN = 200;

export interface UserSyncResult {
  appliedSeq: number;
}

export async function userSync(input: UserSyncInput): Promise<UserSyncResult> {
  let appliedSeq = input.appliedSeq ?? 0;
  let pendingSeq = input.pendingSeq ?? 0;
  let syncs = 0;

  wf.setHandler(userChangedSignal, ({ seq }) => {
    if (seq > pendingSeq) pendingSeq = seq;
  });
  wf.setHandler(userSyncStatusQuery, () => ({ appliedSeq, pendingSeq, syncs }));

  // Time-bound access: the workflow stays to wake up when a grant starts or ends (a durable timer).
  let nextChangeAt = input.nextChangeAt;
  for (;;) {
    const wait = nextChangeAt !== undefined ? Math.max(1, nextChangeAt - Date.now()) : input.idleMs;
    const hasWork = await wf.condition(() => pendingSeq > appliedSeq, wait);
    if (!hasWork) {
      if (nextChangeAt === undefined || Date.now() < nextChangeAt) return { appliedSeq };
      // A grant's window opened or closed: converge again for the same change.
      nextChangeAt = await converge(input.userId);
      syncs++;
      continue;
    }

    if (input.debounceMs > 0) await wf.sleep(input.debounceMs);
    const target = pendingSeq;
    nextChangeAt = await converge(input.userId, target);
    await syncUser({ userId: input.userId, seq: target });
    appliedSeq = target;
    syncs++;

    if (syncs >= MAX_SYNCS_PER_RUN || wf.workflowInfo().continueAsNewSuggested) {
      await wf.condition(wf.allHandlersFinished);
      return await wf.continueAsNew<typeof userSync>({ ...input, appliedSeq, pendingSeq, ...(nextChangeAt !== undefined ? { nextChangeAt } : {}) });
    }
  }
}
