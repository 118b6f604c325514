/**
 * The provisioning engine's activity-side logic: desired state from rules and grants, the plan that
 * makes each connector's target match it, and applying one step of that plan.
 *
 * Desired state: the user's active grants (reason `rule:<name>` materialized here from the rules,
 * `manual` or `request:<id>` from elsewhere), within their validity window, of enabled connectors.
 * Deprovisioning (user inactive or deleted) is the same computation with an empty desired state:
 * grants end, memberships are revoked, then each account is disabled or deleted per connector policy.
 * A user keeps an account in a target exactly while they hold at least one entitlement there.
 */
import { ApplicationFailure } from '@temporalio/activity';
import { randomUUID } from 'node:crypto';
import type { Db } from '../../core/db/pool.js';
import { withTransaction } from '../../core/db/pool.js';
import { matchesFilter, parseFilter } from '../../core/scim/filter/index.js';
import { SchemaRegistry } from '../../core/scim/schemas.js';
import { PermanentError, TransientError, type AccountInput, type Capability } from '../../connectors/index.js';
import type { ConnectorRuntime } from './connector-runtime.js';

export type StepAction = 'createAccount' | 'updateAccount' | 'grantEntitlement' | 'revokeEntitlement' | 'disableAccount' | 'deleteAccount';

export interface Step {
  action: StepAction;
  entitlementId?: string;
  /** What the step does, in words (the activity's summary in the Temporal UI). */
  summary: string;
}

export interface ConnectorPlan {
  connectorId: string;
  steps: Step[];
}

export interface UserPlan {
  userName: string;
  deprovision: boolean;
  connectors: ConnectorPlan[];
  /** When a grant of the user starts or ends next (epoch ms), so the workflow wakes up for it. */
  nextChangeAt?: number;
  /** What happens then, in words ("access to demo/oncall ends 2026-12-24T10:00:00Z"). */
  nextChange?: string;
  /** Approved access requests of the user waiting for their grant to reach the target (told after the round). */
  awaitingRequests?: string[];
}

export interface StepInput {
  userId: string;
  connectorId: string;
  entitlementId?: string;
  workflowId?: string;
}

interface UserRow {
  id: string;
  user_name: string;
  external_id: string | null;
  active: boolean;
  deleted: boolean;
  resource: Record<string, unknown>;
}

const registry = new SchemaRegistry();

async function loadUser(db: Db, userId: string): Promise<UserRow | undefined> {
  const { rows } = await db.query<UserRow>(
    'SELECT id, user_name, external_id, active, deleted_at IS NOT NULL AS deleted, resource FROM users WHERE id = $1',
    [userId],
  );
  return rows[0];
}

/**
 * Appends one `grant.<verb>` audit event per grant row that `changeSql` (an UPDATE or INSERT …
 * RETURNING the grant's columns) changed, in the same statement. The actor is `actorSql`, an
 * expression over the returned row `g` (a rule's grants are changed by the rule: its reason).
 */
function auditedGrantChange(changeSql: string, verb: 'created' | 'ended', actorSql: string, why: string): string {
  return `WITH g AS (${changeSql} RETURNING id, user_id, entitlement_id, reason, status, valid_from, valid_until, ended_at)
    INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after)
    SELECT ${actorSql}, 'grant.${verb}', 'Grant', g.id::text, '${why}',
           jsonb_build_object('id', g.id, 'userId', g.user_id, 'entitlementId', g.entitlement_id, 'reason', g.reason, 'status', g.status,
                              'validFrom', g.valid_from, 'validUntil', g.valid_until, 'endedAt', g.ended_at)
      FROM g`;
}

/**
 * Brings the user's rule-derived grants in line with the rules; ends every grant on deprovisioning.
 * Every grant it starts or ends is an audit event: by the rule (`rule:<name>`) when a rule starts
 * or stops applying, by the user's workflow when a validity window closes or the user is deprovisioned.
 */
