import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import t from 'tap';
import type { Test } from 'tap';
import { ScimError } from '../../../core/scim/errors.js';
import type { ScimType } from '../../../core/scim/errors.js';
import { MAX_PATCH_OPERATIONS, applyPatch, parsePatchRequest } from '../../../core/scim/patch/index.js';
import type { PatchContext, PatchOperation } from '../../../core/scim/patch/index.js';
import { ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, PATCH_OP_SCHEMA, SchemaRegistry, USER_SCHEMA } from '../../../core/scim/schemas.js';

// The tests read deep into JSON resources; one loosely typed alias keeps the assertions readable.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = Record<string, any>;

const FIXTURES = fileURLToPath(new URL('../../fixtures/rfc7643-7644/', import.meta.url));
const fixture = (name: string): Json => JSON.parse(readFileSync(`${FIXTURES}${name}`, 'utf8'));

const registry = new SchemaRegistry();
const USER = { registry, resourceType: 'User' as const };
const GROUP = { registry, resourceType: 'Group' as const };

const body = (...ops: unknown[]): Record<string, unknown> => ({ schemas: [PATCH_OP_SCHEMA], Operations: ops });

/** Parses a request body and applies it, as the PATCH route does. */
function patch(resource: Json, request: unknown, ctx: PatchContext = USER): { resource: Json; changed: boolean } {
  const before = structuredClone(resource);
  const result = applyPatch(resource, parsePatchRequest(request), ctx);
  if (JSON.stringify(resource) !== JSON.stringify(before)) throw new Error('applyPatch mutated its input');
  return result;
}

function rejects(t: Test, fn: () => unknown, scimType: ScimType, detail?: RegExp): void {
  try {
    fn();
    t.fail(`expected a 400 ${scimType}`);
  } catch (err) {
    if (!(err instanceof ScimError)) throw err;
    t.equal(err.status, 400, `status 400 (${err.detail})`);
    t.equal(err.scimType, scimType, `scimType ${scimType} (${err.detail})`);
    if (detail) t.match(err.detail, detail);
  }
}

const USER_ID = '2819c223-7f76-453a-919d-413861904646';

function aUser(extra: Record<string, unknown> = {}): Json {
  return {
    schemas: [USER_SCHEMA],
    id: USER_ID,
    userName: 'bjensen@example.com',
    name: { givenName: 'Barbara', familyName: 'Jensen' },
    displayName: 'Babs Jensen',
    active: true,
    emails: [
      { value: 'bjensen@example.com', type: 'work', primary: true },
      { value: 'babs@jensen.org', type: 'home' },
    ],
    meta: { resourceType: 'User', created: '2010-01-23T04:56:22Z', lastModified: '2011-05-13T04:42:34Z', version: 'W/"1"' },
    ...extra,
  };
}

function aGroup(members: Array<Record<string, unknown>> = [{ value: 'u1', display: 'User One', type: 'User' }, { value: 'u2', display: 'User Two', type: 'User' }]): Json {
  return {
    schemas: [GROUP_SCHEMA],
    id: 'e9e30dba-f08f-4109-8486-d5c6a331660a',
    displayName: 'Tour Guides',
    members,
    meta: { resourceType: 'Group', created: '2010-01-23T04:56:22Z', lastModified: '2011-05-13T04:42:34Z', version: 'W/"1"' },
  };
}

// ------------------------------------------------------------------------------------------------

