/**
 * The provisioning steps a user's workflow is still retrying, read from Temporal: the database
 * only learns a step's outcome when it ends, but an operator needs to see a step stuck behind an
 * unreachable target while it is being retried (its attempt, last error and next attempt).
 */
import type { Client } from '@temporalio/client';
import { defaultPayloadConverter, WorkflowNotFoundError } from '@temporalio/common';
import type proto from '@temporalio/proto';

/** One step of a user's provisioning that has not completed yet. */
export interface PendingStep {
  connectorId: string;
  /** The activity: createAccount, grantEntitlement, revokeEntitlement, … */
  step: string;
  /** The step in words ("revoke demo/engineering from ada@example.com (user deprovisioned)"). */
  summary: string | null;
  entitlementId: string | null;
  /** The attempt running or due next (1 for the first). */
  attempt: number;
  /** 0: retried until it succeeds. */
  maximumAttempts: number;
  /** Why the previous attempt failed, as the target said it. */
  lastError: string | null;
  lastAttemptAt: string | null;
  /** When the next attempt starts (null while an attempt is running). */
  nextAttemptAt: string | null;
}

const STEPS = new Set(['createAccount', 'updateAccount', 'grantEntitlement', 'revokeEntitlement', 'disableAccount', 'deleteAccount']);
/** The activity that applies several steps of one connector in order (workflows/user-sync.ts). */
const STEPS_IN_ONE = 'applySteps';

interface StepsInput {
  connectorId?: string;
  steps?: Array<{ action: string; entitlementId?: string; summary: string }>;
}

function iso(ts: proto.google.protobuf.ITimestamp | null | undefined): string | null {
  if (!ts?.seconds) return null;
  return new Date(Number(ts.seconds) * 1000 + Math.floor((ts.nanos ?? 0) / 1e6)).toISOString();
}

function decode<T>(payload: proto.temporal.api.common.v1.IPayload | null | undefined): T | undefined {
  if (!payload) return undefined;
  try {
    return defaultPayloadConverter.fromPayload<T>(payload);
  } catch {
    return undefined;
  }
}

/** The workflow's pending provisioning steps; none when it is not running. */
export async function pendingSteps(client: Client, workflowId: string): Promise<PendingStep[]> {
  const handle = client.workflow.getHandle(workflowId);
  let pending: proto.temporal.api.workflow.v1.IPendingActivityInfo[];
  try {
    const description = await handle.describe();
    pending = (description.raw.pendingActivities ?? []).filter((p) => STEPS.has(p.activityType?.name ?? '') || p.activityType?.name === STEPS_IN_ONE);
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return [];
    throw err;
  }
  if (pending.length === 0) return [];
  // Which connector and entitlement each step is for is in its input, which only the history holds.
  const history = await handle.fetchHistory();
  const scheduled = new Map<string, proto.temporal.api.history.v1.IHistoryEvent>();
  for (const e of history.events ?? []) {
    const id = e.activityTaskScheduledEventAttributes?.activityId;
    if (id) scheduled.set(id, e);
  }
  return pending.map((p) => {
    const event = scheduled.get(p.activityId ?? '');
    const payload = event?.activityTaskScheduledEventAttributes?.input?.payloads?.[0];
    let step = { action: p.activityType?.name ?? '', summary: decode<string>(event?.userMetadata?.summary) ?? null, entitlementId: decode<{ entitlementId?: string }>(payload)?.entitlementId ?? null };
    if (p.activityType?.name === STEPS_IN_ONE) {
      // Several steps in one activity: the one at hand follows those its last failure (or, while
      // it runs, its last heartbeat) reports done.
      const steps = decode<StepsInput>(payload)?.steps ?? [];
      const progress =
        decode<{ done?: string[] }>(p.lastFailure?.applicationFailureInfo?.details?.payloads?.[0]) ?? decode<{ done?: string[] }>(p.heartbeatDetails?.payloads?.[0]);
      const current = steps[Math.min(progress?.done?.length ?? 0, steps.length - 1)];
      step = { action: current?.action ?? STEPS_IN_ONE, summary: current?.summary ?? step.summary, entitlementId: current?.entitlementId ?? null };
    }
    return {
      connectorId: decode<{ connectorId?: string }>(payload)?.connectorId ?? '(unknown)',
      step: step.action,
      summary: step.summary,
      entitlementId: step.entitlementId,
      attempt: p.attempt ?? 1,
      maximumAttempts: p.maximumAttempts ?? 0,
      lastError: p.lastFailure?.message ?? null,
      lastAttemptAt: iso(p.lastAttemptCompleteTime),
      nextAttemptAt: iso(p.nextAttemptScheduleTime),
    };
  });
}
