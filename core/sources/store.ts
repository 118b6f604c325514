/**
 * Directory writes on behalf of a source (core/sources/auth0.ts): a source user is created,
 * changed and deleted only here, with the audit event and the `user.changed` outbox message in the
 * same transaction, so provisioning follows a source as it follows SCIM.
 *
 * Ownership and precedence. The directory holds one live user per userName (case-insensitively).
 * A user belongs to whoever created it: SCIM (source_id NULL) or one source. SCIM cannot change or
 * delete a source's user (the SCIM API answers 409, see core/directory/store.ts), and a source never
 * takes over a user it does not own: when a source user's userName is held by another owner's user,
 * the source user is not imported, the clash is recorded in `source_conflicts` (listed by
 * GET /api/sources/{id}/conflicts) with a `source.conflict` audit event when first seen, and it is
 * tried again at every import and log event, so it resolves itself once the holder is renamed or
 * deleted. An administrator may also hand the holder to the source (adoptConflict).
 */
import { randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { withTransaction, type Db, type Tx } from '../db/pool.js';
import { enqueueUserChanges } from '../outbox/outbox.js';
import { normalizeResource } from '../scim/resource.js';
import { SchemaRegistry } from '../scim/schemas.js';

const registry = new SchemaRegistry();
const UNIQUE_VIOLATION = '23505';

export type SourceWrite = 'created' | 'updated' | 'unchanged' | 'conflict';

export function sourceActor(sourceId: string): string {
  return `source:${sourceId}`;
}

interface Audit {
  actor: string;
  reason: string;
}

async function audit(tx: Tx, who: Audit, action: string, type: string, id: string, before: unknown, after: unknown): Promise<void> {
  await tx.query(
    'INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, before, after) VALUES ($1, $2, $3, $4, $5, $6, $7)',
    [who.actor, action, type, id, who.reason, before === null ? null : JSON.stringify(before), after === null ? null : JSON.stringify(after)],
  );
}

/**
 * Creates or updates the source's user with this externalId to match `scim` (a SCIM User as the
 * source sees it). Answers what happened; a userName held by another owner is a conflict.
 */
export async function upsertSourceUser(db: Db, sourceId: string, scim: Record<string, unknown>, reason: string): Promise<SourceWrite> {
  const resource = normalizeSourceUser(scim);
  const externalId = String(resource.externalId);
  const userName = String(resource.userName);
  const who = { actor: sourceActor(sourceId), reason };
  for (let attempt = 0; ; attempt++) {
    try {
      return await withTransaction(db, async (tx) => {
        // One writer per source user at a time (an import page and a log event may meet).
        await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`source-user:${sourceId}:${externalId}`]);
        const { rows } = await tx.query<{ id: string; resource: Record<string, unknown> }>(
          'SELECT id, resource FROM users WHERE source_id = $1 AND external_id = $2 AND deleted_at IS NULL FOR UPDATE',
          [sourceId, externalId],
        );
        const current = rows[0];
        const holder = await tx.query<{ id: string; source_id: string | null; external_id: string | null }>(
          'SELECT id, source_id, external_id FROM users WHERE lower(user_name) = lower($1) AND deleted_at IS NULL',
          [userName],
        );
        const clash = holder.rows.find((h) => h.id !== current?.id);
        if (clash) {
          await recordConflict(tx, who, sourceId, externalId, userName, clash.id);
          return 'conflict';
        }
        await tx.query(
          `UPDATE source_conflicts SET resolved_at = now(), resolution = 'imported' WHERE source_id = $1 AND external_id = $2 AND resolved_at IS NULL`,
          [sourceId, externalId],
        );
        if (current) {
          if (isDeepStrictEqual(current.resource, resource)) return 'unchanged';
          await tx.query(
            `UPDATE users SET user_name = $2, display_name = $3, active = $4, resource = $5, version = version + 1, updated_at = now() WHERE id = $1`,
            [current.id, userName, typeof resource.displayName === 'string' ? resource.displayName : null, resource.active !== false, resource],
          );
          await audit(tx, who, 'user.replaced', 'User', current.id, current.resource, resource);
          await enqueueUserChanges(tx, [current.id]);
          return 'updated';
        }
        const id = randomUUID();
        await tx.query(
          `INSERT INTO users (id, user_name, external_id, display_name, active, resource, source_id) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
          [id, userName, externalId, typeof resource.displayName === 'string' ? resource.displayName : null, resource.active !== false, resource, sourceId],
        );
        await audit(tx, who, 'user.created', 'User', id, null, resource);
        await enqueueUserChanges(tx, [id]);
        return 'created';
      });
    } catch (err) {
      // A SCIM create of the same userName committed between the check and the write: look again.
      if ((err as { code?: string }).code === UNIQUE_VIOLATION && attempt < 3) continue;
      throw err;
    }
  }
}

/** The resource as the directory stores it. */
export function normalizeSourceUser(scim: Record<string, unknown>): Record<string, unknown> {
  return normalizeResource(scim, { registry, resourceType: 'User' });
}

/**
 * The externalIds among `users` whose directory user already matches exactly (and is not in
 * conflict), found in one query, so an import of an unchanged tenant writes nothing.
 */
export async function unchangedSourceUsers(db: Db, sourceId: string, users: Array<Record<string, unknown>>): Promise<Set<string>> {
  const byId = new Map(users.map((u) => [String(u.externalId), u]));
  const { rows } = await db.query<{ external_id: string; resource: Record<string, unknown> }>(
    `SELECT u.external_id, u.resource FROM users u
      WHERE u.source_id = $1 AND u.external_id = ANY($2::text[]) AND u.deleted_at IS NULL
        AND NOT EXISTS (SELECT 1 FROM source_conflicts c WHERE c.source_id = $1 AND c.external_id = u.external_id AND c.resolved_at IS NULL)`,
    [sourceId, [...byId.keys()]],
  );
  return new Set(rows.filter((r) => isDeepStrictEqual(r.resource, byId.get(r.external_id))).map((r) => r.external_id));
}

async function recordConflict(tx: Tx, who: Audit, sourceId: string, externalId: string, userName: string, holderId: string): Promise<void> {
  const { rows } = await tx.query<{ fresh: boolean }>(
    `INSERT INTO source_conflicts (source_id, external_id, user_name, holder_id) VALUES ($1, $2, $3, $4)
     ON CONFLICT (source_id, external_id) DO UPDATE
       SET last_seen_at = now(), user_name = EXCLUDED.user_name, holder_id = EXCLUDED.holder_id,
           first_seen_at = CASE WHEN source_conflicts.resolved_at IS NULL THEN source_conflicts.first_seen_at ELSE now() END,
           resolved_at = NULL, resolution = NULL
     RETURNING (first_seen_at = last_seen_at) AS fresh`,
    [sourceId, externalId, userName, holderId],
  );
  // One audit event per clash, not one per import that sees it again.
  if (rows[0]?.fresh) {
    await audit(tx, who, 'source.conflict', 'User', holderId, null, {
      source: sourceId,
      externalId,
      userName,
      holderId,
      precedence: 'the user that holds the userName keeps it; the source user is not imported until the clash is resolved',
    });
  }
}

/**
 * Deletes the source's user with this externalId (a tombstone, as a SCIM DELETE leaves): its group
 * memberships go, provisioning deprovisions it. Answers false when there was none.
 */
export async function deleteSourceUser(db: Db, sourceId: string, externalId: string, reason: string): Promise<boolean> {
  const who = { actor: sourceActor(sourceId), reason };
  return await withTransaction(db, async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`source-user:${sourceId}:${externalId}`]);
    await tx.query(
      `UPDATE source_conflicts SET resolved_at = now(), resolution = 'deleted in the source' WHERE source_id = $1 AND external_id = $2 AND resolved_at IS NULL`,
      [sourceId, externalId],
    );
    const { rows } = await tx.query<{ id: string; resource: Record<string, unknown> }>(
      'SELECT id, resource FROM users WHERE source_id = $1 AND external_id = $2 AND deleted_at IS NULL FOR UPDATE',
      [sourceId, externalId],
    );
    const current = rows[0];
    if (!current) return false;
    await deleteLocked(tx, who, current);
    return true;
  });
}

async function deleteLocked(tx: Tx, who: Audit, current: { id: string; resource: Record<string, unknown> }): Promise<void> {
  const { rows: memberOf } = await tx.query<{ id: string; display: string | null }>(
    'DELETE FROM group_members m USING groups g WHERE m.member_id = $1 AND g.id = m.group_id RETURNING g.id, g.display_name AS display',
    [current.id],
  );
  await tx.query('UPDATE users SET deleted_at = now(), updated_at = now(), version = version + 1 WHERE id = $1', [current.id]);
  const before: Record<string, unknown> = { ...current.resource };
  if (memberOf.length) before.memberOf = memberOf.map((g) => ({ value: g.id, ...(g.display ? { display: g.display } : {}) }));
  await audit(tx, who, 'user.deleted', 'User', current.id, before, null);
  await enqueueUserChanges(tx, [current.id]);
}

/**
 * Deletes the source's users that an import run did not see (deleted in the source since), in
 * batches; answers how many.
 */
export async function deleteUnseen(db: Db, sourceId: string, runId: string, reason: string): Promise<number> {
  const { rows } = await db.query<{ external_id: string }>(
    `SELECT u.external_id FROM users u
      WHERE u.source_id = $1 AND u.deleted_at IS NULL
        AND NOT EXISTS (SELECT 1 FROM source_import_seen s WHERE s.run_id = $2 AND s.external_id = u.external_id)`,
    [sourceId, runId],
  );
  let n = 0;
  for (const r of rows) if (await deleteSourceUser(db, sourceId, r.external_id, reason)) n++;
  return n;
}

export interface ConflictRow {
  externalId: string;
  userName: string;
  holderId: string | null;
  holderSource: string | null;
  firstSeenAt: Date;
  lastSeenAt: Date;
}

export async function listConflicts(db: Db, sourceId: string): Promise<ConflictRow[]> {
  const { rows } = await db.query<ConflictRow>(
    `SELECT c.external_id AS "externalId", c.user_name AS "userName", c.holder_id AS "holderId", u.source_id AS "holderSource",
            c.first_seen_at AS "firstSeenAt", c.last_seen_at AS "lastSeenAt"
       FROM source_conflicts c LEFT JOIN users u ON u.id = c.holder_id
      WHERE c.source_id = $1 AND c.resolved_at IS NULL ORDER BY c.first_seen_at, c.external_id`,
    [sourceId],
  );
  return rows;
}

/**
 * Hands the SCIM user holding a conflicting userName to the source: it keeps its id (and so its
 * accounts and grants), its externalId becomes the source's id, and from then on only the source
 * changes it. Answers the user's id, or undefined when there is no open conflict or its holder is
 * not a SCIM user.
 */
export async function adoptConflict(db: Db, sourceId: string, externalId: string, actor: string): Promise<string | undefined> {
  return await withTransaction(db, async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`source-user:${sourceId}:${externalId}`]);
    const { rows } = await tx.query<{ holder_id: string; resource: Record<string, unknown> }>(
      `SELECT c.holder_id, u.resource FROM source_conflicts c JOIN users u ON u.id = c.holder_id AND u.deleted_at IS NULL AND u.source_id IS NULL
        WHERE c.source_id = $1 AND c.external_id = $2 AND c.resolved_at IS NULL FOR UPDATE OF u`,
      [sourceId, externalId],
    );
    const row = rows[0];
    if (!row) return undefined;
    const resource = { ...row.resource, externalId };
    await tx.query('UPDATE users SET source_id = $2, external_id = $3, resource = $4, version = version + 1, updated_at = now() WHERE id = $1', [
      row.holder_id,
      sourceId,
      externalId,
      resource,
    ]);
    await tx.query(`UPDATE source_conflicts SET resolved_at = now(), resolution = 'adopted' WHERE source_id = $1 AND external_id = $2`, [sourceId, externalId]);
    await audit(tx, { actor, reason: 'admin API' }, 'user.adopted', 'User', row.holder_id, row.resource, { ...resource, source: sourceId });
    await enqueueUserChanges(tx, [row.holder_id]);
    return row.holder_id;
  });
}
