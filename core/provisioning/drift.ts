/**
 * Reconciliation's findings in words: a row of the `drift` table, described for people (what was
 * found, what was done). Used by the reconcile activity's summary, and, with the latest run of a
 * connector read here, by the admin API's and the console's drift views.
 */
import type { Tx } from '../db/pool.js';

/** One difference a reconciliation found, named for people: what was found and what was done. */
export interface DriftItem {
  kind: string;
  action: string;
  userId: string | null;
  /** Our user's userName, when the account belongs to one. */
  userName: string | null;
  remoteId: string | null;
  /** The target's name for the account (its userName or email), when the listing gave one. */
  remoteUserName: string | null;
  entitlementId: string | null;
  /** "connectorId/name". */
  entitlement: string | null;
  found: string;
  done: string;
}

/** A drift row with what describing it needs. */
export interface DriftRow {
  kind: string;
  action: string;
  userId: string | null;
  userName: string | null;
  /** Whether our user is active and not deleted (null when no user owns the account). */
  userLive: boolean | null;
  remoteId: string | null;
  remoteUserName: string | null;
  entitlementId: string | null;
  entitlement: string | null;
  membership: string | null;
}

/**
 * Says in words what a reconciliation found and what it did about it. `whyReported` explains a
 * `reported` action that would otherwise have been a fix ("dry run", "monitor mode").
 */
export function describeDrift(connectorId: string, whyReported: string, r: DriftRow): DriftItem {
  const remote = r.remoteId ? `remote id ${r.remoteId}` : 'no remote id';
  const holder = r.userName ?? (r.remoteUserName ? `${r.remoteUserName} (${remote}, no user of ours)` : `${remote} (no user of ours)`);
  let found: string;
  let done: string;
  switch (r.kind) {
    case 'missingAccount':
      found = `${connectorId} no longer has the account of ${r.userName ?? r.userId} (${remote})`;
      done =
        r.action !== 'fixed'
          ? `nothing (${whyReported})`
          : r.userLive
            ? `recorded as gone; the user's workflow creates it again`
            : `recorded as gone; not recreated, the user is deactivated or deleted`;
      break;
    case 'orphanAccount':
      found = `${connectorId} has an account no user of ours owns: ${r.remoteUserName ?? '(no name given)'} (${remote})`;
      done = 'reported: remove it in the target, or create its user in the directory';
      break;
    case 'missingMembership':
      found = `${r.userName ?? r.userId} lacks ${r.entitlement ?? r.entitlementId} in ${connectorId} although it was granted`;
      done = r.action === 'fixed' ? `recorded as missing; the user's workflow grants it again if still wanted` : `nothing (${whyReported})`;
      break;
    case 'unexpectedMembership':
      found = `${holder} holds ${r.entitlement ?? r.entitlementId} in ${connectorId} without our granting it`;
      done =
        r.action === 'ignored'
          ? `left alone: ${r.entitlement ?? 'the entitlement'} is additive and the user has no grant for it`
          : r.action !== 'fixed'
            ? `nothing (${whyReported})`
            : r.userId
              ? `recorded as held; the user's workflow revokes it unless a grant covers it`
              : `revoked directly (${r.membership ?? 'authoritative'} entitlement, no user of ours to ask)`;
      break;
    default:
      found = r.kind;
      done = r.action;
  }
  return {
    kind: r.kind,
    action: r.action,
    userId: r.userId,
    userName: r.userName,
    remoteId: r.remoteId,
    remoteUserName: r.remoteUserName,
    entitlementId: r.entitlementId,
    entitlement: r.entitlement,
    found,
    done,
  };
}

/** One reconciliation run as recorded (counters grow while it runs; finishedAt is null until it ends). */
export interface ReconcileRunView {
  id: string;
  dryRun: boolean;
  mode: string;
  startedAt: Date;
  finishedAt: Date | null;
  accountsSeen: number | null;
  grantsSeen: number | null;
  apiCalls: number | null;
  driftFound: number | null;
  workflowId: string | null;
}

const RUN_COLUMNS = `id, dry_run AS "dryRun", mode, started_at AS "startedAt", finished_at AS "finishedAt", accounts_seen AS "accountsSeen",
  grants_seen AS "grantsSeen", api_calls AS "apiCalls", drift_found AS "driftFound", workflow_id AS "workflowId"`;

/** The latest run of each connector that has one, by connector id. */
export async function latestReconcileRuns(db: Pick<Tx, 'query'>): Promise<Map<string, ReconcileRunView>> {
  const { rows } = await db.query<ReconcileRunView & { connectorId: string }>(
    `SELECT DISTINCT ON (connector_id) connector_id AS "connectorId", ${RUN_COLUMNS} FROM reconcile_runs ORDER BY connector_id, started_at DESC`,
  );
  return new Map(rows.map(({ connectorId, ...run }) => [connectorId, run]));
}

/** The connector's latest reconciliation run; undefined when it has never been reconciled. */
export async function latestReconcileRun(db: Pick<Tx, 'query'>, connectorId: string): Promise<ReconcileRunView | undefined> {
  const { rows } = await db.query<ReconcileRunView>(`SELECT ${RUN_COLUMNS} FROM reconcile_runs WHERE connector_id = $1 ORDER BY started_at DESC LIMIT 1`, [connectorId]);
  return rows[0];
}

/**
 * The connector's latest reconciliation run and the drift it found (the first `limit`), described;
 * undefined when the connector has never been reconciled.
 */
export async function latestDrift(
  db: Pick<Tx, 'query'>,
  connectorId: string,
  limit = 1000,
): Promise<{ run: ReconcileRunView; drift: Array<DriftItem & { detectedAt: Date }> } | undefined> {
  const run = await latestReconcileRun(db, connectorId);
  if (!run) return undefined;
  const { rows } = await db.query<DriftRow & { detectedAt: Date }>(
    `SELECT d.kind, d.action, d.user_id AS "userId", u.user_name AS "userName", (u.active AND u.deleted_at IS NULL) AS "userLive",
            d.remote_id AS "remoteId", d.remote_user_name AS "remoteUserName", d.entitlement_id AS "entitlementId",
            e.connector_id || '/' || e.name AS entitlement, e.membership, d.detected_at AS "detectedAt"
       FROM drift d LEFT JOIN users u ON u.id = d.user_id LEFT JOIN entitlements e ON e.id = d.entitlement_id
      WHERE d.run_id = $1 ORDER BY d.id LIMIT $2`,
    [run.id, limit],
  );
  const why = run.dryRun ? 'dry run' : 'monitor mode';
  return { run, drift: rows.map((d) => ({ ...describeDrift(connectorId, why, d), detectedAt: d.detectedAt })) };
}
