/**
 * SCIM filtering (RFC 7644 §3.4.2.2): parsing with identity-provider quirks, SQL translation, and
 * agreement of SQL and in-memory evaluation on real PostgreSQL.
 */
import { randomUUID } from 'node:crypto';
import t, { type Test } from 'tap';
import { ScimError } from '../../../core/scim/errors.js';
import {
  filterToSql,
  matchesElement,
  matchesFilter,
  MAX_FILTER_LENGTH,
  parseFilter,
  sortExpression,
  type Filter,
  type SqlTarget,
} from '../../../core/scim/filter/index.js';
import { ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, SchemaRegistry, USER_SCHEMA } from '../../../core/scim/schemas.js';
import { GROUP_TARGET, USER_TARGET } from '../../../core/directory/store.js';
import { createTestDatabase, type TestDatabase } from '../../helpers/db.js';

const registry = new SchemaRegistry();

// The targets the directory itself uses, so these tests cover the production SQL.
const USERS: SqlTarget = USER_TARGET;
const GROUPS: SqlTarget = GROUP_TARGET;

/** Asserts that fn throws ScimError 400 invalidFilter with a readable detail (matching `detail` when given). */
function invalid(t: Test, fn: () => unknown, detail?: RegExp, message?: string): void {
  try {
    fn();
    t.fail(message ?? 'expected 400 invalidFilter');
  } catch (err) {
    if (!(err instanceof ScimError)) {
      t.fail(`${message ?? ''} threw ${String(err)} instead of a ScimError`);
      return;
    }
    const label = message ?? 'error';
    t.equal(err.status, 400, label);
    t.equal(err.scimType, 'invalidFilter', label);
    t.ok(err.detail.length > 10, `${label} has a detail: ${err.detail}`);
    if (detail) t.match(err.detail, detail, label);
  }
}

function sql(text: string, target: SqlTarget = USERS, params: unknown[] = []): { sql: string; params: unknown[] } {
  return { sql: filterToSql(parseFilter(text), target, registry, params), params };
}

t.test('parseFilter: RFC 7644 grammar', async (t) => {
  t.same(parseFilter('userName eq "bjensen"'), { op: 'eq', attrPath: 'userName', compValue: 'bjensen' });
  t.same(parseFilter('title pr'), { op: 'pr', attrPath: 'title' });
  t.same(parseFilter('title pr and userType eq "Employee" or userType eq "Intern"'), {
    op: 'or',
    filters: [
      { op: 'and', filters: [{ op: 'pr', attrPath: 'title' }, { op: 'eq', attrPath: 'userType', compValue: 'Employee' }] },
      { op: 'eq', attrPath: 'userType', compValue: 'Intern' },
    ],
  }, 'and binds tighter than or');
  t.same(parseFilter('not (title pr) and active eq true'), {
    op: 'and',
    filters: [{ op: 'not', filter: { op: 'pr', attrPath: 'title' } }, { op: 'eq', attrPath: 'active', compValue: true }],
  });
  t.same(parseFilter('emails[type eq "work" and value co "@example.com"]'), {
    op: '[]',
    attrPath: 'emails',
    valFilter: { op: 'and', filters: [{ op: 'eq', attrPath: 'type', compValue: 'work' }, { op: 'co', attrPath: 'value', compValue: '@example.com' }] },
  });
  t.same(parseFilter('urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "26118915-6090-4610-87e4-49d8ca9f808d"'), {
    op: 'eq',
    attrPath: 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value',
    compValue: '26118915-6090-4610-87e4-49d8ca9f808d',
  });
  t.same(parseFilter('meta.version gt 5'), { op: 'gt', attrPath: 'meta.version', compValue: 5 });
  t.same(parseFilter('x eq "a\\"b\\\\c\\u00e9\\n"'), { op: 'eq', attrPath: 'x', compValue: 'a"b\\c\u00e9\n' }, 'JSON escapes are decoded');
  t.same(parseFilter('x eq "O\'Malley ( and ) [or] not"'), { op: 'eq', attrPath: 'x', compValue: "O'Malley ( and ) [or] not" }, 'values keep grammar characters');
});

