/**
 * What identity providers send beyond the letter of RFC 7643/7644, accepted as
 * docs/scim-compatibility.md ("Leniencies") describes, and refused again with SCIM_STRICT=true.
 */
import { Writable } from 'node:stream';
import t from 'tap';
import { createTestDatabase } from '../../../helpers/db.js';
import { startTestGateway, userBody } from '../../../helpers/gateway.js';
import { uniqueTaskQueue } from '../../../helpers/temporal.js';

const database = await createTestDatabase(t);
const logLines: Array<Record<string, unknown>> = [];
const logStream = new Writable({
  write(chunk: Buffer, _enc, done) {
    for (const line of chunk.toString().split('\n')) if (line.trim() !== '') logLines.push(JSON.parse(line) as Record<string, unknown>);
    done();
  },
});
const gw = await startTestGateway(t, {
  database,
  temporalAddress: '127.0.0.1:1',
  taskQueue: uniqueTaskQueue(),
  dispatchOutbox: false,
  logger: { level: 'warn', stream: logStream },
});
const strict = await startTestGateway(t, {
  database,
  temporalAddress: '127.0.0.1:1',
  taskQueue: uniqueTaskQueue(),
  dispatchOutbox: false,
  env: { SCIM_STRICT: 'true' },
});
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH_OP = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
const SEARCH = 'urn:ietf:params:scim:api:messages:2.0:SearchRequest';
const BULK = 'urn:ietf:params:scim:api:messages:2.0:BulkRequest';
const ENTERPRISE = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';

function warningsNaming(name: string): Array<Record<string, unknown>> {
  return logLines.filter((l) => l.level === 40 && Array.isArray(l.ignoredAttributes) && (l.ignoredAttributes as string[]).includes(name));
}

t.test('lowercase resource paths reach the same endpoints', async (t) => {
  const created = await gw.scim({ method: 'POST', url: '/scim/v2/users', payload: userBody('lower@example.com') });
  t.equal(created.statusCode, 201, created.body);
  const id = created.json().id as string;
  t.equal(created.headers.location, `http://localhost:80/scim/v2/Users/${id}`, 'the location is canonical');
  t.equal((await gw.scim({ method: 'GET', url: `/scim/v2/users/${id}` })).statusCode, 200, 'GET /users/{id}');
  t.equal((await gw.scim({ method: 'GET', url: `/scim/v2/USERS/${id}?attributes=userName` })).json().userName, 'lower@example.com', 'any case');
  const search = await gw.scim({ method: 'POST', url: '/scim/v2/users/.search', payload: { schemas: [SEARCH], filter: 'userName eq "lower@example.com"' } });
  t.equal(search.json().totalResults, 1, '/users/.search');
  const group = await gw.scim({ method: 'POST', url: '/scim/v2/groups', payload: { schemas: [GROUP], displayName: 'lowercase group' } });
  t.equal(group.statusCode, 201, group.body);
  const patched = await gw.scim({
    method: 'PATCH',
    url: `/scim/v2/groups/${group.json().id}`,
    payload: { schemas: [PATCH_OP], Operations: [{ op: 'add', path: 'members', value: [{ value: id }] }] },
  });
  t.equal(patched.statusCode, 200, patched.body);
  t.equal((await gw.scim({ method: 'GET', url: '/scim/v2/groups?filter=displayName eq "lowercase group"' })).json().totalResults, 1, 'GET /groups');
  t.equal((await gw.scim({ method: 'POST', url: '/scim/v2/groups/.search', payload: { schemas: [SEARCH] } })).statusCode, 200, '/groups/.search');
  t.equal((await gw.scim({ method: 'GET', url: '/scim/v2/serviceproviderconfig' })).statusCode, 200, 'discovery endpoints too');
  t.equal((await gw.scim({ method: 'DELETE', url: `/scim/v2/users/${id}` })).statusCode, 204, 'DELETE /users/{id}');

  const other = await gw.call('POST', '/scim/v2/Users', userBody('lower-bulk@example.com'), 201);
  const bulk = await gw.scim({ method: 'POST', url: '/scim/v2/bulk', payload: { schemas: [BULK], Operations: [{ method: 'DELETE', path: `/users/${other.id}` }] } });
  t.equal(bulk.statusCode, 200, `POST /bulk: ${bulk.body}`);
  t.same(bulk.json().Operations[0], { method: 'DELETE', location: `http://localhost:80/scim/v2/Users/${other.id}`, status: '204' }, 'a lowercase Bulk path; the location is canonical');
});

