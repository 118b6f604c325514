/**
 * Typed helpers the gateway uses to reach workflows, so routes and the outbox dispatcher never spell
 * workflow, signal or search-attribute names themselves.
 */
import { Client, Connection } from '@temporalio/client';
import { defineSearchAttributeKey, SearchAttributeType, TypedSearchAttributes } from '@temporalio/common';
import proto from '@temporalio/proto';
import { userChangedSignal, userSyncStatusQuery, type UserSyncStatus } from './messages.js';
import { userSync } from './user-sync.js';
import { reconcile } from './reconcile.js';
import { testConnection, type TestConnectionResult } from './test-connection.js';
import type { ReconcileSummary } from './activities/reconcile.js';
import { boundedVisibilityValue } from './bounded.js';
import { accessRequest } from './access-request.js';
import { sourceImport } from './source-import.js';
import { certification } from './certification.js';
import {
  certificationWorkflowIdOf,
  reviewCampaignSearchAttribute,
  reviewDecidedSearchAttribute,
  reviewDecidedSignal,
  reviewPendingSearchAttribute,
  reviewScheduleIdOf,
  reviewStatusSearchAttribute,
} from './certification-messages.js';
import {
  accessRequestWorkflowIdOf,
  accessRequesterSearchAttribute,
  accessResourceSearchAttribute,
  accessStatusSearchAttribute,
  cancelUpdate,
  completeTaskUpdate,
  CONFLICT,
  decideUpdate,
  FORBIDDEN,
  invitationSettledSignal,
  type AccessRequestState,
  type AccessTaskState,
  type CancelInput,
  type CompleteTaskInput,
  type DecideInput,
  revokeAccessUpdate,
  type RevokeInput,
} from './access-request-messages.js';
import { ApplicationFailure } from '@temporalio/common';
import { ActivityFailure, WorkflowFailedError, WorkflowNotFoundError, WorkflowUpdateFailedError, type WorkflowExecutionDescription } from '@temporalio/client';
import { ScheduleNotFoundError, ScheduleOverlapPolicy, WorkflowExecutionAlreadyStartedError, type ScheduleOptionsAction, type ScheduleSpec, type WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';

/** Custom search attributes this project sets; registered by {@link ensureSearchAttributes}. */
export const userNameSearchAttribute = defineSearchAttributeKey('userName', SearchAttributeType.KEYWORD);
export const connectorSearchAttribute = defineSearchAttributeKey('connector', SearchAttributeType.KEYWORD);

export function userSyncWorkflowId(userId: string): string {
  return `user-sync:${userId}`;
}

export interface UserChangedNotice {
  userId: string;
  userName: string;
  seq: number;
  /** When the change was committed (epoch ms). */
  at?: number;
}

export interface UserSyncTiming {
  idleMs: number;
  debounceMs: number;
}

/**
 * Tells the user's userSync workflow that the user changed, starting the workflow if it is not
 * running (signal-with-start). Safe to repeat: the workflow ignores sequences it has seen.
 */
export async function notifyUserChanged(
  client: Client,
  taskQueue: string,
  timing: UserSyncTiming,
  notice: UserChangedNotice,
): Promise<void> {
  await client.workflow.signalWithStart(userSync, {
    workflowId: userSyncWorkflowId(notice.userId),
    taskQueue,
    args: [{ userId: notice.userId, idleMs: timing.idleMs, debounceMs: timing.debounceMs }],
    signal: userChangedSignal,
    signalArgs: [{ seq: notice.seq, ...(notice.at !== undefined ? { at: notice.at } : {}) }],
    // Bounded: Temporal refuses the whole call when a search attribute value is too large.
    memo: { userName: boundedVisibilityValue(notice.userName) },
    typedSearchAttributes: new TypedSearchAttributes([{ key: userNameSearchAttribute, value: boundedVisibilityValue(notice.userName) }]),
    // What the Temporal UI lists for the workflow; its current details say what the last sync did.
    staticSummary: `sync ${boundedVisibilityValue(notice.userName)}`,
    staticDetails: `Keeps the accounts and memberships of ${boundedVisibilityValue(notice.userName)} (user ${notice.userId}) in line with the directory.`,
  });
}

export async function queryUserSyncStatus(client: Client, userId: string): Promise<UserSyncStatus> {
  return await client.workflow.getHandle(userSyncWorkflowId(userId)).query(userSyncStatusQuery);
}

/**
 * Registers the project's custom search attributes in the namespace. Idempotent; every process
 * calls it at start-up, so a fresh Temporal cluster needs no manual step.
 */
export async function ensureSearchAttributes(connection: Connection, namespace: string): Promise<void> {
  const keyword = proto.temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD;
  const int = proto.temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_INT;
  const wanted = {
    [userNameSearchAttribute.name]: keyword,
    [connectorSearchAttribute.name]: keyword,
    ...Object.fromEntries(ACCESS_SEARCH_ATTRIBUTES.map((k) => [k.name, keyword])),
    [reviewCampaignSearchAttribute.name]: keyword,
    [reviewStatusSearchAttribute.name]: keyword,
    [reviewPendingSearchAttribute.name]: int,
    [reviewDecidedSearchAttribute.name]: int,
  };
  const existing = await connection.operatorService.listSearchAttributes({ namespace });
  const missing = Object.fromEntries(
    Object.entries(wanted).filter(([name]) => !(name in (existing.customAttributes ?? {}))),
  );
  if (Object.keys(missing).length === 0) return;
  try {
    await connection.operatorService.addSearchAttributes({ namespace, searchAttributes: missing });
  } catch (err) {
    // Another process registered them first.
    if ((err as { code?: number }).code !== 6 /* ALREADY_EXISTS */) throw err;
  }
}

export function reconcileWorkflowId(connectorId: string): string {
  return `reconcile:${connectorId}`;
}

function reconcileSummaryLine(connectorId: string, dryRun: boolean): string {
  return dryRun ? `reconcile ${connectorId} (dry run: report drift, change nothing)` : `reconcile ${connectorId}`;
}

/** Starts a reconciliation of one connector now; undefined when one is already running. */
export async function startReconcileRun(
  client: Client,
  taskQueue: string,
  connectorId: string,
  dryRun: boolean,
): Promise<WorkflowHandleWithFirstExecutionRunId<typeof reconcile> | undefined> {
  try {
    return await client.workflow.start(reconcile, {
      workflowId: reconcileWorkflowId(connectorId),
      taskQueue,
      args: [{ connectorId, dryRun }],
      memo: { connector: connectorId, dryRun },
      staticSummary: reconcileSummaryLine(connectorId, dryRun),
      typedSearchAttributes: new TypedSearchAttributes([{ key: connectorSearchAttribute, value: boundedVisibilityValue(connectorId) }]),
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) return undefined;
    throw err;
  }
}

/** Where a reconciliation started on demand stands, as Temporal knows it. */
export interface ReconcileRunState {
  workflowId: string;
  /** The run described: the one asked about, or the latest of its chain once it continued as new. */
  runId: string;
  status: 'running' | 'completed' | 'failed' | 'cancelled' | 'terminated' | 'timedOut';
  /** A dry run (only reports); as it was started. */
  dryRun: boolean;
  startedAt: Date;
  closedAt: Date | undefined;
  /** What it found and did, once completed. */
  summary?: ReconcileSummary;
  /** Why it did not complete, in the failure's own words. */
  failure?: string;
}

/** What a failed run says went wrong: the failure inside the workflow's and the activity's wrappers. */
function failureMessage(err: unknown): string {
  let e: unknown = err;
  while ((e instanceof WorkflowFailedError || e instanceof ActivityFailure) && e.cause) e = e.cause;
  return e instanceof Error ? e.message : String(e);
}

/**
 * How the connector's reconciliation run `runId` (as {@link startReconcileRun} answered it) is
 * doing; undefined when Temporal knows no such run.
 */
export async function describeReconcileRun(client: Client, connectorId: string, runId: string): Promise<ReconcileRunState | undefined> {
  const workflowId = reconcileWorkflowId(connectorId);
  let handle = client.workflow.getHandle<typeof reconcile>(workflowId, runId);
  let described: WorkflowExecutionDescription;
  let dryRun: boolean;
  try {
    described = await handle.describe();
    dryRun = described.memo?.dryRun === true;
    // A large target continues as new: what matters is the chain's latest run.
    if (described.status.name === 'CONTINUED_AS_NEW') {
      handle = client.workflow.getHandle<typeof reconcile>(workflowId);
      described = await handle.describe();
    }
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return undefined;
    throw err;
  }
  const base = { workflowId, runId: described.runId, dryRun, startedAt: described.startTime, closedAt: described.closeTime };
  switch (described.status.name) {
    case 'RUNNING':
    case 'CONTINUED_AS_NEW':
      return { ...base, status: 'running' };
    case 'COMPLETED':
      return { ...base, status: 'completed', summary: await handle.result() };
    default: {
      const status = described.status.name === 'CANCELLED' ? 'cancelled' : described.status.name === 'TERMINATED' ? 'terminated' : described.status.name === 'TIMED_OUT' ? 'timedOut' : 'failed';
      let failure = `the workflow ended ${status}`;
      try {
        await handle.result();
      } catch (err) {
        failure = failureMessage(err);
      }
      return { ...base, status, failure };
    }
  }
}

export type { ReconcileSummary, TestConnectionResult };

/** Runs the connector's validate() in a worker and answers how it went. */
export async function testConnectorConnection(client: Client, taskQueue: string, connectorId: string): Promise<TestConnectionResult> {
  return await client.workflow.execute(testConnection, {
    workflowId: `test-connection:${connectorId}`,
    taskQueue,
    args: [{ connectorId }],
    workflowIdConflictPolicy: 'USE_EXISTING',
    workflowExecutionTimeout: '1 minute',
  });
}

/**
 * Makes the connector's reconcile Schedule match its configuration: every `everyMinutes` minutes,
 * or no schedule when null. Overlapping runs are skipped. Idempotent.
 */
export async function ensureReconcileSchedule(client: Client, taskQueue: string, connectorId: string, everyMinutes: number | null): Promise<void> {
  const scheduleId = reconcileWorkflowId(connectorId);
  await ensureIntervalSchedule(client, scheduleId, everyMinutes, { connector: connectorId }, {
    type: 'startWorkflow',
    workflowType: reconcile,
    workflowId: scheduleId,
    taskQueue,
    args: [{ connectorId }],
    memo: { connector: connectorId },
    staticSummary: reconcileSummaryLine(connectorId, false),
    typedSearchAttributes: new TypedSearchAttributes([{ key: connectorSearchAttribute, value: boundedVisibilityValue(connectorId) }]),
  });
}

/**
 * Makes Schedule `scheduleId` start `action` every `everyMinutes` (overlapping runs skipped), or
 * deletes it when null; an existing Schedule keeps its action and gets the new interval. Idempotent.
 */
async function ensureIntervalSchedule(client: Client, scheduleId: string, everyMinutes: number | null, memo: Record<string, string>, action: ScheduleOptionsAction): Promise<void> {
  await ensureSchedule(client, scheduleId, everyMinutes === null ? null : { intervals: [{ every: `${everyMinutes}m` }] }, memo, action);
}

/** Makes Schedule `scheduleId` start `action` per `spec` (overlaps skipped), or deletes it when null. Idempotent. */
async function ensureSchedule(client: Client, scheduleId: string, spec: ScheduleSpec | null, memo: Record<string, string>, action: ScheduleOptionsAction): Promise<void> {
  const handle = client.schedule.getHandle(scheduleId);
  if (spec === null) {
    await handle.delete().catch((err: unknown) => {
      if (!(err instanceof ScheduleNotFoundError)) throw err;
    });
    return;
  }
  try {
    await handle.update((prev) => ({ ...prev, spec }));
  } catch (err) {
    if (!(err instanceof ScheduleNotFoundError)) throw err;
    await client.schedule.create({ scheduleId, spec, action, policies: { overlap: ScheduleOverlapPolicy.SKIP }, memo });
  }
}

export { Client, Connection };

// ------------------------------------------------------------------ access requests

const ACCESS_SEARCH_ATTRIBUTES = [accessRequesterSearchAttribute, accessResourceSearchAttribute, accessStatusSearchAttribute];

export function accessRequestWorkflowId(requestId: string): string {
  return accessRequestWorkflowIdOf(requestId);
}

/** Timing of accessRequest workflows that deployments (and tests) may tune. */
export interface AccessRequestTiming {
  fulfilmentPollMs?: number;
  fulfilmentPollMaxMs?: number;
  fulfilmentTimeoutMs?: number;
}

/**
 * Starts the request's accessRequest workflow. Safe to repeat: a second start of the same request,
 * running or finished, does nothing (the workflow id is never reused).
 */
export async function startAccessRequest(
  client: Client,
  taskQueue: string,
  request: { requestId: string; requester: string; resource: string },
  timing: AccessRequestTiming = {},
): Promise<void> {
  try {
    await client.workflow.start(accessRequest, {
      workflowId: accessRequestWorkflowId(request.requestId),
      taskQueue,
      args: [{ requestId: request.requestId, ...timing }],
      workflowIdReusePolicy: 'REJECT_DUPLICATE',
      memo: { requester: boundedVisibilityValue(request.requester), resource: boundedVisibilityValue(request.resource) },
      typedSearchAttributes: new TypedSearchAttributes([
        { key: accessRequesterSearchAttribute, value: boundedVisibilityValue(request.requester) },
        { key: accessResourceSearchAttribute, value: boundedVisibilityValue(request.resource) },
        { key: accessStatusSearchAttribute, value: 'pending' },
      ]),
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) return;
    throw err;
  }
}

/** A refused decision or cancellation: 403 (may not) or 409 (the request or stage is closed), with the request's state when known. */
export class AccessRequestRefusal extends Error {
  constructor(
    readonly status: 403 | 409,
    message: string,
    readonly state: AccessRequestState | undefined,
  ) {
    super(message);
    this.name = 'AccessRequestRefusal';
  }
}

/** The request's workflow is not running (not started yet, or finished): the caller reads the database instead. */
export class AccessRequestNotRunning extends Error {}

async function accessUpdate<A>(client: Client, requestId: string, run: (handle: ReturnType<Client['workflow']['getHandle']>) => Promise<A>): Promise<A> {
  const handle = client.workflow.getHandle(accessRequestWorkflowId(requestId));
  try {
    return await run(handle);
  } catch (err) {
    if (err instanceof WorkflowUpdateFailedError && err.cause instanceof ApplicationFailure) {
      const cause = err.cause;
      if (cause.type === FORBIDDEN || cause.type === CONFLICT) {
        throw new AccessRequestRefusal(cause.type === FORBIDDEN ? 403 : 409, cause.message, cause.details?.[0] as AccessRequestState | undefined);
      }
    }
    if (err instanceof WorkflowNotFoundError) throw new AccessRequestNotRunning(`the workflow of access request ${requestId} is not running`, { cause: err });
    throw err;
  }
}

/**
 * Approves or rejects the request's current stage as `approverId` and answers the request's state
 * after the decision. Throws {@link AccessRequestRefusal} when the workflow refuses it and
 * {@link AccessRequestNotRunning} when no workflow runs for the request.
 */
export async function decideAccessRequest(client: Client, requestId: string, input: DecideInput): Promise<AccessRequestState> {
  return await accessUpdate(client, requestId, (h) => h.executeUpdate(decideUpdate, { args: [input] }));
}

/** Cancels a pending request; throws like {@link decideAccessRequest}. */
export async function cancelAccessRequest(client: Client, requestId: string, input: CancelInput): Promise<AccessRequestState> {
  return await accessUpdate(client, requestId, (h) => h.executeUpdate(cancelUpdate, { args: [input] }));
}

/** Reports the request's manual task done or failed; throws like {@link decideAccessRequest}. */
export async function completeAccessTask(client: Client, requestId: string, input: CompleteTaskInput): Promise<AccessTaskState> {
  return await accessUpdate(client, requestId, (h) => h.executeUpdate(completeTaskUpdate, { args: [input] }));
}

/**
 * Revokes manually fulfilled access: recorded as `revoked`, and the fulfilment group gets the
 * revocation task; answers once the task is open. Throws like {@link decideAccessRequest}.
 */
export async function revokeManualAccess(client: Client, requestId: string, input: RevokeInput): Promise<AccessRequestState> {
  return await accessUpdate(client, requestId, (h) => h.executeUpdate(revokeAccessUpdate, { args: [input] }));
}

/**
 * Tells an invitation request's workflow that its invitation was redeemed or revoked, so it looks
 * at once. Best effort: a workflow that is not running (finished, or not started) is left alone,
 * and the workflow looks again by itself at the invitation's expiry anyway.
 */
export async function signalInvitationSettled(client: Client, requestId: string): Promise<void> {
  try {
    await client.workflow.getHandle(accessRequestWorkflowId(requestId)).signal(invitationSettledSignal);
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return;
    throw err;
  }
}

// ------------------------------------------------------------------ sources

export function sourceImportWorkflowId(sourceId: string): string {
  return `source-import:${sourceId}`;
}

/** Starts an import of one source now; undefined when one is already running. */
export async function startSourceImportRun(client: Client, taskQueue: string, sourceId: string): Promise<WorkflowHandleWithFirstExecutionRunId<typeof sourceImport> | undefined> {
  try {
    return await client.workflow.start(sourceImport, {
      workflowId: sourceImportWorkflowId(sourceId),
      taskQueue,
      args: [{ sourceId }],
      memo: { source: sourceId },
      staticSummary: `import users of source ${sourceId}`,
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) return undefined;
    throw err;
  }
}

/** Makes the source's import Schedule match its configuration (every `everyMinutes`, or none). Idempotent. */
export async function ensureSourceImportSchedule(client: Client, taskQueue: string, sourceId: string, everyMinutes: number | null): Promise<void> {
  const scheduleId = sourceImportWorkflowId(sourceId);
  await ensureIntervalSchedule(client, scheduleId, everyMinutes, { source: sourceId }, {
    type: 'startWorkflow',
    workflowType: sourceImport,
    workflowId: scheduleId,
    taskQueue,
    args: [{ sourceId }],
    memo: { source: sourceId },
    staticSummary: `import users of source ${sourceId}`,
  });
}

// ------------------------------------------------------------------ access reviews

export function certificationWorkflowId(campaignId: string): string {
  return certificationWorkflowIdOf(campaignId);
}

/** Starts the campaign's certification workflow. Safe to repeat: a second start does nothing. */
export async function startCertification(client: Client, taskQueue: string, campaign: { campaignId: string; name: string }): Promise<void> {
  try {
    await client.workflow.start(certification, {
      workflowId: certificationWorkflowId(campaign.campaignId),
      taskQueue,
      args: [{ campaignId: campaign.campaignId }],
      workflowIdReusePolicy: 'REJECT_DUPLICATE',
      memo: { campaign: boundedVisibilityValue(campaign.name) },
      staticSummary: `access review ${boundedVisibilityValue(campaign.name)}`,
      typedSearchAttributes: new TypedSearchAttributes([
        { key: reviewCampaignSearchAttribute, value: boundedVisibilityValue(campaign.name) },
        { key: reviewStatusSearchAttribute, value: 'generating' },
      ]),
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) return;
    throw err;
  }
}

/** Tells a campaign's workflow that items were decided (best effort: it reads its progress at its next timer anyway). */
export async function signalReviewDecided(client: Client, workflowId: string): Promise<void> {
  try {
    await client.workflow.getHandle(workflowId).signal(reviewDecidedSignal);
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return;
    throw err;
  }
}

export function reviewScheduleId(name: string): string {
  return reviewScheduleIdOf(name);
}

/**
 * Makes the Temporal Schedule of review schedule `name` open a campaign per `cadence` (a cron
 * expression in UTC, or an interval in seconds), or deletes it when null. Idempotent.
 */
export async function ensureReviewSchedule(client: Client, taskQueue: string, name: string, cadence: { cron: string } | { seconds: number } | null): Promise<void> {
  const scheduleId = reviewScheduleId(name);
  const spec: ScheduleSpec | null = cadence === null ? null : 'cron' in cadence ? { cronExpressions: [cadence.cron] } : { intervals: [{ every: `${cadence.seconds}s` }] };
  await ensureSchedule(client, scheduleId, spec, { reviewSchedule: name }, {
    type: 'startWorkflow',
    workflowType: certification,
    workflowId: scheduleId,
    taskQueue,
    args: [{ schedule: name }],
    memo: { reviewSchedule: name },
    staticSummary: `access review ${boundedVisibilityValue(name)} (scheduled)`,
    typedSearchAttributes: new TypedSearchAttributes([
      { key: reviewCampaignSearchAttribute, value: boundedVisibilityValue(name) },
      { key: reviewStatusSearchAttribute, value: 'generating' },
    ]),
  });
}

/** Opens a campaign of review schedule `name` now, as a firing of its Schedule would. */
export async function triggerReviewSchedule(client: Client, name: string): Promise<void> {
  await client.schedule.getHandle(reviewScheduleId(name)).trigger(ScheduleOverlapPolicy.ALLOW_ALL);
}
