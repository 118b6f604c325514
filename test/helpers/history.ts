/** Reading workflow histories and visibility in tests. */
import type { Client } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import proto from '@temporalio/proto';

export const EventType = proto.temporal.api.enums.v1.EventType;

/** Counts events of a type over every run of a workflow id. */
export async function countEvents(client: Client, workflowId: string, type: proto.temporal.api.enums.v1.EventType): Promise<number> {
  let n = 0;
  for await (const execution of client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) {
    const history = await client.workflow.getHandle(workflowId, execution.runId).fetchHistory();
    n += (history.events ?? []).filter((e) => e.eventType === type).length;
  }
  return n;
}

export async function hasEvent(client: Client, workflowId: string, type: proto.temporal.api.enums.v1.EventType): Promise<boolean> {
  try {
    const history = await client.workflow.getHandle(workflowId).fetchHistory();
    return (history.events ?? []).some((e) => e.eventType === type);
  } catch {
    return false;
  }
}

/**
 * The identities of the workers that polled `taskQueue` for workflow tasks lately (a worker's
 * default identity is `<pid>@<host>`): a worker process that shows up here has started.
 */
export async function workflowPollers(client: Client, namespace: string, taskQueue: string): Promise<string[]> {
  const { pollers } = await client.workflowService.describeTaskQueue({
    namespace,
    taskQueue: { name: taskQueue },
    taskQueueType: proto.temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
  });
  return (pollers ?? []).map((p) => p.identity ?? '');
}

/** How many executions (runs started by a client, not continue-as-new) each workflow id has. */
export async function executionsByWorkflowId(client: Client, query: string): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for await (const execution of client.workflow.list({ query })) {
    counts.set(execution.workflowId, (counts.get(execution.workflowId) ?? 0) + 1);
  }
  return counts;
}

/** The activity type a local activity's marker records, if the event is one. */
function localActivityType(e: proto.temporal.api.history.v1.IHistoryEvent): string | undefined {
  if (e.eventType !== EventType.EVENT_TYPE_MARKER_RECORDED || e.markerRecordedEventAttributes?.markerName !== 'core_local_activity') return undefined;
  const data = e.markerRecordedEventAttributes.details?.['data']?.payloads?.[0];
  if (!data) return undefined;
  const marker = defaultPayloadConverter.fromPayload<{ activity_type?: string; activityType?: string }>(data);
  return marker.activity_type ?? marker.activityType;
}

/** The local activities a history ran (their markers), in order, with each one's result. */
export function localActivities(events: proto.temporal.api.history.v1.IHistoryEvent[]): Array<{ type: string; result: unknown }> {
  return events.flatMap((e) => {
    const type = localActivityType(e);
    if (type === undefined) return [];
    const result = e.markerRecordedEventAttributes?.details?.['result']?.payloads?.[0];
    return [{ type, result: result ? defaultPayloadConverter.fromPayload<unknown>(result) : undefined }];
  });
}

/**
 * How many times an activity of this type was scheduled, over every run of a workflow id: as a
 * regular activity, or run as a local activity (recorded as a marker).
 */
export async function countActivities(client: Client, workflowId: string, activityType: string): Promise<number> {
  let n = 0;
  for await (const execution of client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) {
    const history = await client.workflow.getHandle(workflowId, execution.runId).fetchHistory();
    n += (history.events ?? []).filter(
      (e) =>
        (e.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED && e.activityTaskScheduledEventAttributes?.activityType?.name === activityType) ||
        localActivityType(e) === activityType,
    ).length;
  }
  return n;
}