t.test('group members carrying displayName get it as display', async (t) => {
  const a = await gw.call('POST', '/scim/v2/Users', userBody('member-a@example.com'), 201);
  const b = await gw.call('POST', '/scim/v2/Users', userBody('member-b@example.com'), 201);
  for (const server of [gw, strict]) {
    const label = server === gw ? 'default' : 'strict';
    const group = await server.scim({
      method: 'POST',
      url: '/scim/v2/Groups',
      payload: { schemas: [GROUP], displayName: `members ${label}`, members: [{ value: a.id, displayName: 'Member A' }] },
    });
    t.equal(group.statusCode, 201, `${label}: ${group.body}`);
    t.same(group.json().members.map((m: { display: string }) => m.display), ['Member A'], `${label}: POST`);
    const patched = await server.scim({
      method: 'PATCH',
      url: `/scim/v2/Groups/${group.json().id}`,
      payload: { schemas: [PATCH_OP], Operations: [{ op: 'add', path: 'members', value: [{ value: b.id, displayName: 'Member B' }] }] },
    });
    t.equal(patched.statusCode, 200, `${label}: ${patched.body}`);
    t.same(
      patched.json().members.map((m: { display: string }) => m.display),
      ['Member A', 'Member B'],
      `${label}: PATCH add`,
    );
  }
});

t.test('attributes=emails[type eq "work"] returns only the matching values', async (t) => {
  const user = await gw.call(
    'POST',
    '/scim/v2/Users',
    userBody('emails@example.com', {
      emails: [
        { value: 'work@example.com', type: 'work', primary: true },
        { value: 'home@example.com', type: 'home' },
      ],
      phoneNumbers: [{ value: '+1 555', type: 'mobile' }],
    }),
    201,
  );
  const one = await gw.scim({ method: 'GET', url: `/scim/v2/Users/${user.id}?attributes=${encodeURIComponent('emails[type eq "work"]')}` });
  t.equal(one.statusCode, 200, one.body);
  t.same(one.json().emails, [{ value: 'work@example.com', type: 'work', primary: true }], 'only the work email');
  t.notOk('userName' in one.json(), 'other attributes are not returned');
  t.equal(one.json().id, user.id, 'id always is');

  const sub = await gw.scim({ method: 'GET', url: `/scim/v2/Users?filter=userName eq "emails@example.com"&attributes=${encodeURIComponent('userName,emails[type eq "home"].value')}` });
  t.same(sub.json().Resources[0].emails, [{ value: 'home@example.com' }], 'a sub-attribute after the filter, in a list');
  t.equal(sub.json().Resources[0].userName, 'emails@example.com', 'with the other names given');

  const comma = await gw.scim({ method: 'GET', url: `/scim/v2/Users/${user.id}?attributes=${encodeURIComponent('emails[value co "," or type eq "home"]')}` });
  t.same(comma.json().emails, [{ value: 'home@example.com', type: 'home' }], 'a comma inside the brackets does not split the list');

  const none = await gw.scim({ method: 'GET', url: `/scim/v2/Users/${user.id}?attributes=${encodeURIComponent('emails[type eq "other"]')}` });
  t.notOk('emails' in none.json(), 'no matching value: the attribute is left out');

  const both = await gw.scim({ method: 'GET', url: `/scim/v2/Users/${user.id}?attributes=${encodeURIComponent('emails[type eq "work"],emails')}` });
  t.equal(both.json().emails.length, 2, 'named without a filter too: every value');

  const search = await gw.scim({
    method: 'POST',
    url: '/scim/v2/Users/.search',
    payload: { schemas: [SEARCH], filter: 'userName eq "emails@example.com"', attributes: ['emails[type eq "work"].value'] },
  });
  t.same(search.json().Resources[0].emails, [{ value: 'work@example.com' }], 'in a SearchRequest');

  for (const [bad, why] of [
    ['emails[foo eq "x"]', /cannot answer/],
    ['userName[type eq "x"]', /multi-valued complex/],
    ['emails[type eq "work"].nope', /no sub-attribute/],
    ['emails[type eq', /value filter/],
  ] as const) {
    const res = await gw.scim({ method: 'GET', url: `/scim/v2/Users/${user.id}?attributes=${encodeURIComponent(bad)}` });
    t.equal(res.statusCode, 400, `${bad}: ${res.body}`);
    t.equal(res.json().scimType, 'invalidValue', bad);
    t.match(res.json().detail, why, bad);
  }
  const excluded = await gw.scim({ method: 'GET', url: `/scim/v2/Users/${user.id}?excludedAttributes=${encodeURIComponent('emails[type eq "work"]')}` });
  t.equal(excluded.statusCode, 400, 'excludedAttributes takes no value filter');
});