async function materializeGrants(db: Db, user: UserRow, deprovision: boolean, workflowId: string): Promise<void> {
  await withTransaction(db, async (tx) => {
    // The audit events below hold the audit chain's lock until commit; the user's grant rows are
    // locked first, so that an admin API call ending one of them (which takes the row, then the
    // chain's lock) waits here instead of deadlocking with this transaction.
    await tx.query('SELECT 1 FROM grants WHERE user_id = $1 ORDER BY id FOR UPDATE', [user.id]);
    // Time-bound grants whose window has closed end here, at the time they were due.
    await tx.query(
      auditedGrantChange(
        `UPDATE grants SET status = 'ended', ended_at = valid_until WHERE user_id = $1 AND status = 'active' AND valid_until <= now()`,
        'ended',
        '$2',
        'validity window ended',
      ),
      [user.id, workflowId],
    );
    if (deprovision) {
      await tx.query(
        auditedGrantChange(`UPDATE grants SET status = 'ended', ended_at = now() WHERE user_id = $1 AND status = 'active'`, 'ended', '$2', 'user deprovisioned'),
        [user.id, workflowId],
      );
      return;
    }
    const { rows: rules } = await tx.query<{ name: string; group_id: string | null; condition: string | null; entitlement_ids: string[] }>(
      'SELECT name, group_id, condition, entitlement_ids FROM rules',
    );
    const { rows: groups } = await tx.query<{ group_id: string }>(
      `WITH RECURSIVE reach(group_id) AS (
         SELECT m.group_id FROM group_members m WHERE m.member_type = 'User' AND m.member_id = $1
         UNION
         SELECT m.group_id FROM reach r JOIN group_members m ON m.member_type = 'Group' AND m.member_id = r.group_id
       ) SELECT group_id FROM reach`,
      [user.id],
    );
    const inGroup = new Set(groups.map((g) => g.group_id));
    const rendered = { ...user.resource, id: user.id };
    const wanted: Array<{ entitlement: string; reason: string }> = [];
    for (const rule of rules) {
      let applies = false;
      if (rule.group_id) applies = inGroup.has(rule.group_id);
      else if (rule.condition) {
        try {
          applies = matchesFilter(parseFilter(rule.condition), rendered, registry, 'User');
        } catch {
          applies = false; // a rule the API accepted but that no longer parses grants nothing
        }
      }
      if (applies) for (const e of rule.entitlement_ids) wanted.push({ entitlement: e, reason: `rule:${rule.name}` });
    }
    for (const w of wanted) {
      await tx.query(
        auditedGrantChange(
          `INSERT INTO grants (id, user_id, entitlement_id, reason) VALUES ($1, $2, $3, $4)
           ON CONFLICT (user_id, entitlement_id, reason) DO UPDATE SET status = 'active', ended_at = NULL
             WHERE grants.status <> 'active'`,
          'created',
          'g.reason',
          'the rule applies',
        ),
        [randomUUID(), user.id, w.entitlement, w.reason],
      );
    }
    await tx.query(
      auditedGrantChange(
        `UPDATE grants SET status = 'ended', ended_at = now()
          WHERE user_id = $1 AND status = 'active' AND reason LIKE 'rule:%'
            AND NOT ((entitlement_id, reason) IN (SELECT unnest($2::uuid[]), unnest($3::text[])))`,
        'ended',
        'g.reason',
        'the rule no longer applies',
      ),
      [user.id, wanted.map((w) => w.entitlement), wanted.map((w) => w.reason)],
    );
  });
}

