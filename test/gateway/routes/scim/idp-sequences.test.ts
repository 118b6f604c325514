/**
 * The request sequences Okta and Microsoft Entra ID send, as their public SCIM documentation shows
 * them, end to end against the gateway on real PostgreSQL (bodies as documented, ids substituted).
 */
import t from 'tap';
import { createTestDatabase } from '../../../helpers/db.js';
import { startTestGateway } from '../../../helpers/gateway.js';
import { uniqueTaskQueue } from '../../../helpers/temporal.js';

const database = await createTestDatabase(t);
const gw = await startTestGateway(t, { database, temporalAddress: '127.0.0.1:1', taskQueue: uniqueTaskQueue(), dispatchOutbox: false });
const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const ENTERPRISE = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';

const call = gw.call;
const q = (filter: string) => encodeURIComponent(filter);

t.test('Okta: user lifecycle', async (t) => {
  const lookup = await call('GET', `/scim/v2/Users?filter=${q('userName eq "test.user@okta.local"')}&startIndex=1&count=100`);
  t.same(lookup, { schemas: ['urn:ietf:params:scim:api:messages:2.0:ListResponse'], totalResults: 0, itemsPerPage: 0, startIndex: 1, Resources: [] });

  const created = await call(
    'POST',
    '/scim/v2/Users',
    {
      schemas: [USER],
      userName: 'test.user@okta.local',
      name: { givenName: 'Test', familyName: 'User' },
      emails: [{ primary: true, value: 'test.user@okta.local', type: 'work' }],
      displayName: 'Test User',
      locale: 'en-US',
      externalId: '00ujl29u0le5T6Aj10h7',
      groups: [],
      password: '1mz050nq',
      active: true,
    },
    201,
  );
  t.equal(created.userName, 'test.user@okta.local');
  t.equal(created.active, true);
  t.notOk('password' in created);

  const found = await call('GET', `/scim/v2/Users?filter=${q('userName eq "test.user@okta.local"')}&startIndex=1&count=100`);
  t.equal(found.totalResults, 1);
  t.equal(found.Resources[0].id, created.id);
  await call('GET', `/scim/v2/Users/${created.id}`);

  // Apps without PATCH support get the whole profile with PUT.
  const put = await call('PUT', `/scim/v2/Users/${created.id}`, {
    schemas: [USER],
    id: created.id,
    userName: 'test.user@okta.local',
    name: { givenName: 'Another', familyName: 'User' },
    emails: [{ primary: true, value: 'test.user@okta.local', type: 'work' }],
    displayName: 'Another User',
    locale: 'en-US',
    externalId: '00ujl29u0le5T6Aj10h7',
    groups: [],
    password: '1mz050nq',
    active: true,
    meta: { resourceType: 'User' },
  });
  t.equal(put.name.givenName, 'Another');

  const deactivated = await call('PATCH', `/scim/v2/Users/${created.id}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { active: false } }] });
  t.equal(deactivated.active, false);
  const row = await database.db.query('SELECT active FROM users WHERE id = $1', [created.id]);
  t.equal(row.rows[0].active, false, 'deactivation reaches the indexed column that provisioning reads');
});

t.test('Okta: group push', async (t) => {
  const member = await call('POST', '/scim/v2/Users', { schemas: [USER], userName: 'member@okta.local', active: true }, 201);
  const none = await call('GET', `/scim/v2/Groups?filter=${q('displayName eq "Test SCIMv2"')}&startIndex=1&count=100`);
  t.equal(none.totalResults, 0);
  const g = await call('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'Test SCIMv2', members: [] }, 201);
  const renamed = await call('PATCH', `/scim/v2/Groups/${g.id}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { id: g.id, displayName: 'Test SCIMv2 renamed' } }] });
  t.equal(renamed.displayName, 'Test SCIMv2 renamed');
  const added = await call('PATCH', `/scim/v2/Groups/${g.id}`, { schemas: [PATCH], Operations: [{ op: 'add', path: 'members', value: [{ value: member.id, display: 'member@okta.local' }] }] });
  t.same(added.members.map((m: { value: string }) => m.value), [member.id]);
  const removed = await call('PATCH', `/scim/v2/Groups/${g.id}`, { schemas: [PATCH], Operations: [{ op: 'remove', path: `members[value eq "${member.id}"]` }] });
  t.same(removed.members ?? [], []);
  const listed = await call('GET', '/scim/v2/Groups?startIndex=1&count=100');
  t.ok(listed.Resources.some((r: { id: string }) => r.id === g.id));
  await call('DELETE', `/scim/v2/Groups/${g.id}`, undefined, 204);
  await call('GET', `/scim/v2/Groups/${g.id}`, undefined, 404);
});

