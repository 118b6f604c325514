/**
 * Group membership against concurrent deletion, on real PostgreSQL through the HTTP routes: members
 * are added (PATCH, PUT, Bulk, nested groups) while the same users and groups are deleted, and
 * afterwards no membership may point at a deleted user or group, and no request may have failed
 * with a server error. Then the database-level guarantee is checked on its own, without the
 * application's checks.
 */
import t from 'tap';
import { createTestDatabase } from '../../helpers/db.js';
import { startTestGateway, userBody } from '../../helpers/gateway.js';
import { uniqueTaskQueue } from '../../helpers/temporal.js';

const database = await createTestDatabase(t);
const gw = await startTestGateway(t, { database, temporalAddress: '127.0.0.1:1', taskQueue: uniqueTaskQueue(), dispatchOutbox: false });
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
const BULK = 'urn:ietf:params:scim:api:messages:2.0:BulkRequest';

const ROUNDS = 5;
const PAIRS = 20;

async function post(url: string, payload: unknown): Promise<{ id: string }> {
  const res = await gw.scim({ method: 'POST', url, payload: payload as object });
  if (res.statusCode !== 201) throw new Error(`${url}: ${res.statusCode} ${res.body}`);
  return res.json();
}

/** Rows of group_members whose member or group is deleted (or missing altogether). */
async function danglingMemberships(): Promise<Array<{ group_id: string; member_id: string; member_type: string }>> {
  const { rows } = await database.db.query<{ group_id: string; member_id: string; member_type: string }>(
    `SELECT m.group_id, m.member_id, m.member_type FROM group_members m
      WHERE NOT EXISTS (SELECT 1 FROM groups g WHERE g.id = m.group_id AND g.deleted_at IS NULL)
         OR (m.member_type = 'User' AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = m.member_id AND u.deleted_at IS NULL))
         OR (m.member_type = 'Group' AND NOT EXISTS (SELECT 1 FROM groups g WHERE g.id = m.member_id AND g.deleted_at IS NULL))`,
  );
  return rows;
}

/**
 * What a request racing a deletion may answer: success, 404 for a resource already gone, or the
 * SCIM 400 invalidValue that names a member that no longer exists. Anything else (a 500 above
 * all) is a failure, reported with its body.
 */
function acceptable(status: number, body: string): boolean {
  if ([200, 201, 204, 404].includes(status)) return true;
  if (status !== 400) return false;
  const json = JSON.parse(body) as { scimType?: string; detail?: string };
  return json.scimType === 'invalidValue' && /no User or Group with id/.test(json.detail ?? '');
}

const unexpected: string[] = [];
function check(what: string, res: { statusCode: number; body: string }): void {
  if (!acceptable(res.statusCode, res.body)) unexpected.push(`${what}: ${res.statusCode} ${res.body}`);
}

t.test('PATCH add, PUT replace and Bulk add racing DELETE of the members leave no dangling membership', async (t) => {
  for (let round = 0; round < ROUNDS; round++) {
    const users = await Promise.all(Array.from({ length: PAIRS }, (_, i) => post('/scim/v2/Users', userBody(`r${round}-u${i}@example.com`))));
    const groups = await Promise.all(Array.from({ length: PAIRS }, (_, i) => post('/scim/v2/Groups', { schemas: [GROUP], displayName: `r${round}-g${i}` })));
    const keep = await post('/scim/v2/Users', userBody(`r${round}-keep@example.com`));
    await Promise.all(
      users.map(async (u, i) => {
        const g = groups[i]!;
        const add = (() => {
          switch (i % 3) {
            case 0:
              return gw
                .scim({ method: 'PATCH', url: `/scim/v2/Groups/${g.id}`, payload: { schemas: [PATCH], Operations: [{ op: 'add', path: 'members', value: [{ value: u.id }] }] } })
                .then((res) => check(`PATCH add ${u.id}`, res));
            case 1:
              return gw
                .scim({ method: 'PUT', url: `/scim/v2/Groups/${g.id}`, payload: { schemas: [GROUP], displayName: `r${round}-g${i}`, members: [{ value: keep.id }, { value: u.id }] } })
                .then((res) => check(`PUT members ${u.id}`, res));
            default:
              return gw
                .scim({
                  method: 'POST',
                  url: '/scim/v2/Bulk',
                  payload: {
                    schemas: [BULK],
                    Operations: [{ method: 'PATCH', path: `/Groups/${g.id}`, data: { schemas: [PATCH], Operations: [{ op: 'add', path: 'members', value: [{ value: u.id }] }] } }],
                  },
                })
                .then((res) => {
                  check(`Bulk ${u.id}`, res);
                  if (res.statusCode === 200) {
                    for (const op of res.json<{ Operations: Array<{ status: string; response?: unknown }> }>().Operations) {
                      check(`Bulk operation ${u.id}`, { statusCode: Number(op.status), body: JSON.stringify(op.response ?? {}) });
                    }
                  }
                });
          }
        })();
        const del = gw.scim({ method: 'DELETE', url: `/scim/v2/Users/${u.id}` }).then((res) => check(`DELETE ${u.id}`, res));
        await Promise.all([add, del]);
      }),
    );
  }
  t.same(unexpected, [], 'every request answered with success, 404, or 400 for a member that is gone');
  t.same(await danglingMemberships(), [], 'no membership points at a deleted user');
});

