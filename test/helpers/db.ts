/**
 * An isolated database per test file, migrated, and dropped when the file's tests end.
 *
 * By default a fresh database on the PostgreSQL server at TEST_DATABASE_URL. With
 * TEST_DATABASE=embedded, a fresh in-memory embedded database (PGlite, as `npm start` runs it):
 * one shared connection that every pool of the test is, so the same test file checks both.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { startEmbeddedPostgres } from '../../core/db/embedded.js';
import { migrate } from '../../core/db/migrate.js';
import { createPool, type Db } from '../../core/db/pool.js';

export const ADMIN_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** Which database createTestDatabase makes: `postgres` (default) or `embedded`. */
export const TEST_DATABASE_KIND: 'postgres' | 'embedded' = process.env.TEST_DATABASE === 'embedded' ? 'embedded' : 'postgres';

interface Teardown {
  teardown(fn: () => void | Promise<void>): void;
}

export interface TestDatabase {
  url: string;
  name: string;
  /** A pool owned by the helper (closed at teardown). Apps get their own with `newPool`. */
  db: Db;
  newPool(max?: number): Db;
}

async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: ADMIN_URL });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export async function createTestDatabase(t: Teardown, opts: { migrate?: boolean } = {}): Promise<TestDatabase> {
  if (TEST_DATABASE_KIND === 'embedded') return await createEmbeddedTestDatabase(t, opts);
  const name = `scimgw_test_${randomBytes(6).toString('hex')}`;
  await admin((c) => c.query(`CREATE DATABASE ${name}`));
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  const dbUrl = url.toString();
  if (opts.migrate !== false) await migrate(dbUrl);
  const pools: Db[] = [];
  const newPool = (max = 5) => {
    const pool = createPool(dbUrl, max);
    pools.push(pool);
    return pool;
  };
  const db = newPool();
  t.teardown(async () => {
    await Promise.all(pools.map((p) => p.end().catch(() => {})));
    await admin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
  });
  return { url: dbUrl, name, db, newPool };
}

/** A fresh, migrated, in-memory embedded database behind one shared connection, as `npm start` runs it. */
export async function createEmbeddedTestDatabase(t: Teardown, opts: { migrate?: boolean } = {}): Promise<TestDatabase> {
  const embedded = await startEmbeddedPostgres({});
  if (opts.migrate !== false) await migrate(embedded.url);
  const shared = await embedded.connect();
  // Every app and pool of the test file is this one connection, as under `npm start`; an app
  // ends the pool it was given when it closes, so only the teardown below may really end it.
  const end = shared.end.bind(shared);
  shared.end = () => Promise.resolve();
  t.teardown(async () => {
    await end().catch(() => {});
    await embedded.stop();
  });
  return { url: embedded.url, name: 'embedded', db: shared, newPool: () => shared };
}