t.test('unknown attributes are ignored with a warning naming them; SCIM_STRICT=true refuses them', async (t) => {
  const body = userBody('typo@example.com', {
    favouriteColour: 'blue',
    name: { givenName: 'Barbara', nickname: 'Babs' },
    [ENTERPRISE]: { department: 'Sales', costCentre: '42' },
    'urn:example:unknown:2.0:User': { x: 1 },
  });
  (body.schemas as string[]).push(ENTERPRISE, 'urn:example:unknown:2.0:User');

  const refused = await strict.scim({ method: 'POST', url: '/scim/v2/Users', payload: body });
  t.equal(refused.statusCode, 400, `strict: ${refused.body}`);
  t.equal(refused.json().scimType, 'invalidSyntax');

  const created = await gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: body });
  t.equal(created.statusCode, 201, created.body);
  const user = created.json();
  t.same(user.name, { givenName: 'Barbara' }, 'known sub-attributes are kept');
  t.same(user[ENTERPRISE], { department: 'Sales' }, 'known extension attributes are kept');
  t.same(user.schemas, ['urn:ietf:params:scim:schemas:core:2.0:User', ENTERPRISE]);
  t.notOk('favouriteColour' in user);
  for (const name of ['favouriteColour', 'name.nickname', `${ENTERPRISE}:costCentre`, 'urn:example:unknown:2.0:User', 'schemas: urn:example:unknown:2.0:User']) {
    t.equal(warningsNaming(name).length, 1, `one warning names ${name}`);
  }
  t.match(warningsNaming('favouriteColour')[0]!.msg, /ignored attributes a User does not have/);
  t.ok(warningsNaming('favouriteColour')[0]!.reqId, 'the warning carries the request id');

  const patch = {
    schemas: [PATCH_OP],
    Operations: [
      { op: 'replace', path: 'favoriteColor', value: 'green' },
      { op: 'replace', value: { title: 'Boss', shoeSize: 44 } },
      { op: 'add', path: 'emails', value: [{ value: 'b@example.com', label: 'x' }] },
    ],
  };
  const patched = await gw.scim({ method: 'PATCH', url: `/scim/v2/Users/${user.id}`, payload: patch });
  t.equal(patched.statusCode, 200, patched.body);
  t.equal(patched.json().title, 'Boss');
  t.same(patched.json().emails, [{ value: 'b@example.com' }]);
  for (const name of ['favoriteColor', 'shoeSize', 'emails.label']) t.equal(warningsNaming(name).length, 1, `PATCH: one warning names ${name}`);
  const strictPatch = await strict.scim({ method: 'PATCH', url: `/scim/v2/Users/${user.id}`, payload: patch });
  t.equal(strictPatch.statusCode, 400, `strict PATCH: ${strictPatch.body}`);
  t.equal(strictPatch.json().scimType, 'invalidPath');

  const onlyUnknown = await gw.scim({ method: 'PATCH', url: `/scim/v2/Users/${user.id}`, payload: { schemas: [PATCH_OP], Operations: [{ op: 'remove', path: 'nope' }] } });
  t.equal(onlyUnknown.statusCode, 200, 'a PATCH of nothing but unknown attributes changes nothing');
  t.equal(onlyUnknown.json().meta.version, patched.json().meta.version, 'and the version stays');

  const bulk = await gw.scim({
    method: 'POST',
    url: '/scim/v2/Bulk',
    payload: {
      schemas: [BULK],
      Operations: [{ method: 'POST', bulkId: 'u', path: '/Users', data: userBody('bulk-typo@example.com', { bulkTypo: 1 }) }],
    },
  });
  t.equal(bulk.json().Operations[0].status, '201', `Bulk: ${bulk.body}`);
  t.equal(warningsNaming('bulkTypo').length, 1, 'Bulk: one warning');

  const filter = await gw.scim({ method: 'GET', url: '/scim/v2/Users?filter=favouriteColour eq "blue"' });
  t.equal(filter.statusCode, 400, 'filters still refuse unknown attributes: a typo must not match everything');
});
