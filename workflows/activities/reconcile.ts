/**
 * Reconciliation activities: stream one connector's target page by page into `reconcile_seen`, then
 * compare it with the recorded actual state and the desired state in SQL, so memory stays bounded
 * whatever the size of the target.
 *
 * Fixes go through each user's userSync workflow (one writer per user): reconciliation only records
 * the truth it found (an account gone, a membership missing or unexpected) in the actual-state tables
 * and announces the user through the outbox; the user's workflow then plans and applies the fix.
 * Holders that belong to no user of ours are removed directly from authoritative entitlements.
 *
 * | drift                 | enforce (not a dry run)                             | monitor / dry run |
 * |-----------------------|-----------------------------------------------------|-------------------|
 * | missingAccount        | recorded gone; the user's workflow recreates it     | reported          |
 * | orphanAccount         | reported (no user owns it)                          | reported          |
 * | missingMembership     | recorded missing; the user's workflow re-grants it  | reported          |
 * | unexpectedMembership  | authoritative: recorded, the user's workflow revokes it (or revoked directly when no user owns the holder); additive: ignored unless desired | reported |
 */
import { randomUUID } from 'node:crypto';
import type { Db } from '../../core/db/pool.js';
import { withTransaction } from '../../core/db/pool.js';
import { enqueueUserChanges } from '../../core/outbox/outbox.js';
import type { ConnectorRuntime } from './connector-runtime.js';
import { toFailure } from './provisioning.js';
import { describeDrift, type DriftItem, type DriftRow } from '../../core/provisioning/drift.js';

/** The audit actor of one reconciliation run's changes. */
export function reconcileActor(runId: string): string {
  return `reconcile:${runId}`;
}

export interface ReconcileStarted {
  runId: string;
  mode: 'enforce' | 'monitor';
  /** `name` is "connectorId/name", for summaries in the Temporal UI. */
  entitlements: Array<{ id: string; name: string; membership: 'authoritative' | 'additive' }>;
  canListAccounts: boolean;
  canListGrants: boolean;
}

export interface ReconcileSummary {
  runId: string;
  connectorId: string;
  dryRun: boolean;
  mode: 'enforce' | 'monitor';
  accountsSeen: number;
  grantsSeen: number;
  apiCalls: number;
  drift: Array<{ kind: string; action: string; count: number }>;
  /** The first differences found (all of them are in the `drift` table under runId), with names and in words. */
  sample: DriftItem[];
}

export async function startReconcile(db: Db, runtime: ConnectorRuntime, input: { connectorId: string; dryRun: boolean; workflowId?: string }): Promise<ReconcileStarted> {
  try {
    const { row, definition } = await runtime.get(input.connectorId);
    const runId = randomUUID();
    await db.query('INSERT INTO reconcile_runs (id, connector_id, dry_run, mode, workflow_id) VALUES ($1, $2, $3, $4, $5)', [
      runId,
      input.connectorId,
      input.dryRun,
      row.mode,
      input.workflowId ?? null,
    ]);
    const { rows } = await db.query<{ id: string; name: string; membership: 'authoritative' | 'additive' }>(
      `SELECT id, connector_id || '/' || name AS name, membership FROM entitlements WHERE connector_id = $1 ORDER BY id`,
      [input.connectorId],
    );
    return {
      runId,
      mode: row.mode,
      entitlements: rows,
      canListAccounts: definition.capabilities.includes('listAccounts'),
      canListGrants: definition.capabilities.includes('listGrants'),
    };
  } catch (err) {
    throw toFailure(`${input.connectorId}: reconcile`, err);
  }
}

