/**
 * userSync: one long-lived workflow per user (id `user-sync:<userId>`), so every change to a user
 * is applied by a single writer, in order. Changes arrive as `userChanged` signals from the outbox
 * dispatcher; each carries only a sequence number, and the workflow reloads the user from
 * PostgreSQL, so duplicated or reordered signals are harmless.
 *
 * What it does is written for the Temporal UI: every activity and timer carries a summary
 * ("grant demo/engineering (rule engineering) to ada@example.com", "idle", "access to demo/oncall
 * ends …"), and the workflow's current details say what the last sync did or what is failing.
 */
import * as wf from '@temporalio/workflow';
import type { Activities } from './activities/index.js';
import type { Step, StepsProgress } from './activities/provisioning.js';
import { userChangedSignal, userSyncStatusQuery, type UserSyncInput } from './messages.js';
import { accessRequestWorkflowIdOf, fulfilmentProgressSignal } from './access-request-messages.js';

const BOOKKEEPING = {
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
} as const;
const remote = wf.proxyActivities<Activities>(BOOKKEEPING);
/**
 * Planning and recording are short queries on the gateway's own database. As local activities they
 * run inside the workflow task that asks for them: no round trip through the Temporal server and
 * one marker in the history instead of three events and a workflow task each, which is most of
 * what a user's sync costs the server in a joiner wave. The Temporal UI shows them with the same
 * summaries. Workflows started before this change keep the regular activities on replay.
 */
// Retries wait in a workflow timer once they are a few seconds apart, not inside the worker: a
// workflow task never stays open across long backoffs (the database down, say), so the worker can
// still shut down or hand the workflow to another worker.
const local = wf.proxyLocalActivities<Activities>({ ...BOOKKEEPING, localRetryThreshold: '2 seconds' });
const bookkeeping = () => (wf.patched('local-bookkeeping') ? local : remote);

/**
 * Calls to target systems: transient failures (429, 5xx, network) are retried with backoff (at
 * most five minutes apart, waiting at least as long as the target asked) until the target answers:
 * an outage delays provisioning, it never drops a step. While a step is retrying, its attempt count,
 * last error and next attempt show in the Temporal UI and in `GET /api/users/{id}/provisioning`.
 * Permanent failures are non-retryable and end that connector's steps for this round.
 */
const targets = wf.proxyActivities<Activities>({
  // One call to a target (connectors time out their own requests well before this); a worker that
  // dies mid-call holds the step up to this long before another worker retries it.
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '5 minutes' },
});

interface Round {
  /** When a grant starts or ends next (epoch ms), and what happens then. */
  nextChangeAt?: number;
  nextChange?: string;
  /** What this round did and what failed, one line each. */
  lines: string[];
}

/** Applies the plan: connectors in parallel, each connector's steps in order. */
async function converge(userId: string, seq?: number): Promise<Round> {
  const plan = await bookkeeping().planUserSync.executeWithOptions(
    { summary: seq !== undefined ? `plan change ${seq}` : 'plan (a grant starts or ends)' },
    [{ userId, ...(seq !== undefined ? { seq } : {}) }],
  );
  const lines: string[] = [];
  await Promise.all(
    plan.connectors.map(async ({ connectorId, steps }) => {
      if (steps.length > 1 && wf.patched('connector-steps-in-one-activity')) {
        lines.push(...(await applyInOneActivity(userId, connectorId, steps)));
        return;
      }
      for (const step of steps) {
        const input = { userId, connectorId, ...(step.entitlementId ? { entitlementId: step.entitlementId } : {}) };
        try {
          const result = await targets[step.action].executeWithOptions({ summary: step.summary }, [input]);
          lines.push(result.done);
        } catch (err) {
          lines.push(await stepFailed(userId, connectorId, step, err));
          return;
        }
      }
    }),
  );
  if (plan.connectors.length === 0) lines.push('nothing to change');
  if (plan.awaitingRequests?.length && wf.patched('tell-access-requests')) {
    // Each approved request waiting on this user's provisioning looks at its outcome now. A request
    // whose workflow has ended meanwhile is no one to tell.
    await Promise.all(
      plan.awaitingRequests.map((id) =>
        wf.getExternalWorkflowHandle(accessRequestWorkflowIdOf(id)).signal(fulfilmentProgressSignal).catch(() => undefined),
      ),
    );
  }
  return {
    lines,
    ...(plan.nextChangeAt !== undefined ? { nextChangeAt: plan.nextChangeAt } : {}),
    ...(plan.nextChange !== undefined ? { nextChange: plan.nextChange } : {}),
  };
}

/**
 * A connector's steps for this round (create the account, then grant two entitlements, say) in one
 * activity: one task and one result for the Temporal server instead of one per step, which is what
 * a joiner wave costs it. The activity applies them in order and carries on after a retry from the
 * first step not yet done; its summary lists them all. Returns the round's lines for this connector.
 */