t.test('RFC 7644 §3.5.2 examples applied to the RFC 7643 §8 resources', async (t) => {
  const op = (name: string): unknown => fixture(`rfc7644-3.5.2${name}.json`);
  const fullUser = (): Json => fixture('rfc7643-8.2-user-full.json');
  const minimalUser = (): Json => fixture('rfc7643-8.1-user-minimal.json');
  const rfcGroup = (): Json => fixture('rfc7643-8.4-group.json');

  t.test('every example is covered here and parses', async (t) => {
    const names = readdirSync(FIXTURES).filter((f) => f.startsWith('rfc7644-3.5.2')).sort();
    t.same(names, [
      'rfc7644-3.5.2.1-patch_op-add_emails.json',
      'rfc7644-3.5.2.1-patch_op-add_members.json',
      'rfc7644-3.5.2.2-patch_op-remove_all_members.json',
      'rfc7644-3.5.2.2-patch_op-remove_and_add_one_member.json',
      'rfc7644-3.5.2.2-patch_op-remove_multi_complex_value.json',
      'rfc7644-3.5.2.2-patch_op-remove_one_member.json',
      'rfc7644-3.5.2.3-patch_op-replace_all_email_values.json',
      'rfc7644-3.5.2.3-patch_op-replace_all_members.json',
      'rfc7644-3.5.2.3-patch_op-replace_street_address.json',
      'rfc7644-3.5.2.3-patch_op-replace_user_work_address.json',
    ]);
    for (const name of names) t.ok(parsePatchRequest(fixture(name)).length > 0, name);
  });

  t.test('add_emails', async (t) => {
    const full = patch(fullUser(), op('.1-patch_op-add_emails'));
    t.equal(full.changed, false, 'the full user already has that home email and nickName "Babs"');
    t.same(full.resource, fullUser());

    const minimal = patch(minimalUser(), op('.1-patch_op-add_emails'));
    t.equal(minimal.changed, true);
    t.same(minimal.resource.emails, [{ value: 'babs@jensen.org', type: 'home' }]);
    t.equal(minimal.resource.nickName, 'Babs', '"nickname" is stored under its canonical name');
    t.notOk('nickname' in minimal.resource);
  });

  t.test('add_members', async (t) => {
    const existing = patch(rfcGroup(), op('.1-patch_op-add_members'), GROUP);
    t.equal(existing.changed, false, 'Babs is already a member; her stored $ref is immutable and kept');
    t.same(existing.resource.members, rfcGroup().members);

    const empty = rfcGroup();
    delete empty.members;
    const added = patch(empty, op('.1-patch_op-add_members'), GROUP);
    t.equal(added.changed, true);
    t.same(added.resource.members, [
      { display: 'Babs Jensen', $ref: 'https://example.com/v2/Users/2819c223...413861904646', value: '2819c223-7f76-453a-919d-413861904646' },
    ]);
  });

  t.test('remove_all_members', async (t) => {
    const { resource, changed } = patch(rfcGroup(), op('.2-patch_op-remove_all_members'), GROUP);
    t.equal(changed, true);
    t.notOk('members' in resource, 'members is unassigned');
    t.equal(resource.displayName, 'Tour Guides');
  });

  // The RFC abbreviates ids in its PATCH examples; give the group the abbreviated ids so the filters match.
  const abbreviatedGroup = (): Json => {
    const g = rfcGroup();
    g.members[0].value = '2819c223-7f76-...413861904646';
    return g;
  };

  t.test('remove_one_member', async (t) => {
    const noMatch = patch(rfcGroup(), op('.2-patch_op-remove_one_member'), GROUP);
    t.equal(noMatch.changed, false, 'a filter matching no member removes nothing and succeeds');

    const { resource, changed } = patch(abbreviatedGroup(), op('.2-patch_op-remove_one_member'), GROUP);
    t.equal(changed, true);
    t.same(resource.members, [rfcGroup().members[1]]);
  });

  t.test('remove_and_add_one_member', async (t) => {
    const g = rfcGroup();
    g.members[0].value = '2819c223...919d-413861904646';
    const { resource } = patch(g, op('.2-patch_op-remove_and_add_one_member'), GROUP);
    t.same(resource.members, [
      rfcGroup().members[1],
      { display: 'James Smith', $ref: 'https://example.com/v2/Users/08e1d05d...473d93df9210', value: '08e1d05d...473d93df9210' },
    ], '`eq"…"` without a space parses; Babs goes, James comes');
  });

  t.test('remove_multi_complex_value', async (t) => {
    const { resource, changed } = patch(fullUser(), op('.2-patch_op-remove_multi_complex_value'));
    t.equal(changed, true);
    t.same(resource.emails, [{ value: 'babs@jensen.org', type: 'home' }]);
  });

  t.test('replace_all_email_values', async (t) => {
    const same = patch(fullUser(), op('.3-patch_op-replace_all_email_values'));
    t.equal(same.changed, false, 'the full user already has exactly these emails');

    const u = fullUser();
    u.emails = [{ value: 'old@example.com', type: 'other' }];
    u.nickName = 'B';
    const { resource, changed } = patch(u, op('.3-patch_op-replace_all_email_values'));
    t.equal(changed, true);
    t.same(resource.emails, [
      { value: 'bjensen@example.com', type: 'work', primary: true },
      { value: 'babs@jensen.org', type: 'home' },
    ]);
    t.equal(resource.nickName, 'Babs');
  });

  t.test('replace_all_members', async (t) => {
    const { resource } = patch(rfcGroup(), op('.3-patch_op-replace_all_members'), GROUP);
    t.same(resource.members, [
      { display: 'Babs Jensen', $ref: 'https://example.com/v2/Users/2819c223...413861904646', value: '2819c223-7f76-453a-919d-413861904646' },
      { display: 'James Smith', $ref: 'https://example.com/v2/Users/08e1d05d...473d93df9210', value: '08e1d05d-121c-4561-8b96-473d93df9210' },
    ]);
  });

  t.test('replace_street_address', async (t) => {
    const expected = fullUser();
    expected.addresses[0].streetAddress = '1010 Broadway Ave';
    const { resource, changed } = patch(fullUser(), op('.3-patch_op-replace_street_address'));
    t.equal(changed, true);
    t.same(resource, expected, 'only the work address street changes');
  });

  t.test('replace_user_work_address', async (t) => {
    const request = op('.3-patch_op-replace_user_work_address') as { Operations: Array<{ value: unknown }> };
    const { resource } = patch(fullUser(), request);
    t.same(resource.addresses, [request.Operations[0]!.value, fullUser().addresses[1]]);
  });

  t.test('the enterprise user: Entra manager as a plain string', async (t) => {
    const u = fixture('rfc7643-8.3-enterprise_user.json');
    const { resource } = patch(u, body({ op: 'Add', path: `${ENTERPRISE_USER_SCHEMA}:manager`, value: '2819c223' }));
    t.same(resource[ENTERPRISE_USER_SCHEMA].manager, { value: '2819c223' }, "the previous manager's $ref and displayName go");
    t.equal(resource[ENTERPRISE_USER_SCHEMA].department, 'Tour Operations');
  });
});

// ------------------------------------------------------------------------------------------------