/** Computes the steps that make every connector's target match the user's desired state. */
export async function planUserSync(db: Db, runtime: ConnectorRuntime, userId: string, seq?: number, workflowId?: string): Promise<UserPlan> {
  const user = await loadUser(db, userId);
  if (!user) return { userName: '', deprovision: true, connectors: [] };
  if (seq !== undefined) {
    // A change delivered again (a new run after the last one completed) has been applied already.
    const { rows } = await db.query<{ synced_seq: number }>('SELECT synced_seq FROM user_sync_state WHERE user_id = $1', [userId]);
    if (rows[0] && rows[0].synced_seq >= seq) return { userName: user.user_name, deprovision: user.deleted || !user.active, connectors: [] };
  }
  const deprovision = user.deleted || !user.active;
  await materializeGrants(db, user, deprovision, workflowId ?? 'userSync');

  const { rows: desired } = await db.query<{ connector_id: string; entitlement_id: string; reasons: string[] }>(
    `SELECT e.connector_id, e.id AS entitlement_id, array_agg(DISTINCT g.reason ORDER BY g.reason) AS reasons
       FROM grants g JOIN entitlements e ON e.id = g.entitlement_id JOIN connectors c ON c.id = e.connector_id
      WHERE g.user_id = $1 AND g.status = 'active' AND c.enabled AND c.mode = 'enforce'
        AND g.valid_from <= now() AND (g.valid_until IS NULL OR g.valid_until > now())
      GROUP BY e.connector_id, e.id`,
    [userId],
  );
  const { rows: accounts } = await db.query<{ connector_id: string; state: string }>(
    `SELECT a.connector_id, a.state FROM accounts a JOIN connectors c ON c.id = a.connector_id
      WHERE a.user_id = $1 AND c.enabled AND c.mode = 'enforce'`,
    [userId],
  );
  const { rows: applied } = await db.query<{ connector_id: string; entitlement_id: string }>(
    `SELECT e.connector_id, ag.entitlement_id FROM account_grants ag JOIN entitlements e ON e.id = ag.entitlement_id
      WHERE ag.user_id = $1`,
    [userId],
  );

  const connectorIds = [...new Set([...desired, ...accounts, ...applied].map((r) => r.connector_id))].sort();
  const names = await entitlementNames(db, [...desired, ...applied].map((r) => r.entitlement_id));
  const name = (id: string) => names.get(id) ?? id;
  const why = (id: string) => {
    const reasons = desired.find((d) => d.entitlement_id === id)?.reasons ?? [];
    return reasons.length ? ` (${reasons.map(describeReason).join(', ')})` : '';
  };
  const who = user.user_name;
  const plans: ConnectorPlan[] = [];
  for (const connectorId of connectorIds) {
    const { row, definition } = await runtime.get(connectorId);
    const can = (c: Capability) => definition.capabilities.includes(c);
    const want = new Set(desired.filter((d) => d.connector_id === connectorId).map((d) => d.entitlement_id));
    const have = new Set(applied.filter((a) => a.connector_id === connectorId).map((a) => a.entitlement_id));
    const account = accounts.find((a) => a.connector_id === connectorId);
    const steps: Step[] = [];
    const needsAccount = want.size > 0;
    if (needsAccount) {
      if (!account || account.state === 'deleted' || account.state === 'none') steps.push({ action: 'createAccount', summary: `create account ${who} in ${connectorId}` });
      else if (can('updateAccount')) steps.push({ action: 'updateAccount', summary: `update account ${who} in ${connectorId}` });
      for (const e of [...want].sort()) if (!have.has(e)) steps.push({ action: 'grantEntitlement', entitlementId: e, summary: `grant ${name(e)}${why(e)} to ${who}` });
    }
    const ending = deprovision ? 'user deprovisioned' : 'no grant left';
    for (const e of [...have].sort()) if (!want.has(e)) steps.push({ action: 'revokeEntitlement', entitlementId: e, summary: `revoke ${name(e)} from ${who} (${ending})` });
    if (!needsAccount && account && (account.state === 'active' || account.state === 'disabled')) {
      if (row.deprovision === 'delete' && can('deleteAccount')) steps.push({ action: 'deleteAccount', summary: `delete account ${who} in ${connectorId} (${ending})` });
      else if (account.state !== 'disabled' && can('disableAccount')) steps.push({ action: 'disableAccount', summary: `disable account ${who} in ${connectorId} (${ending})` });
    }
    if (steps.length > 0) plans.push({ connectorId, steps });
  }
  const { rows: next } = await db.query<{ at: Date; what: string; entitlement: string; reason: string }>(
    `SELECT x.t AS at, x.what, e.connector_id || '/' || e.name AS entitlement, x.reason FROM (
       SELECT valid_until AS t, 'ends' AS what, entitlement_id, reason FROM grants WHERE user_id = $1 AND status = 'active' AND valid_until > now()
       UNION ALL
       SELECT valid_from, 'starts', entitlement_id, reason FROM grants WHERE user_id = $1 AND status = 'active' AND valid_from > now()) x
     JOIN entitlements e ON e.id = x.entitlement_id ORDER BY x.t, e.connector_id, e.name LIMIT 1`,
    [userId],
  );
  const at = next[0];
  // Approved requests whose access this round provisions: their workflows are told when it is done.
  let awaitingRequests: string[] = [];
  if (desired.some((d) => d.reasons.some((r) => r.startsWith('request:')))) {
    const { rows: waiting } = await db.query<{ id: string }>(
      `SELECT id FROM access_requests WHERE requester_id = $1 AND status = 'approved' AND grant_id IS NOT NULL ORDER BY id`,
      [userId],
    );
    awaitingRequests = waiting.map((r) => r.id);
  }
  return {
    userName: user.user_name,
    deprovision,
    connectors: plans,
    ...(at ? { nextChangeAt: at.at.getTime(), nextChange: `access to ${at.entitlement} ${at.what} ${at.at.toISOString()} (${describeReason(at.reason)} grant)` } : {}),
    ...(awaitingRequests.length ? { awaitingRequests } : {}),
  };
}