async function applyInOneActivity(userId: string, connectorId: string, steps: Step[]): Promise<string[]> {
  try {
    const result = await targets.applySteps.executeWithOptions({ summary: steps.map((s) => s.summary).join('; ') }, [{ userId, connectorId, steps }]);
    return result.done;
  } catch (err) {
    const cause = err instanceof wf.ActivityFailure ? err.cause : undefined;
    const progress = cause instanceof wf.ApplicationFailure ? (cause.details?.[0] as StepsProgress | undefined) : undefined;
    const failed = steps[progress?.done.length ?? 0] ?? steps[0]!;
    return [...(progress?.done ?? []), await stepFailed(userId, connectorId, failed, err)];
  }
}

/** Records why a connector's steps stopped at `step` (the target's own words) and returns the round's line saying so. */
async function stepFailed(userId: string, connectorId: string, step: Step, err: unknown): Promise<string> {
  const message = err instanceof wf.ActivityFailure && err.cause ? err.cause.message : String(err);
  await bookkeeping().recordProvisioningFailure.executeWithOptions({ summary: `record why ${connectorId} failed` }, [
    { userId, connectorId, ...(step.entitlementId ? { entitlementId: step.entitlementId } : {}), error: message },
  ]);
  return `FAILED to ${step.summary}: ${message}`;
}

/** Syncs before continuing as new, so the history of a busy user stays short. */
const MAX_SYNCS_PER_RUN = 200;

export interface UserSyncResult {
  appliedSeq: number;
  /** What the last sync of this run did, in words. */
  lastSync?: string[];
}

export async function userSync(input: UserSyncInput): Promise<UserSyncResult> {
  let appliedSeq = input.appliedSeq ?? 0;
  let pendingSeq = input.pendingSeq ?? 0;
  let syncs = 0;
  let lastSync: string[] | undefined;
  /** When the latest change announced was committed (epoch ms), if its signal said. */
  let latestChangeAt: number | undefined;

  wf.setHandler(userChangedSignal, ({ seq, at }) => {
    if (seq > pendingSeq) pendingSeq = seq;
    if (at !== undefined && (latestChangeAt === undefined || at > latestChangeAt)) latestChangeAt = at;
  });
  wf.setHandler(userSyncStatusQuery, () => ({ appliedSeq, pendingSeq, syncs }));

  const report = (heading: string, round: Round) => {
    lastSync = round.lines;
    const next = round.nextChange ? `\n\nnext: ${round.nextChange}` : '';
    wf.setCurrentDetails(`${heading}\n\n${round.lines.map((l) => `- ${l}`).join('\n')}${next}`);
  };

  // Time-bound access: the workflow stays to wake up when a grant starts or ends (a durable timer).
  let nextChangeAt = input.nextChangeAt;
  let nextChange = input.nextChange;
  for (;;) {
    const wait = nextChangeAt !== undefined ? Math.max(1, nextChangeAt - Date.now()) : input.idleMs;
    const summary = nextChangeAt !== undefined ? (nextChange ?? `a grant starts or ends ${new Date(nextChangeAt).toISOString()}`) : 'idle: waiting for changes before completing';
    const hasWork = await wf.condition(() => pendingSeq > appliedSeq, wait, { summary });
    if (!hasWork) {
      if (nextChangeAt === undefined || Date.now() < nextChangeAt) return { appliedSeq, ...(lastSync ? { lastSync } : {}) };
      // A grant's window opened or closed: converge again for the same change.
      const round = await converge(input.userId);
      ({ nextChangeAt, nextChange } = round);
      report(summary, round);
      syncs++;
      continue;
    }

    if (input.debounceMs > 0) {
      // The debounce runs from the latest change's commit, not from its arrival here: changes that
      // waited in a backlog (the outbox, a busy worker) for longer have settled already and cost no
      // timer. Clocks of the database and the worker that disagree shorten or skip a debounce, never
      // a change.
      const settleMs =
        latestChangeAt !== undefined && wf.patched('debounce-from-change-time') ? Math.min(input.debounceMs, latestChangeAt + input.debounceMs - Date.now()) : input.debounceMs;
      if (settleMs > 0) await wf.sleep(settleMs, { summary: 'debounce: let a burst of changes settle' });
    }
    const target = pendingSeq;
    const round = await converge(input.userId, target);
    ({ nextChangeAt, nextChange } = round);
    await bookkeeping().syncUser.executeWithOptions({ summary: `record change ${target} as applied` }, [{ userId: input.userId, seq: target }]);
    appliedSeq = target;
    report(`change ${target}`, round);
    syncs++;

    if (syncs >= MAX_SYNCS_PER_RUN || wf.workflowInfo().continueAsNewSuggested) {
      await wf.condition(wf.allHandlersFinished);
      return await wf.continueAsNew<typeof userSync>({
        ...input,
        appliedSeq,
        pendingSeq,
        ...(nextChangeAt !== undefined ? { nextChangeAt } : {}),
        ...(nextChange !== undefined ? { nextChange } : {}),
      });
    }
  }
}