/** Reads one page of the target's accounts (or of one entitlement's holders) into reconcile_seen. */
export async function reconcilePage(
  db: Db,
  runtime: ConnectorRuntime,
  input: { runId: string; connectorId: string; entitlementId?: string; cursor?: string },
): Promise<{ next?: string; count: number }> {
  try {
    const { instance } = await runtime.get(input.connectorId);
    let ids: string[];
    let active: Array<boolean | null>;
    let names: Array<string | null>;
    let next: string | undefined;
    if (input.entitlementId) {
      const { rows } = await db.query<{ target: Record<string, unknown> }>('SELECT target FROM entitlements WHERE id = $1', [input.entitlementId]);
      const page = await instance.listGrants!({ id: input.entitlementId, target: rows[0]?.target ?? {} }, input.cursor);
      ids = page.items;
      active = ids.map(() => null);
      names = ids.map(() => null);
      next = page.next;
    } else {
      const page = await instance.listAccounts!(input.cursor);
      ids = page.items.map((a) => a.remoteId);
      active = page.items.map((a) => (a.active === undefined ? null : a.active));
      names = page.items.map((a) => a.userName ?? a.email ?? null);
      next = page.next;
    }
    await db.query(
      `WITH s AS (
         INSERT INTO reconcile_seen (run_id, entitlement_id, remote_id, active, user_name)
         SELECT $1, $2, x.remote_id, x.active, x.user_name FROM unnest($3::text[], $4::boolean[], $6::text[]) AS x(remote_id, active, user_name))
       UPDATE reconcile_runs SET api_calls = api_calls + 1,
              accounts_seen = accounts_seen + CASE WHEN $2::uuid IS NULL THEN $5 ELSE 0 END,
              grants_seen = grants_seen + CASE WHEN $2::uuid IS NULL THEN 0 ELSE $5 END
        WHERE id = $1`,
      [input.runId, input.entitlementId ?? null, ids, active, ids.length, names],
    );
    return { ...(next ? { next } : {}), count: ids.length };
  } catch (err) {
    throw toFailure(`${input.connectorId}: reconcile listing`, err);
  }
}

