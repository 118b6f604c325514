/**
 * `npm run audit -- <command>`: the audit log in the database at DATABASE_URL. It never migrates,
 * and its only write is chaining the events still pending before it verifies or exports (see
 * core/audit/chain.ts): with a role that may only read `audit_events`, `audit_chain` and `audit_chain_head` it
 * skips that and reads, leaving those events to the gateway's and the worker's chainers.
 *
 *   verify                          check the hash chain; one line on stdout; exit 0 intact, 1 not
 *   export --format csv|json        every event (or those from --since, before --until, both ISO
 *          [--since ISO] [--until ISO]   8601 instants; with --user, those concerning that user:
 *          [--user ID]                   accounts, grants and group memberships included) to stdout
 *
 * Use `npm run -s audit -- export …` (or `npx tsx scripts/audit.ts export …`) when redirecting an
 * export: without -s, npm prints its own header lines to stdout too.
 */
import { openCliDatabase } from './cli-database.js';
import { parseArgs } from 'node:util';
import type { Db } from '../core/db/pool.js';
import { exportAuditEvents, parseInstant, verifyAuditChain, type AuditFilter } from '../core/audit/chain.js';

const USAGE = 'usage: npm run audit -- verify | export --format csv|json [--since ISO] [--until ISO] [--user ID]';

function usage(message?: string): number {
  process.stderr.write(`${message ? `${message}\n` : ''}${USAGE}\n`);
  return 2;
}

/** Writes to stdout, waiting whenever it is full, so an export never piles up in memory. */
async function write(chunk: string): Promise<void> {
  if (process.stdout.write(chunk)) return;
  await new Promise<void>((resolve, reject) => {
    const done = (err?: Error) => {
      process.stdout.off('drain', done);
      process.stdout.off('error', done);
      if (err) reject(err);
      else resolve();
    };
    process.stdout.on('drain', done);
    process.stdout.on('error', done);
  });
}

async function verify(db: Db): Promise<number> {
  const r = await verifyAuditChain(db);
  if (r.ok) {
    const last = r.lastId === undefined ? '' : `, last id ${r.lastId}, hash ${r.lastHash}`;
    const pending = r.pending === undefined ? '' : `; ${r.pending} recent events not chained yet`;
    process.stdout.write(`audit chain OK: ${r.checked} events verified${last}${pending}\n`);
    return 0;
  }
  const where = r.firstBadId === undefined ? '' : ` at id ${r.firstBadId}`;
  process.stdout.write(`audit chain BROKEN${where}: ${r.reason} (${r.checked} events verified before it)\n`);
  return 1;
}

async function main(argv: string[]): Promise<number> {
  let args;
  try {
    args = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { format: { type: 'string' }, since: { type: 'string' }, until: { type: 'string' }, user: { type: 'string' } },
    });
  } catch (err) {
    return usage((err as Error).message);
  }
  const [command, ...extra] = args.positionals;
  if ((command !== 'verify' && command !== 'export') || extra.length) return usage();
  const { format, since, until, user } = args.values;
  const filter: AuditFilter = {};
  if (command === 'export') {
    if (format !== 'csv' && format !== 'json') return usage('--format must be csv or json');
    for (const [name, value] of [['since', since], ['until', until]] as const) {
      if (value === undefined) continue;
      const instant = parseInstant(value);
      if (!instant) return usage(`--${name}: expected an ISO 8601 date or date-time with a zone (2024-05-01, 2024-05-01T12:00:00Z), got "${value}"`);
      filter[name] = instant;
    }
    if (user !== undefined) filter.userId = user;
  } else if (format !== undefined || since !== undefined || until !== undefined || user !== undefined) {
    return usage('verify takes no options');
  }

  const db = await openCliDatabase({ migrate: false });
  if (typeof db === 'number') return db;
  try {
    if (command === 'verify') return await verify(db);
    for await (const chunk of exportAuditEvents(db, filter, format as 'csv' | 'json')) await write(chunk);
    // Everything written has reached stdout before the process exits.
    await new Promise<void>((resolve) => process.stdout.write('', () => resolve()));
    return 0;
  } catch (err) {
    const code = (err as { code?: string }).code;
    // Undefined table or column: the database predates the audit chain.
    if (code === '42P01' || code === '42703') {
      process.stderr.write(`${(err as Error).message}: apply the gateway's migrations first (every gateway applies them when it starts)\n`);
      return 1;
    }
    throw err;
  } finally {
    await db.end();
  }
}

// A reader that went away (`… | head`) is not an error of ours.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
});
process.exit(await main(process.argv.slice(2)));