/** "connectorId/name" of each entitlement, for people reading plans and histories. */
async function entitlementNames(db: Db, ids: string[]): Promise<Map<string, string>> {
  if (ids.length === 0) return new Map();
  const { rows } = await db.query<{ id: string; name: string }>(
    `SELECT id, connector_id || '/' || name AS name FROM entitlements WHERE id = ANY($1::uuid[])`,
    [[...new Set(ids)]],
  );
  return new Map(rows.map((r) => [r.id, r.name]));
}

/** A grant's reason in words: `rule:engineering` → "rule engineering". */
function describeReason(reason: string): string {
  const colon = reason.indexOf(':');
  return colon < 0 ? reason : `${reason.slice(0, colon)} ${reason.slice(colon + 1)}`;
}

function accountInput(user: UserRow): AccountInput {
  const r = user.resource as {
    displayName?: string;
    name?: { givenName?: string; familyName?: string };
    emails?: Array<{ value?: string; primary?: boolean }>;
  };
  const emails = Array.isArray(r.emails) ? r.emails : [];
  const email = (emails.find((e) => e.primary) ?? emails[0])?.value;
  return {
    userId: user.id,
    userName: user.user_name,
    externalId: user.external_id ?? undefined,
    active: user.active && !user.deleted,
    displayName: r.displayName,
    givenName: r.name?.givenName,
    familyName: r.name?.familyName,
    email,
    attributes: user.resource,
  };
}

/**
 * Turns connector errors into what Temporal's retry policy understands: transient ones retry (after
 * the delay the target asked for), permanent ones fail the step at once with their reason.
 */
export function toFailure(what: string, err: unknown): unknown {
  // By name as well as by class: a plugin installed from npm may carry its own copy of the SDK.
  const named = (name: string) => err instanceof Error && err.name === name;
  if (err instanceof TransientError || named('TransientError')) {
    const e = err as TransientError;
    return ApplicationFailure.create({
      message: `${what}: ${e.message}`,
      type: 'TransientError',
      nonRetryable: false,
      ...(typeof e.retryAfterMs === 'number' ? { nextRetryDelay: e.retryAfterMs } : {}),
      cause: e,
    });
  }
  if (err instanceof PermanentError || named('PermanentError')) {
    const e = err as PermanentError;
    return ApplicationFailure.create({ message: `${what}: ${e.message}`, type: `PermanentError:${String(e.kind)}`, nonRetryable: true, cause: e });
  }
  return err;
}

/** What a step did: the connector's status and a sentence for the workflow's history. */
export interface StepResult {
  status: string;
  done: string;
}

