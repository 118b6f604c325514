/**
 * Migrations at start-up: every process (gateways, workers) migrates, often at the same moment on a
 * fresh database (a compose stack starting). Each migration must apply once, and no process may fail.
 */
import { readdirSync } from 'node:fs';
import t from 'tap';
import { MIGRATIONS_DIR, migrate } from '../../../core/db/migrate.js';
import { createTestDatabase } from '../../helpers/db.js';

t.test('processes migrating at once: all succeed, each migration applied once', async (t) => {
  const database = await createTestDatabase(t, { migrate: false });
  const all = readdirSync(MIGRATIONS_DIR).filter((f) => f.endsWith('.sql')).map((f) => f.replace(/\.sql$/, '')).sort();
  const results = await Promise.allSettled(Array.from({ length: 4 }, () => migrate(database.url)));
  const failures = results.flatMap((r) => (r.status === 'rejected' ? [String(r.reason)] : []));
  t.same(failures, [], 'no process failed to start');
  const applied = results.flatMap((r) => (r.status === 'fulfilled' ? r.value : []));
  t.same(applied.sort(), all, 'between them, every migration was applied exactly once');
  const { rows } = await database.db.query<{ name: string; n: number }>('SELECT name, count(*)::int AS n FROM pgmigrations GROUP BY name HAVING count(*) > 1');
  t.same(rows, [], 'none is recorded twice');
  t.same(await migrate(database.url), [], 'a later start applies nothing');
});
