import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parseAttributeList, project } from '../../../core/scim/projection.js';
import { attr, ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, SchemaRegistry, USER_SCHEMA } from '../../../core/scim/schemas.js';
import { scimError } from '../../helpers/scim.js';

const FIXTURES = fileURLToPath(new URL('../../fixtures/rfc7643-7644/', import.meta.url));
const HAVE_FIXTURES = existsSync(FIXTURES);
/** A fixture as parsed JSON (loosely typed, like a response body). */
const fixture = (name: string) => JSON.parse(readFileSync(`${FIXTURES}${name}`, 'utf8'));

const registry = new SchemaRegistry();
const TEST_EXT = 'urn:example:params:scim:schemas:extension:test:2.0:User';
const custom = new SchemaRegistry([
  {
    id: TEST_EXT,
    resourceType: 'User',
    attributes: [
      { name: 'riskScore', type: 'integer', returned: 'request' },
      { name: 'team' },
      { name: 'secret', mutability: 'writeOnly', returned: 'never' },
      { name: 'badge', subAttributes: [attr('number', { returned: 'always' }), attr('colour'), attr('audit', { returned: 'request' })] },
    ],
  },
]);

/** A full User as the server renders it: the RFC 7643 §8.3 example, which also carries a password. */
function fullUser() {
  if (HAVE_FIXTURES) return fixture('rfc7643-8.3-enterprise_user.json');
  return JSON.parse(JSON.stringify({
    schemas: [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
    id: '2819c223-7f76-453a-919d-413861904646',
    userName: 'bjensen@example.com',
    name: { givenName: 'Barbara', familyName: 'Jensen' },
    emails: [{ value: 'bjensen@example.com', type: 'work', primary: true }, { value: 'babs@jensen.org', type: 'home' }],
    password: 't1meMa$heen',
    groups: [{ value: 'e9e30dba', display: 'Tour Guides' }],
    [ENTERPRISE_USER_SCHEMA]: { employeeNumber: '701984', manager: { value: '26118915', displayName: 'John Smith' } },
    meta: { resourceType: 'User', location: 'https://example.com/v2/Users/2819c223-7f76-453a-919d-413861904646' },
  }));
}


const parse = (v: string | string[] | undefined, kind?: 'attributes' | 'excludedAttributes') => parseAttributeList(v, registry, 'User', kind);

t.test('parseAttributeList: canonical paths from any casing and notation', async (t) => {
  t.equal(parse(undefined), undefined);
  t.equal(parse(''), undefined, 'an empty parameter is no parameter');
  t.equal(parse(' , '), undefined);
  t.same(parse('userName'), ['userName']);
  t.same(parse('USERNAME, Name.GivenName ,emails.VALUE'), ['userName', 'name.givenName', 'emails.value']);
  t.same(parse('urn:ietf:params:scim:schemas:core:2.0:User:userName'), ['userName'], 'URN-qualified core attribute');
  t.same(parse('urn:ietf:params:scim:schemas:core:2.0:User:name.familyName'), ['name.familyName']);
  t.same(parse('urn:ietf:params:scim:schemas:extension:enterprise:2.0:user:EMPLOYEENUMBER'), [`${ENTERPRISE_USER_SCHEMA}:employeeNumber`]);
  t.same(parse(`${ENTERPRISE_USER_SCHEMA}:manager.value`), [`${ENTERPRISE_USER_SCHEMA}:manager.value`]);
  t.same(parse(ENTERPRISE_USER_SCHEMA.toUpperCase()), [ENTERPRISE_USER_SCHEMA], 'a whole extension by its URN');
  t.same(parse(['userName', 'displayName,userName']), ['userName', 'displayName'], 'SearchRequest arrays; duplicates removed');
  t.same(parse('id,externalId,meta.lastModified,schemas'), ['id', 'externalId', 'meta.lastModified', 'schemas']);
  t.same(parse(USER_SCHEMA), registry.schema(USER_SCHEMA)!.attributes.map((a) => a.name), 'the core URN names every core attribute');
  t.same(parseAttributeList('members.value,DISPLAYNAME', registry, 'Group'), ['members.value', 'displayName']);
});

t.test('parseAttributeList: unknown names', async (t) => {
  for (const bad of ['shoeSize', 'name.nickname', 'urn:example:nope:attr', `${ENTERPRISE_USER_SCHEMA}:badge`, 'members']) {
    const err = scimError(() => parse(bad));
    t.equal(err.status, 400, bad);
    t.equal(err.scimType, 'invalidValue', bad);
    t.match(err.detail, bad, 'the detail names it');
  }
  t.same(parse('shoeSize,emails.type,urn:example:nope', 'excludedAttributes'), ['emails.type'], 'unknown names in excludedAttributes are ignored');
  t.equal(parse('shoeSize', 'excludedAttributes'), undefined);
});

t.test('RFC 7644 §3.9: attributes=userName returns schemas, id and userName', async (t) => {
  const out = project(fullUser(), { attributes: parse('userName') }, registry, 'User');
  if (HAVE_FIXTURES) {
    const expected = fixture('rfc7644-3.9-user-partial_response.json');
    t.same(Object.keys(out).sort(), Object.keys(expected).sort(), 'the same attributes as the RFC example: meta is returned "default", so it is left out');
  }
  t.same(out, { schemas: fullUser().schemas, id: fullUser().id, userName: fullUser().userName });
  t.same(out.schemas, [USER_SCHEMA, ENTERPRISE_USER_SCHEMA], 'schemas is returned as it is, even when no extension attribute is');
});

t.test('RFC 7644 §3.4.2 list example with attributes=userName', async (t) => {
  const list = fixture('rfc7644-3.4.2-list_response-partial_attributes.json');
  for (const expected of list.Resources as Array<Record<string, unknown>>) {
    const resource = { ...fullUser(), ...expected };
    const out = project(resource, { attributes: ['userName'] }, registry, 'User');
    // The RFC's list example leaves out "schemas"; this server always returns it (RFC 7643 §3: REQUIRED).
    const { schemas, ...rest } = out;
    t.ok(schemas);
    t.same(rest, expected);
  }
});

t.test('default projection: returned never is never there, default and always are', async (t) => {
  const user = fullUser();
  const out = project(user, {}, registry, 'User');
  t.notOk('password' in out, 'password is returned "never"');
  const { password: _p, ...rest } = user;
  t.same(out, rest, 'everything else is returned');
  t.notOk('password' in project(user, { attributes: parse('password,userName') }, registry, 'User'), 'even when asked for');
  t.ok('password' in user, 'the input is not modified');
});

t.test('excludedAttributes', async (t) => {
  const user = fullUser();
  const out = project(user, { excludedAttributes: parse('emails,meta,NAME', 'excludedAttributes') }, registry, 'User');
  t.notOk('emails' in out);
  t.notOk('meta' in out);
  t.notOk('name' in out);
  t.equal(out.userName, user.userName);
  t.ok(out[ENTERPRISE_USER_SCHEMA], 'extensions stay');

  const always = project(user, { excludedAttributes: parse('id,schemas', 'excludedAttributes') }, registry, 'User');
  t.equal(always.id, user.id, 'id is returned "always", excluded or not');
  t.same(always.schemas, user.schemas, 'schemas is always returned');

  const sub = project(user, { excludedAttributes: parse('emails.type,name.middleName', 'excludedAttributes') }, registry, 'User');
  t.same(sub.emails, user.emails.map(({ type: _t, ...e }: Record<string, unknown>) => e), 'a sub-attribute goes from every element');
  const name = sub.name as Record<string, unknown>;
  t.notOk('middleName' in name);
  t.equal(name.givenName, user.name.givenName);

  const ext = project(user, { excludedAttributes: parse(ENTERPRISE_USER_SCHEMA, 'excludedAttributes') }, registry, 'User');
  t.notOk(ENTERPRISE_USER_SCHEMA in ext, 'a whole extension by its URN');
  const extAttr = project(user, { excludedAttributes: parse(`${ENTERPRISE_USER_SCHEMA}:manager`, 'excludedAttributes') }, registry, 'User');
  const enterprise = extAttr[ENTERPRISE_USER_SCHEMA] as Record<string, unknown>;
  t.notOk('manager' in enterprise);
  t.equal(enterprise.employeeNumber, user[ENTERPRISE_USER_SCHEMA].employeeNumber);
});

t.test('attributes with sub-attribute granularity', async (t) => {
  const user = fullUser();
  const out = project(user, { attributes: parse('name.givenName,emails.value') }, registry, 'User');
  t.same(out, {
    schemas: user.schemas,
    id: user.id,
    name: { givenName: user.name.givenName },
    emails: user.emails.map((e: Record<string, unknown>) => ({ value: e.value })),
  });
  const whole = project(user, { attributes: parse('name,name.givenName') }, registry, 'User');
  t.same(whole.name, user.name, 'naming the attribute too returns all of it');
  const meta = project(user, { attributes: parse('meta.lastModified,meta.location') }, registry, 'User');
  t.same(meta.meta, { location: user.meta.location, ...(user.meta.lastModified ? { lastModified: user.meta.lastModified } : {}) });
  const both = project(user, { attributes: parse('emails'), excludedAttributes: parse('emails.primary', 'excludedAttributes') }, registry, 'User');
  t.same(both.emails, user.emails.map(({ primary: _p, ...e }: Record<string, unknown>) => e), 'excludedAttributes applies after attributes');
});

t.test('extension attributes by URN-qualified path or whole URN', async (t) => {
  const user = fullUser();
  const one = project(user, { attributes: parse(`${ENTERPRISE_USER_SCHEMA}:manager.value`) }, registry, 'User');
  t.same(one, { schemas: user.schemas, id: user.id, [ENTERPRISE_USER_SCHEMA]: { manager: { value: user[ENTERPRISE_USER_SCHEMA].manager.value } } });
  const whole = project(user, { attributes: parse(`userName,${ENTERPRISE_USER_SCHEMA}`) }, registry, 'User');
  t.same(whole[ENTERPRISE_USER_SCHEMA], user[ENTERPRISE_USER_SCHEMA]);
  t.equal(whole.userName, user.userName);
  const none = project(user, { attributes: parse('userName') }, registry, 'User');
  t.notOk(ENTERPRISE_USER_SCHEMA in none, 'an extension with nothing selected is left out');
});

t.test('returned request, and always/never sub-attributes', async (t) => {
  const user = {
    schemas: [USER_SCHEMA, TEST_EXT],
    id: 'u1',
    userName: 'a',
    [TEST_EXT]: { riskScore: 7, team: 'blue', secret: 's', badge: { number: 'N1', colour: 'red', audit: 'x' } },
  };
  const p = (opts: { attributes?: string; excludedAttributes?: string }) =>
    project(
      user,
      {
        attributes: parseAttributeList(opts.attributes, custom, 'User'),
        excludedAttributes: parseAttributeList(opts.excludedAttributes, custom, 'User', 'excludedAttributes'),
      },
      custom,
      'User',
    );
  t.same(p({})[TEST_EXT], { team: 'blue', badge: { number: 'N1', colour: 'red' } }, 'request and never are not returned by default');
  t.same(p({ attributes: `${TEST_EXT}:riskScore` })[TEST_EXT], { riskScore: 7 }, 'request is returned when named');
  t.same(p({ attributes: `${TEST_EXT}:badge.audit` })[TEST_EXT], { badge: { number: 'N1', audit: 'x' } }, 'an "always" sub-attribute comes with its named siblings');
  t.same(p({ attributes: `${TEST_EXT}:badge` })[TEST_EXT], { badge: { number: 'N1', colour: 'red', audit: 'x' } }, 'naming the attribute names its sub-attributes');
  t.same(p({ excludedAttributes: `${TEST_EXT}:badge.number,${TEST_EXT}:badge.colour` })[TEST_EXT], { team: 'blue', badge: { number: 'N1' } }, 'always sub-attributes cannot be excluded');
  t.same(p({ attributes: `${TEST_EXT}:secret,userName` }), { schemas: user.schemas, id: 'u1', userName: 'a' }, 'never is never returned');
});

t.test('Groups: excludedAttributes=members (Entra ID reads groups this way)', async (t) => {
  const group = HAVE_FIXTURES
    ? fixture('rfc7643-8.4-group.json')
    : { schemas: [GROUP_SCHEMA], id: 'g1', displayName: 'Tour Guides', members: [{ value: 'u1', display: 'Babs' }], meta: { resourceType: 'Group' } };
  const out = project(group, { excludedAttributes: parseAttributeList('members', registry, 'Group', 'excludedAttributes') }, registry, 'Group');
  const { members: _m, ...rest } = group;
  t.same(out, rest);
  const values = project(group, { attributes: parseAttributeList('members.value', registry, 'Group') }, registry, 'Group');
  t.same(values.members, group.members.map((m: Record<string, unknown>) => ({ value: m.value })));
});

t.test('value filters in attributes', async (t) => {
  t.same(
    parseAttributeList('EMAILS[type eq "work"],userName,emails[value co ","].VALUE', registry, 'User'),
    ['emails[type eq "work"]', 'userName', 'emails[value co ","].value'],
    'canonical names, filter text kept, commas inside brackets do not split',
  );
  t.same(parseAttributeList(['members[value eq "x"]'], registry, 'Group'), ['members[value eq "x"]']);
  for (const bad of ['userName[value eq "x"]', 'emails[nope eq "x"]', 'emails[type eq "x"].nope', 'emails[type eq "x"', 'name.givenName[x eq 1]']) {
    t.equal(scimError(() => parseAttributeList(bad, registry, 'User')).scimType, 'invalidValue', bad);
  }
  t.equal(scimError(() => parseAttributeList('emails[type eq "x"]', registry, 'User', 'excludedAttributes')).scimType, 'invalidValue', 'not in excludedAttributes');

  const resource = {
    schemas: [USER_SCHEMA],
    id: '1',
    userName: 'u',
    emails: [
      { value: 'w@example.com', type: 'work' },
      { value: 'h@example.com', type: 'home', primary: true },
    ],
  };
  const show = (attributes: string) => project(resource, { attributes: parseAttributeList(attributes, registry, 'User') }, registry, 'User');
  t.same(show('emails[type eq "work"]'), { schemas: [USER_SCHEMA], id: '1', emails: [{ value: 'w@example.com', type: 'work' }] });
  t.same(show('emails[primary eq true].type'), { schemas: [USER_SCHEMA], id: '1', emails: [{ type: 'home' }] });
  t.same(show('emails[type eq "work"],emails[type eq "home"]').emails, resource.emails, 'several filters: any matches');
  t.same(show('emails[type eq "work"].value,emails.value').emails, [{ value: 'w@example.com' }, { value: 'h@example.com' }], 'named without a filter too: every value');
  t.same(show('emails[type eq "fax"],userName'), { schemas: [USER_SCHEMA], id: '1', userName: 'u' }, 'nothing matches: left out');
});