t.test('parseFilter: identity-provider quirks', async (t) => {
  const eq = (attrPath: string, compValue: unknown) => ({ op: 'eq', attrPath, compValue });
  t.same(parseFilter('userName EQ "x"'), eq('userName', 'x'), 'upper-case operator');
  t.same(parseFilter('userName Eq "x"'), eq('userName', 'x'), 'mixed-case operator');
  t.same(parseFilter('title PR AND userType Eq "a" Or NOT (active eq true)'), {
    op: 'or',
    filters: [
      { op: 'and', filters: [{ op: 'pr', attrPath: 'title' }, eq('userType', 'a')] },
      { op: 'not', filter: eq('active', true) },
    ],
  }, 'logical operators in any case');
  t.same(parseFilter('  \tuserName\n eq   "x"  '), eq('userName', 'x'), 'extra whitespace');
  t.same(parseFilter('(userName eq "x")and(title pr)'), { op: 'and', filters: [eq('userName', 'x'), { op: 'pr', attrPath: 'title' }] }, 'no whitespace around parentheses');
  t.same(parseFilter('userName sw O'), { op: 'sw', attrPath: 'userName', compValue: 'O' }, 'unquoted string');
  t.same(parseFilter('userName eq bjensen@example.com'), eq('userName', 'bjensen@example.com'), 'unquoted e-mail address');
  t.same(parseFilter('(userName eq bjensen)'), eq('userName', 'bjensen'), 'unquoted value before ")"');
  t.same(parseFilter('emails[value eq a@b.c]'), { op: '[]', attrPath: 'emails', valFilter: eq('value', 'a@b.c') }, 'unquoted value before "]"');
  t.same(parseFilter("name.familyName eq O'Malley"), eq('name.familyName', "O'Malley"), 'unquoted apostrophe');
  t.same(parseFilter('active eq True'), eq('active', 'True'), 'unquoted True stays a string (booleans accept it)');
  t.same(parseFilter('externalId eq 12345'), eq('externalId', 12345), 'unquoted number');
  t.same(parseFilter('externalId eq 007'), eq('externalId', '007'), 'a number that would lose its spelling stays a string');
  t.same(parseFilter('userName eq "DOMAIN\\user"'), eq('userName', 'DOMAIN\\user'), 'a backslash that is not a JSON escape is kept');

  t.same(sql('active eq "True"').params, [true], 'Entra sends booleans as strings');
  t.same(sql('active eq "FALSE"').params, [false]);
  t.same(sql('externalId eq 12345').params, ['12345'], 'a number compared with a string attribute means its spelling');
});

t.test('parseFilter: malformed, too long, too deep', async (t) => {
  const bad: Array<[string, RegExp?]> = [
    ['', /empty/],
    ['   ', /empty/],
    ['userName', /ends unexpectedly/],
    ['userName eq', /ends unexpectedly/],
    ['userName xx "a"', /expected an operator/],
    ['userName eq "a" and', /ends unexpectedly/],
    ['userName eq "a" title pr', /expected "and", "or"/],
    ['(userName eq "a"', /unclosed "\("/],
    ['userName eq "a")', /unbalanced/],
    ['emails[type eq "work"', /unclosed "\["/],
    ['emails[type eq "work"]]', /unbalanced/],
    ['emails[type eq "work")', /unbalanced/],
    ['"a" eq "b"', /expected an attribute name/],
    ['userName eq "unterminated', /unterminated string/],
    ['userName eq (a)', /expected a value/],
    ['emails[type eq "x" and emails[value pr]]', /cannot be nested/],
    ['emails[type eq "work"].value eq "x"', /only valid in PATCH/],
    ['userName eq null', /null is not a comparison value/],
    ['userName eq "a\\u0000b"', /cannot be stored/],
    ['userName eq "\\ud800"', /cannot be stored/],
    ['and', /ends unexpectedly/],
    ['not', /ends unexpectedly/],
    ['()', /expected an attribute name/],
  ];
  for (const [text, detail] of bad) invalid(t, () => parseFilter(text), detail, JSON.stringify(text));

  invalid(t, () => parseFilter(`userName eq "${'a'.repeat(MAX_FILTER_LENGTH)}"`), /characters long/, 'over-long filter');
  invalid(t, () => parseFilter('('.repeat(1_000_000)), /characters long/, 'a huge filter is refused before parsing');
  invalid(t, () => parseFilter(`${'('.repeat(51)}title pr${')'.repeat(51)}`), /nests more than 50/, '51 parentheses');
  invalid(t, () => parseFilter(`${'not '.repeat(51)}title pr`), /nests more than 50/, '51 nots');
  invalid(t, () => parseFilter('('.repeat(4000)), /nests more than 50/, 'a wall of parentheses');
  invalid(t, () => parseFilter(`${'not ('.repeat(30)}title pr${')'.repeat(30)}`), /nests more than 50/, 'not and parentheses both count');

  const deepOk = `${'('.repeat(25)}${'not '.repeat(24)}emails[value pr]${')'.repeat(25)}`;
  t.doesNotThrow(() => sql(deepOk), '50 levels are accepted');
  const flat = Array.from({ length: 200 }, (_, i) => `title eq "t${i}"`).join(' or ');
  t.ok(flat.length <= MAX_FILTER_LENGTH);
  t.equal((parseFilter(flat) as { filters: unknown[] }).filters.length, 200, 'long flat filters parse without recursion');
});