const DONE: Record<StepAction, string> = {
  createAccount: 'created account',
  updateAccount: 'updated account',
  grantEntitlement: 'granted',
  revokeEntitlement: 'revoked',
  disableAccount: 'disabled account',
  deleteAccount: 'deleted account',
};

/**
 * What the steps of one user on one connector work with, read once for all of them: the connector,
 * the user, the account's remote id (kept current as steps change it) and the entitlements named.
 */
interface StepContext {
  connector: Awaited<ReturnType<ConnectorRuntime['get']>>;
  user: UserRow;
  remoteId: string | undefined;
  entitlements: Map<string, { id: string; target: Record<string, unknown>; name: string }>;
}

async function stepContext(db: Db, runtime: ConnectorRuntime, userId: string, connectorId: string, entitlementIds: string[]): Promise<StepContext> {
  const connector = await runtime.get(connectorId);
  const { rows } = await db.query<UserRow & { remote_id: string | null }>(
    `SELECT u.id, u.user_name, u.external_id, u.active, u.deleted_at IS NOT NULL AS deleted, u.resource, a.remote_id
       FROM users u LEFT JOIN accounts a ON a.user_id = u.id AND a.connector_id = $2
      WHERE u.id = $1`,
    [userId, connectorId],
  );
  const user = rows[0];
  if (!user) throw new PermanentError(`user ${userId} does not exist`, 'notFound');
  const ids = [...new Set(entitlementIds)];
  const { rows: found } =
    ids.length > 0
      ? await db.query<{ id: string; target: Record<string, unknown>; name: string }>(
          `SELECT id, target, connector_id || '/' || name AS name FROM entitlements WHERE id = ANY($1::uuid[])`,
          [ids],
        )
      : { rows: [] };
  return { connector, user, remoteId: user.remote_id ?? undefined, entitlements: new Map(found.map((e) => [e.id, e])) };
}

/**
 * Applies one step idempotently and records the actual state it produced. A failed attempt is
 * recorded on the account (`last_error`) before Temporal retries it, so the API shows why a step
 * is stuck while it is still being retried.
 */
export async function applyStep(db: Db, runtime: ConnectorRuntime, action: StepAction, input: StepInput): Promise<StepResult> {
  return await attemptStep(db, () => stepContext(db, runtime, input.userId, input.connectorId, input.entitlementId ? [input.entitlementId] : []), action, input);
}

/**
 * One try of a step in `context` (read when first needed). What it throws is the failure Temporal
 * sees, recorded on the account first (best effort: the database may be what failed).
 */
async function attemptStep(db: Db, context: () => Promise<StepContext>, action: StepAction, input: StepInput): Promise<StepResult> {
  try {
    return await runStep(db, await context(), action, input);
  } catch (err) {
    const failure = toFailure(`${input.connectorId}: ${action}`, err);
    const message = failure instanceof Error ? failure.message : String(failure);
    await recordFailure(db, { ...input, error: message }).catch(() => undefined);
    throw failure;
  }
}

