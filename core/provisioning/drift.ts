/**
 * Reconciliation's findings in words: a row of the `drift` table, described for people (what was
 * found, what was done). Used by the reconcile activity's summary and the admin API's run view.
 */

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
