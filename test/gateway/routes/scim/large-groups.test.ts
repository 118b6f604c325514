/**
 * Large groups over SCIM, as Okta and Entra ID use them: changed by PATCH requests naming the
 * members added and removed, or replaced whole by PUT. A group of 5,000 members stands for the
 * 50,000 of `npm run bench:groups`. That such requests neither read nor lock the members they do not
 * name is tested in test/gateway/large-group-locks.test.ts (it needs a second connection).
 */
import t from 'tap';
import { applyPatch } from '../../../../core/scim/patch/index.js';
import { SchemaRegistry } from '../../../../core/scim/schemas.js';
import { createTestDatabase } from '../../../helpers/db.js';
import { startTestGateway } from '../../../helpers/gateway.js';
import { GROUP_SCHEMA as GROUP, PATCH_SCHEMA as PATCH, groupFixture, minus, sorted, values } from '../../../helpers/groups.js';
import { uniqueTaskQueue } from '../../../helpers/temporal.js';

const database = await createTestDatabase(t);
const gw = await startTestGateway(t, { database, temporalAddress: '127.0.0.1:1', taskQueue: uniqueTaskQueue(), dispatchOutbox: false });
const { seedUsers, createGroup, memberIds, outboxHead, announcedSince, lastAudit } = groupFixture(database, gw);
const SIZE = 5_000;
const DELTA = 1_000;

const members = await seedUsers('member', SIZE);
const outsiders = await seedUsers('outsider', DELTA);
const groupId = await createGroup('Everyone at Example', members);

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

t.test('PUT with the whole member list writes, audits and provisions only the difference', async (t) => {
  const current = await memberIds(groupId);
  const dropped = current.slice(0, DELTA);
  const joining = minus(outsiders, current).slice(0, 10);
  const next = [...current.slice(DELTA), ...joining];
  const since = await outboxHead();
  const res = await gw.scim({
    method: 'PUT',
    url: `/scim/v2/Groups/${groupId}?excludedAttributes=members`,
    payload: { schemas: [GROUP], displayName: 'Everyone at Example', members: next.map((value) => ({ value })) },
  });
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
