/**
 * Large groups over SCIM, as Okta and Entra ID use them: read with excludedAttributes=members,
 * changed by PATCH requests naming the members added and removed. A group of 5,000 members stands
 * for the 50,000 of `npm run bench:groups`.
 */
import t from 'tap';
import pg from 'pg';
import { applyPatch } from '../../../../core/scim/patch/index.js';
import { SchemaRegistry } from '../../../../core/scim/schemas.js';
import { createTestDatabase } from '../../../helpers/db.js';
import { startTestGateway } from '../../../helpers/gateway.js';
import { uniqueTaskQueue } from '../../../helpers/temporal.js';

const database = await createTestDatabase(t);
const gw = await startTestGateway(t, { database, temporalAddress: '127.0.0.1:1', taskQueue: uniqueTaskQueue(), dispatchOutbox: false });
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
const SIZE = 5_000;
const DELTA = 1_000;

/** Users seeded in one statement (the SCIM path for users is tested elsewhere); answers their ids in order. */
async function seedUsers(prefix: string, n: number): Promise<string[]> {
  const { rows } = await database.db.query<{ id: string }>(
    `INSERT INTO users (id, user_name, display_name, active, resource)
     SELECT gen_random_uuid(), $1 || i || '@example.com', 'User ' || i, true,
            jsonb_build_object('schemas', jsonb_build_array('urn:ietf:params:scim:schemas:core:2.0:User'), 'userName', $1 || i || '@example.com', 'active', true)
       FROM generate_series(1, $2::int) AS i
     RETURNING id::text`,
    [prefix, n],
  );
  return rows.map((r) => r.id);
}

async function createGroup(displayName: string, members: string[]): Promise<string> {
  const res = await gw.scim({ method: 'POST', url: '/scim/v2/Groups?excludedAttributes=members', payload: { schemas: [GROUP], displayName, members: members.map((value) => ({ value })) } });
  if (res.statusCode !== 201) throw new Error(`create group: ${res.statusCode} ${res.body}`);
  return res.json<{ id: string }>().id;
}

async function memberIds(groupId: string): Promise<string[]> {
  const { rows } = await database.db.query<{ id: string }>('SELECT member_id::text AS id FROM group_members WHERE group_id = $1 ORDER BY 1', [groupId]);
  return rows.map((r) => r.id);
}

async function outboxHead(): Promise<number> {
  const { rows } = await database.db.query<{ id: string | null }>('SELECT max(id)::text AS id FROM outbox');
  return Number(rows[0]!.id ?? 0);
}

/** The users announced to provisioning (outbox `user.changed`) after `since`, sorted. */
async function announcedSince(since: number): Promise<string[]> {
  const { rows } = await database.db.query<{ id: string }>("SELECT aggregate_id::text AS id FROM outbox WHERE id > $1 AND topic = 'user.changed' ORDER BY 1", [since]);
  return rows.map((r) => r.id);
}

interface AuditRow {
  action: string;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
}

async function lastAudit(groupId: string): Promise<AuditRow> {
  const { rows } = await database.db.query<AuditRow>("SELECT action, before, after FROM audit_events WHERE resource_type = 'Group' AND resource_id = $1 ORDER BY id DESC LIMIT 1", [groupId]);
  return rows[0]!;
}

const sorted = (xs: string[]) => [...xs].sort();
const values = (list: unknown) => sorted(((list ?? []) as Array<{ value: string }>).map((m) => m.value));
const minus = (xs: string[], ys: string[]) => {
  const drop = new Set(ys);
  return xs.filter((x) => !drop.has(x));
};

/** A connection of its own holding a lock until `release`; the gateway's pool cannot see it. */
async function holding(sql: string, params: unknown[] = []): Promise<{ release(): Promise<void> }> {
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  await client.query('BEGIN');
  await client.query(sql, params);
  return {
    async release() {
      await client.query('COMMIT');
      await client.end();
    },
  };
}