t.test('type and attribute errors', async (t) => {
  const cases: Array<[string, RegExp, SqlTarget?]> = [
    ['active eq "yes"', /"active" is a boolean/],
    ['active gt true', /"gt" cannot be used with boolean/],
    ['active co "t"', /"co" cannot be used with boolean/],
    ['meta.created gt 5', /"meta.created" is a dateTime/],
    ['meta.created gt "yesterday"', /is a dateTime/],
    ['meta.created gt "2011-02-30T00:00:00Z"', /is a dateTime/],
    ['meta.created co "2011"', /"co" cannot be used with dateTime/],
    ['meta.created gt "9999-12-31T23:59:59.9995Z"', /out of range/],
    ['name eq "x"', /complex attribute/],
    ['addresses eq "x"', /no "value" sub-attribute/],
    ['x509Certificates.value gt "a"', /binary/],
    ['nosuch eq "x"', /unknown attribute "nosuch"/],
    ['name.nosuch eq "x"', /unknown attribute "name.nosuch"/],
    ['urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:nosuch pr', /unknown attribute/],
    ['password eq "secret"', /"password" cannot be used/],
    ['password pr', /"password" cannot be used/],
    ['userName[value eq "x"]', /needs a complex attribute/],
    ['emails[nosuch eq "x"]', /"emails" has no sub-attribute "nosuch"/],
    ['emails[emails.value eq "x"]', /name sub-attributes of "emails" alone/],
    ['members eq "x"', /unknown attribute "members" for User/],
    ['meta.location eq "https://x"', /cannot be used in a filter/],
    ['members.$ref eq "x"', /cannot be used in a filter/, GROUPS],
  ];
  for (const [text, detail, target] of cases) invalid(t, () => sql(text, target), detail, text);

  // A filter that was not built by parseFilter is checked too.
  invalid(t, () => filterToSql({ op: 'xx', attrPath: 'userName' } as unknown as Filter, USERS, registry, []), /unknown filter operator/);
  invalid(t, () => filterToSql({ op: 'eq', attrPath: 'userName', compValue: null }, USERS, registry, []), /null/);
  invalid(t, () => matchesFilter({ op: 'gt', attrPath: 'active', compValue: true }, {}, registry, 'User'), /boolean/, 'in memory too');
  let deep: Filter = { op: 'pr', attrPath: 'title' };
  for (let i = 0; i < 10_000; i++) deep = { op: 'not', filter: deep };
  invalid(t, () => filterToSql(deep, USERS, registry, []), /nests/, 'a deep tree built by hand');
  invalid(t, () => matchesFilter(deep, {}, registry, 'User'), /nests/, 'a deep tree built by hand, in memory');
});

