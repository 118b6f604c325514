/**
 * Names and payloads of workflow messages, shared by workflow code and the typed client helpers in
 * ./client.ts. Nothing here may import Node built-ins: it runs inside the workflow sandbox.
 */
import { defineQuery, defineSignal } from '@temporalio/workflow';

export interface UserSyncInput {
  userId: string;
  /** How long the workflow waits for further changes before completing (ms). */
  idleMs: number;
  /** How long to let a burst of changes settle before syncing (ms). */
  debounceMs: number;
  /** Carried across continue-as-new: the highest change sequence already applied. */
  appliedSeq?: number;
  /** Carried across continue-as-new: the highest change sequence announced. */
  pendingSeq?: number;
  /** Carried across continue-as-new: when a grant of the user starts or ends next (epoch ms). */
  nextChangeAt?: number;
  /** Carried across continue-as-new: what happens then, in words (the timer's summary). */
  nextChange?: string;
}

export interface UserChange {
  /** The outbox row id of the change; strictly increasing per database. */
  seq: number;
  /** When the change was committed (epoch ms), so the workflow knows whether it has settled already. */
  at?: number;
}

export interface UserSyncStatus {
  appliedSeq: number;
  pendingSeq: number;
  syncs: number;
}

/** "Something about this user changed up to `seq`": the workflow reloads the user and syncs. */
export const userChangedSignal = defineSignal<[UserChange]>('userChanged');
export const userSyncStatusQuery = defineQuery<UserSyncStatus>('userSyncStatus');
