/**
 * reconcile: one run per connector (id `reconcile:<connectorId>`), started by its Temporal Schedule
 * or on demand. Streams the target's accounts and each entitlement's holders page by page (one
 * activity per page, so memory is bounded and progress survives restarts), then compares and, in
 * enforce mode, hands the fixes to the users' userSync workflows. A dry run only reports.
 */
import * as wf from '@temporalio/workflow';
import type { Activities } from './activities/index.js';
import type { ReconcileSummary } from './activities/reconcile.js';

const acts = wf.proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '5 minutes', maximumAttempts: 25 },
});

/** Pages read before continuing as new, to keep the history short on large targets. */
const PAGES_PER_RUN = 400;

export interface ReconcileInput {
  connectorId: string;
  dryRun?: boolean;
  /** Carried across continue-as-new. */
  resume?: {
    runId: string;
    entitlements: Array<{ id: string }>;
    canListAccounts: boolean;
    canListGrants: boolean;
    /** -1: accounts; otherwise the index of the entitlement being read. */
    phase: number;
    cursor?: string;
  };
}

export async function reconcile(input: ReconcileInput): Promise<ReconcileSummary> {
  const dryRun = input.dryRun ?? false;
  const state = input.resume ?? { ...(await acts.startReconcile({ connectorId: input.connectorId, dryRun })), phase: -1 };
  let { phase, cursor } = state;
  let pages = 0;
  const last = state.canListGrants ? state.entitlements.length - 1 : -1;
  for (; phase <= last; phase++, cursor = undefined) {
    if (phase === -1 && !state.canListAccounts) continue;
    do {
      if (pages++ >= PAGES_PER_RUN) {
        return await wf.continueAsNew<typeof reconcile>({ ...input, resume: { ...state, phase, ...(cursor ? { cursor } : {}) } });
      }
      const base = { runId: state.runId, connectorId: input.connectorId, ...(cursor ? { cursor } : {}) };
      const page = phase === -1 ? await acts.listTargetAccounts(base) : await acts.listTargetGrants({ ...base, entitlementId: state.entitlements[phase]!.id });
      cursor = page.next;
    } while (cursor);
  }
  return await acts.compareAndFix({ runId: state.runId, connectorId: input.connectorId, dryRun });
}
