/**
 * Versioned SQL migrations, applied at start-up by every process.
 *
 * node-pg-migrate runs plain `.sql` files from ./migrations in name order, records them in
 * `pgmigrations`, and holds a PostgreSQL advisory lock while it works, so several gateways and
 * workers starting at once apply each migration exactly once: a process that finds the lock taken
 * waits for it (instead of failing, node-pg-migrate's default) and then finds nothing left to do. It was chosen because it is actively
 * maintained, is built on `pg` (the driver used everywhere else), and keeps migrations as reviewable
 * SQL rather than a DSL.
 */
import { fileURLToPath } from 'node:url';
import { runner } from 'node-pg-migrate';
import pg from 'pg';
import { DatabaseUnreachableError, redactDatabaseUrl } from './pool.js';

export const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations', import.meta.url));

/** Applies every pending migration; returns the names of those it applied. */
export async function migrate(databaseUrl: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 10_000 });
  try {
    await client.connect();
  } catch (err) {
    throw new DatabaseUnreachableError(redactDatabaseUrl(databaseUrl), err);
  }
  try {
    const applied = await runner({
      dbClient: client,
      dir: MIGRATIONS_DIR,
      direction: 'up',
      migrationsTable: 'pgmigrations',
      checkOrder: true,
      advisoryLockMode: 'wait',
      log: () => {},
    });
    return applied.map((m) => m.name);
  } finally {
    await client.end().catch(() => {});
  }
}
