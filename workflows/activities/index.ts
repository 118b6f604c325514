/**
 * Activities: the only place workflow logic touches the outside world. Built by a factory over
 * injected dependencies so the worker wires the real pool and tests wire their own database.
 * Every activity is idempotent: Temporal may run one more than once.
 */
import { Context } from '@temporalio/activity';
import type { Db } from '../../core/db/pool.js';
import type { ConnectorRuntime } from './connector-runtime.js';
import { applyStep, applySteps, planUserSync, recordFailure, validateConnector, type Step, type StepAction, type StepInput, type StepResult, type StepsProgress, type UserPlan } from './provisioning.js';
import * as access from './access-requests.js';
import type { AccessNotifier } from '../../core/access/notifier.js';
import { sourceActivities } from './sources.js';
import { reviewActivities } from './reviews.js';
import { finishReconcile, reconcilePage, startReconcile, type ReconcileStarted, type ReconcileSummary } from './reconcile.js';
import { SlackNotices, slackActivities } from './slack.js';
import type { SlackConfig } from '../../core/config.js';
import type { InvitationNotify } from '../../core/invitations/invitations.js';

export interface ActivityDeps {
  db: Db;
  connectors: ConnectorRuntime;
  /** Tells people about access requests (core/access/notifier.ts); absent: no notices. */
  accessNotifier?: AccessNotifier | undefined;
  /** The Slack app's settings (workflows/activities/slack.ts); absent: nothing is sent to Slack. */
  slack?: SlackConfig | undefined;
  /** The gateway's external base URL (PUBLIC_URL): Slack messages link to the console under it. */
  publicUrl?: string | undefined;
  /** Sends the links of invitations that approved access requests make (core/invitations); absent: such requests fail, saying so. */
  invitationNotify?: InvitationNotify | undefined;
  /** Told of every try of a provisioning step (the worker's metrics); absent: nobody. */
  observeStep?: ((connectorId: string, action: StepAction, outcome: 'ok' | 'error', seconds: number) => void) | undefined;
}

export interface SyncUserInput {
  userId: string;
  seq: number;
}

export interface SyncUserResult {
  /** `synced` for a live user, `deprovisioned` for a deleted or inactive one, `missing` if never known. */
  outcome: 'synced' | 'deprovisioned' | 'missing';
}