t.test('nesting a group racing its deletion leaves no dangling membership', async (t) => {
  unexpected.length = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const parents = await Promise.all(Array.from({ length: PAIRS }, (_, i) => post('/scim/v2/Groups', { schemas: [GROUP], displayName: `n${round}-parent${i}` })));
    const children = await Promise.all(Array.from({ length: PAIRS }, (_, i) => post('/scim/v2/Groups', { schemas: [GROUP], displayName: `n${round}-child${i}` })));
    await Promise.all(
      children.map(async (c, i) => {
        const p = parents[i]!;
        await Promise.all([
          gw
            .scim({ method: 'PATCH', url: `/scim/v2/Groups/${p.id}`, payload: { schemas: [PATCH], Operations: [{ op: 'add', path: 'members', value: [{ value: c.id, type: 'Group' }] }] } })
            .then((res) => check(`PATCH nest ${c.id}`, res)),
          gw.scim({ method: 'DELETE', url: `/scim/v2/Groups/${c.id}` }).then((res) => check(`DELETE group ${c.id}`, res)),
          // The parent going too, half the time: members may not be added to a deleted group either.
          i % 2 === 0 ? gw.scim({ method: 'DELETE', url: `/scim/v2/Groups/${p.id}` }).then((res) => check(`DELETE parent ${p.id}`, res)) : undefined,
        ]);
      }),
    );
  }
  t.same(unexpected, [], 'every request answered with success, 404, or 400 for a member that is gone');
  t.same(await danglingMemberships(), [], 'no membership points at a deleted group or sits in one');
});

t.test('two groups nesting each other at once (PATCH, PUT): one wins, the other is refused, no cycle and no 500', async (t) => {
  const answers: string[] = [];
  for (let i = 0; i < 10; i++) {
    const a = await post('/scim/v2/Groups', { schemas: [GROUP], displayName: `cycle${i}-a` });
    const b = await post('/scim/v2/Groups', { schemas: [GROUP], displayName: `cycle${i}-b` });
    const displayName = (id: string) => (id === a.id ? `cycle${i}-a` : `cycle${i}-b`);
    // The transaction that loses the deadlock between the two is run again, from the same request.
    const nest = (parent: string, child: string) =>
      i % 2 === 0
        ? gw.scim({ method: 'PATCH', url: `/scim/v2/Groups/${parent}`, payload: { schemas: [PATCH], Operations: [{ op: 'add', path: 'members', value: [{ value: child, type: 'Group' }] }] } })
        : gw.scim({ method: 'PUT', url: `/scim/v2/Groups/${parent}`, payload: { schemas: [GROUP], displayName: displayName(parent), members: [{ value: child, type: 'Group' }] } });
    const results = await Promise.all([nest(a.id, b.id), nest(b.id, a.id)]);
    answers.push(results.map((r) => (r.statusCode === 400 ? `400 ${r.json<{ scimType: string }>().scimType}` : String(r.statusCode))).sort().join(' + '));
  }
  t.same(new Set(answers), new Set(['200 + 400 invalidValue']), 'each time one nesting is applied and the other refused as a cycle');
  const { rows } = await database.db.query(
    `SELECT 1 FROM group_members x JOIN group_members y ON x.group_id = y.member_id AND y.group_id = x.member_id LIMIT 1`,
  );
  t.same(rows, [], 'no two groups contain each other');
  const { rows: nested } = await database.db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM group_members m JOIN groups g ON g.id = m.group_id WHERE g.display_name LIKE 'cycle%' AND m.member_type = 'Group'`,
  );
  t.equal(nested[0]!.n, 10, 'each pair keeps exactly the one nesting that won');
});

t.test('the database itself refuses memberships of deleted resources and drops them on deletion', async (t) => {
  const db = database.db;
  const u = await post('/scim/v2/Users', userBody('direct@example.com'));
  const g = await post('/scim/v2/Groups', { schemas: [GROUP], displayName: 'direct' });
  const gone = await post('/scim/v2/Groups', { schemas: [GROUP], displayName: 'gone' });
  await db.query('UPDATE groups SET deleted_at = now() WHERE id = $1', [gone.id]);

  await db.query(`INSERT INTO group_members (group_id, member_id, member_type) VALUES ($1, $2, 'User')`, [g.id, u.id]);
  await db.query('UPDATE users SET deleted_at = now() WHERE id = $1', [u.id]);
  t.same((await db.query('SELECT 1 FROM group_members WHERE member_id = $1', [u.id])).rows, [], "marking a user deleted drops the user's memberships");

  await t.rejects(
    db.query(`INSERT INTO group_members (group_id, member_id, member_type) VALUES ($1, $2, 'User')`, [g.id, u.id]),
    { code: '23503' },
    'a deleted user cannot be added',
  );
  await t.rejects(
    db.query(`INSERT INTO group_members (group_id, member_id, member_type) VALUES ($1, $2, 'Group')`, [g.id, gone.id]),
    { code: '23503' },
    'a deleted group cannot be nested',
  );
  const live = await post('/scim/v2/Users', userBody('live@example.com'));
  await t.rejects(
    db.query(`INSERT INTO group_members (group_id, member_id, member_type) VALUES ($1, $2, 'User')`, [gone.id, live.id]),
    { code: '23503' },
    'a deleted group cannot gain members',
  );
  await t.rejects(
    db.query(`INSERT INTO group_members (group_id, member_id, member_type) VALUES ($1, $2, 'Group')`, [g.id, live.id]),
    { code: '23503' },
    'a member must exist as the type it is recorded as',
  );
  t.same(await danglingMemberships(), []);
});
