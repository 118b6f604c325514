/**
 * Migration 1732170000009 on a database that already holds memberships of deleted users and groups
 * (left by the race it closes): they are removed, each group's removal is an audit event, and the
 * hash chain still verifies.
 */
import { randomUUID } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { runner } from 'node-pg-migrate';
import pg from 'pg';
import t from 'tap';
import { verifyAuditChain } from '../../../core/audit/chain.js';
import { migrate, MIGRATIONS_DIR } from '../../../core/db/migrate.js';
import { createTestDatabase } from '../../helpers/db.js';

const THIS = '1732170000009_membership-integrity-and-audit';
const earlier = readdirSync(MIGRATIONS_DIR).filter((f) => f.endsWith('.sql') && f < THIS).length;
const database = await createTestDatabase(t, { migrate: false });
const db = database.db;

t.test('memberships of deleted resources are pruned and audited', async (t) => {
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  try {
    // Every migration before this one.
    await runner({ dbClient: client, dir: MIGRATIONS_DIR, direction: 'up', migrationsTable: 'pgmigrations', count: earlier, log: () => {} });
  } finally {
    await client.end();
  }
  const { rows: applied } = await db.query<{ name: string }>('SELECT name FROM pgmigrations ORDER BY id DESC LIMIT 1');
  t.ok(applied[0]!.name < THIS, `the database is at the migration before (${applied[0]!.name})`);

  const [live, gone] = [randomUUID(), randomUUID()];
  const [group, deletedGroup, child] = [randomUUID(), randomUUID(), randomUUID()];
  await db.query(`INSERT INTO users (id, user_name, resource) VALUES ($1, 'live', '{}'), ($2, 'gone', '{}')`, [live, gone]);
  await db.query(`UPDATE users SET deleted_at = now() WHERE id = $1`, [gone]);
  await db.query(`INSERT INTO groups (id, display_name, resource) VALUES ($1, 'g', '{}'), ($2, 'deleted', '{}'), ($3, 'child', '{}')`, [group, deletedGroup, child]);
  await db.query(`UPDATE groups SET deleted_at = now() WHERE id = ANY($1)`, [[deletedGroup, child]]);
  await db.query(
    `INSERT INTO group_members (group_id, member_id, member_type) VALUES ($1, $3, 'User'), ($1, $4, 'User'), ($1, $5, 'Group'), ($2, $3, 'User')`,
    [group, deletedGroup, live, gone, child],
  );
  await db.query(`INSERT INTO audit_events (actor, action, resource_type, resource_id) VALUES ('seed', 'user.created', 'User', $1)`, [live]);

  const fromThis = readdirSync(MIGRATIONS_DIR).filter((f) => f.endsWith('.sql') && f >= THIS).map((f) => f.replace(/\.sql$/, '')).sort();
  t.same(await migrate(database.url), fromThis, 'this migration and any after it apply');
  const { rows: left } = await db.query('SELECT group_id, member_id FROM group_members');
  t.same(left, [{ group_id: group, member_id: live }], 'only the membership of live resources is left');

  const { rows: events } = await db.query<{ actor: string; resource_id: string; after: { membersRemoved: Array<{ value: string; type: string }> } }>(
    `SELECT actor, resource_id, after FROM audit_events WHERE action = 'group.members-pruned' ORDER BY resource_id`,
  );
  const byGroup = new Map(events.map((e) => [e.resource_id, e]));
  t.equal(events.length, 2, 'one event per group that lost members');
  t.same(
    byGroup.get(group)?.after.membersRemoved.map((m) => m.value).sort(),
    [gone, child].sort(),
    'the deleted user and the deleted nested group, removed from g',
  );
  t.same(byGroup.get(deletedGroup)?.after.membersRemoved, [{ value: live, type: 'User' }], 'the deleted group loses its members');
  t.equal(events[0]!.actor, 'migration:1732170000009');

  const { rows: history } = await db.query(
    `SELECT 1 FROM audit_events e WHERE audit_event_users(e.resource_type, e.resource_id, e.before, e.after) @> ARRAY[$1::text] AND e.action = 'group.members-pruned'`,
    [gone],
  );
  t.equal(history.length, 1, "the pruning is in the deleted user's history");
  const chain = await verifyAuditChain(db);
  t.ok(chain.ok, JSON.stringify(chain));
});