t.test('Entra ID: user lifecycle', async (t) => {
  const userName = 'Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1';
  const none = await call('GET', `/scim/v2/Users?filter=${q(`userName eq "${userName}"`)}`);
  t.equal(none.totalResults, 0);
  const manager = await call('POST', '/scim/v2/Users', { schemas: [USER], userName: 'Manager_1@testuser.com', active: true }, 201);
  const created = await call(
    'POST',
    '/scim/v2/Users',
    {
      schemas: [USER, ENTERPRISE],
      externalId: '0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef',
      userName,
      active: true,
      emails: [{ primary: true, type: 'work', value: 'Test_User_fd0ea19b-0777-472c-9f96-4f70d2226f2e@testuser.com' }],
      meta: { resourceType: 'User' },
      name: { formatted: 'givenName familyName', familyName: 'familyName', givenName: 'givenName' },
      roles: [],
      [ENTERPRISE]: { employeeNumber: '701984', department: 'Tour Operations' },
    },
    201,
  );
  t.equal(created[ENTERPRISE].department, 'Tour Operations');

  const byName = await call('GET', `/scim/v2/Users?filter=${q(`userName eq "${userName}"`)}`);
  t.equal(byName.totalResults, 1);

  const multi = await call('PATCH', `/scim/v2/Users/${created.id}`, {
    schemas: [PATCH],
    Operations: [
      { op: 'Replace', path: 'emails[type eq "work"].value', value: 'updatedEmail@microsoft.com' },
      { op: 'Replace', path: 'name.familyName', value: 'updatedFamilyName' },
    ],
  });
  t.equal(multi.emails[0].value, 'updatedEmail@microsoft.com');
  t.equal(multi.name.familyName, 'updatedFamilyName');

  const single = await call('PATCH', `/scim/v2/Users/${created.id}`, { schemas: [PATCH], Operations: [{ op: 'Replace', path: 'userName', value: '5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com' }] });
  t.equal(single.userName, '5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com');

  const withManager = await call('PATCH', `/scim/v2/Users/${created.id}`, {
    schemas: [PATCH],
    Operations: [{ op: 'Add', path: `${ENTERPRISE}:manager`, value: manager.id }],
  });
  t.equal(withManager[ENTERPRISE].manager.value, manager.id);

  const dotted = await call('PATCH', `/scim/v2/Users/${created.id}`, {
    schemas: [PATCH],
    Operations: [{ op: 'Replace', value: { 'name.givenName': 'Barbara', [`${ENTERPRISE}:department`]: 'Sales', active: 'False' } }],
  });
  t.equal(dotted.name.givenName, 'Barbara');
  t.equal(dotted[ENTERPRISE].department, 'Sales');
  t.equal(dotted.active, false, 'the string "False" is the boolean false');

  const enabled = await call('PATCH', `/scim/v2/Users/${created.id}`, { schemas: [PATCH], Operations: [{ op: 'Replace', path: 'active', value: 'True' }] });
  t.equal(enabled.active, true);
  await call('DELETE', `/scim/v2/Users/${created.id}`, undefined, 204);
  await call('GET', `/scim/v2/Users/${created.id}`, undefined, 404);
});

t.test('Entra ID: groups', async (t) => {
  const a = await call('POST', '/scim/v2/Users', { schemas: [USER], userName: 'entra.a@testuser.com' }, 201);
  const b = await call('POST', '/scim/v2/Users', { schemas: [USER], userName: 'entra.b@testuser.com' }, 201);
  const g = await call('POST', '/scim/v2/Groups', { schemas: [GROUP], externalId: '8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159', displayName: 'displayName', meta: { resourceType: 'Group' } }, 201);
  const got = await call('GET', `/scim/v2/Groups/${g.id}?excludedAttributes=members`);
  t.notOk('members' in got);
  const found = await call('GET', `/scim/v2/Groups?excludedAttributes=members&filter=${q('displayName eq "displayName"')}`);
  t.equal(found.totalResults, 1);
  const renamed = await call('PATCH', `/scim/v2/Groups/${g.id}`, { schemas: [PATCH], Operations: [{ op: 'Replace', path: 'displayName', value: '1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName' }] });
  t.equal(renamed.displayName, '1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName');
  const added = await call('PATCH', `/scim/v2/Groups/${g.id}`, {
    schemas: [PATCH],
    Operations: [{ op: 'Add', path: 'members', value: [{ $ref: null, value: a.id }, { $ref: null, value: b.id }] }],
  });
  t.same(added.members.map((m: { value: string }) => m.value).sort(), [a.id, b.id].sort());
  const removed = await call('PATCH', `/scim/v2/Groups/${g.id}`, { schemas: [PATCH], Operations: [{ op: 'Remove', path: 'members', value: [{ $ref: null, value: a.id }] }] });
  t.same(removed.members.map((m: { value: string }) => m.value), [b.id], 'removal by value array removes exactly those members');
  await call('DELETE', `/scim/v2/Groups/${g.id}`, undefined, 204);
});
