import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { checkImmutable, isDateTime, maxValueBytes, normalizeResource } from '../../../core/scim/resource.js';
import { MAX_INDEXED_VALUE_BYTES, MAX_VALUE_BYTES } from '../../../core/scim/schemas.js';
import { attr, ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, SchemaRegistry, USER_SCHEMA } from '../../../core/scim/schemas.js';
import { scimError } from '../../helpers/scim.js';

const FIXTURES = fileURLToPath(new URL('../../fixtures/rfc7643-7644/', import.meta.url));
/** A fixture as parsed JSON (loosely typed, like a response body). */
const fixture = (name: string) => JSON.parse(readFileSync(`${FIXTURES}${name}`, 'utf8'));

const registry = new SchemaRegistry();
const user = { registry, resourceType: 'User' as const };
const group = { registry, resourceType: 'Group' as const };

const TEST_EXT = 'urn:example:params:scim:schemas:extension:test:2.0:User';
const custom = new SchemaRegistry([
  {
    id: TEST_EXT,
    resourceType: 'User',
    attributes: [
      { name: 'hireDate', type: 'dateTime' },
      { name: 'level', type: 'integer' },
      { name: 'score', type: 'decimal' },
      { name: 'badge', mutability: 'immutable' },
      { name: 'seat', subAttributes: [attr('building', { mutability: 'immutable' }), attr('desk')] },
      { name: 'costCode', required: true },
    ],
  },
]);
const customUser = { registry: custom, resourceType: 'User' as const };


function without(obj: Record<string, unknown>, ...keys: string[]): Record<string, unknown> {
  return Object.fromEntries(Object.entries(obj).filter(([k]) => !keys.includes(k)));
}

t.test('RFC 7643 §8 examples keep every client-writable attribute exactly', async (t) => {
  const minimal = fixture('rfc7643-8.1-user-minimal.json');
  t.same(normalizeResource(minimal, user), without(minimal, 'id', 'meta'), '8.1: id and meta are server-assigned');

  const full = fixture('rfc7643-8.2-user-full.json');
  const fullOut = normalizeResource(full, user);
  t.same(fullOut, without(full, 'id', 'meta', 'password', 'groups'), '8.2: readOnly groups and writeOnly password dropped');
  t.notOk('password' in fullOut, 'the password is never kept');
  t.same(fullOut.x509Certificates, full.x509Certificates, 'binary values are kept as sent');

  const enterprise = fixture('rfc7643-8.3-enterprise_user.json');
  const entOut = normalizeResource(enterprise, user);
  const { displayName: _readOnly, ...manager } = enterprise[ENTERPRISE_USER_SCHEMA].manager;
  t.same(entOut, {
    ...without(enterprise, 'id', 'meta', 'password', 'groups'),
    [ENTERPRISE_USER_SCHEMA]: { ...enterprise[ENTERPRISE_USER_SCHEMA], manager },
  }, '8.3: manager.displayName is readOnly and dropped');
  t.same(entOut.schemas, [USER_SCHEMA, ENTERPRISE_USER_SCHEMA]);

  const grp = fixture('rfc7643-8.4-group.json');
  t.same(normalizeResource(grp, group), without(grp, 'id', 'meta'), '8.4: members are part of the Group');

  const post = fixture('rfc7644-3.3-user-post_request.json');
  t.same(normalizeResource(post, user), post, '7644 §3.3 POST body');
  const put = fixture('rfc7644-3.5.1-user-put_request.json');
  t.same(put.roles, [], 'the PUT example clears roles with []');
  // An empty list is the same state as no value (RFC 7643 §2.5), so it is not stored.
  t.same(normalizeResource(put, user), without(put, 'id', 'meta', 'password', 'roles'), '7644 §3.5.1 PUT body');
});