t.test('SQL for the index cases, and values only ever as parameters', async (t) => {
  t.same(sql('userName eq "bjensen"'), { sql: 'lower(u.user_name) = lower($1)', params: ['bjensen'] }, 'answerable with the lower(user_name) index');
  t.same(sql('USERNAME Eq "bjensen"'), { sql: 'lower(u.user_name) = lower($1)', params: ['bjensen'] }, 'whatever the spelling');
  t.same(sql('urn:ietf:params:scim:schemas:core:2.0:User:userName eq "b"'), { sql: 'lower(u.user_name) = lower($1)', params: ['b'] });
  t.same(sql('externalId eq "abc"'), { sql: 'u.external_id = $1', params: ['abc'] });
  t.same(sql('id eq "not-a-uuid"'), { sql: 'u.id::text = $1', params: ['not-a-uuid'] }, 'ids compare as text');
  t.same(sql('displayName eq "Admins"', GROUPS), { sql: 'lower(u.display_name) = lower($1)', params: ['Admins'] });
  t.same(sql('userName eq "b"', USERS, ['before']), { sql: 'lower(u.user_name) = lower($2)', params: ['before', 'b'] }, 'parameters are appended');
  t.same(sql('active eq true'), { sql: 'u.active = $1::boolean', params: [true] });
  t.same(sql('userName gt "m"'), { sql: 'lower(u.user_name) > lower($1) COLLATE "C"', params: ['m'] });
  t.same(sql('userName sw "a%b_c\\\\d"'), { sql: 'lower(u.user_name) LIKE lower($1)', params: ['a\\%b\\_c\\\\d%'] }, 'LIKE metacharacters escaped');
  t.same(sql('externalId co "50%"').params, ['%50\\%%']);
  t.same(sql('externalId ew "_x"').params, ['%\\_x']);
  t.same(sql('meta.lastModified gt "2011-05-13T04:42:34Z"'), {
    sql: 'u.updated_at >= $1::timestamptz',
    params: ['2011-05-13T04:42:34.001000Z'],
  }, 'later than the millisecond a client saw');
  t.same(sql('meta.created ge "2011-05-13T06:42:34+02:00"').params, ['2011-05-13T04:42:34.000000Z'], 'offsets are applied');
  t.same(sql('members[value eq "x"]', GROUPS), {
    sql: 'EXISTS (SELECT 1 FROM group_members m WHERE m.group_id = u.id AND lower(m.member_id::text) = lower($1))',
    params: ['x'],
  });
  t.same(sql('members pr', GROUPS).sql, 'EXISTS (SELECT 1 FROM group_members m WHERE m.group_id = u.id)');

  const evil = `x' OR '1'='1'; DROP TABLE users; --`;
  const r = sql(`title eq "${evil}" or emails[value co "${evil}"] or name.givenName gt "${evil}"`);
  t.notMatch(r.sql, /DROP|'1'/, 'no client value in the SQL text');
  t.same(r.params, [evil, `%${evil}%`, evil]);
});

t.test('sortExpression', async (t) => {
  t.equal(sortExpression('userName', USERS, registry), 'lower(u.user_name) COLLATE "C"');
  t.equal(sortExpression('USERNAME', USERS, registry), 'lower(u.user_name) COLLATE "C"');
  t.equal(sortExpression('externalId', USERS, registry), 'u.external_id COLLATE "C"');
  t.equal(sortExpression('meta.created', USERS, registry), 'u.created_at');
  t.match(sortExpression('emails', USERS, registry), /primary/);
  for (const bad of ['nosuch', 'name', 'password', 'meta.location', 'meta.resourceType']) {
    try {
      sortExpression(bad, USERS, registry);
      t.fail(`sortBy ${bad} should be refused`);
    } catch (err) {
      t.match(err, { status: 400, scimType: 'invalidValue' }, bad);
    }
  }
});

// ---------------------------------------------------------------------------------------------
// End to end on PostgreSQL
// ---------------------------------------------------------------------------------------------

interface UserRow {
  id: string;
  userName: string;
  externalId?: string;
  active?: boolean;
  created: string;
  updated: string;
  resource: Record<string, unknown>;
  deleted?: boolean;
}