/** One step against the target, then its recorded state and audit event in one statement. */
async function runStep(db: Db, context: StepContext, action: StepAction, input: StepInput): Promise<StepResult> {
  const { instance, definition } = context.connector;
  const { user } = context;
  let remoteId = context.remoteId;
  let entitlementName: string | undefined;
  const entitlement = () => {
    const e = input.entitlementId ? context.entitlements.get(input.entitlementId) : undefined;
    if (!e) throw new PermanentError(`entitlement ${input.entitlementId} does not exist`, 'notFound');
    entitlementName = e.name;
    return e;
  };
  const needRemote = () => {
    if (!remoteId) throw new PermanentError(`no account in ${input.connectorId} for ${user.user_name} yet`, 'notFound');
    return remoteId;
  };
  const require = (c: Capability) => {
    if (!definition.capabilities.includes(c)) throw new PermanentError(`connector type ${definition.type} cannot ${c}`, 'unsupported');
  };
  let status: string;
  // What the step changes in the recorded state, written after the switch with its audit event.
  let state: 'active' | 'disabled' | 'deleted' | undefined;
  let applied: 'grant' | 'revoke' | undefined;
  switch (action) {
    case 'createAccount': {
      require('createAccount');
      const res = await instance.createAccount!(accountInput(user));
      remoteId = res.remoteId ?? remoteId;
      state = 'active';
      status = res.status;
      break;
    }
    case 'updateAccount': {
      require('updateAccount');
      const current = needRemote();
      const res = await instance.updateAccount!(current, accountInput(user));
      status = res.status;
      remoteId = res.remoteId ?? current;
      if (remoteId !== current && definition.capabilities.includes('grant')) {
        // The account moved to a new remote id: the entitlements recorded as applied were applied
        // to the old one, so they are granted again to the new one (grants are idempotent) before
        // the move is recorded. A failure here leaves the old remote id recorded; the retry calls
        // updateAccount with it again, and the connector answers the same new one.
        const { rows: held } = await db.query<{ id: string; target: Record<string, unknown> }>(
          `SELECT e.id, e.target FROM account_grants ag JOIN entitlements e ON e.id = ag.entitlement_id
            WHERE ag.user_id = $1 AND e.connector_id = $2 ORDER BY e.id`,
          [input.userId, input.connectorId],
        );
        for (const e of held) await instance.grant!(remoteId, { id: e.id, target: e.target });
      }
      state = 'active';
      break;
    }
    case 'grantEntitlement': {
      require('grant');
      const e = entitlement();
      status = (await instance.grant!(needRemote(), { id: e.id, target: e.target })).status;
      applied = 'grant';
      break;
    }
    case 'revokeEntitlement': {
      require('revoke');
      const e = entitlement();
      status = remoteId ? (await instance.revoke!(remoteId, { id: e.id, target: e.target })).status : 'alreadyApplied';
      applied = 'revoke';
      break;
    }
    case 'disableAccount': {
      require('disableAccount');
      status = (await instance.disableAccount!(needRemote())).status;
      state = 'disabled';
      break;
    }
    case 'deleteAccount': {
      require('deleteAccount');
      status = (await instance.deleteAccount!(needRemote())).status;
      state = 'deleted';
      break;
    }
  }
  // The recorded state and its audit event in one statement: no change without its event. The
  // membership change and the event read the account's row, so it is written (and locked) first,
  // in the order reconciliation locks them (accounts, then account_grants).
  await db.query(
    `WITH acc AS (
       INSERT INTO accounts (user_id, connector_id, remote_id, state, last_sync_at, workflow_id)
       VALUES ($1, $2, $3, COALESCE($4, 'active'), now(), $5)
       ON CONFLICT (user_id, connector_id) DO UPDATE
         SET remote_id = COALESCE(EXCLUDED.remote_id, accounts.remote_id), state = COALESCE($4, accounts.state),
             last_sync_at = now(), last_error = NULL, last_error_at = NULL, workflow_id = EXCLUDED.workflow_id
       RETURNING user_id),
     granted AS (
       INSERT INTO account_grants (user_id, entitlement_id) SELECT acc.user_id, $6::uuid FROM acc WHERE $7::text = 'grant'
       ON CONFLICT DO NOTHING),
     revoked AS (
       DELETE FROM account_grants ag USING acc WHERE $7::text = 'revoke' AND ag.user_id = acc.user_id AND ag.entitlement_id = $6::uuid)
     INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after)
     SELECT $8, $9, 'Account', $10, 'provisioning', $11 FROM acc`,
    [
      input.userId,
      input.connectorId,
      remoteId ?? null,
      state ?? null,
      input.workflowId ?? null,
      applied ? (input.entitlementId ?? null) : null,
      applied ?? null,
      input.workflowId ?? 'userSync',
      `account.${action}`,
      `${input.connectorId}:${input.userId}`,
      JSON.stringify({ status, entitlementId: input.entitlementId ?? null, remoteId: remoteId ?? null }),
    ],
  );
  context.remoteId = remoteId;
  const object = entitlementName
    ? `${entitlementName} ${action === 'grantEntitlement' ? 'to' : 'from'} ${user.user_name}`
    : `${user.user_name} in ${input.connectorId}${remoteId ? ` (remote id ${remoteId})` : ''}`;
  return { status, done: `${DONE[action]} ${object}${status === 'applied' ? '' : ` (${status})`}` };
}