t.test('odd casing becomes canonical names, URNs and schemas', async (t) => {
  const out = normalizeResource(
    {
      SCHEMAS: ['URN:IETF:PARAMS:SCIM:SCHEMAS:CORE:2.0:USER'],
      USERNAME: 'bjensen',
      Name: { GIVENNAME: 'Barbara', familyname: 'Jensen' },
      emails: [{ VALUE: 'b@example.com', Type: 'work', PRIMARY: true }],
      ExternalID: 'x-1',
      'urn:ietf:params:scim:schemas:extension:enterprise:2.0:user': { EMPLOYEENUMBER: '42', Manager: { VALUE: 'm-1', DisplayName: 'ignored' } },
    },
    user,
  );
  t.same(out, {
    schemas: [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
    userName: 'bjensen',
    name: { givenName: 'Barbara', familyName: 'Jensen' },
    emails: [{ value: 'b@example.com', type: 'work', primary: true }],
    externalId: 'x-1',
    [ENTERPRISE_USER_SCHEMA]: { employeeNumber: '42', manager: { value: 'm-1' } },
  });
  t.same(Object.keys(out), ['schemas', 'userName', 'name', 'emails', 'externalId', ENTERPRISE_USER_SCHEMA]);
});

t.test('schemas lists exactly the extensions present', async (t) => {
  const declaredOnly = normalizeResource({ schemas: [USER_SCHEMA, ENTERPRISE_USER_SCHEMA], userName: 'a' }, user);
  t.same(declaredOnly.schemas, [USER_SCHEMA], 'an extension without data is not listed');
  const undeclared = normalizeResource({ schemas: [USER_SCHEMA], userName: 'a', [ENTERPRISE_USER_SCHEMA]: { department: 'R&D' } }, user);
  t.same(undeclared.schemas, [USER_SCHEMA, ENTERPRISE_USER_SCHEMA], 'an extension with data is listed');
  const emptied = normalizeResource({ schemas: [USER_SCHEMA], userName: 'a', [ENTERPRISE_USER_SCHEMA]: { department: null } }, user);
  t.same(emptied, { schemas: [USER_SCHEMA], userName: 'a' }, 'an extension left empty disappears');
});

t.test('URN-qualified attribute names as keys land where they belong', async (t) => {
  const out = normalizeResource(
    {
      schemas: [USER_SCHEMA],
      'urn:ietf:params:scim:schemas:core:2.0:User:userName': 'a',
      'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department': 'Sales',
    },
    user,
  );
  t.same(out, { schemas: [USER_SCHEMA, ENTERPRISE_USER_SCHEMA], userName: 'a', [ENTERPRISE_USER_SCHEMA]: { department: 'Sales' } });
  const dup = scimError(() =>
    normalizeResource(
      { schemas: [USER_SCHEMA], userName: 'a', [ENTERPRISE_USER_SCHEMA]: { department: 'x' }, [`${ENTERPRISE_USER_SCHEMA}:Department`]: 'y' },
      user,
    ),
  );
  t.equal(dup.scimType, 'invalidSyntax');
});

t.test('Entra ID quirks', async (t) => {
  const out = normalizeResource(
    {
      schemas: [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
      userName: 'e@contoso.com',
      active: 'True',
      emails: [{ value: 'e@contoso.com', type: 'work', primary: 'true' }, { value: 'e2@contoso.com', type: 'other', primary: 'False' }],
      [ENTERPRISE_USER_SCHEMA]: { manager: 'mgr-id' },
    },
    user,
  );
  t.equal(out.active, true, '"True" is true');
  t.same(out.emails, [{ value: 'e@contoso.com', type: 'work', primary: true }, { value: 'e2@contoso.com', type: 'other', primary: false }]);
  t.same(out[ENTERPRISE_USER_SCHEMA], { manager: { value: 'mgr-id' } }, 'a bare manager id becomes { value }');
  t.equal(normalizeResource({ schemas: [USER_SCHEMA], userName: 'a', active: 'FALSE' }, user).active, false);
});

t.test('lenient where clients differ, without losing data', async (t) => {
  const single = normalizeResource({ schemas: [USER_SCHEMA], userName: 'a', emails: { value: 'a@example.com' } }, user);
  t.same(single.emails, [{ value: 'a@example.com' }], 'one object for a multi-valued complex attribute is a list of one');
  const wrapped = normalizeResource({ schemas: [USER_SCHEMA], userName: ['a'], name: [{ givenName: 'B' }], active: ['True'] }, user);
  t.same(wrapped, { schemas: [USER_SCHEMA], userName: 'a', name: { givenName: 'B' }, active: true }, 'a one-element array for a single-valued attribute is its element');
  const custom = normalizeResource({ schemas: [USER_SCHEMA], userName: 'a', emails: [{ value: 'a@x', type: 'corporate' }] }, user);
  t.same(custom.emails, [{ value: 'a@x', type: 'corporate' }], 'canonicalValues are not enforced');
  const nulls = normalizeResource({ schemas: [USER_SCHEMA], userName: 'a', nickName: null, emails: [], name: { givenName: null } }, user);
  t.same(nulls, { schemas: [USER_SCHEMA], userName: 'a' }, 'null, [] and emptied objects are unassigned (RFC 7643 §2.5)');
  const meta = normalizeResource({ schemas: [USER_SCHEMA], userName: 'a', id: 42, meta: 'garbage', groups: 'x' }, user);
  t.same(meta, { schemas: [USER_SCHEMA], userName: 'a' }, 'readOnly values are ignored whatever they are');
});

t.test('Group members', async (t) => {
  const out = normalizeResource(
    { schemas: [GROUP_SCHEMA], displayName: 'G', members: [{ value: 'u1', type: 'user' }, { value: 'g1', type: 'GROUP', display: 'Nested' }, { value: 'u2' }] },
    group,
  );
  t.same(out.members, [{ value: 'u1', type: 'User' }, { value: 'g1', type: 'Group', display: 'Nested' }, { value: 'u2' }]);
  const cases: Array<[string, unknown]> = [
    ['no value', [{ display: 'x' }]],
    ['empty value', [{ value: '' }]],
    ['numeric value', [{ value: 7 }]],
    ['unknown type', [{ value: 'x', type: 'Device' }]],
  ];
  for (const [name, members] of cases) {
    const err = scimError(() => normalizeResource({ schemas: [GROUP_SCHEMA], displayName: 'G', members }, group));
    t.equal(err.status, 400, name);
    t.equal(err.scimType, 'invalidValue', name);
  }
});

t.test('errors: status 400 and the scimType of RFC 7644 Table 9', async (t) => {
  const u = (extra: Record<string, unknown>) => ({ schemas: [USER_SCHEMA], userName: 'a', ...extra });
  const cases: Array<[string, unknown, 'User' | 'Group', string, RegExp?]> = [
    ['not an object', 'x', 'User', 'invalidSyntax'],
    ['an array', [], 'User', 'invalidSyntax'],
    ['null', null, 'User', 'invalidSyntax'],
    ['no schemas', { userName: 'a' }, 'User', 'invalidSyntax'],
    ['schemas not an array', { schemas: USER_SCHEMA, userName: 'a' }, 'User', 'invalidSyntax'],
    ['schemas without the core schema', { schemas: [ENTERPRISE_USER_SCHEMA], userName: 'a' }, 'User', 'invalidSyntax'],
    ['unknown schema URN', { schemas: [USER_SCHEMA, 'urn:example:nope'], userName: 'a' }, 'User', 'invalidSyntax', /urn:example:nope/],
    ['a Group schema on a User', { schemas: [USER_SCHEMA, GROUP_SCHEMA], userName: 'a' }, 'User', 'invalidSyntax'],
    ['unknown attribute', u({ shoeSize: 42 }), 'User', 'invalidSyntax', /shoeSize/],
    ['unknown sub-attribute', u({ name: { nickName: 'x' } }), 'User', 'invalidSyntax', /name\.nickName/],
    ['unknown extension attribute', u({ [ENTERPRISE_USER_SCHEMA]: { badge: 'x' } }), 'User', 'invalidSyntax', /badge/],
    ['the same attribute twice', u({ UserName: 'b' }), 'User', 'invalidSyntax'],
    ['missing userName', { schemas: [USER_SCHEMA] }, 'User', 'invalidValue', /userName/],
    ['empty userName', u({ userName: '  ' }), 'User', 'invalidValue', /userName/],
    ['null userName', u({ userName: null }), 'User', 'invalidValue'],
    ['missing Group displayName', { schemas: [GROUP_SCHEMA] }, 'Group', 'invalidValue', /displayName/],
    ['string given a number', u({ userName: 42 }), 'User', 'invalidValue'],
    ['string given an object', u({ displayName: { x: 1 } }), 'User', 'invalidValue'],
    ['boolean given "yes"', u({ active: 'yes' }), 'User', 'invalidValue', /active/],
    ['boolean given 1', u({ active: 1 }), 'User', 'invalidValue'],
    ['multi-valued given a string', u({ emails: 'a@example.com' }), 'User', 'invalidValue', /emails/],
    ['single-valued given two values', u({ displayName: ['a', 'b'] }), 'User', 'invalidValue'],
    ['single-valued given nested arrays', u({ displayName: [['a']] }), 'User', 'invalidValue'],
    ['complex given a number', u({ name: 5 }), 'User', 'invalidValue'],
    ['nested deeper than the schema', u({ name: { givenName: { first: 'B' } } }), 'User', 'invalidValue', /name\.givenName/],
    ['an array inside a list', u({ emails: [[{ value: 'a' }]] }), 'User', 'invalidValue'],
    ['a null element', u({ emails: [null] }), 'User', 'invalidValue'],
    ['sub-attribute of the wrong type', u({ emails: [{ value: 'a', primary: 'yes' }] }), 'User', 'invalidValue', /emails\[0\]\.primary/],
    ['two primaries', u({ emails: [{ value: 'a', primary: true }, { value: 'b', primary: 'True' }] }), 'User', 'invalidValue', /primary/],
    ['extension not an object', u({ [ENTERPRISE_USER_SCHEMA]: 'x' }), 'User', 'invalidValue'],
    ['password not a string', u({ password: 1234 }), 'User', 'invalidValue'],
  ];
  for (const [name, body, resourceType, scimType, detail] of cases) {
    const err = scimError(() => normalizeResource(body, { registry, resourceType }));
    t.equal(err.status, 400, name);
    t.equal(err.scimType, scimType, `${name}: ${err.detail}`);
    if (detail) t.match(err.detail, detail, `${name}: the detail names the attribute`);
  }
});

t.test('typed attributes of a custom extension', async (t) => {
  const base = { schemas: [USER_SCHEMA, TEST_EXT], userName: 'a' };
  const ok = normalizeResource({ ...base, [TEST_EXT]: { hireDate: '2024-02-29T09:30:00.5+01:00', level: 3, score: 2.5, costCode: 'CC1' } }, customUser);
  t.same(ok[TEST_EXT], { hireDate: '2024-02-29T09:30:00.5+01:00', level: 3, score: 2.5, costCode: 'CC1' });
  const bad: Array<[string, Record<string, unknown>]> = [
    ['dateTime not ISO 8601', { hireDate: '02/29/2024', costCode: 'c' }],
    ['dateTime out of range', { hireDate: '2023-02-29T00:00:00Z', costCode: 'c' }],
    ['integer given a fraction', { level: 1.5, costCode: 'c' }],
    ['integer given a string', { level: '3', costCode: 'c' }],
    ['decimal given a string', { score: '2.5', costCode: 'c' }],
    ['required extension attribute missing', { level: 1 }],
  ];
  for (const [name, values] of bad) {
    const err = scimError(() => normalizeResource({ ...base, [TEST_EXT]: values }, customUser));
    t.equal(err.scimType, 'invalidValue', `${name}: ${err.detail}`);
  }
  t.same(normalizeResource({ schemas: [USER_SCHEMA], userName: 'a' }, customUser), { schemas: [USER_SCHEMA], userName: 'a' }, 'an optional extension may be absent');

  const required = new SchemaRegistry([{ id: TEST_EXT, resourceType: 'User', required: true, attributes: [{ name: 'x' }] }]);
  const missing = scimError(() => normalizeResource({ schemas: [USER_SCHEMA], userName: 'a' }, { registry: required, resourceType: 'User' }));
  t.equal(missing.scimType, 'invalidValue', 'a required extension must be present');
});

t.test('isDateTime', async (t) => {
  for (const ok of ['2010-01-23T04:56:22Z', '2011-05-13T04:42:34.123Z', '2011-05-13T04:42:34+05:30', '2011-05-13T04:42:34', '2011-05-13t04:42:34z']) {
    t.ok(isDateTime(ok), ok);
  }
  for (const bad of ['2010-01-23', '2010-13-01T00:00:00Z', '2010-01-32T00:00:00Z', '2010-01-23 04:56:22Z', 'yesterday', '2010-01-23T24:00:00Z', '2010-01-23T04:56:22+15:00']) {
    t.notOk(isDateTime(bad), bad);
  }
});

t.test('checkImmutable (PUT, RFC 7644 §3.5.1)', async (t) => {
  const stored = normalizeResource(
    { schemas: [USER_SCHEMA, TEST_EXT], userName: 'a', [TEST_EXT]: { badge: 'B-1', seat: { building: 'North', desk: '1' }, costCode: 'c' } },
    customUser,
  );
  const put = (ext: Record<string, unknown>) => normalizeResource({ schemas: [USER_SCHEMA, TEST_EXT], userName: 'renamed', [TEST_EXT]: { costCode: 'c', ...ext } }, customUser);

  t.doesNotThrow(() => checkImmutable(stored, put({ badge: 'B-1', seat: { building: 'North', desk: '2' } }), customUser), 'same immutable values, other changes');
  t.doesNotThrow(() => checkImmutable(stored, put({ badge: 'b-1', seat: { building: 'NORTH' } }), customUser), 'caseExact false: case is not a change');
  const fresh = normalizeResource({ schemas: [USER_SCHEMA], userName: 'a' }, customUser);
  t.doesNotThrow(() => checkImmutable(fresh, put({ badge: 'B-9' }), customUser), 'an unset immutable attribute may be set');

  for (const [name, ext] of [
    ['changed', { badge: 'B-2', seat: { building: 'North' } }],
    ['removed', { seat: { building: 'North' } }],
    ['sub-attribute changed', { badge: 'B-1', seat: { building: 'South' } }],
  ] as const) {
    const err = scimError(() => checkImmutable(stored, put(ext), customUser));
    t.equal(err.status, 400, name);
    t.equal(err.scimType, 'mutability', name);
  }

  const g = normalizeResource({ schemas: [GROUP_SCHEMA], displayName: 'G', members: [{ value: 'u1', type: 'User' }] }, group);
  const g2 = normalizeResource({ schemas: [GROUP_SCHEMA], displayName: 'G', members: [{ value: 'u2', type: 'User' }] }, group);
  t.doesNotThrow(() => checkImmutable(g, g2, group), 'members may be replaced: immutable sub-attributes of a list are not element identity');
});

t.test('strings PostgreSQL cannot store are 400 invalidValue naming the attribute', async (t) => {
  const cases: Array<[string, Record<string, unknown>, typeof user | typeof group, string]> = [
    ['NUL in userName', { schemas: [USER_SCHEMA], userName: 'a\u0000b' }, user, 'userName'],
    ['a lone high surrogate', { schemas: [USER_SCHEMA], userName: 'u', title: '\ud800' }, user, 'title'],
    ['a lone low surrogate in a sub-attribute', { schemas: [USER_SCHEMA], userName: 'u', name: { givenName: 'x\udc00' } }, user, 'name.givenName'],
    ['NUL in a multi-valued element', { schemas: [USER_SCHEMA], userName: 'u', emails: [{ value: '\u0000' }] }, user, 'emails[0].value'],
    ['NUL in an extension', { schemas: [USER_SCHEMA, ENTERPRISE_USER_SCHEMA], userName: 'u', [ENTERPRISE_USER_SCHEMA]: { department: '\u0000' } }, user, `${ENTERPRISE_USER_SCHEMA}:department`],
    ['NUL in a group member display', { schemas: [GROUP_SCHEMA], displayName: 'g', members: [{ value: 'id', display: '\u0000' }] }, group, 'members[0].display'],
  ];
  for (const [what, body, ctx, path] of cases) {
    const err = scimError(() => normalizeResource(body, ctx));
    t.equal(err.scimType, 'invalidValue', what);
    t.equal(err.detail, `"${path}" contains characters that cannot be stored (NUL or an unpaired surrogate)`, what);
  }
  t.equal(normalizeResource({ schemas: [USER_SCHEMA], userName: 'emoji 😀' }, user).userName, 'emoji 😀', 'paired surrogates are fine');
});

t.test('maximum lengths, in UTF-8 bytes', async (t) => {
  t.equal(maxValueBytes('User', 'userName'), MAX_INDEXED_VALUE_BYTES);
  t.equal(maxValueBytes('User', 'externalId'), MAX_INDEXED_VALUE_BYTES);
  t.equal(maxValueBytes('Group', 'displayName'), MAX_INDEXED_VALUE_BYTES);
  t.equal(maxValueBytes('Group', 'externalId'), MAX_INDEXED_VALUE_BYTES);
  t.equal(maxValueBytes('User', 'displayName'), MAX_VALUE_BYTES, 'a User displayName has no index');
  t.ok(MAX_INDEXED_VALUE_BYTES * 1.5 < 2704, 'even lengthened by lower(), an indexed value fits a B-tree entry');

  const ok = (userName: string) => normalizeResource({ schemas: [USER_SCHEMA], userName }, user).userName;
  t.equal(ok('a'.repeat(MAX_INDEXED_VALUE_BYTES)), 'a'.repeat(MAX_INDEXED_VALUE_BYTES), 'exactly the limit');
  const over = scimError(() => ok(`${'a'.repeat(MAX_INDEXED_VALUE_BYTES - 1)}é`));
  t.equal(over.scimType, 'invalidValue');
  t.equal(over.detail, `"userName" is ${MAX_INDEXED_VALUE_BYTES + 1} bytes long (UTF-8); at most ${MAX_INDEXED_VALUE_BYTES} are accepted`, 'counted in bytes');
  const long = 'x'.repeat(MAX_VALUE_BYTES + 1);
  t.match(scimError(() => normalizeResource({ schemas: [USER_SCHEMA], userName: 'u', emails: [{ value: long }] }, user)).detail, /"emails\[0\]\.value" is 65537 bytes/);
  t.match(scimError(() => normalizeResource({ schemas: [GROUP_SCHEMA], displayName: long }, group)).detail, /at most 1024/, 'Group displayName is indexed');
});