/** Compares what was seen with recorded and desired state, records drift, and (in enforce mode) fixes it. */
export async function finishReconcile(db: Db, runtime: ConnectorRuntime, input: { runId: string; connectorId: string; dryRun: boolean }): Promise<ReconcileSummary> {
  const { rows: runs } = await db.query<{ mode: 'enforce' | 'monitor' }>('SELECT mode FROM reconcile_runs WHERE id = $1', [input.runId]);
  const mode = runs[0]!.mode;
  const act = mode === 'enforce' && !input.dryRun;
  const { definition, instance } = await runtime.get(input.connectorId);
  const listedAccounts = definition.capabilities.includes('listAccounts');
  const listedGrants = definition.capabilities.includes('listGrants');

  // Holders of authoritative entitlements that belong to no user of ours: only we can remove them,
  // and no user's workflow owns them. Done before the transaction; revoke is idempotent.
  if (act && listedGrants) {
    const { rows: strangers } = await db.query<{ remote_id: string; entitlement_id: string; target: Record<string, unknown> }>(
      `SELECT s.remote_id, s.entitlement_id, e.target FROM reconcile_seen s JOIN entitlements e ON e.id = s.entitlement_id
        WHERE s.run_id = $1 AND e.membership = 'authoritative'
          AND NOT EXISTS (SELECT 1 FROM accounts a WHERE a.connector_id = $2 AND a.remote_id = s.remote_id)`,
      [input.runId, input.connectorId],
    );
    try {
      for (const s of strangers) {
        const { status } = await instance.revoke!(s.remote_id, { id: s.entitlement_id, target: s.target });
        await db.query(
          `INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after)
           VALUES ($1, 'account.revokeEntitlement', 'RemoteAccount', $2, 'reconcile: holder of an authoritative entitlement that no user owns', $3)`,
          [reconcileActor(input.runId), `${input.connectorId}:${s.remote_id}`, JSON.stringify({ status, entitlementId: s.entitlement_id, remoteId: s.remote_id, runId: input.runId })],
        );
      }
    } catch (err) {
      throw toFailure(`${input.connectorId}: reconcile revoke`, err);
    }
  }

  await withTransaction(db, async (tx) => {
    const users = new Set<string>();
    const record = async (sql: string, params: unknown[]) => {
      const { rows } = await tx.query<{ user_id: string | null }>(sql, params);
      for (const r of rows) if (r.user_id) users.add(r.user_id);
    };
    const fixed = act ? 'fixed' : 'reported';

    if (listedAccounts) {
      // Accounts we recorded that the target no longer has.
      await record(
        `INSERT INTO drift (run_id, connector_id, kind, user_id, remote_id, action)
         SELECT $1, $2, 'missingAccount', a.user_id, a.remote_id, $3 FROM accounts a
          WHERE a.connector_id = $2 AND a.state IN ('active', 'disabled') AND a.remote_id IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM reconcile_seen s WHERE s.run_id = $1 AND s.entitlement_id IS NULL AND s.remote_id = a.remote_id)
         RETURNING user_id`,
        [input.runId, input.connectorId, fixed],
      );
      // Active accounts in the target that no user of ours owns.
      await tx.query(
        `INSERT INTO drift (run_id, connector_id, kind, remote_id, remote_user_name, action)
         SELECT $1, $2, 'orphanAccount', s.remote_id, s.user_name, 'reported' FROM reconcile_seen s
          WHERE s.run_id = $1 AND s.entitlement_id IS NULL AND s.active IS NOT FALSE
            AND NOT EXISTS (SELECT 1 FROM accounts a WHERE a.connector_id = $2 AND a.remote_id = s.remote_id AND a.state <> 'deleted')`,
        [input.runId, input.connectorId],
      );
    }
    if (listedGrants) {
      // Memberships we applied that the target no longer has.
      await record(
        `INSERT INTO drift (run_id, connector_id, kind, user_id, remote_id, entitlement_id, action)
         SELECT $1, $2, 'missingMembership', ag.user_id, a.remote_id, ag.entitlement_id, $3
           FROM account_grants ag JOIN entitlements e ON e.id = ag.entitlement_id AND e.connector_id = $2
           JOIN accounts a ON a.user_id = ag.user_id AND a.connector_id = $2
          WHERE NOT EXISTS (SELECT 1 FROM reconcile_seen s WHERE s.run_id = $1 AND s.entitlement_id = ag.entitlement_id AND s.remote_id = a.remote_id)
         RETURNING user_id`,
        [input.runId, input.connectorId, fixed],
      );
      // Memberships in the target we did not apply. Additive entitlements keep them unless the user should have it anyway.
      await record(
        `INSERT INTO drift (run_id, connector_id, kind, user_id, remote_id, entitlement_id, remote_user_name, action)
         SELECT $1, $2, 'unexpectedMembership', a.user_id, s.remote_id, s.entitlement_id,
                (SELECT n.user_name FROM reconcile_seen n WHERE n.run_id = $1 AND n.entitlement_id IS NULL AND n.remote_id = s.remote_id LIMIT 1),
                CASE WHEN NOT $3 THEN 'reported'
                     WHEN e.membership = 'authoritative' THEN 'fixed'
                     WHEN a.user_id IS NOT NULL AND EXISTS (
                       SELECT 1 FROM grants g WHERE g.user_id = a.user_id AND g.entitlement_id = s.entitlement_id AND g.status = 'active') THEN 'fixed'
                     ELSE 'ignored' END
           FROM reconcile_seen s JOIN entitlements e ON e.id = s.entitlement_id
           LEFT JOIN accounts a ON a.connector_id = $2 AND a.remote_id = s.remote_id
          WHERE s.run_id = $1
            AND NOT EXISTS (SELECT 1 FROM account_grants ag WHERE ag.entitlement_id = s.entitlement_id AND ag.user_id = a.user_id)
         RETURNING CASE WHEN action = 'fixed' THEN user_id END AS user_id`,
        [input.runId, input.connectorId, act],
      );
    }

    // Audit events of the changes below, appended last: the audit chain's lock is then taken
    // after every row lock this transaction needs, as provisioning steps do, so the two cannot
    // deadlock over the same account.
    const events: unknown[] = [];
    const change = async (sql: string) => {
      const { rows } = await tx.query<{ event: unknown }>(sql, [input.runId, input.connectorId, reconcileActor(input.runId)]);
      for (const r of rows) events.push(r.event);
    };
    const event = (action: string, why: string, before: string, after: string) =>
      `jsonb_build_object('actor', $3::text, 'action', '${action}', 'resource_type', 'Account', 'resource_id', $2 || ':' || c.user_id,
                          'reason', '${why}', 'before', ${before}, 'after', ${after}) AS event`;

    if (act) {
      // Record the truth; each affected user's workflow then converges from it. Each change to
      // the recorded state is an audit event by this run, on the user's account.
      await change(
        `WITH c AS (
           UPDATE accounts a SET state = 'deleted' FROM drift d, accounts was
            WHERE d.run_id = $1 AND d.kind = 'missingAccount' AND a.user_id = d.user_id AND a.connector_id = $2
              AND was.user_id = a.user_id AND was.connector_id = a.connector_id
           RETURNING a.user_id, a.remote_id, was.state AS was)
         SELECT ${event(
           'account.markedDeleted',
           'reconcile: the account is gone from the target',
           `jsonb_build_object('state', c.was, 'remoteId', c.remote_id)`,
           `jsonb_build_object('state', 'deleted', 'remoteId', c.remote_id, 'runId', $1::text)`,
         )} FROM c`,
      );
      await change(
        `WITH c AS (
           DELETE FROM account_grants ag USING drift d, entitlements e
            WHERE d.run_id = $1 AND e.id = ag.entitlement_id AND e.connector_id = $2 AND ag.user_id = d.user_id
              AND (d.kind = 'missingAccount' OR (d.kind = 'missingMembership' AND ag.entitlement_id = d.entitlement_id))
           RETURNING ag.user_id, ag.entitlement_id)
         SELECT ${event(
           'account.membershipLost',
           'reconcile: the membership is gone from the target',
           `jsonb_build_object('entitlementId', c.entitlement_id, 'applied', true)`,
           `jsonb_build_object('entitlementId', c.entitlement_id, 'applied', false, 'runId', $1::text)`,
         )} FROM c`,
      );
      await change(
        `WITH c AS (
           INSERT INTO account_grants (user_id, entitlement_id)
           SELECT d.user_id, d.entitlement_id FROM drift d
            WHERE d.run_id = $1 AND d.kind = 'unexpectedMembership' AND d.action = 'fixed' AND d.user_id IS NOT NULL
           ON CONFLICT DO NOTHING
           RETURNING user_id, entitlement_id)
         SELECT ${event(
           'account.membershipFound',
           'reconcile: the target has a membership that was not applied',
           `jsonb_build_object('entitlementId', c.entitlement_id, 'applied', false)`,
           `jsonb_build_object('entitlementId', c.entitlement_id, 'applied', true, 'runId', $1::text)`,
         )} FROM c`,
      );
      await enqueueUserChanges(tx, [...users]);
    }
    await tx.query('DELETE FROM reconcile_seen WHERE run_id = $1', [input.runId]);
    await tx.query(
      `UPDATE reconcile_runs SET finished_at = now(), drift_found = (SELECT count(*) FROM drift WHERE run_id = $1) WHERE id = $1`,
      [input.runId],
    );
    if (events.length) {
      await tx.query(
        `INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, before, after)
         SELECT x.actor, x.action, x.resource_type, x.resource_id, x.reason, x.before, x.after
           FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS (actor text, action text, resource_type text, resource_id text, reason text, before jsonb, after jsonb))
                WITH ORDINALITY AS x(actor, action, resource_type, resource_id, reason, before, after, n)
          ORDER BY x.n`,
        [JSON.stringify(events)],
      );
    }
  });
  return await reconcileSummary(db, input.runId);
}

