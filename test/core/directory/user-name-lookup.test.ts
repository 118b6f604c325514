/**
 * `userName eq` lookups are coalesced into one query per event-loop turn. They must answer exactly
 * what the general filter translation answers, for every casing, Unicode case folding, tombstones,
 * missing names and group memberships, and really share queries under concurrency.
 */
import t from 'tap';
import { createTestDatabase } from '../../helpers/db.js';
import { userBody } from '../../helpers/gateway.js';
import { Directory, type ListQuery, type ListResult } from '../../../core/directory/store.js';
import { parseFilter } from '../../../core/scim/filter/index.js';
import { SchemaRegistry } from '../../../core/scim/schemas.js';

const database = await createTestDatabase(t);
const directory = new Directory(database.db, new SchemaRegistry());
const actor = { name: 'test' };

const names = ['Alice@Example.com', 'bob@example.com', 'İlkay@example.com', 'ΣΟΦΙΑ@example.com', 'carol@example.com', 'dave@example.com'];
const ids = new Map<string, string>();
for (const n of names) ids.set(n, (await directory.create('User', actor, userBody(n, { displayName: n }))).id);
// A tombstone and a live user with the same name: only the live one is found.
await directory.delete('User', actor, ids.get('carol@example.com')!);
ids.set('carol@example.com', (await directory.create('User', actor, userBody('carol@example.com', { displayName: 'Carol again' }))).id);
// A deleted user without a successor is found by nobody.
await directory.delete('User', actor, ids.get('dave@example.com')!);
await directory.create('Group', actor, {
  schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'],
  displayName: 'Engineering',
  members: [{ value: ids.get('bob@example.com') }],
});

const asked = [
  'userName eq "alice@example.com"',
  'USERNAME eq "ALICE@EXAMPLE.COM"',
  'urn:ietf:params:scim:schemas:core:2.0:User:userName eq "Alice@Example.com"',
  'userName eq "bob@example.com"',
  'userName eq "i̇lkay@example.com"',
  'userName eq "İLKAY@example.com"',
  'userName eq "σοφια@example.com"',
  'userName eq "carol@example.com"',
  'userName eq "dave@example.com"',
  'userName eq "nobody@example.com"',
  'userName eq ""',
  "userName eq \"o'brien@example.com\"",
];

function shape(r: ListResult): unknown {
  return { total: r.totalResults, resources: r.resources.map((x) => ({ id: x.id, resource: x.resource, version: x.version })) };
}

t.test('coalesced lookups answer what the general filter path answers', async (t) => {
  for (const withGroups of [true, false]) {
    const query = (filter: string): ListQuery => ({ filter: parseFilter(filter), startIndex: 1, count: 100, withGroups });
    // `and userName pr` keeps the same meaning but takes the general translation to SQL.
    const expected = await Promise.all(asked.map((f) => directory.list('User', query(`(${f}) and userName pr`))));
    const actual = await Promise.all(asked.map((f) => directory.list('User', query(f))));
    for (const [i, f] of asked.entries()) t.same(shape(actual[i]!), shape(expected[i]!), `${f} (withGroups ${withGroups})`);
  }
  const [bob] = (await directory.list('User', { filter: parseFilter('userName eq "BOB@example.com"'), startIndex: 1, count: 1 })).resources;
  t.match(bob!.resource.groups, [{ display: 'Engineering' }], 'groups are computed in the coalesced query');
  const carol = await directory.list('User', { filter: parseFilter('userName eq "carol@example.com"'), startIndex: 1, count: 1 });
  t.equal(carol.resources[0]!.id, ids.get('carol@example.com'), 'the live user, not the tombstone');
});

t.test('count=0, startIndex>1 and sortBy keep their meaning', async (t) => {
  const f = parseFilter('userName eq "alice@example.com"');
  t.same(await directory.list('User', { filter: f, startIndex: 1, count: 0 }), { totalResults: 1, resources: [] });
  t.same(shape(await directory.list('User', { filter: f, startIndex: 2, count: 10 })), { total: 1, resources: [] });
  t.equal((await directory.list('User', { filter: f, startIndex: 1, count: 10, sortBy: 'userName' })).resources.length, 1);
});

t.test('concurrent lookups share queries', async (t) => {
  let acquired = 0;
  const onAcquire = () => void acquired++;
  database.db.on('acquire', onAcquire);
  t.teardown(() => void database.db.off('acquire', onAcquire));
  const wanted = Array.from({ length: 200 }, (_, i) => names[i % names.length]!);
  const results = await Promise.all(wanted.map((n) => directory.list('User', { filter: parseFilter(`userName eq "${n}"`), startIndex: 1, count: 1 })));
  for (const [i, r] of results.entries()) {
    if (wanted[i] === 'dave@example.com') t.equal(r.totalResults, 0, 'the deleted user is not found');
    else t.equal(r.resources[0]?.id, ids.get(wanted[i]!), `${wanted[i]} found`);
  }
  t.ok(acquired <= 2, `200 lookups made ${acquired} queries`);
});
