import t from 'tap';
import { createTestDatabase } from '../../../helpers/db.js';
import { startTestGateway, userBody } from '../../../helpers/gateway.js';
import { uniqueTaskQueue } from '../../../helpers/temporal.js';

const database = await createTestDatabase(t);
const gw = await startTestGateway(t, { database, temporalAddress: '127.0.0.1:1', taskQueue: uniqueTaskQueue(), dispatchOutbox: false });
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';

async function post(url: string, payload: unknown) {
  const res = await gw.scim({ method: 'POST', url, payload: payload as object });
  if (res.statusCode !== 201) throw new Error(`${url}: ${res.statusCode} ${res.body}`);
  return res.json();
}
const user = (name: string) => post('/scim/v2/Users', userBody(name, { displayName: name.split('@')[0] }));
const group = (displayName: string, members: Array<Record<string, unknown>> = []) => post('/scim/v2/Groups', { schemas: [GROUP], displayName, members });
async function changesFor(userId: string): Promise<number> {
  const r = await database.db.query('SELECT count(*)::int AS n FROM outbox WHERE aggregate_id = $1', [userId]);
  return r.rows[0].n;
}

t.test('groups with user members and nested groups', async (t) => {
  const alice = await user('alice@example.com');
  const bob = await user('bob@example.com');
  const eng = await group('Engineering', [{ value: alice.id }]);
  t.same(eng.members.map((m: { value: string; type: string }) => [m.value, m.type]), [[alice.id, 'User']], 'member type is filled in');
  t.equal(eng.members[0].display, 'alice');
  t.match(eng.members[0].$ref, new RegExp(`/scim/v2/Users/${alice.id}$`));
  const all = await group('Everyone', [{ value: eng.id, type: 'Group' }, { value: bob.id }]);
  t.equal(all.members.length, 2);

  const aliceNow = (await gw.scim({ method: 'GET', url: `/scim/v2/Users/${alice.id}` })).json();
  t.same(
    aliceNow.groups.map((g: { value: string; type: string; display: string }) => [g.display, g.type]).sort(),
    [['Engineering', 'direct'], ['Everyone', 'indirect']],
    'a user sees direct and indirect memberships',
  );

  const cycle = await gw.scim({ method: 'PATCH', url: `/scim/v2/Groups/${eng.id}`, payload: { schemas: [PATCH], Operations: [{ op: 'add', path: 'members', value: [{ value: all.id, type: 'Group' }] }] } });
  t.equal(cycle.statusCode, 400, 'nesting that would make a cycle is refused');
  t.equal(cycle.json().scimType, 'invalidValue');

  const missing = await gw.scim({ method: 'POST', url: '/scim/v2/Groups', payload: { schemas: [GROUP], displayName: 'Ghosts', members: [{ value: '00000000-0000-0000-0000-000000000000' }] } });
  t.equal(missing.statusCode, 400, 'members must exist');

  const dup = await gw.scim({ method: 'POST', url: '/scim/v2/Groups', payload: { schemas: [GROUP], displayName: 'engineering' } });
  t.equal(dup.statusCode, 409, 'displayName is unique');
  t.equal(dup.json().scimType, 'uniqueness');
});

t.test('membership changes announce exactly the affected users', async (t) => {
  const carol = await user('carol@example.com');
  const dave = await user('dave@example.com');
  const team = await group('Team', [{ value: carol.id }]);
  const parent = await group('Parent', [{ value: team.id }]);
  t.equal(await changesFor(carol.id), 3, 'created, joined Team, and Team joined Parent');
  t.equal(await changesFor(dave.id), 1);

  const add = await gw.scim({ method: 'PATCH', url: `/scim/v2/Groups/${team.id}`, payload: { schemas: [PATCH], Operations: [{ op: 'add', path: 'members', value: [{ value: dave.id, display: 'Dave' }] }] } });
  t.equal(add.statusCode, 200, add.body);
  t.equal(await changesFor(dave.id), 2, 'dave joined');
  t.equal(await changesFor(carol.id), 3, 'carol is unaffected');

  const rename = await gw.scim({ method: 'PATCH', url: `/scim/v2/Groups/${team.id}`, payload: { schemas: [PATCH], Operations: [{ op: 'replace', value: { id: team.id, displayName: 'Team Renamed' } }] } });
  t.equal(rename.statusCode, 200, rename.body);
  t.equal(rename.json().displayName, 'Team Renamed');

  const remove = await gw.scim({ method: 'PATCH', url: `/scim/v2/Groups/${team.id}`, payload: { schemas: [PATCH], Operations: [{ op: 'remove', path: `members[value eq "${carol.id}"]` }] } });
  t.equal(remove.statusCode, 200, remove.body);
  t.same(remove.json().members.map((m: { value: string }) => m.value), [dave.id]);
  t.equal(await changesFor(carol.id), 4, 'carol left');

  const del = await gw.scim({ method: 'DELETE', url: `/scim/v2/Groups/${parent.id}` });
  t.equal(del.statusCode, 204);
  t.equal(await changesFor(dave.id), 3, 'deleting Parent changes what dave (in Team, inside Parent) is in');
  const daveNow = (await gw.scim({ method: 'GET', url: `/scim/v2/Users/${dave.id}` })).json();
  t.same(daveNow.groups.map((g: { display: string }) => g.display), ['Team Renamed']);
});

t.test('filtering groups and leaving members out', async (t) => {
  const erin = await user('erin@example.com');
  const g = await group('Filterable', [{ value: erin.id }]);
  const byName = await gw.scim({ method: 'GET', url: `/scim/v2/Groups?filter=${encodeURIComponent('displayName eq "filterable"')}&excludedAttributes=members` });
  t.equal(byName.statusCode, 200, byName.body);
  t.equal(byName.json().totalResults, 1);
  t.notOk('members' in byName.json().Resources[0], 'excludedAttributes=members');
  const byMember = await gw.scim({ method: 'GET', url: `/scim/v2/Groups?filter=${encodeURIComponent(`members[value eq "${erin.id}"]`)}` });
  t.same(byMember.json().Resources.map((r: { id: string }) => r.id), [g.id]);
  const one = await gw.scim({ method: 'GET', url: `/scim/v2/Groups/${g.id}?excludedAttributes=members` });
  t.notOk('members' in one.json());

  const root = await gw.scim({ method: 'POST', url: '/scim/v2/.search', payload: { schemas: ['urn:ietf:params:scim:api:messages:2.0:SearchRequest'], filter: 'displayName sw "Filter" or userName eq "erin@example.com"' } });
  t.equal(root.statusCode, 200, root.body);
  t.same(root.json().Resources.map((r: { meta: { resourceType: string } }) => r.meta.resourceType).sort(), ['Group', 'User'], 'root search spans resource types');
});