export async function reconcileSummary(db: Db, runId: string): Promise<ReconcileSummary> {
  const { rows: runs } = await db.query<{ connector_id: string; dry_run: boolean; mode: 'enforce' | 'monitor'; accounts_seen: number; grants_seen: number; api_calls: number }>(
    'SELECT connector_id, dry_run, mode, accounts_seen, grants_seen, api_calls FROM reconcile_runs WHERE id = $1',
    [runId],
  );
  const run = runs[0]!;
  const { rows: counts } = await db.query<{ kind: string; action: string; count: number }>(
    'SELECT kind, action, count(*)::int AS count FROM drift WHERE run_id = $1 GROUP BY kind, action ORDER BY kind, action',
    [runId],
  );
  const { rows: sample } = await db.query<DriftRow>(
    `SELECT d.kind, d.action, d.user_id AS "userId", u.user_name AS "userName", (u.active AND u.deleted_at IS NULL) AS "userLive",
            d.remote_id AS "remoteId", d.remote_user_name AS "remoteUserName", d.entitlement_id AS "entitlementId",
            e.connector_id || '/' || e.name AS entitlement, e.membership
       FROM drift d LEFT JOIN users u ON u.id = d.user_id LEFT JOIN entitlements e ON e.id = d.entitlement_id
      WHERE d.run_id = $1 ORDER BY d.id LIMIT 100`,
    [runId],
  );
  const why = run.dry_run ? 'dry run' : 'monitor mode';
  return {
    runId,
    connectorId: run.connector_id,
    dryRun: run.dry_run,
    mode: run.mode,
    accountsSeen: run.accounts_seen,
    grantsSeen: run.grants_seen,
    apiCalls: run.api_calls,
    drift: counts,
    sample: sample.map((r) => describeDrift(run.connector_id, why, r)),
  };
}
