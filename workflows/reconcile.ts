/**
 * reconcile: one run per connector (id `reconcile:<connectorId>`), started by its Temporal Schedule
 * or on demand. Streams the target's accounts and each entitlement's holders page by page (one
 * activity per page, so memory is bounded and progress survives restarts), then compares and, in
 * enforce mode, hands the fixes to the users' userSync workflows. A dry run only reports.
 * Every activity carries a summary for the Temporal UI, and the workflow's current details list
 * what was found and what was done, by name.
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
    entitlements: Array<{ id: string; name?: string }>;
    canListAccounts: boolean;
    canListGrants: boolean;
    /** -1: accounts; otherwise the index of the entitlement being read. */
    phase: number;
    cursor?: string;
  };
}

export async function reconcile(input: ReconcileInput): Promise<ReconcileSummary> {
  const dryRun = input.dryRun ?? false;
  const c = input.connectorId;
  const state = input.resume ?? {
    ...(await acts.startReconcile.executeWithOptions({ summary: `open a ${dryRun ? 'dry-run ' : ''}reconciliation of ${c}` }, [{ connectorId: c, dryRun }])),
    phase: -1,
  };
  let { phase, cursor } = state;
  let pageNo = 0;
  let pages = 0;
  const last = state.canListGrants ? state.entitlements.length - 1 : -1;
  for (; phase <= last; phase++, cursor = undefined, pageNo = 0) {
    if (phase === -1 && !state.canListAccounts) continue;
    do {
      if (pages++ >= PAGES_PER_RUN) {
        return await wf.continueAsNew<typeof reconcile>({ ...input, resume: { ...state, phase, ...(cursor ? { cursor } : {}) } });
      }
      const base = { runId: state.runId, connectorId: input.connectorId, ...(cursor ? { cursor } : {}) };
      pageNo++;
      const entitlement = phase === -1 ? undefined : state.entitlements[phase]!;
      const page = entitlement
        ? await acts.listTargetGrants.executeWithOptions({ summary: `read holders of ${entitlement.name ?? entitlement.id} in ${c}, page ${pageNo}` }, [{ ...base, entitlementId: entitlement.id }])
        : await acts.listTargetAccounts.executeWithOptions({ summary: `read accounts in ${c}, page ${pageNo}` }, [base]);
      cursor = page.next;
    } while (cursor);
  }
  const summary = await acts.compareAndFix.executeWithOptions(
    { summary: dryRun ? `compare ${c} with the directory (dry run: change nothing)` : `compare ${c} with the directory and fix the drift` },
    [{ runId: state.runId, connectorId: c, dryRun }],
  );
  const lines = summary.sample.map((d) => `- ${d.found}: ${d.done}`);
  const more = summary.drift.reduce((n, d) => n + d.count, 0) - summary.sample.length;
  wf.setCurrentDetails(
    `${summary.accountsSeen} accounts and ${summary.grantsSeen} memberships read from ${c} in ${summary.apiCalls} calls; ` +
      (lines.length ? `drift:\n\n${lines.join('\n')}${more > 0 ? `\n- … and ${more} more (GET /api/connectors/${c}/drift)` : ''}` : 'no drift'),
  );
  return summary;
}
