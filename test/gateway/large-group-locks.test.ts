/**
 * Large groups (5,000 members) read and changed the way identity providers do it touch only the
 * members they concern: another connection holds a lock on what must not be touched, and the
 * request must answer while it is held; and a PATCH of 1,000 members is a few set-based statements.
 * PostgreSQL only: the embedded database is one connection.
 */
import t from 'tap';
import pg from 'pg';
import { Directory } from '../../core/directory/store.js';
import { SchemaRegistry } from '../../core/scim/schemas.js';
import { createTestDatabase } from '../helpers/db.js';
import { startTestGateway } from '../helpers/gateway.js';
import { GROUP_SCHEMA as GROUP, PATCH_SCHEMA as PATCH, groupFixture, minus, sorted } from '../helpers/groups.js';
import { uniqueTaskQueue } from '../helpers/temporal.js';

const database = await createTestDatabase(t);
const gw = await startTestGateway(t, { database, temporalAddress: '127.0.0.1:1', taskQueue: uniqueTaskQueue(), dispatchOutbox: false });
const { seedUsers, createGroup, memberIds } = groupFixture(database, gw);
const SIZE = 5_000;
const DELTA = 1_000;

const members = await seedUsers('member', SIZE);
const outsiders = await seedUsers('outsider', DELTA);
const groupId = await createGroup('Everyone at Example', members);

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

t.test('a PUT neither locks nor waits for the members it keeps', async (t) => {
  const current = await memberIds(groupId);
  const next = [...current.slice(1), minus(outsiders, current)[0]!];
  const lock = await holding('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [current.at(-1)]);
  let put: ReturnType<typeof gw.scim>;
  try {
    put = gw.scim({
      method: 'PUT',
      url: `/scim/v2/Groups/${groupId}?excludedAttributes=members`,
      payload: { schemas: [GROUP], displayName: 'Everyone at Example', members: next.map((value) => ({ value })) },
    });
    t.ok(await settlesWithin(put, 3000), 'the PUT answers while a member it keeps is locked');
  } finally {
    await lock.release();
  }
  t.equal((await put).statusCode, 200);
  t.same(await memberIds(groupId), sorted(next));
});

t.test('a PATCH of 1,000 additions and 1,000 removals is a handful of statements, not one per member', async (t) => {
  // The directory over a pool that counts the statements sent, on the pool and on the clients
  // transactions take from it.
  const pool = database.newPool(2);
  let statements = 0;
  const counting = <T extends object>(target: T): T =>
    new Proxy(target, {
      get(obj, key, receiver) {
        const value: unknown = Reflect.get(obj, key, receiver);
        if (key === 'query' && typeof value === 'function') {
          return (...args: unknown[]) => {
            statements++;
            return (value as (...a: unknown[]) => unknown).apply(obj, args);
          };
        }
        if (key === 'connect' && typeof value === 'function') {
          return async () => counting<object>(await (value as () => Promise<object>).apply(obj));
        }
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(obj) : value;
      },
    });
  const directory = new Directory(counting<typeof pool>(pool), new SchemaRegistry());
  const current = await memberIds(groupId);
  const joining = await seedUsers('joiner', 1_000);
  const leaving = current.slice(0, 1_000);
  const { changed } = await directory.patch(
    'Group',
    { name: 'test' },
    groupId,
    [
      { op: 'add', path: 'members', value: joining.map((value) => ({ value })) },
      { op: 'remove', path: 'members', value: leaving.map((value) => ({ value })) },
    ],
    undefined,
    { withMembers: false },
  );
  t.ok(changed);
  t.same(await memberIds(groupId), sorted([...minus(current, leaving), ...joining]));
  t.ok(statements <= 15, `${statements} statements`);
});
