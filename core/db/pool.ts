/**
 * PostgreSQL access through `pg`. One pool per process; `withTransaction` is the only way code in
 * this project writes more than one statement atomically.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';

export type Db = pg.Pool;
export type Tx = pg.PoolClient;

/** Raised when PostgreSQL cannot be reached at all; boot files print its message, not a stack. */
export class DatabaseUnreachableError extends Error {
  constructor(target: string, cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(`cannot reach PostgreSQL at ${target}: ${reason}`, { cause });
    this.name = 'DatabaseUnreachableError';
  }
}

/** The connection string with any password removed, safe to log. */
export function redactDatabaseUrl(databaseUrl: string): string {
  try {
    const u = new URL(databaseUrl);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<unparseable DATABASE_URL>';
  }
}

// bigint (int8) columns come back as JS numbers: ids and counters stay far below 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

/** How a pool talks to its server; the defaults suit PostgreSQL. */
export interface PoolOptions {
  /**
   * false: every query is sent as an unnamed statement, even through {@link queryPrepared}. For
   * servers whose session outlives the wire connection (the embedded database, see embedded.ts),
   * where `pg`'s per-connection record of named statements cannot match the session's.
   */
  namedStatements?: boolean;
  /** Milliseconds an idle connection stays open; 0 keeps it for the life of the pool. Default 10 s. */
  idleTimeoutMillis?: number;
}

/** Pools, and the clients they hand out, that must not use named statements. */
const unnamedOnly = new WeakSet<object>();

export function createPool(databaseUrl: string, max = 10, opts: PoolOptions = {}): Db {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max,
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: opts.idleTimeoutMillis ?? 10_000,
  });
  // An idle client losing its connection must not crash the process; the next checkout reconnects.
  pool.on('error', () => {});
  if (opts.namedStatements === false) {
    unnamedOnly.add(pool);
    pool.on('connect', (client) => unnamedOnly.add(client));
  }
  return pool;
}

/** Opens a pool and proves it works with one round trip, so a bad DATABASE_URL fails at start-up. */
export async function connectPool(databaseUrl: string, max = 10, opts: PoolOptions = {}): Promise<Db> {
  const pool = createPool(databaseUrl, max, opts);
  try {
    await pool.query('SELECT 1');
  } catch (err) {
    await pool.end().catch(() => {});
    throw new DatabaseUnreachableError(redactDatabaseUrl(databaseUrl), err);
  }
  return pool;
}

export async function withTransaction<T>(db: Db, fn: (tx: Tx) => Promise<T>): Promise<T> {
  const client = await db.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

/** Statement text → its name, for the texts named so far; bounded, because each name lives on every connection. */
const named = new Map<string, string>();
const MAX_NAMED_STATEMENTS = 500;

/**
 * Runs a query as a named prepared statement, so PostgreSQL plans its text once per connection
 * instead of on every call. Worth it for the hot, fixed-shape queries of the SCIM read and write
 * paths, whose planning costs more than their execution. Only the first MAX_NAMED_STATEMENTS
 * distinct texts get names (filters of unusual shapes run unnamed), which bounds the memory they
 * take on each server connection. Pools made with `namedStatements: false` run every text unnamed.
 */
export async function queryPrepared<R extends pg.QueryResultRow>(db: Db | Tx, text: string, values: unknown[]): Promise<pg.QueryResult<R>> {
  if (unnamedOnly.has(db)) return await db.query<R>(text, values);
  let name = named.get(text);
  if (name === undefined) {
    if (named.size >= MAX_NAMED_STATEMENTS) return await db.query<R>(text, values);
    name = `q_${createHash('sha1').update(text).digest('base64url').slice(0, 20)}`;
    named.set(text, name);
  }
  return await db.query<R>({ name, text, values });
}