async function insertUsers(db: TestDatabase['db'], rows: UserRow[]): Promise<void> {
  for (const r of rows) {
    await db.query(
      `INSERT INTO users (id, user_name, external_id, display_name, active, resource, created_at, updated_at, deleted_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [
        r.id,
        r.userName,
        r.externalId ?? null,
        typeof r.resource.displayName === 'string' ? r.resource.displayName : null,
        r.active ?? true,
        JSON.stringify({ ...r.resource, userName: r.userName, ...(r.externalId ? { externalId: r.externalId } : {}), active: r.active ?? true }),
        r.created,
        r.updated,
        r.deleted ? r.updated : null,
      ],
    );
  }
}

function renderUser(r: UserRow): Record<string, unknown> {
  return {
    ...r.resource,
    userName: r.userName,
    ...(r.externalId ? { externalId: r.externalId } : {}),
    active: r.active ?? true,
    id: r.id,
    meta: { resourceType: 'User', created: new Date(r.created).toISOString(), lastModified: new Date(r.updated).toISOString(), location: `https://example.com/scim/v2/Users/${r.id}`, version: 'W/"1"' },
  };
}

t.test('RFC 7644 §3.4.2.2 examples on PostgreSQL', async (t) => {
  const database = await createTestDatabase(t);
  const ids = { bjensen: randomUUID(), omalley: randomUUID(), jsmith: randomUUID(), alice: randomUUID(), gone: randomUUID() };
  const rows: UserRow[] = [
    {
      id: ids.bjensen,
      userName: 'bjensen',
      externalId: 'ext-BJ',
      created: '2010-01-23T04:56:22Z',
      updated: '2011-05-13T04:42:34Z',
      resource: {
        schemas: [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
        name: { familyName: 'Jensen', givenName: 'Barbara' },
        displayName: 'Babs Jensen',
        title: 'Tour Guide',
        userType: 'Employee',
        emails: [
          { value: 'bjensen@example.com', type: 'work', primary: true },
          { value: 'babs@jensen.org', type: 'home' },
        ],
        ims: [{ value: 'someaimhandle', type: 'aim' }],
        [ENTERPRISE_USER_SCHEMA]: { department: 'Tour Operations', manager: { value: ids.omalley } },
      },
    },
    {
      id: ids.omalley,
      userName: 'JOMalley',
      created: '2010-02-01T00:00:00Z',
      updated: '2011-05-13T04:42:34.001Z',
      resource: {
        schemas: [USER_SCHEMA, 'URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER'],
        name: { familyName: "O'Malley", givenName: 'John' },
        userType: 'Employee',
        emails: [{ value: 'jom@EXAMPLE.org', type: 'work' }],
      },
    },
    {
      id: ids.jsmith,
      userName: 'jsmith',
      externalId: '12345',
      created: '2010-03-01T00:00:00Z',
      updated: '2012-01-01T00:00:00Z',
      resource: {
        schemas: [USER_SCHEMA],
        title: 'Summer Intern',
        userType: 'Intern',
        emails: [{ value: 'js@other.net', type: 'work' }],
        ims: [{ value: 'js@foo.com', type: 'xmpp' }],
      },
    },
    {
      id: ids.alice,
      userName: 'a_l%ice\\x',
      active: false,
      created: '2010-04-01T00:00:00Z',
      updated: '2013-01-01T00:00:00Z',
      resource: { schemas: [USER_SCHEMA], userType: 'Contractor', title: '', emails: [] },
    },
    {
      id: ids.gone,
      userName: 'gone',
      created: '2010-05-01T00:00:00Z',
      updated: '2014-01-01T00:00:00Z',
      deleted: true,
      resource: { schemas: [USER_SCHEMA, ENTERPRISE_USER_SCHEMA], title: 'Ghost', userType: 'Employee', emails: [{ value: 'g@example.com', type: 'work' }] },
    },
  ];
  await insertUsers(database.db, rows);
  const live = rows.filter((r) => !r.deleted);
  const name = new Map<string, string>(Object.entries(ids).map(([k, v]) => [v, k]));

  async function check(filter: string, expected: Array<keyof typeof ids>): Promise<void> {
    const params: unknown[] = [];
    const where = filterToSql(parseFilter(filter), USERS, registry, params);
    const { rows: got } = await database.db.query<{ id: string }>(`SELECT id FROM users u WHERE deleted_at IS NULL AND (${where})`, params);
    const fromSql = got.map((r) => name.get(r.id)!).sort();
    t.same(fromSql, [...expected].sort(), `SQL: ${filter}`);
    const inMemory = live.filter((r) => matchesFilter(parseFilter(filter), renderUser(r), registry, 'User')).map((r) => name.get(r.id)!).sort();
    t.same(inMemory, [...expected].sort(), `in memory: ${filter}`);
  }

  // The examples of RFC 7644 §3.4.2.2, in its order.
  await check('userName eq "bjensen"', ['bjensen']);
  await check('name.familyName co "O\'Malley"', ['omalley']);
  await check('userName sw "J"', ['jsmith', 'omalley']);
  await check('urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J"', ['jsmith', 'omalley']);
  await check('title pr', ['bjensen', 'jsmith']);
  await check('meta.lastModified gt "2011-05-13T04:42:34Z"', ['alice', 'jsmith', 'omalley']);
  await check('meta.lastModified ge "2011-05-13T04:42:34Z"', ['alice', 'bjensen', 'jsmith', 'omalley']);
  await check('meta.lastModified lt "2011-05-13T04:42:34Z"', []);
  await check('meta.lastModified le "2011-05-13T04:42:34Z"', ['bjensen']);
  await check('title pr and userType eq "Employee"', ['bjensen']);
  await check('title pr or userType eq "Intern"', ['bjensen', 'jsmith']);
  await check('schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"', ['bjensen', 'omalley']);
  await check('userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")', ['bjensen', 'omalley']);
  await check('userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")', ['alice', 'jsmith']);
  await check('userType eq "Employee" and (emails.type eq "work")', ['bjensen', 'omalley']);
  await check('userType eq "Employee" and emails[type eq "work" and value co "@example.com"]', ['bjensen']);
  await check('emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]', ['bjensen', 'jsmith']);

  // Beyond the RFC's list.
  await check('userName eq "BJENSEN"', ['bjensen']);
  await check('userName eq bjensen', ['bjensen']);
  await check('externalId eq "ext-bj"', []);
  await check('externalId eq "ext-BJ"', ['bjensen']);
  await check('externalId eq 12345', ['jsmith']);
  await check('id eq "not-a-uuid"', []);
  await check(`id eq "${ids.jsmith}"`, ['jsmith']);
  await check(`id eq "${ids.jsmith.toUpperCase()}"`, []);
  await check('active eq false', ['alice']);
  await check('active eq "True"', ['bjensen', 'jsmith', 'omalley']);
  await check('active ne true', ['alice']);
  await check('title ne "Tour Guide"', ['alice', 'jsmith', 'omalley']);
  await check('not (title pr)', ['alice', 'omalley']);
  await check('emails pr', ['bjensen', 'jsmith', 'omalley']);
  await check('emails.value pr and not (ims pr)', ['omalley']);
  await check('userName co "_"', ['alice']);
  await check('userName co "%"', ['alice']);
  await check('userName ew "\\\\x"', ['alice']);
  await check('userName sw "a_l%"', ['alice']);
  await check('userName gt "j"', ['jsmith', 'omalley']);
  await check('name.givenName lt "c" or name.givenName ge "K"', ['bjensen']);
  await check('urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "TOUR operations"', ['bjensen']);
  await check(`URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER:Manager.Value eq "${ids.omalley}"`, ['bjensen']);
  await check('name[givenName sw "b" or familyName sw "o"]', ['bjensen', 'omalley']);
  await check('not (name[givenName pr])', ['alice', 'jsmith']);
  await check('meta.resourceType eq "User"', ['alice', 'bjensen', 'jsmith', 'omalley']);
  await check('meta[created lt "2010-02-15T00:00:00Z"]', ['bjensen', 'omalley']);
  await check('emails[not (type eq "work")]', ['bjensen']);
  await check('emails[type ne "work"]', ['bjensen']);
  await check('emails.type ne "work"', ['alice']);

  // The index cases really use the indexes (sequential scans disabled so a tiny table cannot hide it).
  const client = await database.db.connect();
  try {
    await client.query('SET enable_seqscan = off');
    for (const [filter, index] of [
      ['userName eq "bjensen"', 'users_user_name_key'],
      ['externalId eq "ext-BJ"', 'users_external_id_idx'],
      ['meta.lastModified gt "2011-05-13T04:42:34Z"', 'users_updated_at_idx'],
      ['meta.created le "2010-02-01T00:00:00Z"', 'users_created_at_id_idx'],
    ] as const) {
      const params: unknown[] = [];
      const where = filterToSql(parseFilter(filter), USERS, registry, params);
      const { rows: plan } = await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN SELECT id FROM users u WHERE deleted_at IS NULL AND (${where})`, params);
      t.match(plan.map((r) => r['QUERY PLAN']).join('\n'), index, `${filter} uses ${index}`);
    }
  } finally {
    client.release();
  }

  // sortBy over the same rows.
  const sorted = async (by: string, dir = 'ASC'): Promise<string[]> => {
    const { rows: got } = await database.db.query<{ id: string }>(
      `SELECT id FROM users u WHERE deleted_at IS NULL ORDER BY ${sortExpression(by, USERS, registry)} ${dir} NULLS LAST, u.id`,
    );
    return got.map((r) => name.get(r.id)!);
  };
  t.same(await sorted('userName'), ['alice', 'bjensen', 'omalley', 'jsmith'], 'userName case-insensitively (a_l%…, bjensen, JOMalley, jsmith)');
  t.same(await sorted('name.familyName'), ['bjensen', 'omalley', ...[ids.alice, ids.jsmith].sort().map((id) => name.get(id)!)], 'missing values last');
  t.same(await sorted('emails'), ['bjensen', 'omalley', 'jsmith', 'alice'], 'primary e-mail first');
  t.same(await sorted('meta.lastModified', 'DESC'), ['alice', 'jsmith', 'omalley', 'bjensen']);
  t.same((await sorted('urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department'))[0], 'bjensen');
  t.same((await sorted('schemas')).length, 4);
});

t.test('Group members through the group_members relation', async (t) => {
  const database = await createTestDatabase(t);
  const u1 = randomUUID();
  const u2 = randomUUID();
  const u3 = randomUUID();
  const g = { guides: randomUUID(), interns: randomUUID(), empty: randomUUID() };
  const groups = [
    { id: g.guides, displayName: 'Tour Guides', externalId: 'G-1', members: [{ value: u1, type: 'User', display: 'Babs Jensen' }, { value: u2, type: 'User', display: "John O'Malley" }] },
    { id: g.interns, displayName: 'Interns', members: [{ value: u3, type: 'User', display: 'J Smith' }, { value: g.guides, type: 'Group', display: 'Tour Guides' }] },
    { id: g.empty, displayName: 'Empty', members: [] as Array<{ value: string; type: string; display: string }> },
  ];
  // Members must be live users and groups (a trigger refuses anything else), so the users exist first.
  for (const [i, id] of [u1, u2, u3].entries()) {
    await database.db.query(`INSERT INTO users (id, user_name, resource) VALUES ($1, $2, '{}')`, [id, `member.${i}@example.com`]);
  }
  for (const grp of groups) {
    await database.db.query(
      `INSERT INTO groups (id, display_name, external_id, resource, created_at, updated_at) VALUES ($1, $2, $3, $4, '2020-01-01T00:00:00Z', '2020-01-02T00:00:00Z')`,
      [grp.id, grp.displayName, grp.externalId ?? null, JSON.stringify({ schemas: [GROUP_SCHEMA], displayName: grp.displayName, ...(grp.externalId ? { externalId: grp.externalId } : {}) })],
    );
    for (const m of grp.members) {
      await database.db.query('INSERT INTO group_members (group_id, member_id, member_type, display) VALUES ($1, $2, $3, $4)', [grp.id, m.value, m.type, m.display]);
    }
  }
  const render = (grp: (typeof groups)[number]) => ({
    schemas: [GROUP_SCHEMA],
    displayName: grp.displayName,
    ...(grp.externalId ? { externalId: grp.externalId } : {}),
    id: grp.id,
    members: grp.members,
    meta: { resourceType: 'Group', created: '2020-01-01T00:00:00.000Z', lastModified: '2020-01-02T00:00:00.000Z' },
  });
  const name = new Map<string, string>(Object.entries(g).map(([k, v]) => [v, k]));

  async function check(filter: string, expected: Array<keyof typeof g>): Promise<void> {
    const params: unknown[] = [];
    const where = filterToSql(parseFilter(filter), GROUPS, registry, params);
    const { rows } = await database.db.query<{ id: string }>(`SELECT id FROM groups u WHERE deleted_at IS NULL AND (${where})`, params);
    t.same(rows.map((r) => name.get(r.id)!).sort(), [...expected].sort(), `SQL: ${filter}`);
    const inMemory = groups.filter((grp) => matchesFilter(parseFilter(filter), render(grp), registry, 'Group')).map((grp) => name.get(grp.id)!);
    t.same(inMemory.sort(), [...expected].sort(), `in memory: ${filter}`);
  }

  await check(`members[value eq "${u1}"]`, ['guides']);
  await check(`members.value eq "${u3}"`, ['interns']);
  await check(`members eq "${u2}"`, ['guides']);
  await check(`members[value eq "${u1}" or value eq "${u3}"]`, ['guides', 'interns']);
  await check('members pr', ['guides', 'interns']);
  await check('not (members pr)', ['empty']);
  await check('members[type eq "group"]', ['interns']);
  await check('members[type eq "User" and display co "o\'malley"]', ['guides']);
  await check('members.display sw "j"', ['guides', 'interns']);
  await check(`members.value ne "${u1}"`, ['empty', 'interns']);
  await check('members.value eq "not-a-uuid"', []);
  await check('displayName eq "tour guides"', ['guides']);
  await check('displayName sw "t" and members pr', ['guides']);
  await check('externalId pr', ['guides']);
  await check('meta.lastModified gt "2020-01-01T00:00:00Z"', ['empty', 'guides', 'interns']);

  const { rows } = await database.db.query<{ id: string }>(
    `SELECT id FROM groups u ORDER BY ${sortExpression('members.display', GROUPS, registry)} NULLS LAST, ${sortExpression('displayName', GROUPS, registry)}`,
  );
  t.same(rows.map((r) => name.get(r.id)), ['guides', 'interns', 'empty'], 'sort by a relation sub-attribute (smallest value)');
});

t.test('custom extension attributes: numbers, dateTimes, multi-valued strings, a quote in the URN', async (t) => {
  const EXT = "urn:example:params:scim:schemas:extension:o'brien:2.0:User";
  const custom = new SchemaRegistry([
    {
      id: EXT,
      resourceType: 'User',
      attributes: [
        { name: 'hireDate', type: 'dateTime' },
        { name: 'level', type: 'integer' },
        { name: 'score', type: 'decimal' },
        { name: 'tags', multiValued: true, caseExact: true },
        { name: 'flag', type: 'boolean' },
      ],
    },
  ]);
  const database = await createTestDatabase(t);
  const mk = (ext: Record<string, unknown>): UserRow => ({
    id: randomUUID(),
    userName: `u-${randomUUID()}`,
    created: '2020-01-01T00:00:00Z',
    updated: '2020-01-01T00:00:00Z',
    resource: { schemas: [USER_SCHEMA, EXT], [EXT]: ext },
  });
  const rows = [
    mk({ hireDate: '2020-01-01T00:00:00Z', level: 3, score: 1.5, tags: ['Red', 'blue'], flag: true }),
    mk({ hireDate: '2020-01-01T01:00:00.000001+01:00', level: 10, score: -2, tags: ['red'], flag: false }),
    mk({ hireDate: '2021-06-15T12:30:00', level: 0 }),
    mk({ hireDate: '2021-02-30T00:00:00Z', tags: [] }),
    mk({ hireDate: '2021-06-15t12:30:00.5z', level: '7' }),
    mk({}),
  ];
  await insertUsers(database.db, rows);
  const filters = [
    `${EXT}:hireDate eq "2020-01-01T00:00:00Z"`,
    `${EXT}:hireDate gt "2020-01-01T00:00:00Z"`,
    `${EXT}:hireDate lt "2020-01-01T00:00:00.000001Z"`,
    `${EXT}:hireDate ge "2021-06-15"`,
    `${EXT}:hireDate le "2021-06-15T12:30:00.5Z"`,
    `${EXT}:hireDate pr`,
    `${EXT}:level gt 2`,
    `${EXT}:level le "3"`,
    `${EXT}:level eq 0`,
    `${EXT}:level ne 3`,
    `${EXT}:score lt 0`,
    `${EXT}:score ge 1.5`,
    `${EXT}:tags eq "red"`,
    `${EXT}:tags eq "Red"`,
    `${EXT}:tags sw "b"`,
    `${EXT}:tags pr`,
    `not (${EXT}:tags pr)`,
    `${EXT}:flag eq false`,
    `${EXT}:flag ne true`,
  ];
  const target: SqlTarget = { ...USERS };
  for (const f of filters) {
    const params: unknown[] = [];
    const where = filterToSql(parseFilter(f), target, custom, params);
    const { rows: got } = await database.db.query<{ id: string }>(`SELECT id FROM users u WHERE deleted_at IS NULL AND (${where})`, params);
    const expected = rows.filter((r) => matchesFilter(parseFilter(f), renderUser(r), custom, 'User')).map((r) => r.id);
    t.same(got.map((r) => r.id).sort(), expected.sort(), f);
  }
  const count = async (f: string): Promise<number> => rows.filter((r) => matchesFilter(parseFilter(f), renderUser(r), custom, 'User')).length;
  t.equal(await count(`${EXT}:hireDate eq "2020-01-01T00:00:00Z"`), 1, 'an instant, not a spelling');
  t.equal(await count(`${EXT}:hireDate ge "2021-01-01"`), 2, 'no offset means UTC; an impossible date never matches');
  t.equal(await count(`${EXT}:level gt 2`), 2, 'a number stored as a string is not a number');
  t.equal(await count(`${EXT}:tags eq "red"`), 1, 'caseExact');
  const { rows: bySort } = await database.db.query<{ id: string }>(
    `SELECT id FROM users u ORDER BY ${sortExpression(`${EXT}:level`, target, custom)} DESC NULLS LAST, ${sortExpression(`${EXT}:hireDate`, target, custom)}`,
  );
  t.equal(bySort[0]!.id, rows[1]!.id, 'numeric sort');
});

t.test('matchesElement: PATCH value filters over one element', async (t) => {
  const f = parseFilter('type eq "WORK" and not (primary eq true)');
  t.equal(matchesElement(f, 'emails', { type: 'work', value: 'a@b.c' }, registry, 'User'), true);
  t.equal(matchesElement(f, 'emails', { type: 'work', primary: true }, registry, 'User'), false);
  t.equal(matchesElement(f, 'Emails', 'not an object', registry, 'User'), false);
  t.equal(matchesElement(parseFilter('value eq "x"'), 'members', { value: 'x', type: 'User' }, registry, 'Group'), true);
  invalid(t, () => matchesElement(parseFilter('nosuch pr'), 'emails', {}, registry, 'User'), /no sub-attribute/);
  invalid(t, () => matchesElement(parseFilter('value pr'), 'userName', {}, registry, 'User'), /not a complex attribute/);
});