/** How far {@link applySteps} got: the lines of the steps done, in order. */
export interface StepsProgress {
  done: string[];
}

/**
 * Applies a connector's steps for one user in order, as {@link applyStep} applies one, reading the
 * connector, the user and the entitlements once for all of them. `resumed` is the progress an
 * earlier attempt reported, whose steps are not applied again (a best effort: every step is
 * idempotent anyway); `report` is told the progress after each step; `observe` wraps each step (the
 * worker's metrics). A failure carries the progress in its details (retried or not), so the
 * workflow and the API show which step failed and what was done before it.
 */
export async function applySteps(
  db: Db,
  runtime: ConnectorRuntime,
  input: { userId: string; connectorId: string; steps: Step[]; workflowId?: string | undefined },
  resumed: StepsProgress | undefined,
  report: (progress: StepsProgress) => void,
  observe: (action: StepAction, run: () => Promise<StepResult>) => Promise<StepResult> = (_action, run) => run(),
): Promise<StepsProgress> {
  const progress: StepsProgress = { done: [...(resumed?.done ?? [])] };
  let context: StepContext | undefined;
  // Read by the first step that runs, then kept (with the remote id the steps change) for the rest.
  const shared = async () => (context ??= await stepContext(db, runtime, input.userId, input.connectorId, input.steps.flatMap((s) => (s.entitlementId ? [s.entitlementId] : []))));
  for (const step of input.steps.slice(progress.done.length)) {
    const stepInput: StepInput = {
      userId: input.userId,
      connectorId: input.connectorId,
      ...(step.entitlementId ? { entitlementId: step.entitlementId } : {}),
      ...(input.workflowId ? { workflowId: input.workflowId } : {}),
    };
    try {
      const result = await observe(step.action, () => attemptStep(db, shared, step.action, stepInput));
      progress.done.push(result.done);
    } catch (err) {
      // The failure carries the progress: the workflow (a permanent failure) and an operator looking
      // at the pending activity (a retried one) see which step failed, not only which activity.
      const failure = err instanceof ApplicationFailure ? err : undefined;
      throw ApplicationFailure.create({
        message: err instanceof Error ? err.message : String(err),
        type: failure?.type ?? (err instanceof Error ? err.name : 'Error'),
        nonRetryable: failure?.nonRetryable ?? false,
        ...(failure?.nextRetryDelay !== undefined && failure.nextRetryDelay !== null ? { nextRetryDelay: failure.nextRetryDelay as number | string } : {}),
        details: [progress],
        ...(err instanceof Error ? { cause: failure?.cause ?? err } : {}),
      });
    }
    report(progress);
  }
  return progress;
}

/** Records why a connector's steps stopped, for the API and operators; the user's other connectors go on. */
export async function recordFailure(db: Db, input: StepInput & { error: string }): Promise<void> {
  await db.query(
    `INSERT INTO accounts (user_id, connector_id, state, last_error, last_error_at, workflow_id)
     VALUES ($1, $2, 'none', $3, now(), $4)
     ON CONFLICT (user_id, connector_id) DO UPDATE SET last_error = $3, last_error_at = now(), workflow_id = $4`,
    [input.userId, input.connectorId, input.error.slice(0, 2000), input.workflowId ?? null],
  );
}

/** Runs the connector's validate() (its credentials and configuration against the real target). */
export async function validateConnector(runtime: ConnectorRuntime, connectorId: string): Promise<void> {
  try {
    const { instance } = await runtime.get(connectorId);
    await instance.validate();
  } catch (err) {
    throw toFailure(`${connectorId}: validate`, err);
  }
}
