/**
 * Importing a source's users into the directory: a run reads the source page by page (one call
 * per page, keyset-paged by the auth0 connector's listing, so memory is bounded and a run survives
 * restarts), creates or updates each user it reads, remembers which it saw, and at the end deletes
 * the source's users it did not see. The Temporal side (workflows/source-import.ts) calls these.
 */
import { randomUUID } from 'node:crypto';
import type { Db } from '../db/pool.js';
import { PermanentError, type SecretResolver } from '../../connectors/index.js';
import { auth0Source, auth0UserToScim, parseAuth0SourceConfig, type Auth0Source } from './auth0.js';
import { deleteUnseen, normalizeSourceUser, unchangedSourceUsers, upsertSourceUser } from './store.js';

export const IMPORT_REASON = 'source import';

export interface SourceRow {
  id: string;
  type: 'auth0';
  config: Record<string, unknown>;
  importEveryMinutes: number | null;
}

export async function getSource(db: Db, id: string): Promise<SourceRow | undefined> {
  const { rows } = await db.query<SourceRow>(
    `SELECT id, type, config, import_every_minutes AS "importEveryMinutes" FROM sources WHERE id = $1`,
    [id],
  );
  return rows[0];
}

/** The source's Auth0 client, or a clear error when the source does not exist. */
export async function openAuth0Source(db: Db, id: string, secret?: SecretResolver): Promise<Auth0Source> {
  const source = await getSource(db, id);
  if (!source) throw new Error(`no source ${id}`);
  return auth0Source(parseAuth0SourceConfig(source.config), secret);
}

export interface ImportSummary {
  runId: string;
  sourceId: string;
  seen: number;
  created: number;
  updated: number;
  deleted: number;
  conflicts: number;
}

export async function startImport(db: Db, sourceId: string, workflowId?: string): Promise<{ runId: string }> {
  const runId = randomUUID();
  // One import of a source runs at a time (one workflow id per source): what earlier runs that
  // failed part way had noted is of no use any more.
  await db.query('DELETE FROM source_import_seen WHERE run_id IN (SELECT id FROM source_import_runs WHERE source_id = $1)', [sourceId]);
  await db.query('INSERT INTO source_import_runs (id, source_id, workflow_id) VALUES ($1, $2, $3)', [runId, sourceId, workflowId ?? null]);
  return { runId };
}

/**
 * Reads one page of the source's users and applies each. Safe to repeat for the same page (an
 * unchanged user is left as it is; the counters may count a repeated page twice).
 */
export async function importPage(db: Db, source: Auth0Source, input: { runId: string; sourceId: string; cursor?: string }): Promise<{ next?: string; count: number }> {
  const page = await source.users.listUsers(input.cursor);
  const counts = { created: 0, updated: 0, conflict: 0, unchanged: 0 };
  const resources = page.users.map((u) => normalizeSourceUser(auth0UserToScim(u)));
  const unchanged = await unchangedSourceUsers(db, input.sourceId, resources);
  for (const resource of resources) {
    if (unchanged.has(String(resource.externalId))) counts.unchanged++;
    else counts[await upsertSourceUser(db, input.sourceId, resource, IMPORT_REASON)]++;
  }
  await db.query(
    `INSERT INTO source_import_seen (run_id, external_id) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING`,
    [input.runId, page.users.map((u) => u.user_id)],
  );
  await db.query(
    'UPDATE source_import_runs SET seen = seen + $2, created = created + $3, updated = updated + $4, conflicts = conflicts + $5 WHERE id = $1',
    [input.runId, page.users.length, counts.created, counts.updated, counts.conflict],
  );
  return { ...(page.next !== undefined && { next: page.next }), count: page.users.length };
}

/** Deletes the users the run did not see, closes the run and answers its summary. */
export async function finishImport(db: Db, input: { runId: string; sourceId: string }): Promise<ImportSummary> {
  const { rows: open } = await db.query<{ finished: boolean }>('SELECT finished_at IS NOT NULL AS finished FROM source_import_runs WHERE id = $1', [input.runId]);
  if (open[0] && !open[0].finished) {
    // A listing of nobody while the directory holds the source's users is far more often a wrong
    // connection name or a permission than a tenant emptied: nothing is deleted on its word.
    const { rows: counts } = await db.query<{ seen: number; live: number }>(
      `SELECT r.seen, (SELECT count(*)::int FROM users u WHERE u.source_id = r.source_id AND u.deleted_at IS NULL) AS live
         FROM source_import_runs r WHERE r.id = $1`,
      [input.runId],
    );
    if (counts[0] && counts[0].seen === 0 && counts[0].live > 0) {
      await db.query('UPDATE source_import_runs SET finished_at = now() WHERE id = $1', [input.runId]);
      throw new PermanentError(
        `the import of source ${input.sourceId} read no users, but the directory holds ${counts[0].live} of them; check the source's connection and credentials. Nothing was deleted (delete the users through the source once it is really empty)`,
        'emptyListing',
      );
    }
    const deleted = await deleteUnseen(db, input.sourceId, input.runId, IMPORT_REASON);
    await db.query('UPDATE source_import_runs SET deleted = deleted + $2, finished_at = now() WHERE id = $1 AND finished_at IS NULL', [input.runId, deleted]);
    await db.query('DELETE FROM source_import_seen WHERE run_id = $1', [input.runId]);
  }
  const { rows } = await db.query<ImportSummary>(
    `SELECT id AS "runId", source_id AS "sourceId", seen, created, updated, deleted, conflicts FROM source_import_runs WHERE id = $1`,
    [input.runId],
  );
  return rows[0]!;
}
