/**
 * Messages of the `accessRequest` workflow, shared by the workflow and the typed client helpers in
 * ./client.ts. Nothing here may import Node built-ins: it runs inside the workflow sandbox.
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/** Search attributes of accessRequest workflows: who asked, for what, and where it stands. */
export const accessRequesterSearchAttribute = defineSearchAttributeKey('accessRequester', SearchAttributeType.KEYWORD);
export const accessResourceSearchAttribute = defineSearchAttributeKey('accessResource', SearchAttributeType.KEYWORD);
export const accessStatusSearchAttribute = defineSearchAttributeKey('accessStatus', SearchAttributeType.KEYWORD);

export type AccessDecision = 'approve' | 'reject';
export type AccessRequestStatus = 'pending' | 'approved' | 'invited' | 'rejected' | 'cancelled' | 'expired' | 'fulfilled' | 'failed' | 'revoked';

export interface AccessRequestInput {
  requestId: string;
  /**
   * When to look whether granted access reached the target if userSync has not said so (ms): first
   * after `fulfilmentPollMs`, then at doubling intervals up to `fulfilmentPollMaxMs`.
   */
  fulfilmentPollMs?: number;
  fulfilmentPollMaxMs?: number;
  /** How long automatic fulfilment may take before the request is recorded as failed (ms). */
  fulfilmentTimeoutMs?: number;
}

/** One stage of a request: who decides, by what rule, and the decisions so far. */
export interface AccessStageState {
  stage: number;
  name: string;
  rule: 'any' | 'all' | 'quorum';
  quorum: number | null;
  approvers: string[];
  decisions: Record<string, AccessDecision>;
  status: 'open' | 'approved' | 'rejected' | 'skipped' | 'closed';
}

/** A request's progress, as every decision answers it. */
export interface AccessRequestState {
  requestId: string;
  status: AccessRequestStatus;
  stage: number;
  reason: string | null;
  stages: AccessStageState[];
}

export interface DecideInput {
  /** The directory user deciding (already authenticated by the front end). */
  approverId: string;
  decision: AccessDecision;
  comment?: string;
}

export interface CancelInput {
  /** The directory user cancelling; must be the requester unless `asAdmin`. */
  actorId: string;
  asAdmin?: boolean;
}

export interface CompleteTaskInput {
  taskId: string;
  /** The directory user closing the task; must be one of its assignees. */
  actorId: string;
  outcome: 'done' | 'failed';
  note?: string;
}

export interface RevokeInput {
  /** Who revokes, for the audit log (an admin token's name, or the requester's userName when they release it). */
  actor: string;
  reason: string;
  /** The requester gives up their own access (audited as `access-request.released`); `via`: the front end or token used. */
  release?: { via: string };
}

/** The state of the request's manual task, as closing it answers. */
export interface AccessTaskState {
  taskId: string;
  kind: 'grant' | 'revoke';
  status: 'open' | 'done' | 'failed';
  request: AccessRequestState;
}

/**
 * Failure types a refused Update carries (`ApplicationFailure.type`), so front ends answer 403 or
 * 409 without parsing messages.
 */
export const FORBIDDEN = 'AccessForbidden';
export const CONFLICT = 'AccessConflict';

/** Approve or reject the current stage. Refused (before history) for non-approvers, the requester and closed stages. */
export const decideUpdate = defineUpdate<AccessRequestState, [DecideInput]>('decide');
/** The requester withdraws a pending request. */
export const cancelUpdate = defineUpdate<AccessRequestState, [CancelInput]>('cancel');
/** A fulfilment group member reports a manual task done or failed. */
export const completeTaskUpdate = defineUpdate<AccessTaskState, [CompleteTaskInput]>('completeTask');
export const accessRequestStateQuery = defineQuery<AccessRequestState>('accessRequestState');
/**
 * Sent by the requester's userSync after each round that had this request's grant to apply: the
 * request looks at once whether its access is in place, instead of waiting for its next check.
 */
export const fulfilmentProgressSignal = defineSignal('fulfilmentProgress');
/**
 * Sent by the gateway when an invitation request's invitation was redeemed or revoked: the request
 * looks at once where its invitation stands, instead of at its next check (or its expiry).
 */
export const invitationSettledSignal = defineSignal('invitationSettled');
/** Workflow id of an access request's workflow (also used by userSync to signal it). */
export const accessRequestWorkflowIdOf = (requestId: string) => `access-request:${requestId}`;
/**
 * An administrator takes manually fulfilled access away, or its requester gives it up: the request
 * records `revoked` and a revocation task opens for the fulfilment group. Refused (409) when the
 * request holds no running manual access.
 */
export const revokeAccessUpdate = defineUpdate<AccessRequestState, [RevokeInput]>('revokeAccess');