t.test('parsePatchRequest: the envelope', async (t) => {
  t.same(parsePatchRequest(body({ op: 'Replace', path: ' active ', value: false }, { op: 'ADD', value: { title: 'x' } }, { op: 'Remove', path: 'title' })), [
    { op: 'replace', path: 'active', value: false },
    { op: 'add', value: { title: 'x' } },
    { op: 'remove', path: 'title' },
  ], 'op names are case-insensitive and the path is trimmed');
  t.same(parsePatchRequest({ SCHEMAS: [PATCH_OP_SCHEMA.toUpperCase()], operations: [{ OP: 'add', Path: 'title', VALUE: 'x' }] }), [{ op: 'add', path: 'title', value: 'x' }], 'member names are case-insensitive');
  t.same(parsePatchRequest(body({ op: 'add', path: '', value: { title: 'x' } }, { op: 'add', path: null, value: { title: 'y' } })), [
    { op: 'add', value: { title: 'x' } },
    { op: 'add', value: { title: 'y' } },
  ], 'an empty or null path means no path');
  t.same(parsePatchRequest(body({ op: 'replace', path: 'nickName', value: null })), [{ op: 'replace', path: 'nickName', value: null }], 'replace with null unassigns');
  t.equal(parsePatchRequest(body(...Array.from({ length: MAX_PATCH_OPERATIONS }, () => ({ op: 'remove', path: 'title' })))).length, MAX_PATCH_OPERATIONS);

  rejects(t, () => parsePatchRequest(null), 'invalidSyntax');
  rejects(t, () => parsePatchRequest([]), 'invalidSyntax');
  rejects(t, () => parsePatchRequest({ Operations: [{ op: 'add', value: {} }] }), 'invalidSyntax', /schemas/);
  rejects(t, () => parsePatchRequest({ schemas: [USER_SCHEMA], Operations: [{ op: 'add', value: {} }] }), 'invalidSyntax', /PatchOp/);
  rejects(t, () => parsePatchRequest({ schemas: [PATCH_OP_SCHEMA] }), 'invalidSyntax', /Operations/);
  rejects(t, () => parsePatchRequest(body()), 'invalidSyntax', /non-empty/);
  rejects(t, () => parsePatchRequest({ schemas: [PATCH_OP_SCHEMA], Operations: { op: 'add' } }), 'invalidSyntax');
  rejects(t, () => parsePatchRequest(body(...Array.from({ length: MAX_PATCH_OPERATIONS + 1 }, () => ({ op: 'remove', path: 'title' })))), 'tooMany', /1000/);
  rejects(t, () => parsePatchRequest(body('add')), 'invalidSyntax', /Operations\[0\]/);
  rejects(t, () => parsePatchRequest(body({ path: 'title', value: 'x' })), 'invalidSyntax', /op/);
  rejects(t, () => parsePatchRequest(body({ op: 'delete', path: 'title' })), 'invalidSyntax', /delete/);
  rejects(t, () => parsePatchRequest(body({ op: 1, path: 'title' })), 'invalidSyntax');
  rejects(t, () => parsePatchRequest(body({ op: 'add', path: 'title' })), 'invalidSyntax', /value/);
  rejects(t, () => parsePatchRequest(body({ op: 'add', path: 'title', value: null })), 'invalidSyntax', /value/);
  rejects(t, () => parsePatchRequest(body({ op: 'replace', path: 'title' })), 'invalidSyntax', /value/);
  rejects(t, () => parsePatchRequest(body({ op: 'remove' })), 'noTarget', /path/);
  rejects(t, () => parsePatchRequest(body({ op: 'remove', path: '' })), 'noTarget');
  rejects(t, () => parsePatchRequest(body({ op: 'add', path: 42, value: 'x' })), 'invalidPath');
});

t.test('parsePatchRequest: path syntax', async (t) => {
  for (const path of [
    'userName',
    'name.givenName',
    `${USER_SCHEMA}:name.givenName`,
    `${ENTERPRISE_USER_SCHEMA}:manager`,
    `${ENTERPRISE_USER_SCHEMA}:manager.value`,
    'emails[type eq "work"]',
    'emails[type eq "work"].value',
    'emails[type eq "a]b" and value co "x\\"y"].value',
    'members[value eq "2819c223-7f76-453a-919d-413861904646"]',
  ]) {
    t.same(parsePatchRequest(body({ op: 'remove', path })), [{ op: 'remove', path }], path);
  }
  for (const path of [
    'emails[type eq "work"',
    'emails[]',
    'emails[type eq "work"]value',
    'emails[type eq "work"].value.x',
    'emails.value[type eq "work"]',
    'emails[type eq]',
    'emails[type zz "work"]',
    'name..givenName',
    'name.givenName.x',
    '1abc',
    'emails type',
  ]) {
    rejects(t, () => parsePatchRequest(body({ op: 'remove', path })), 'invalidPath', /Invalid path/);
  }
});

// ------------------------------------------------------------------------------------------------

