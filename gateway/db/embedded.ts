/**
 * The embedded database behind `npm start` when DATABASE_URL is not set: PGlite (PostgreSQL compiled
 * to WebAssembly) persisted in a directory and served over the PostgreSQL wire protocol on loopback,
 * so the rest of the code uses the same `pg` driver as against a real server.
 *
 * PGlite runs one statement at a time. The socket server can multiplex several connections onto
 * it, but it interleaves them message by message outside explicit transactions, and `pg` sends a
 * parameterized query as several messages (Parse, Bind, Execute, Sync): two connections querying
 * at once can execute each other's statements. The embedded setup therefore gives the whole
 * process ONE connection ({@link EMBEDDED_POOL_SIZE}), shared by the gateway and the worker; the
 * `pg` pool queues queries in order. Code must never hold a transaction open while waiting for
 * another query on the pool (which is also bad practice on PostgreSQL): with one connection it
 * would wait forever.
 */

/** Pool size to use against the embedded database (see above). */
export const EMBEDDED_POOL_SIZE = 1;
import { mkdir } from 'node:fs/promises';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';

export interface EmbeddedPostgres {
  /** A `postgres://` URL for `pg` that reaches the embedded database. */
  url: string;
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
    maxConnections: opts.maxConnections ?? 32,
  });
  await server.start();
  const conn = server.getServerConn(); // "host:port"
  const port = Number(conn.slice(conn.lastIndexOf(':') + 1));
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async stop() {
      await server.stop();
      await db.close();
    },
  };
}