export function createActivities({ db, connectors, accessNotifier, slack, publicUrl, invitationNotify, observeStep }: ActivityDeps) {
  const slackNotices = slack ? new SlackNotices({ db, config: slack, publicUrl }) : undefined;
  const workflowId = () => Context.current().info.workflowExecution?.workflowId;
  /** Runs a step, telling `observeStep` (the worker's metrics) how it went. */
  const observed = (connectorId: string) => async (action: StepAction, run: () => Promise<StepResult>): Promise<StepResult> => {
    if (!observeStep) return await run();
    const started = process.hrtime.bigint();
    let outcome: 'ok' | 'error' = 'error';
    try {
      const result = await run();
      outcome = 'ok';
      return result;
    } finally {
      observeStep(connectorId, action, outcome, Number(process.hrtime.bigint() - started) / 1e9);
    }
  };
  const apply = async (action: StepAction, input: StepInput): Promise<StepResult> => await observed(input.connectorId)(action, () => applyStep(db, connectors, action, input));
  const step = (action: StepAction) => async (input: StepInput): Promise<StepResult> => await apply(action, { ...input, workflowId: workflowId() });
  return {
    /** Materializes the user's rule grants and plans, per connector, the steps to converge. */
    async planUserSync({ userId, seq }: { userId: string; seq?: number }): Promise<UserPlan> {
      return await planUserSync(db, connectors, userId, seq, workflowId());
    },
    // One activity per kind of step, so histories read as sentences in the Temporal UI.
    createAccount: step('createAccount'),
    updateAccount: step('updateAccount'),
    grantEntitlement: step('grantEntitlement'),
    revokeEntitlement: step('revokeEntitlement'),
    disableAccount: step('disableAccount'),
    deleteAccount: step('deleteAccount'),
    /** A connector's steps for one user in one go (in order; a retry resumes after the steps it reported done). */
    async applySteps(input: { userId: string; connectorId: string; steps: Step[] }): Promise<StepsProgress> {
      const context = Context.current();
      const resumed = context.info.heartbeatDetails as StepsProgress | undefined;
      return await applySteps(db, connectors, { ...input, workflowId: workflowId() }, resumed, (progress) => context.heartbeat({ done: [...progress.done] }), observed(input.connectorId));
    },
    /** One cheap authenticated call to the connector's target. */
    async validateConnector({ connectorId }: { connectorId: string }): Promise<void> {
      await validateConnector(connectors, connectorId);
    },
    /** Opens a reconciliation run of one connector. */
    async startReconcile(input: { connectorId: string; dryRun: boolean }): Promise<ReconcileStarted> {
      return await startReconcile(db, connectors, { ...input, workflowId: workflowId() });
    },
    /** Reads one page of the target's accounts. */
    async listTargetAccounts(input: { runId: string; connectorId: string; cursor?: string }): Promise<{ next?: string; count: number }> {
      return await reconcilePage(db, connectors, input);
    },
    /** Reads one page of an entitlement's holders in the target. */
    async listTargetGrants(input: { runId: string; connectorId: string; entitlementId: string; cursor?: string }): Promise<{ next?: string; count: number }> {
      return await reconcilePage(db, connectors, input);
    },
    /** Records drift and, in enforce mode, hands the fixes to the users' workflows. */
    async compareAndFix(input: { runId: string; connectorId: string; dryRun: boolean }): Promise<ReconcileSummary> {
      return await finishReconcile(db, connectors, input);
    },
    /** Records a connector's failed step (its reason visible through the API). */
    async recordProvisioningFailure(input: StepInput & { error: string }): Promise<void> {
      await recordFailure(db, { ...input, workflowId: workflowId() });
    },
    /**
     * Brings the user's downstream state in line with the directory, up to change `seq`, and
     * records how far it got. Re-running with the same or an older `seq` changes nothing.
     */
    async syncUser({ userId, seq }: SyncUserInput): Promise<SyncUserResult> {
      const { rows } = await db.query<{ active: boolean; deleted: boolean }>(
        'SELECT active, deleted_at IS NOT NULL AS deleted FROM users WHERE id = $1',
        [userId],
      );
      const user = rows[0];
      if (!user) return { outcome: 'missing' };
      const execution = Context.current().info.workflowExecution;
      await db.query(
        `INSERT INTO user_sync_state (user_id, synced_seq, workflow_id, run_id)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_id) DO UPDATE
           SET synced_seq = GREATEST(user_sync_state.synced_seq, EXCLUDED.synced_seq),
               synced_at = now(), workflow_id = EXCLUDED.workflow_id, run_id = EXCLUDED.run_id,
               syncs = user_sync_state.syncs + 1`,
        [userId, seq, execution?.workflowId ?? '', execution?.runId ?? ''],
      );
      return { outcome: user.deleted || !user.active ? 'deprovisioned' : 'synced' };
    },
    ...accessRequestActivities(db, accessNotifier, invitationNotify),
    ...slackActivities(slackNotices),
    ...sourceActivities(db),
    ...reviewActivities(db, accessNotifier, slackNotices),
  };
}

