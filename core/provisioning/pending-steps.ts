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
    pending = (description.raw.pendingActivities ?? []).filter((p) => STEPS.has(p.activityType?.name ?? ''));
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
    const input = decode<{ connectorId?: string; entitlementId?: string }>(event?.activityTaskScheduledEventAttributes?.input?.payloads?.[0]);
    return {
      connectorId: input?.connectorId ?? '(unknown)',
      step: p.activityType?.name ?? '',
      summary: decode<string>(event?.userMetadata?.summary) ?? null,
      entitlementId: input?.entitlementId ?? null,
      attempt: p.attempt ?? 1,
      maximumAttempts: p.maximumAttempts ?? 0,
      lastError: p.lastFailure?.message ?? null,
      lastAttemptAt: iso(p.lastAttemptCompleteTime),
      nextAttemptAt: iso(p.nextAttemptScheduleTime),
    };
  });
}
