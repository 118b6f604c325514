/**
 * The embedded database behind `npm start` when DATABASE_URL is not set: PGlite (PostgreSQL compiled
 * to WebAssembly) persisted in a directory and served over the PostgreSQL wire protocol on loopback,
 * so the rest of the code uses the same `pg` driver as against a real server.
 *
 * What differs from a PostgreSQL server, and what the code does about it:
 *
 * - **One session behind every connection.** PGlite is a single backend. The socket server hands
 *   every wire message of every connection to that one backend, so session state (named prepared
 *   statements, portals, settings, advisory locks) outlives the connection that created it. `pg`
 *   keeps its own record of the named statements it has prepared *per connection*, and `pg-pool`
 *   throws a connection away after any failed query: the replacement connection knows none of the
 *   statements the session still holds, and preparing one of them again fails with "prepared
 *   statement already exists". The pool for this database therefore never names statements
 *   (`namedStatements: false`), so no connection depends on session state another one left behind,
 *   and keeps its connection while idle.
 * - **One connection.** Outside an explicit transaction the socket server interleaves connections
 *   message by message, and `pg` sends a parameterized query as several messages (Parse, Bind,
 *   Execute, Sync): two connections querying at once can execute each other's statements. The
 *   whole process (gateway and worker) shares ONE connection ({@link EMBEDDED_POOL_SIZE}); the
 *   pool queues queries in order. Code must never hold a transaction open while waiting for another
 *   query on the pool (bad practice on PostgreSQL too): with one connection it would wait forever.
 *
 * Both make the embedded database a single-user convenience for trying the gateway and for
 * development; docs/architecture.md gives its measured throughput and when to move to PostgreSQL.
 */
import { mkdir } from 'node:fs/promises';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { connectPool, type Db } from './pool.js';

/** Pool size to use against the embedded database (see above). */
export const EMBEDDED_POOL_SIZE = 1;

export interface EmbeddedPostgres {
  /** A `postgres://` URL for `pg` that reaches the embedded database. */
  url: string;
  /**
   * The pool every part of the process shares: one connection, unnamed statements, kept while idle.
   * Fails like {@link connectPool} when the database does not answer.
   */
  connect(): Promise<Db>;
  stop(): Promise<void>;
}

/**
 * Opens (or creates) the database in `dataDir` and serves it on 127.0.0.1:`port` (0 picks a free
 * port). `dataDir` undefined keeps the database in memory, for tests.
 */
export async function startEmbeddedPostgres(opts: {
  dataDir?: string;
  port?: number;
  maxConnections?: number;
}): Promise<EmbeddedPostgres> {
  if (opts.dataDir) await mkdir(opts.dataDir, { recursive: true });
  const db = opts.dataDir ? await PGlite.create(opts.dataDir) : await PGlite.create();
  const server = new PGLiteSocketServer({
    db,
    host: '127.0.0.1',
    port: opts.port ?? 0,
    // Migrations and command-line tools connect beside the shared pool, one at a time.
    maxConnections: opts.maxConnections ?? 32,
  });
  await server.start();
  const conn = server.getServerConn(); // "host:port"
  const port = Number(conn.slice(conn.lastIndexOf(':') + 1));
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  return {
    url,
    connect: () => connectPool(url, EMBEDDED_POOL_SIZE, { namedStatements: false, idleTimeoutMillis: 0 }),
    async stop() {
      await server.stop();
      await db.close();
    },
  };
}
