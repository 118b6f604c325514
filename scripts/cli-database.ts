/**
 * The database connection of the command-line tools (`npm run token`, `npm run audit`): DATABASE_URL
 * validated like the servers', and the same one-line messages and exit codes when it is missing (2)
 * or PostgreSQL cannot be reached (1).
 */
import { exitOnConfigError, loadCommonConfig } from '../core/config.js';
import { migrate } from '../core/db/migrate.js';
import { connectPool, DatabaseUnreachableError, type Db } from '../core/db/pool.js';

/** A one-connection pool, or the exit code to end with after the message has been printed. */
export async function openCliDatabase(opts: { migrate: boolean; missingHint?: string }): Promise<Db | number> {
  let cfg;
  try {
    cfg = loadCommonConfig();
  } catch (err) {
    exitOnConfigError(err);
  }
  if (!cfg.databaseUrl) {
    process.stderr.write(`DATABASE_URL is required${opts.missingHint ? ` (${opts.missingHint})` : ''}\n`);
    return 2;
  }
  try {
    if (opts.migrate) await migrate(cfg.databaseUrl);
    return await connectPool(cfg.databaseUrl, 1);
  } catch (err) {
    if (err instanceof DatabaseUnreachableError) {
      process.stderr.write(`${err.message}\n`);
      return 1;
    }
    throw err;
  }
}