t.test('paths resolve case-insensitively to canonical names', async (t) => {
  const ops = (...o: unknown[]): PatchOperation[] => parsePatchRequest(body(...o));
  let r = applyPatch(aUser(), ops({ op: 'replace', path: 'USERNAME', value: 'babs' }, { op: 'replace', path: 'Name.GivenName', value: 'Babs' }), USER);
  t.equal(r.resource.userName, 'babs');
  t.same(r.resource.name, { givenName: 'Babs', familyName: 'Jensen' });
  t.notOk('USERNAME' in r.resource);

  r = applyPatch(aUser(), ops({ op: 'replace', path: 'urn:ietf:params:scim:schemas:core:2.0:User:name.givenName', value: 'B' }), USER);
  t.equal((r.resource.name as Json).givenName, 'B', 'core-URN-qualified path');

  r = applyPatch(aUser(), ops({ op: 'replace', path: 'emails[TYPE eq "WORK"].Value', value: 'b@example.com' }), USER);
  t.same(r.resource.emails, [
    { value: 'b@example.com', type: 'work', primary: true },
    { value: 'babs@jensen.org', type: 'home' },
  ], 'filter attribute names and non-caseExact values compare case-insensitively');

  r = applyPatch(aUser(), ops({ op: 'add', path: 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:user:Manager.VALUE', value: 'm1' }), USER);
  t.same(r.resource[ENTERPRISE_USER_SCHEMA], { manager: { value: 'm1' } });

  rejects(t, () => applyPatch(aUser(), ops({ op: 'add', path: 'shoeSize', value: '9' }), USER), 'invalidPath', /shoeSize/);
  rejects(t, () => applyPatch(aUser(), ops({ op: 'add', path: 'name.nickname', value: 'x' }), USER), 'invalidPath');
  rejects(t, () => applyPatch(aUser(), ops({ op: 'add', path: 'urn:example:unknown:1.0:User:x', value: 'x' }), USER), 'invalidPath');
  rejects(t, () => applyPatch(aUser(), ops({ op: 'add', path: 'members', value: [{ value: 'x' }] }), USER), 'invalidPath', /members/);
  rejects(t, () => applyPatch(aGroup(), ops({ op: 'add', path: 'userName', value: 'x' }), GROUP), 'invalidPath');
  rejects(t, () => applyPatch(aUser(), ops({ op: 'replace', path: 'name[givenName eq "x"]', value: {} }), USER), 'invalidPath', /single-valued/);
  rejects(t, () => applyPatch(aUser(), ops({ op: 'remove', path: 'emails[kind eq "work"]' }), USER), 'invalidPath', /kind/);
  rejects(t, () => applyPatch(aUser(), ops({ op: 'remove', path: 'emails[type eq "work"].colour' }), USER), 'invalidPath', /colour/);
  rejects(t, () => applyPatch(aUser(), ops({ op: 'remove', path: 'emails[value[type eq "x"]]' }), USER), 'invalidPath');
});

t.test('value filters', async (t) => {
  const u = aUser({
    addresses: [
      { type: 'work', locality: 'Hollywood', primary: true },
      { type: 'home', locality: 'Burbank' },
    ],
  });
  let r = patch(u, body({ op: 'remove', path: 'emails[type eq "work" or value co "JENSEN.org"]' }));
  t.notOk('emails' in r.resource, 'or, co; the attribute is unassigned when its last value goes');
  r = patch(u, body({ op: 'remove', path: 'emails[not (type eq "work")]' }));
  t.same(r.resource.emails, [u.emails[0]], 'not');
  r = patch(u, body({ op: 'remove', path: 'emails[primary eq true]' }));
  t.same(r.resource.emails, [u.emails[1]], 'boolean comparison');
  r = patch(u, body({ op: 'remove', path: 'addresses[locality sw "holly" and type pr]' }));
  t.same(r.resource.addresses, [u.addresses[1]], 'sw, pr');
  r = patch(u, body({ op: 'replace', path: 'emails[value ew "@example.com"].type', value: 'other' }));
  t.equal(r.resource.emails[0].type, 'other', 'ew');
  r = patch(aGroup(), body({ op: 'remove', path: 'members[value eq u1]' }), GROUP);
  t.same(r.resource.members, [aGroup().members[1]], 'an unquoted value, as some clients send');
  rejects(t, () => patch(u, body({ op: 'remove', path: 'emails[value eq null]' })), 'invalidPath', /null/);
});

t.test('a lone eq/ne value filter agrees with the general filter evaluator', async (t) => {
  // `x eq v` alone takes a shortcut in patch/value-filter.ts; `x eq v or x eq v` means the same and does not.
  const tricky = fc.constantFrom('a', 'A', 'z', 'Z', 'i', 'I', 'İ', 'ı', 'k', 'K', '\u212A', 'ß', 'ẞ', 'Σ', 'σ', 'ς', 'é', 'É', '0', '-', '@', '.', '"', ']', '𐐀', '𐐨');
  const text = fc.array(tricky, { maxLength: 6 }).map((cs) => cs.join(''));
  fc.assert(
    fc.property(text, text, fc.constantFrom('eq', 'ne'), (stored, wanted, op) => {
      const u = aUser({ emails: [{ value: stored, type: 'work' }, { type: 'home' }] });
      const quoted = JSON.stringify(wanted);
      const fast = patch(u, body({ op: 'remove', path: `emails[value ${op} ${quoted}]` })).resource.emails;
      const slow = patch(u, body({ op: 'remove', path: `emails[value ${op} ${quoted} or value ${op} ${quoted}]` })).resource.emails;
      return JSON.stringify(fast) === JSON.stringify(slow);
    }),
    { numRuns: 2000 },
  );
  t.pass('2000 random pairs agree');
  const r = patch(aGroup(), body({ op: 'remove', path: 'members[value eq "U1"]' }), GROUP);
  t.same(r.resource.members, [aGroup().members[1]], 'members.value is not caseExact');
});

// ------------------------------------------------------------------------------------------------

t.test('add', async (t) => {
  t.test('without a path merges attributes', async (t) => {
    const { resource, changed } = patch(aUser(), body({
      op: 'add',
      value: {
        emails: [{ value: 'BABS@jensen.org', type: 'HOME' }, { value: 'b@new.example', type: 'other' }],
        displayName: 'Babs',
        name: { middleName: 'Jane' },
      },
    }));
    t.equal(changed, true);
    t.same(resource.emails, [
      { value: 'bjensen@example.com', type: 'work', primary: true },
      { value: 'babs@jensen.org', type: 'home' },
      { value: 'b@new.example', type: 'other' },
    ], 'multi-valued: appended; an existing value (case-insensitively) is not added twice');
    t.equal(resource.displayName, 'Babs', 'single-valued: replaced');
    t.same(resource.name, { givenName: 'Barbara', familyName: 'Jensen', middleName: 'Jane' }, 'complex: sub-attributes merged');
  });

  t.test('with a path', async (t) => {
    let r = patch(aUser(), body({ op: 'add', path: 'phoneNumbers', value: [{ value: '555-555-5555', type: 'work' }] }));
    t.same(r.resource.phoneNumbers, [{ value: '555-555-5555', type: 'work' }]);
    r = patch(aUser(), body({ op: 'add', path: 'name', value: { givenName: 'Babs', honorificPrefix: 'Ms.' } }));
    t.same(r.resource.name, { givenName: 'Babs', familyName: 'Jensen', honorificPrefix: 'Ms.' });
    r = patch(aUser(), body({ op: 'add', path: 'nickName', value: 'Babs' }));
    t.equal(r.resource.nickName, 'Babs');
    r = patch(aUser(), body({ op: 'add', path: 'emails', value: [{ value: 'bjensen@example.com', type: 'work', primary: true }] }));
    t.equal(r.changed, false, 'adding a value already present changes nothing');
  });

  t.test('a filtered sub-attribute path that matches nothing creates the element (Entra)', async (t) => {
    const u = aUser({ emails: [{ value: 'babs@jensen.org', type: 'home' }] });
    const r = patch(u, body({ op: 'add', path: 'emails[type eq "work"].value', value: 'babs@example.com' }));
    t.same(r.resource.emails, [{ value: 'babs@jensen.org', type: 'home' }, { type: 'work', value: 'babs@example.com' }]);
    const noEmails = aUser();
    delete noEmails.emails;
    const r2 = patch(noEmails, body({ op: 'add', path: 'emails[type eq "work" and primary eq true].value', value: 'w@example.com' }));
    t.same(r2.resource.emails, [{ type: 'work', primary: true, value: 'w@example.com' }], 'every `eq` joined by `and` is carried into the element');
    rejects(t, () => patch(u, body({ op: 'add', path: 'emails[value co "x"].type', value: 'work' })), 'noTarget', /emails/);
  });

  t.test('a filtered element path that matches nothing appends the value', async (t) => {
    const r = patch(aUser(), body({ op: 'add', path: 'phoneNumbers[type eq "mobile"]', value: { value: '555-0100' } }));
    t.same(r.resource.phoneNumbers, [{ type: 'mobile', value: '555-0100' }]);
    const r2 = patch(aUser(), body({ op: 'add', path: 'emails[type eq "work"]', value: { display: 'Work' } }));
    t.same(r2.resource.emails[0], { value: 'bjensen@example.com', type: 'work', primary: true, display: 'Work' }, 'matching elements are merged into');
  });
});

t.test('replace', async (t) => {
  t.test('without a path', async (t) => {
    const { resource } = patch(aUser(), body({ op: 'replace', value: { name: { givenName: 'Babs' }, nickName: 'B', emails: [{ value: 'only@example.com', type: 'work' }] } }));
    t.same(resource.name, { givenName: 'Babs', familyName: 'Jensen' }, 'complex: the given sub-attributes are replaced, the others kept');
    t.equal(resource.nickName, 'B');
    t.same(resource.emails, [{ value: 'only@example.com', type: 'work' }], 'multi-valued: every value replaced');
  });

  t.test('with a path', async (t) => {
    let r = patch(aUser(), body({ op: 'replace', path: 'emails', value: { value: 'single@example.com', type: 'work' } }));
    t.same(r.resource.emails, [{ value: 'single@example.com', type: 'work' }], 'a single object for a multi-valued attribute is wrapped');
    r = patch(aUser(), body({ op: 'replace', path: 'emails', value: [] }));
    t.notOk('emails' in r.resource, 'replace with [] unassigns');
    r = patch(aUser(), body({ op: 'replace', path: 'nickName', value: 'Babs' }));
    t.equal(r.resource.nickName, 'Babs', 'a missing attribute is added');
    r = patch(aUser({ nickName: 'B' }), body({ op: 'replace', path: 'nickName', value: null }));
    t.notOk('nickName' in r.resource, 'null unassigns');
    r = patch(aUser(), body({ op: 'replace', path: 'name', value: { familyName: null, formatted: 'Babs' } }));
    t.same(r.resource.name, { givenName: 'Barbara', formatted: 'Babs' }, 'null inside a complex value unassigns that sub-attribute');
    r = patch(aUser(), body({ op: 'replace', path: 'emails[type eq "home"]', value: { value: 'babs@home.example', type: 'home' } }));
    t.same(r.resource.emails[1], { value: 'babs@home.example', type: 'home' });
    r = patch(aUser(), body({ op: 'replace', path: 'emails[type eq "home"]', value: null }));
    t.same(r.resource.emails, [aUser().emails[0]], 'null for filtered values removes them');
  });

  t.test('a value filter matching nothing', async (t) => {
    rejects(t, () => patch(aUser(), body({ op: 'replace', path: 'emails[type eq "other"]', value: { value: 'x@example.com', type: 'other' } })), 'noTarget', /emails/);
    rejects(t, () => patch(aUser(), body({ op: 'replace', path: 'emails[value sw "nobody"].type', value: 'other' })), 'noTarget');
    const r = patch(aUser(), body({ op: 'replace', path: 'phoneNumbers[type eq "mobile"].value', value: '555-0100' }));
    t.same(r.resource.phoneNumbers, [{ type: 'mobile', value: '555-0100' }], 'but an `eq` filter with a sub-attribute creates the element (Entra)');
  });

  t.test('an unchanged value reports changed: false', async (t) => {
    const r = patch(aUser(), body({ op: 'replace', value: { displayName: 'Babs Jensen', active: true, name: { givenName: 'Barbara' } } }));
    t.equal(r.changed, false);
    t.same(r.resource, aUser());
    t.not(r.resource, aUser(), 'a copy is returned');
  });
});

t.test('remove', async (t) => {
  t.test('attributes and sub-attributes', async (t) => {
    let r = patch(aUser({ nickName: 'B' }), body({ op: 'remove', path: 'nickName' }));
    t.notOk('nickName' in r.resource);
    r = patch(aUser(), body({ op: 'remove', path: 'name.givenName' }));
    t.same(r.resource.name, { familyName: 'Jensen' });
    r = patch(aUser({ name: { givenName: 'B' } }), body({ op: 'remove', path: 'name.givenName' }));
    t.notOk('name' in r.resource, 'a complex attribute left empty is unassigned');
    r = patch(aUser(), body({ op: 'remove', path: 'emails' }));
    t.notOk('emails' in r.resource);
    r = patch(aUser(), body({ op: 'remove', path: 'nickName' }));
    t.equal(r.changed, false, 'removing an absent attribute changes nothing');
    r = patch(aUser(), body({ op: 'remove', path: 'emails.primary' }));
    t.same(r.resource.emails, [{ value: 'bjensen@example.com', type: 'work' }, { value: 'babs@jensen.org', type: 'home' }], 'a sub-attribute of every element');
  });

  t.test('a sub-attribute of filtered elements', async (t) => {
    const r = patch(aUser(), body({ op: 'remove', path: 'emails[type eq "work"].value' }));
    t.same(r.resource.emails, [{ type: 'work', primary: true }, { value: 'babs@jensen.org', type: 'home' }]);
    const r2 = patch(aUser({ emails: [{ value: 'x@example.com' }] }), body({ op: 'remove', path: 'emails[value eq "x@example.com"].value' }));
    t.notOk('emails' in r2.resource, 'an element left empty goes');
  });

  t.test('without a path', async (t) => {
    rejects(t, () => applyPatch(aUser(), [{ op: 'remove' }], USER), 'noTarget');
  });

  t.test('required attributes', async (t) => {
    rejects(t, () => patch(aUser(), body({ op: 'remove', path: 'userName' })), 'mutability', /userName.*required/);
    rejects(t, () => patch(aGroup(), body({ op: 'remove', path: 'displayName' }), GROUP), 'mutability', /displayName/);
    rejects(t, () => patch(aUser(), body({ op: 'replace', path: 'userName', value: null })), 'mutability');
    const r = patch(aUser(), body({ op: 'remove', path: 'userName' }, { op: 'add', path: 'userName', value: 'babs' }));
    t.equal(r.resource.userName, 'babs', 'judged on the result of the whole request');
  });
});

t.test('mutability', async (t) => {
  const enterprise = (): Json =>
    aUser({
      schemas: [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
      groups: [{ value: 'g1', display: 'Tour Guides', type: 'direct' }],
      [ENTERPRISE_USER_SCHEMA]: { department: 'Tours', manager: { value: 'm1', $ref: 'https://example.com/v2/Users/m1', displayName: 'John Smith' } },
    });
  rejects(t, () => patch(aUser(), body({ op: 'replace', path: 'id', value: 'other' })), 'mutability', /"id" is readOnly/);
  rejects(t, () => patch(aUser(), body({ op: 'replace', value: { id: 'other', active: false } })), 'mutability', /id/);
  rejects(t, () => patch(aUser(), body({ op: 'remove', path: 'id' })), 'mutability');
  rejects(t, () => patch(aUser(), body({ op: 'replace', path: 'meta.lastModified', value: '2024-01-01T00:00:00Z' })), 'mutability', /meta/);
  rejects(t, () => patch(aUser(), body({ op: 'add', path: 'groups', value: [{ value: 'g1' }] })), 'mutability', /groups/);
  rejects(t, () => patch(enterprise(), body({ op: 'remove', path: 'groups[value eq "g1"]' })), 'mutability', /groups/);
  rejects(t, () => patch(enterprise(), body({ op: 'replace', path: `${ENTERPRISE_USER_SCHEMA}:manager.displayName`, value: 'Jane' })), 'mutability', /displayName/);
  rejects(t, () => patch(enterprise(), body({ op: 'replace', path: `${ENTERPRISE_USER_SCHEMA}:manager`, value: { value: 'm1', displayName: 'Jane' } })), 'mutability');
  rejects(t, () => patch(enterprise(), body({ op: 'remove', path: `${ENTERPRISE_USER_SCHEMA}:manager.displayName` })), 'mutability');

  const same = patch(enterprise(), body({ op: 'replace', value: { id: USER_ID, groups: [{ value: 'g1', display: 'Tour Guides', type: 'direct' }], meta: { resourceType: 'User' } } }));
  t.equal(same.changed, false, 'readOnly values given unchanged are accepted');
  const dropped = patch(enterprise(), body({ op: 'remove', path: `${ENTERPRISE_USER_SCHEMA}:manager` }));
  t.same(dropped.resource[ENTERPRISE_USER_SCHEMA], { department: 'Tours' }, 'removing the whole manager takes its readOnly displayName along');
  const moved = patch(enterprise(), body({ op: 'replace', path: `${ENTERPRISE_USER_SCHEMA}:manager.value`, value: 'm2' }));
  t.same(moved.resource[ENTERPRISE_USER_SCHEMA].manager, { value: 'm2' });

  // Group members: value and type are immutable once set.
  rejects(t, () => patch(aGroup(), body({ op: 'replace', path: 'members[value eq "u1"].value', value: 'u9' }), GROUP), 'mutability', /members\.value/);
  rejects(t, () => patch(aGroup(), body({ op: 'replace', path: 'members[value eq "u1"]', value: { value: 'u9' } }), GROUP), 'mutability');
  rejects(t, () => patch(aGroup(), body({ op: 'replace', path: 'members[value eq "u1"].type', value: 'Group' }), GROUP), 'mutability', /members\.type/);
  rejects(t, () => patch(aGroup(), body({ op: 'remove', path: 'members[value eq "u1"].value' }), GROUP), 'mutability');
  const display = patch(aGroup(), body({ op: 'replace', path: 'members[value eq "u1"]', value: { display: 'Uno' } }), GROUP);
  t.same(display.resource.members[0], { value: 'u1', display: 'Uno', type: 'User' }, 'replacing a member keeps its immutable value and type');
  const added = patch(aGroup(), body({ op: 'add', path: 'members', value: [{ value: 'u3', type: 'User' }] }), GROUP);
  t.same(added.resource.members[2], { value: 'u3', type: 'User' }, 'new members may be added');
  const readded = patch(aGroup(), body({ op: 'add', path: 'members', value: [{ value: 'U1', type: 'Group', display: 'Uno' }] }), GROUP);
  t.same(readded.resource.members, [{ value: 'u1', display: 'Uno', type: 'User' }, aGroup().members[1]], 'adding an existing member updates only its display');
});

t.test('primary is unique within a multi-valued attribute', async (t) => {
  let r = patch(aUser(), body({ op: 'add', path: 'emails', value: [{ value: 'new@example.com', type: 'other', primary: true }] }));
  t.same(r.resource.emails.map((e: Json) => e.primary === true), [false, false, true]);
  t.notOk('primary' in r.resource.emails[0], 'the previous primary loses the flag');
  r = patch(aUser(), body({ op: 'Replace', path: 'emails[type eq "home"].primary', value: 'True' }));
  t.same(r.resource.emails, [{ value: 'bjensen@example.com', type: 'work' }, { value: 'babs@jensen.org', type: 'home', primary: true }]);
  r = patch(aUser(), body({ op: 'replace', path: 'emails[type eq "work"].primary', value: true }));
  t.equal(r.changed, false);
  rejects(t, () => patch(aUser(), body({ op: 'replace', path: 'emails', value: [{ value: 'a@x.com', primary: true }, { value: 'b@x.com', primary: true }] })), 'invalidValue', /primary/);
});

t.test('values are checked against the schema', async (t) => {
  rejects(t, () => patch(aUser(), body({ op: 'replace', path: 'displayName', value: 42 })), 'invalidValue', /"displayName" expects a string; got number 42/);
  rejects(t, () => patch(aUser(), body({ op: 'replace', value: { nickName: { first: 'B' } } })), 'invalidValue', /nickName/);
  rejects(t, () => patch(aUser(), body({ op: 'replace', path: 'active', value: 'yes' })), 'invalidValue', /active.*boolean/);
  rejects(t, () => patch(aUser(), body({ op: 'replace', path: 'active', value: 1 })), 'invalidValue', /active/);
  rejects(t, () => patch(aUser(), body({ op: 'replace', path: 'name', value: 'Babs' })), 'invalidValue', /"name" expects a complex value/);
  rejects(t, () => patch(aUser(), body({ op: 'replace', path: 'name.givenName', value: ['a', 'b'] })), 'invalidValue', /name\.givenName/);
  rejects(t, () => patch(aUser(), body({ op: 'add', path: 'emails', value: [{ value: 7 }] })), 'invalidValue', /emails\.value/);
  rejects(t, () => patch(aUser(), body({ op: 'add', path: 'emails', value: [{ value: 'x@example.com', kind: 'work' }] })), 'invalidPath', /kind/);
  rejects(t, () => patch(aUser(), body({ op: 'replace', value: { shoeSize: '9' } })), 'invalidPath', /shoeSize/);
  rejects(t, () => patch(aUser(), body({ op: 'replace', value: 'Babs' })), 'invalidValue');
  rejects(t, () => patch(aUser(), body({ op: 'replace', value: { 'emails[type eq': 'x' } })), 'invalidPath');
  rejects(t, () => patch(aUser(), body({ op: 'replace', path: 'meta.created', value: 'yesterday' })), 'invalidValue', /dateTime/);
});

t.test('extension objects and schemas', async (t) => {
  let r = patch(aUser(), body({ op: 'add', path: `${ENTERPRISE_USER_SCHEMA}:department`, value: 'Sales' }));
  t.same(r.resource.schemas, [USER_SCHEMA, ENTERPRISE_USER_SCHEMA], 'the URN is added');
  t.same(r.resource[ENTERPRISE_USER_SCHEMA], { department: 'Sales' });

  r = patch(aUser(), body({ op: 'add', value: { [ENTERPRISE_USER_SCHEMA]: { employeeNumber: '701984', manager: { value: 'm1' } } } }));
  t.same(r.resource[ENTERPRISE_USER_SCHEMA], { employeeNumber: '701984', manager: { value: 'm1' } }, 'the RFC form: the URN as a key of a path-less value');
  t.same(r.resource.schemas, [USER_SCHEMA, ENTERPRISE_USER_SCHEMA]);

  const withExt = aUser({ schemas: [USER_SCHEMA, ENTERPRISE_USER_SCHEMA], [ENTERPRISE_USER_SCHEMA]: { department: 'Sales' } });
  r = patch(withExt, body({ op: 'remove', path: `${ENTERPRISE_USER_SCHEMA}:department` }));
  t.notOk(ENTERPRISE_USER_SCHEMA in r.resource, 'the emptied extension object goes');
  t.same(r.resource.schemas, [USER_SCHEMA], 'and so does its URN');

  r = patch(withExt, body({ op: 'remove', path: ENTERPRISE_USER_SCHEMA }));
  t.notOk(ENTERPRISE_USER_SCHEMA in r.resource, 'a path naming the extension removes all of it');
  t.same(r.resource.schemas, [USER_SCHEMA]);

  r = patch(withExt, body({ op: 'replace', path: ENTERPRISE_USER_SCHEMA, value: { costCenter: '4130' } }));
  t.same(r.resource[ENTERPRISE_USER_SCHEMA], { department: 'Sales', costCenter: '4130' });
  rejects(t, () => patch(withExt, body({ op: 'replace', path: ENTERPRISE_USER_SCHEMA, value: 'x' })), 'invalidValue');
  rejects(t, () => patch(aGroup(), body({ op: 'add', path: `${ENTERPRISE_USER_SCHEMA}:department`, value: 'x' }), GROUP), 'invalidPath', /on Group/);
});

t.test('custom extension attributes', async (t) => {
  const EXT = 'urn:example:params:scim:schemas:extension:test:2.0:User';
  const custom = new SchemaRegistry([
    {
      id: EXT,
      resourceType: 'User',
      attributes: [
        { name: 'tags', multiValued: true },
        { name: 'badge', mutability: 'immutable' },
        { name: 'costCode', required: true },
        { name: 'level', type: 'integer' },
        { name: 'hireDate', type: 'dateTime' },
      ],
    },
  ]);
  const ctx = { registry: custom, resourceType: 'User' as const };
  const u = (): Json => aUser({ schemas: [USER_SCHEMA, EXT], [EXT]: { costCode: 'C1', tags: ['a', 'b'] } });

  let r = patch(u(), body({ op: 'add', path: `${EXT}:tags`, value: ['A', 'c'] }), ctx);
  t.same(r.resource[EXT].tags, ['a', 'b', 'c'], 'simple multi-valued: appended without duplicates');
  r = patch(u(), body({ op: 'remove', path: `${EXT}:tags`, value: ['B'] }), ctx);
  t.same(r.resource[EXT].tags, ['a'], 'simple values removed by value');
  r = patch(u(), body({ op: 'add', value: { [`${EXT}:badge`]: 'B-1', [`${EXT}:level`]: 3, [`${EXT}:hireDate`]: '2024-01-31T12:00:00Z' } }), ctx);
  t.same(r.resource[EXT], { costCode: 'C1', tags: ['a', 'b'], badge: 'B-1', level: 3, hireDate: '2024-01-31T12:00:00Z' }, 'an immutable attribute may be set once');
  const badged = r.resource;
  t.equal(patch(badged, body({ op: 'replace', path: `${EXT}:badge`, value: 'B-1' }), ctx).changed, false);
  rejects(t, () => patch(badged, body({ op: 'replace', path: `${EXT}:badge`, value: 'B-2' }), ctx), 'mutability', /badge.*immutable/);
  rejects(t, () => patch(badged, body({ op: 'remove', path: `${EXT}:badge` }), ctx), 'mutability');
  rejects(t, () => patch(u(), body({ op: 'remove', path: `${EXT}:costCode` }), ctx), 'mutability', /costCode.*required/);
  rejects(t, () => patch(u(), body({ op: 'remove', path: EXT }), ctx), 'mutability', /costCode/);
  rejects(t, () => patch(u(), body({ op: 'replace', path: `${EXT}:level`, value: 2.5 }), ctx), 'invalidValue', /level.*integer/);
  rejects(t, () => patch(u(), body({ op: 'replace', path: `${EXT}:level`, value: '3' }), ctx), 'invalidValue', /level/);
  rejects(t, () => patch(u(), body({ op: 'replace', path: `${EXT}:hireDate`, value: '31/01/2024' }), ctx), 'invalidValue', /hireDate.*dateTime/);
  rejects(t, () => patch(u(), body({ op: 'remove', path: `${EXT}:tags[value eq "a"]` }), ctx), 'invalidPath', /tags/);
});

// ------------------------------------------------------------------------------------------------
// Okta: https://developer.okta.com/docs/api/openapi/okta-scim/guides/scim-20 (PATCH requests)

t.test('Okta', async (t) => {
  t.test('deactivate a user', async (t) => {
    const { resource, changed } = patch(aUser(), { schemas: [PATCH_OP_SCHEMA], Operations: [{ op: 'replace', value: { active: false } }] });
    t.equal(changed, true);
    t.equal(resource.active, false);
  });

  t.test('replace with the unchanged id included', async (t) => {
    const { resource } = patch(aUser(), body({ op: 'replace', value: { id: USER_ID, active: false } }));
    t.equal(resource.active, false);
    t.equal(resource.id, USER_ID);
  });

  t.test('rename a group', async (t) => {
    const g = aGroup();
    const { resource } = patch(g, body({ op: 'replace', value: { id: g.id, displayName: 'Tour Guides EMEA' } }), GROUP);
    t.equal(resource.displayName, 'Tour Guides EMEA');
  });

  t.test('add and remove group members', async (t) => {
    let r = patch(aGroup(), body({ op: 'add', path: 'members', value: [{ value: 'u3', display: 'user3@example.com' }] }), GROUP);
    t.same(r.resource.members[2], { value: 'u3', display: 'user3@example.com' });
    r = patch(aGroup(), body({ op: 'remove', path: 'members[value eq "u2"]' }), GROUP);
    t.same(r.resource.members, [aGroup().members[0]]);
  });
});

// ------------------------------------------------------------------------------------------------
// Microsoft Entra ID: https://learn.microsoft.com/entra/identity/app-provisioning/use-scim-to-provision-users-and-groups

t.test('Microsoft Entra ID', async (t) => {
  t.test('update user: capitalized ops, filtered email, name', async (t) => {
    const { resource } = patch(aUser(), body(
      { op: 'Replace', path: 'emails[type eq "work"].value', value: 'updatedEmail@microsoft.com' },
      { op: 'Replace', path: 'name.familyName', value: 'updatedFamilyName' },
    ));
    t.same(resource.emails[0], { value: 'updatedEmail@microsoft.com', type: 'work', primary: true });
    t.same(resource.name, { givenName: 'Barbara', familyName: 'updatedFamilyName' });
  });

  t.test('"True" / "False" strings for booleans', async (t) => {
    let r = patch(aUser(), body({ op: 'Replace', path: 'active', value: 'False' }));
    t.equal(r.resource.active, false);
    r = patch(aUser({ active: false }), body({ op: 'Replace', path: 'active', value: 'TRUE' }));
    t.equal(r.resource.active, true);
    r = patch(aUser(), body({ op: 'Replace', value: { active: 'false' } }));
    t.equal(r.resource.active, false, 'inside a path-less value');
    r = patch(aUser(), body({ op: 'Add', value: { emails: [{ value: 'n@example.com', type: 'other', primary: 'True' }] } }));
    t.equal(r.resource.emails[2].primary, true, 'nested in elements');
  });

  t.test('dotted, URN-qualified and filtered keys in a path-less value', async (t) => {
    const { resource } = patch(aUser(), body({
      op: 'Replace',
      value: {
        'name.givenName': 'Barbara',
        [`${ENTERPRISE_USER_SCHEMA}:department`]: 'Sales',
        'emails[type eq "work"].value': 'x@y.com',
        displayName: 'Barbara Jensen',
      },
    }));
    t.same(resource.name, { givenName: 'Barbara', familyName: 'Jensen' });
    t.same(resource[ENTERPRISE_USER_SCHEMA], { department: 'Sales' });
    t.same(resource.schemas, [USER_SCHEMA, ENTERPRISE_USER_SCHEMA]);
    t.equal(resource.emails[0].value, 'x@y.com');
    t.equal(resource.displayName, 'Barbara Jensen');
  });

  t.test('manager as a plain string', async (t) => {
    const { resource } = patch(aUser(), body({ op: 'Add', path: `${ENTERPRISE_USER_SCHEMA}:manager`, value: '2819c223' }));
    t.same(resource[ENTERPRISE_USER_SCHEMA], { manager: { value: '2819c223' } });
    t.same(resource.schemas, [USER_SCHEMA, ENTERPRISE_USER_SCHEMA]);
  });

  t.test('group: rename, add members, remove members by value', async (t) => {
    let r = patch(aGroup(), body({ op: 'Replace', path: 'displayName', value: '1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName' }), GROUP);
    t.equal(r.resource.displayName, '1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName');
    r = patch(aGroup([]), body({ op: 'Add', path: 'members', value: [{ value: 'u1' }, { value: 'u2' }] }), GROUP);
    t.same(r.resource.members, [{ value: 'u1' }, { value: 'u2' }]);
    r = patch(aGroup([{ value: 'u1' }, { value: 'u2' }, { value: 'u3' }]), body({ op: 'Remove', path: 'members', value: [{ value: 'u1' }, { value: 'U3' }] }), GROUP);
    t.same(r.resource.members, [{ value: 'u2' }], 'exactly the listed members go');
    r = patch(aGroup(), body({ op: 'Remove', path: 'members', value: [{ value: 'nobody' }] }), GROUP);
    t.equal(r.changed, false);
    r = patch(aGroup(), body({ op: 'Remove', path: 'members', value: [] }), GROUP);
    t.equal(r.changed, false, 'an empty list removes nothing');
  });

  t.test('one-element arrays for single-valued attributes', async (t) => {
    let r = patch(aUser(), body({ op: 'Replace', path: 'displayName', value: ['Babs'] }));
    t.equal(r.resource.displayName, 'Babs');
    r = patch(aUser(), body({ op: 'Replace', value: { title: ['Tour Guide'], name: [{ givenName: 'B' }] } }));
    t.equal(r.resource.title, 'Tour Guide');
    t.equal(r.resource.name.givenName, 'B');
    rejects(t, () => patch(aUser(), body({ op: 'Replace', path: 'displayName', value: ['a', 'b'] })), 'invalidValue', /displayName/);
  });
});