/** Whether `p` settles within `ms`. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([p.then(() => true as const), late]);
  } finally {
    clearTimeout(timer);
  }
}

const members = await seedUsers('member', SIZE);
const outsiders = await seedUsers('outsider', DELTA);
const groupId = await createGroup('Everyone at Example', members);

t.test('excludedAttributes=members answers without members and without reading a member row', async (t) => {
  // Every statement touching group_members waits for this lock: an answer given while it is held
  // read no member.
  const lock = await holding('LOCK TABLE group_members IN ACCESS EXCLUSIVE MODE');
  let full: ReturnType<typeof gw.scim>;
  try {
    const one = await gw.scim({ method: 'GET', url: `/scim/v2/Groups/${groupId}?excludedAttributes=members` });
    t.equal(one.statusCode, 200, one.body);
    t.equal(one.json().displayName, 'Everyone at Example');
    t.notOk('members' in one.json(), 'no members in the answer');

    const filter = encodeURIComponent('displayName eq "Everyone at Example"');
    const list = await gw.scim({ method: 'GET', url: `/scim/v2/Groups?filter=${filter}&excludedAttributes=members` });
    t.equal(list.statusCode, 200, list.body);
    t.equal(list.json().totalResults, 1);
    t.notOk('members' in list.json().Resources[0]);

    const onlyName = await gw.scim({ method: 'GET', url: `/scim/v2/Groups/${groupId}?attributes=displayName` });
    t.equal(onlyName.statusCode, 200, onlyName.body);
    t.same(Object.keys(onlyName.json()).sort(), ['displayName', 'id', 'schemas'], 'attributes=displayName reads no member either');

    // The same read with the members waits for the lock: the check above can fail.
    full = gw.scim({ method: 'GET', url: `/scim/v2/Groups/${groupId}` });
    t.notOk(await settlesWithin(full, 300), 'a read with the members waits for the member rows');
  } finally {
    await lock.release();
  }
  const res = await full;
  t.equal(res.statusCode, 200);
  t.equal(res.json().members.length, SIZE, 'a read with the members answers every member');
});

t.test('one PATCH adding 1,000 members and removing 1,000 (Entra ID) applies, audits and provisions exactly that delta', async (t) => {
  const before = await memberIds(groupId);
  const removed = members.slice(0, DELTA);
  const since = await outboxHead();
  const res = await gw.scim({
    method: 'PATCH',
    url: `/scim/v2/Groups/${groupId}?excludedAttributes=members`,
    payload: {
      schemas: [PATCH],
      Operations: [
        { op: 'Add', path: 'members', value: outsiders.map((value) => ({ value })) },
        { op: 'Remove', path: 'members', value: removed.map((value) => ({ value })) },
      ],
    },
  });
  t.equal(res.statusCode, 200, res.body);
  t.notOk('members' in res.json(), 'the answer leaves the members out as asked');

  t.same(await memberIds(groupId), sorted([...minus(before, removed), ...outsiders]), 'exactly those members added and removed');
  t.same(await announcedSince(since), sorted([...outsiders, ...removed]), 'provisioning hears of the 2,000 users whose memberships changed, and of no one else');
  const audit = await lastAudit(groupId);
  t.equal(audit.action, 'group.patched');
  t.same(values(audit.after!.membersAdded), sorted(outsiders), 'the audit event records the members added');
  t.same(values(audit.after!.membersRemoved), sorted(removed), 'and the members removed');
  t.notOk('members' in audit.before! || 'members' in audit.after!, 'and not the whole group before and after');
});

t.test("Okta's removals, one members[value eq] operation per member, apply and provision exactly those", async (t) => {
  const before = await memberIds(groupId);
  const removed = outsiders.slice(0, DELTA - 1);
  const since = await outboxHead();
  const res = await gw.scim({
    method: 'PATCH',
    url: `/scim/v2/Groups/${groupId}`,
    payload: {
      schemas: [PATCH],
      Operations: [{ op: 'add', path: 'members', value: [{ value: members[0] }] }, ...removed.map((id) => ({ op: 'remove', path: `members[value eq "${id}"]` }))],
    },
  });
  t.equal(res.statusCode, 200, res.body);
  const expected = sorted([...minus(before, removed), members[0]!]);
  t.same(values(res.json().members), expected, 'without excludedAttributes the answer holds the whole group');
  t.same(await memberIds(groupId), expected);
  t.same(await announcedSince(since), sorted([...removed, members[0]!]));
  const audit = await lastAudit(groupId);
  t.same(values(audit.after!.membersAdded), [members[0]]);
  t.same(values(audit.after!.membersRemoved), sorted(removed));
});

t.test('a PATCH naming members neither locks nor waits for the members it does not name', async (t) => {
  // Another writer holds one member that this PATCH does not name (an update of that user in flight).
  const current = await memberIds(groupId);
  const bystander = current.find((id) => id !== outsiders.at(-1))!;
  const newcomer = minus(outsiders, current)[0]!;
  const lock = await holding('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [bystander]);
  const patch = (op: Record<string, unknown>) =>
    gw.scim({ method: 'PATCH', url: `/scim/v2/Groups/${groupId}?excludedAttributes=members`, payload: { schemas: [PATCH], Operations: [op] } });
  let add: ReturnType<typeof gw.scim>;
  let remove: ReturnType<typeof gw.scim> | undefined;
  try {
    add = patch({ op: 'add', path: 'members', value: [{ value: newcomer }] });
    t.ok(await settlesWithin(add, 3000), 'an addition answers while the bystander is locked');
    if ((await settlesWithin(add, 0)) && (await add).statusCode === 200) {
      remove = patch({ op: 'remove', path: `members[value eq "${newcomer}"]` });
      t.ok(await settlesWithin(remove, 3000), 'so does a removal');
    }
  } finally {
    await lock.release();
  }
  t.equal((await add).statusCode, 200);
  t.equal((await remove)?.statusCode, 200);
  t.notOk((await memberIds(groupId)).includes(newcomer));
});

t.test('PUT with the whole member list writes, audits and provisions only the difference', async (t) => {
  const current = await memberIds(groupId);
  const dropped = current.slice(0, DELTA);
  const joining = minus(outsiders, current).slice(0, 10);
  const next = [...current.slice(DELTA), ...joining];
  const since = await outboxHead();
  const lock = await holding('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [current.at(-1)]);
  let put: ReturnType<typeof gw.scim>;
  try {
    put = gw.scim({
      method: 'PUT',
      url: `/scim/v2/Groups/${groupId}?excludedAttributes=members`,
      payload: { schemas: [GROUP], displayName: 'Everyone at Example', members: next.map((value) => ({ value })) },
    });
    t.ok(await settlesWithin(put, 3000), 'members kept are not locked again');
  } finally {
    await lock.release();
  }
  const res = await put;
  t.equal(res.statusCode, 200, res.body);
  t.same(await memberIds(groupId), sorted(next));
  t.same(await announcedSince(since), sorted([...dropped, ...joining]));
  const audit = await lastAudit(groupId);
  t.equal(audit.action, 'group.replaced');
  t.same(values(audit.after!.membersAdded), sorted(joining));
  t.same(values(audit.after!.membersRemoved), sorted(dropped));

  const same = await outboxHead();
  const again = await gw.scim({ method: 'PUT', url: `/scim/v2/Groups/${groupId}?excludedAttributes=members`, payload: { schemas: [GROUP], displayName: 'Everyone at Example', members: next.map((value) => ({ value })) } });
  t.equal(again.statusCode, 200, again.body);
  t.same(await announcedSince(same), [], 'the same members again announce no one');

  const wrongType = await gw.scim({ method: 'PUT', url: `/scim/v2/Groups/${groupId}`, payload: { schemas: [GROUP], displayName: 'Everyone at Example', members: [{ value: next[0], type: 'Group' }] } });
  t.equal(wrongType.statusCode, 400, 'a kept member given the wrong type is refused');
  t.equal(wrongType.json().scimType, 'invalidValue');
});

t.test('PATCH on a view of the named members gives what PATCH on the whole group gives', async (t) => {
  // Small groups, so the whole-group answer is computed here with the pure patch function and
  // compared with what the gateway stored.
  const registry = new SchemaRegistry();
  const pool = await seedUsers('pool', 8);
  // mulberry32: a fixed sequence, so a failing round repeats.
  let seed = 7;
  const random = (n: number) => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return Math.floor((((x ^ (x >>> 14)) >>> 0) / 4294967296) * n);
  };
  const pick = () => pool[random(pool.length)]!;
  let renames = 0;
  const shapes = [
    () => ({ op: 'add', path: 'members', value: [{ value: pick() }, { value: pick() }] }),
    () => ({ op: 'remove', path: 'members', value: [{ value: pick() }] }),
    () => ({ op: 'remove', path: `members[value eq "${pick()}"]` }),
    () => ({ op: 'add', value: { members: [{ value: pick().toUpperCase() }] } }),
    () => ({ op: 'replace', path: 'displayName', value: `Renamed ${++renames}` }),
    () => ({ op: 'replace', path: 'members', value: [{ value: pick() }] }),
    () => ({ op: 'remove', path: 'members' }),
    () => ({ op: 'replace', path: `members[value eq "${pick()}"].display`, value: 'Shown' }),
  ];
  for (let round = 0; round < 60; round++) {
    const start = pool.filter(() => random(2) === 0);
    const id = await createGroup(`Round ${round}`, start);
    const before = (await gw.scim({ method: 'GET', url: `/scim/v2/Groups/${id}` })).json();
    const ops = Array.from({ length: 1 + random(4) }, () => shapes[random(shapes.length)]!());
    let expected: { status: number; members?: string[] };
    try {
      const { resource } = applyPatch(before, ops as never, { registry, resourceType: 'Group' });
      expected = { status: 200, members: sorted(values(resource.members).map((v) => v.toLowerCase())) };
    } catch {
      expected = { status: 400 };
    }
    const since = await outboxHead();
    const res = await gw.scim({ method: 'PATCH', url: `/scim/v2/Groups/${id}`, payload: { schemas: [PATCH], Operations: ops } });
    const label = `round ${round}: ${JSON.stringify(ops)}`;
    t.equal(res.statusCode, expected.status, label);
    const stored = await memberIds(id);
    if (expected.status === 200) t.same(stored, [...new Set(expected.members)], label);
    else t.same(stored, sorted(start), `${label}: nothing changed`);
    const startSet = new Set(start);
    const storedSet = new Set(stored);
    const changed = pool.filter((u) => startSet.has(u) !== storedSet.has(u));
    t.same(await announcedSince(since), sorted(changed), `${label}: only the users whose membership changed are announced`);
  }
});