/** The accessRequest workflow's activities (./access-requests.ts), named to read well in the Temporal UI. */
function accessRequestActivities(db: Db, notifier: AccessNotifier | undefined, invitationNotify: InvitationNotify | undefined) {
  return {
    /** An approved invitation request: invites its email (once per request) and sends the link through the delivery channel. */
    inviteRequested: async ({ requestId }: { requestId: string }) => await access.inviteForRequest(db, invitationNotify, requestId, Context.current().info.attempt),
    /** Where the request's invitation stands: pending, redeemed, revoked or expired. */
    invitationProgress: async ({ requestId }: { requestId: string }) => await access.invitationProgress(db, requestId),
    /** Tells the recipients about the request (retried; recorded as failed after the last try). */
    notifyAccess: async (input: Parameters<typeof access.notifyAccess>[2]) => await access.notifyAccess(db, notifier, input, Context.current().info.attempt),
    /** Reads the request and the policy it was made under. */
    loadAccessRequest: async ({ requestId }: { requestId: string }) => ({ ...(await access.loadAccessRequest(db, requestId)), notices: notifier !== undefined }),
    /** Finds who decides a stage now (never the requester), applying the policy's rule for nobody. */
    resolveStageApprovers: async ({ requestId, stage, fromFunction }: { requestId: string; stage: number; fromFunction?: { ids: string[]; note?: string } }) =>
      await access.resolveStageApprovers(db, requestId, stage, fromFunction),
    /** Asks the stage's approver function who approves (a module named by the policy). */
    callApproverFunction: async ({ requestId, stage }: { requestId: string; stage: number }) => await access.callApproverFunction(db, requestId, stage),
    /** A stage timed out: its fallback group joins the approvers. */
    escalateStage: async ({ requestId, stage }: { requestId: string; stage: number }) => await access.escalateStage(db, requestId, stage),
    /** Records an accepted decision and its audit event. */
    recordDecision: async (input: Parameters<typeof access.recordDecision>[1]) => await access.recordDecision(db, input),
    /** Records an accepted decision and, when it closes its stage, what follows (statuses, the grant), in one transaction. */
    recordDecisionAndOutcome: async (input: Parameters<typeof access.recordDecisionAndOutcome>[1]) => await access.recordDecisionAndOutcome(db, input),
    /** Records the request's new status and its audit event. */
    recordRequestStatus: async (input: Parameters<typeof access.recordRequestStatus>[1]) => await access.recordRequestStatus(db, input),
    /** Writes the grant `request:<id>` for the requested duration and has userSync provision it. */
    grantRequestedAccess: async ({ requestId }: { requestId: string }) => await access.grantRequestedAccess(db, requestId),
    /** Opens a manual fulfilment (or revocation) task for the fulfilment group. */
    openFulfilmentTask: async ({ requestId, kind }: { requestId: string; kind: 'grant' | 'revoke' }) => await access.openFulfilmentTask(db, requestId, kind),
    /** Records a manual task as done or failed, with its note. */
    closeFulfilmentTask: async (input: Parameters<typeof access.closeFulfilmentTask>[1]) => await access.closeFulfilmentTask(db, input),
    /** Whether the granted access has reached the target yet. */
    checkFulfilment: async ({ requestId }: { requestId: string }) => await access.checkFulfilment(db, requestId),
    /** When the fulfilled access ends, and whether it was revoked or extended since. */
    whenAccessEnds: async ({ requestId }: { requestId: string }) => await access.whenAccessEnds(db, requestId),
    /** Records when manually given (or prolonged) access ends. */
    startManualAccess: async ({ requestId }: { requestId: string }) => await access.startManualAccess(db, requestId),
    /** For an extension: the still running manual access it prolongs, if any. */
    extendedManualAccess: async ({ requestId }: { requestId: string }) => await access.extendedManualAccess(db, requestId),
    /** Records manually given access as revoked by an administrator. */
    recordManualRevocation: async (input: Parameters<typeof access.recordManualRevocation>[1]) => await access.recordManualRevocation(db, input),
    /** Records that time-bound manual access ended. */
    recordAccessEnded: async ({ requestId }: { requestId: string }) => await access.recordAccessEnded(db, requestId),
  };
}

export type Activities = ReturnType<typeof createActivities>;
