/**
 * Messages of the `certification` workflow (one per access review campaign), shared by the
 * workflow and the client helpers in ./client.ts. Nothing here may import Node built-ins: it runs
 * inside the workflow sandbox.
 */
import { defineQuery, defineSignal } from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/** Search attributes of certification workflows: the campaign, where it stands, and its progress. */
export const reviewCampaignSearchAttribute = defineSearchAttributeKey('reviewCampaign', SearchAttributeType.KEYWORD);
export const reviewStatusSearchAttribute = defineSearchAttributeKey('reviewStatus', SearchAttributeType.KEYWORD);
export const reviewPendingSearchAttribute = defineSearchAttributeKey('reviewPending', SearchAttributeType.INT);
export const reviewDecidedSearchAttribute = defineSearchAttributeKey('reviewDecided', SearchAttributeType.INT);

export interface CertificationInput {
  /** The campaign recorded by the API; absent when a schedule fires (then `schedule` names it). */
  campaignId?: string;
  schedule?: string;
  /** Reminders already sent (seconds before the due date), carried over a continue-as-new. */
  remindersSent?: number[];
  /** How long to wait after a decision before reading the progress again (ms). */
  progressDebounceMs?: number;
}

export interface CertificationState {
  campaignId: string | null;
  status: 'generating' | 'open' | 'escalated' | 'closed';
  total: number;
  pending: number;
  kept: number;
  revoked: number;
}

/** Sent after decisions, so the workflow refreshes the progress it shows. */
export const reviewDecidedSignal = defineSignal('reviewDecided');
export const certificationStateQuery = defineQuery<CertificationState>('certificationState');
export const certificationWorkflowIdOf = (campaignId: string) => `certification:${campaignId}`;
/** Workflow id prefix of the campaigns a review schedule opens (Temporal appends the firing time). */
export const reviewScheduleIdOf = (name: string) => `review-schedule:${name}`;
