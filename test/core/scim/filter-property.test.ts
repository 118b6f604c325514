/**
 * Property: for random directories and random filters, the SQL translation (run on PostgreSQL) and
 * the in-memory evaluator select exactly the same resources. Failures print fast-check's seed and
 * counterexample; the seeds below make every run reproducible.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import t from 'tap';
import { ScimError } from '../../../core/scim/errors.js';
import { filterToSql, foldCase, matchesFilter, parseFilter, type SqlTarget } from '../../../core/scim/filter/index.js';
import { ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, SchemaRegistry, USER_SCHEMA } from '../../../core/scim/schemas.js';
import { GROUP_TARGET, USER_TARGET } from '../../../core/directory/store.js';
import { createTestDatabase } from '../../helpers/db.js';

// FILTER_PROPERTY_SEED / FILTER_PROPERTY_RUNS replay a reported failure or soak with more runs.
const SEED = Number(process.env.FILTER_PROPERTY_SEED ?? 7644_3422);
const RUNS = Number(process.env.FILTER_PROPERTY_RUNS ?? 400);
const USER_COUNT = 200;
const GROUP_COUNT = 40;

const ENT = ENTERPRISE_USER_SCHEMA;
const EXT = 'urn:example:params:scim:schemas:extension:property:2.0:User';
const registry = new SchemaRegistry();
const customRegistry = new SchemaRegistry([
  {
    id: EXT,
    resourceType: 'User',
    attributes: [
      { name: 'hireDate', type: 'dateTime' },
      { name: 'level', type: 'integer' },
      { name: 'score', type: 'decimal' },
      { name: 'tags', multiValued: true, caseExact: true },
    ],
  },
]);

// The targets the directory itself uses, so these tests cover the production SQL.
const USERS: SqlTarget = USER_TARGET;
const GROUPS: SqlTarget = GROUP_TARGET;

// ---------------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------------

// Mixed case, LIKE metacharacters, quotes, backslashes, letters whose case mapping is special
// (ß/ẞ, final sigma, dotted/dotless i, titlecase ǅ), astral and high-BMP code points (ordering).
const CHARS = [
  ...'abBeEjJoOxXz05 ',
  '%', '_', '\\', "'", '"', '@', '.', '-', '(', ']',
  'é', 'É', 'ö', 'Ö', 'ß', 'ẞ', 'Σ', 'σ', 'ς', 'İ', 'ı', 'i', 'I', 'Ж', 'ж', 'ǅ', '漢', '😀', '𐐀', 'Ａ', 'ａ', '\uE000', '\uFFFD',
];
const str = fc.array(fc.constantFrom(...CHARS), { maxLength: 7 }).map((a) => a.join(''));
const maybe = <T>(a: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(a, { nil: undefined, freq: 4 });
const EPOCH_2000 = Date.UTC(2000, 0, 1);
const EPOCH_2030 = Date.UTC(2030, 0, 1);

const emailArb = fc.record(
  {
    value: fc.tuple(str, fc.constantFrom('@example.com', '@Example.COM', '@foo.org', '')).map(([a, b]) => a + b),
    type: fc.constantFrom('work', 'home', 'Work', 'other'),
    primary: fc.boolean(),
    display: str,
  },
  { requiredKeys: [] },
);

const userArb = fc.record({
  userName: str,
  displayName: maybe(str),
  title: maybe(fc.oneof(str, fc.constant(''), fc.constant(null))),
  userType: maybe(fc.constantFrom('Employee', 'employee', 'EMPLOYEE', 'Intern', 'Contractor', '')),
  active: fc.boolean(),
  name: maybe(fc.oneof(fc.constant({}), fc.record({ givenName: str, familyName: str }, { requiredKeys: [] }))),
  emails: maybe(fc.array(emailArb, { maxLength: 3 })),
  externalId: maybe(str),
  enterprise: maybe(fc.record({ department: str, manager: fc.record({ value: str }, { requiredKeys: [] }) }, { requiredKeys: [] })),
  extension: maybe(
    fc.record(
      {
        hireDate: fc.oneof(
          fc.integer({ min: EPOCH_2000, max: EPOCH_2030 }).map((ms) => new Date(ms).toISOString()),
          fc.tuple(fc.integer({ min: EPOCH_2000, max: EPOCH_2030 }), fc.integer({ min: 0, max: 999 })).map(([ms, us]) => micros(ms, us)),
          fc.integer({ min: EPOCH_2000, max: EPOCH_2030 }).map((ms) => `${new Date(ms).toISOString().slice(0, 19)}-07:00`),
          fc.constantFrom('2020-02-29T10:00:00+05:30', '2021-02-29T10:00:00Z', '2020-01-01t00:00:00z', '2020-01-01T00:00:00', 'soon', '2020-01-01T00:00:00.1234567Z'),
        ),
        level: fc.oneof(fc.integer({ min: -5, max: 20 }), fc.constant('7')),
        score: fc.double({ min: -10, max: 10, noNaN: true, noDefaultInfinity: true }).map((x) => Math.round(x * 100) / 100),
        tags: fc.array(str, { maxLength: 3 }),
      },
      { requiredKeys: [] },
    ),
  ),
  schemaSpelling: fc.constantFrom('canonical', 'upper', 'core-only'),
  createdMs: fc.integer({ min: EPOCH_2000, max: EPOCH_2030 }),
  createdMicros: fc.integer({ min: 0, max: 999 }),
  updatedDelta: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 86_400_000 })),
});

type Rendered = Record<string, unknown> & { id: string };

/** ISO text with microseconds, as the columns will hold it. */
function micros(ms: number, us: number): string {
  return `${new Date(ms).toISOString().slice(0, -1)}${String(us).padStart(3, '0')}Z`;
}

// ---------------------------------------------------------------------------------------------
// Filters
// ---------------------------------------------------------------------------------------------

const CORE = USER_SCHEMA;

/** Mixes the case of a name or operator, as sloppy clients do. */
const spelled = (s: string): fc.Arbitrary<string> => fc.constantFrom(s, s.toUpperCase(), s.toLowerCase(), s[0]!.toUpperCase() + s.slice(1));

/** A value drawn from what is stored (mutated), or random. */
function textValue(pool: string[]): fc.Arbitrary<string> {
  const stored = pool.length > 0 ? fc.constantFrom(...pool) : str;
  return fc.oneof(
    { weight: 3, arbitrary: stored },
    { weight: 1, arbitrary: stored.map((v) => v.toUpperCase()) },
    { weight: 1, arbitrary: stored.map((v) => foldCase(v)) },
    {
      weight: 2,
      arbitrary: fc.tuple(stored, fc.nat(), fc.nat()).map(([v, a, b]) => {
        const cps = Array.from(v);
        const from = cps.length ? a % cps.length : 0;
        return cps.slice(from, from + 1 + (b % 4)).join('');
      }),
    },
    { weight: 1, arbitrary: str },
  );
}

/** A comparison value as text: JSON-quoted, or bare when it reads back the same (an IdP quirk). */
function quoted(v: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return fc.tuple(v, fc.boolean()).map(([s, bare]) => (bare && /^[^\s()[\]"]+$/.test(s) && s !== 'null' && !s.startsWith('.') ? s : JSON.stringify(s)));
}

const TEXT_OPS = ['eq', 'ne', 'co', 'sw', 'ew', 'gt', 'ge', 'lt', 'le'];
const ORDER_OPS = ['eq', 'ne', 'gt', 'ge', 'lt', 'le'];

function compare(paths: string[], ops: string[], value: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return fc
    .tuple(fc.constantFrom(...paths), fc.constantFrom(...ops).chain(spelled), value)
    .map(([p, op, v]) => `${p} ${op} ${v}`);
}

/** Random and/or/not combinations of atoms, with and without parentheses. */
function combine(atom: fc.Arbitrary<string>, depth: number): fc.Arbitrary<string> {
  if (depth === 0) return atom;
  const sub = combine(atom, depth - 1);
  return fc.oneof(
    { weight: 4, arbitrary: atom },
    { weight: 2, arbitrary: fc.tuple(sub, fc.constantFrom('and', 'AND', 'or', 'Or'), sub).map(([a, op, b]) => `${a} ${op} ${b}`) },
    { weight: 1, arbitrary: fc.tuple(sub, fc.constantFrom('and', 'or'), sub).map(([a, op, b]) => `(${a}) ${op} (${b})`) },
    { weight: 1, arbitrary: fc.tuple(fc.constantFrom('not', 'NOT', 'Not'), sub).map(([not, a]) => `${not} (${a})`) },
  );
}

function dateValues(instants: string[]): fc.Arbitrary<string> {
  const base = fc.constantFrom(...instants).map((s) => new Date(s).getTime());
  return fc.oneof(
    fc.constantFrom(...instants),
    fc.tuple(base, fc.integer({ min: -2, max: 2 })).map(([ms, d]) => new Date(ms + d).toISOString()),
    fc.tuple(base, fc.integer({ min: 0, max: 999 })).map(([ms, us]) => micros(ms, us)),
    base.map((ms) => new Date(ms).toISOString().replace('Z', '+00:00').replace('T', ' ')),
    base.map((ms) => {
      const shifted = new Date(ms + 2 * 3_600_000).toISOString();
      return `${shifted.slice(0, 19)}+02:00`;
    }),
    base.map((ms) => new Date(ms).toISOString().slice(0, 10)),
  ).map((s) => JSON.stringify(s));
}

// ---------------------------------------------------------------------------------------------
// The properties
// ---------------------------------------------------------------------------------------------

interface Outcome {
  runs: number;
  rejected: number;
  nontrivial: number;
}

/** SQL and memory agree on one filter; a filter refused by one side must be refused identically by the other. */
async function agree(
  text: string,
  query: (where: string, params: unknown[]) => Promise<string[]>,
  rendered: Rendered[],
  target: SqlTarget,
  reg: SchemaRegistry,
  outcome: Outcome,
): Promise<void> {
  outcome.runs++;
  const ast = parseFilter(text);
  const params: unknown[] = [];
  let where: string | undefined;
  let sqlError: unknown;
  let memory: string[] | undefined;
  let memoryError: unknown;
  try {
    where = filterToSql(ast, target, reg, params);
  } catch (err) {
    sqlError = err;
  }
  try {
    memory = rendered
      .filter((r) => matchesFilter(ast, r, reg, target.resourceType))
      .map((r) => r.id)
      .sort();
  } catch (err) {
    memoryError = err;
  }
  if (sqlError || memoryError) {
    assert.ok(sqlError instanceof ScimError && memoryError instanceof ScimError, `only one side refused: ${String(sqlError ?? memoryError)}`);
    assert.equal(sqlError.detail, memoryError.detail);
    assert.equal(sqlError.scimType, 'invalidFilter');
    outcome.rejected++;
    return;
  }
  const fromSql = (await query(where!, params)).sort();
  assert.deepEqual(fromSql, memory, `filter ${text}\nSQL ${where!}\nparams ${JSON.stringify(params)}`);
  if (fromSql.length > 0 && fromSql.length < rendered.length) outcome.nontrivial++;
}

t.test('users: SQL and in-memory evaluation agree', async (t) => {
  const database = await createTestDatabase(t);
  const db = database.db;

  const users = fc.sample(fc.array(userArb, { minLength: USER_COUNT, maxLength: USER_COUNT }), { seed: SEED, numRuns: 1 })[0]!;
  const seen = new Set<string>();
  for (const [i, u] of users.entries()) {
    let userName = u.userName;
    // userName is unique case-insensitively (the lower(user_name) index).
    if (seen.has(foldCase(userName))) userName = `${userName}#${i}`;
    seen.add(foldCase(userName));
    const schemas = u.schemaSpelling === 'core-only' ? [USER_SCHEMA] : [USER_SCHEMA, u.schemaSpelling === 'upper' ? ENT.toUpperCase() : ENT, EXT];
    const resource: Record<string, unknown> = { schemas, userName, active: u.active };
    for (const key of ['displayName', 'title', 'userType', 'name', 'emails', 'externalId'] as const) {
      if (u[key] !== undefined) resource[key] = u[key];
    }
    if (u.enterprise) resource[ENT] = u.enterprise;
    if (u.extension) resource[EXT] = u.extension;
    const created = micros(u.createdMs, u.createdMicros);
    const updated = micros(u.createdMs + u.updatedDelta, u.updatedDelta === 0 ? u.createdMicros : (u.createdMicros * 7) % 1000);
    await db.query(
      `INSERT INTO users (id, user_name, external_id, display_name, active, resource, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
      [randomUUID(), userName, u.externalId ?? null, u.displayName ?? null, u.active, JSON.stringify(resource), created, updated],
    );
  }
  // Resources that break the schema (as old or hand-edited rows might): evaluation must still
  // agree, never raise, and treat values of the wrong type as no value.
  const odd: Array<Record<string, unknown>> = [
    { emails: ['x@example.com', null, { value: 'ok@example.com', type: 'work' }, 5, [{ value: 'nested@example.com' }]] },
    { name: 'Barbara', title: 42, displayName: true, userType: ['Employee'] },
    { schemas: [5, USER_SCHEMA, null], [ENT]: 'not an object', emails: { value: 'not-array@example.com', type: 'work' } },
    { name: { givenName: ['Barbara'], familyName: { x: 1 } }, [ENT]: { department: 7, manager: 'boss' }, title: {} },
    { emails: [{ value: 5, type: true, primary: 'true', display: null }], [EXT]: { level: '7', tags: 'red', hireDate: 20200101, score: true } },
    { emails: [{}], name: {}, title: [], [EXT]: { tags: [1, 'red', null], level: 1e300, hireDate: '2020-01-01T00:00:00+15:00' } },
  ];
  for (const [i, extra] of odd.entries()) {
    const resource = { schemas: [USER_SCHEMA, ENT], userName: `odd-${i}`, active: true, ...extra };
    await db.query('INSERT INTO users (id, user_name, active, resource, created_at, updated_at) VALUES ($1, $2, true, $3, now(), now())', [
      randomUUID(),
      `odd-${i}`,
      JSON.stringify(resource),
    ]);
  }
  // Rendered the way the gateway renders: what PostgreSQL returns, plus id and meta.
  const { rows } = await db.query<{ id: string; resource: Record<string, unknown>; created_at: Date; updated_at: Date }>(
    'SELECT id, resource, created_at, updated_at FROM users',
  );
  const rendered: Rendered[] = rows.map((r) => ({
    ...r.resource,
    id: r.id,
    meta: {
      resourceType: 'User',
      created: r.created_at.toISOString(),
      lastModified: r.updated_at.toISOString(),
      location: `https://example.com/scim/v2/Users/${r.id}`,
      version: 'W/"1"',
    },
  }));
  const query = async (where: string, params: unknown[]): Promise<string[]> =>
    (await db.query<{ id: string }>(`SELECT id FROM users u WHERE deleted_at IS NULL AND (${where})`, params)).rows.map((r) => r.id);

  // Values to compare with, from the stored data.
  const collect = (read: (r: Rendered) => unknown): string[] => {
    const out = new Set<string>();
    const add = (v: unknown): void => {
      if (Array.isArray(v)) v.forEach(add);
      else if (typeof v === 'string') out.add(v);
    };
    rendered.forEach((r) => add(read(r)));
    return [...out];
  };
  const get = (r: Rendered, ...keys: string[]): unknown => keys.reduce<unknown>((o, k) => (o && typeof o === 'object' && !Array.isArray(o) ? (o as Record<string, unknown>)[k] : undefined), r);
  const emails = (r: Rendered, key: string): unknown => (Array.isArray(r.emails) ? r.emails.map((e: unknown) => get({ id: '', e }, 'e', key)) : undefined);
  const meta = (r: Rendered, k: string): unknown => get(r, 'meta', k);
  const instants = [...collect((r) => meta(r, 'created')), ...collect((r) => meta(r, 'lastModified'))];

  const text = (paths: string[], pool: string[]): fc.Arbitrary<string> => compare(paths, TEXT_OPS, quoted(textValue(pool)));
  const textAtoms = [
    text(['userName', 'USERNAME', 'username', `${CORE}:userName`, `${CORE}:UserName`], collect((r) => r.userName)),
    text(['displayName', 'DisplayName'], collect((r) => r.displayName)),
    text(['title', 'TITLE', `${CORE}:title`], collect((r) => r.title)),
    text(['userType', 'usertype'], collect((r) => r.userType)),
    text(['name.givenName', 'NAME.GIVENNAME', `${CORE}:name.givenName`], collect((r) => get(r, 'name', 'givenName'))),
    text(['name.familyName', 'name.FamilyName'], collect((r) => get(r, 'name', 'familyName'))),
    text(['emails', 'Emails', 'emails.value', 'EMAILS.VALUE'], collect((r) => emails(r, 'value'))),
    text(['emails.type', 'emails.TYPE'], collect((r) => emails(r, 'type'))),
    text(['emails.display'], collect((r) => emails(r, 'display'))),
    text(['externalId', 'EXTERNALID'], collect((r) => r.externalId)),
    text(['id', 'ID'], collect((r) => r.id)),
    text([`${ENT}:department`, `${ENT.toUpperCase()}:DEPARTMENT`], collect((r) => get(r, ENT, 'department'))),
    text([`${ENT}:manager.value`, `${ENT}:Manager.Value`], collect((r) => get(r, ENT, 'manager', 'value'))),
    text(['schemas', 'SCHEMAS'], [USER_SCHEMA, ENT, EXT, 'urn:ietf:params:scim:schemas']),
    text(['meta.resourceType'], ['User', 'user', 'Group']),
  ];
  const booleanAtoms = [
    compare(['active', 'ACTIVE', `${CORE}:active`, 'emails.primary'], ['eq', 'ne'], fc.constantFrom('true', 'false', '"True"', '"FALSE"', 'True')),
  ];
  const dateAtoms = [compare(['meta.created', 'meta.lastModified', 'META.LASTMODIFIED', `${CORE}:meta.created`], ORDER_OPS, dateValues(instants))];
  const presence = fc
    .constantFrom(
      'title', 'displayName', 'userType', 'name', 'NAME', 'name.givenName', 'name.familyName', 'emails', 'emails.value', 'emails.type',
      'emails.primary', 'emails.display', 'externalId', `${ENT}:department`, `${ENT}:manager`, `${ENT}:manager.value`, 'active', 'meta',
      'meta.created', 'id', 'userName', 'schemas',
    )
    .chain((p) => spelled('pr').map((pr) => `${p} ${pr}`));
  const emailInner = combine(
    fc.oneof(
      compare(['type', 'TYPE'], TEXT_OPS, quoted(textValue(collect((r) => emails(r, 'type'))))),
      compare(['value', 'Value'], TEXT_OPS, quoted(textValue(collect((r) => emails(r, 'value'))))),
      compare(['display'], TEXT_OPS, quoted(textValue(collect((r) => emails(r, 'display'))))),
      compare(['primary'], ['eq', 'ne'], fc.constantFrom('true', 'false')),
      fc.constantFrom('value pr', 'type pr', 'primary pr', 'display pr'),
    ),
    2,
  );
  const nameInner = combine(
    fc.oneof(
      compare(['givenName'], TEXT_OPS, quoted(textValue(collect((r) => get(r, 'name', 'givenName'))))),
      compare(['familyName'], TEXT_OPS, quoted(textValue(collect((r) => get(r, 'name', 'familyName'))))),
      fc.constantFrom('givenName pr', 'familyName pr'),
    ),
    1,
  );
  const valuePaths = fc.oneof(
    fc.tuple(fc.constantFrom('emails', 'EMAILS'), emailInner).map(([p, f]) => `${p}[${f}]`),
    nameInner.map((f) => `name[${f}]`),
    fc.tuple(fc.constantFrom(...instants), fc.constantFrom('gt', 'le')).map(([v, op]) => `meta[lastModified ${op} "${v}"]`),
  );
  const atom = fc.oneof(
    { weight: 8, arbitrary: fc.oneof(...textAtoms) },
    { weight: 2, arbitrary: fc.oneof(...booleanAtoms) },
    { weight: 2, arbitrary: fc.oneof(...dateAtoms) },
    { weight: 2, arbitrary: presence },
    { weight: 3, arbitrary: valuePaths },
  );
  const filters = combine(atom, 3);

  const outcome: Outcome = { runs: 0, rejected: 0, nontrivial: 0 };
  const started = Date.now();
  await fc.assert(
    fc.asyncProperty(filters, (f) => agree(f, query, rendered, USERS, registry, outcome)),
    { seed: SEED, numRuns: RUNS },
  );
  t.pass(`${RUNS} random filters agree over ${rendered.length} users (${Date.now() - started} ms)`);
  t.ok(outcome.nontrivial > outcome.runs * 0.3, `filters select some but not all users in ${outcome.nontrivial}/${outcome.runs} runs`);
  t.ok(outcome.rejected < outcome.runs * 0.05, `few generated filters are refused (${outcome.rejected}), identically by both sides`);

  // Extension attributes with numbers, dateTimes and a multi-valued caseExact string, in jsonb.
  const extAtoms = fc.oneof(
    compare([`${EXT}:hireDate`], ORDER_OPS, dateValues(collect((r) => get(r, EXT, 'hireDate')).filter((s) => !Number.isNaN(Date.parse(s))))),
    compare([`${EXT}:level`, `${EXT}:LEVEL`], ORDER_OPS, fc.oneof(fc.integer({ min: -6, max: 21 }).map(String), fc.constantFrom('"7"', '7.5', '-0'))),
    compare([`${EXT}:score`], ORDER_OPS, fc.double({ min: -11, max: 11, noNaN: true, noDefaultInfinity: true }).map((x) => String(Math.round(x * 100) / 100))),
    compare([`${EXT}:tags`], TEXT_OPS, quoted(textValue(collect((r) => get(r, EXT, 'tags'))))),
    fc.constantFrom(`${EXT}:hireDate pr`, `${EXT}:level pr`, `${EXT}:tags pr`, `${EXT}:score pr`),
    fc.oneof(...textAtoms),
  );
  const extOutcome: Outcome = { runs: 0, rejected: 0, nontrivial: 0 };
  await fc.assert(
    fc.asyncProperty(combine(extAtoms, 2), (f) => agree(f, query, rendered, USERS, customRegistry, extOutcome)),
    { seed: SEED + 1, numRuns: Math.ceil(RUNS * 0.4) },
  );
  t.pass(`${Math.ceil(RUNS * 0.4)} random filters on extension attributes agree`);
  t.ok(extOutcome.nontrivial > extOutcome.runs * 0.3, `extension filters select some but not all users in ${extOutcome.nontrivial}/${extOutcome.runs} runs`);
});

t.test('groups: members through the relation agree with rendered members', async (t) => {
  const database = await createTestDatabase(t);
  const db = database.db;
  const userIds = Array.from({ length: 30 }, () => randomUUID());
  const groupIds = Array.from({ length: GROUP_COUNT }, () => randomUUID());
  const groupArb = fc.record({
    displayName: str,
    externalId: maybe(str),
    members: fc.uniqueArray(
      fc.record({
        member: fc.oneof(fc.constantFrom(...userIds).map((id) => ({ value: id, type: 'User' })), fc.constantFrom(...groupIds).map((id) => ({ value: id, type: 'Group' }))),
        display: maybe(str),
      }),
      { maxLength: 5, selector: (m) => m.member.value },
    ),
  });
  const groups = fc.sample(fc.array(groupArb, { minLength: GROUP_COUNT, maxLength: GROUP_COUNT }), { seed: SEED + 2, numRuns: 1 })[0]!;
  // Members must be live users and groups (a trigger refuses anything else), so they exist first.
  for (const [i, id] of userIds.entries()) {
    await db.query(`INSERT INTO users (id, user_name, resource) VALUES ($1, $2, '{}')`, [id, `member.${i}@example.com`]);
  }
  const seen = new Set<string>();
  for (const [i, g] of groups.entries()) {
    const displayName = seen.has(foldCase(g.displayName)) ? `${g.displayName}#${i}` : g.displayName;
    seen.add(foldCase(displayName));
    const id = groupIds[i]!;
    await db.query('INSERT INTO groups (id, display_name, external_id, resource, created_at) VALUES ($1, $2, $3, $4, $5)', [
      id,
      displayName,
      g.externalId ?? null,
      JSON.stringify({ schemas: [GROUP_SCHEMA], displayName, ...(g.externalId !== undefined ? { externalId: g.externalId } : {}) }),
      new Date(EPOCH_2000 + i * 3_600_000).toISOString(),
    ]);
  }
  for (const [i, g] of groups.entries()) {
    for (const m of g.members) {
      await db.query('INSERT INTO group_members (group_id, member_id, member_type, display) VALUES ($1, $2, $3, $4)', [groupIds[i], m.member.value, m.member.type, m.display ?? null]);
    }
  }
  const { rows } = await db.query<{ id: string; resource: Record<string, unknown>; created_at: Date; updated_at: Date }>('SELECT id, resource, created_at, updated_at FROM groups');
  const { rows: memberRows } = await db.query<{ group_id: string; member_id: string; member_type: string; display: string | null }>(
    'SELECT group_id, member_id, member_type, display FROM group_members ORDER BY added_at, member_id',
  );
  const rendered: Rendered[] = rows.map((r) => {
    const members = memberRows
      .filter((m) => m.group_id === r.id)
      .map((m) => ({ value: m.member_id, type: m.member_type, ...(m.display !== null ? { display: m.display } : {}) }));
    return {
      ...r.resource,
      id: r.id,
      ...(members.length > 0 ? { members } : {}),
      meta: { resourceType: 'Group', created: r.created_at.toISOString(), lastModified: r.updated_at.toISOString() },
    };
  });
  const query = async (where: string, params: unknown[]): Promise<string[]> =>
    (await db.query<{ id: string }>(`SELECT id FROM groups u WHERE deleted_at IS NULL AND (${where})`, params)).rows.map((r) => r.id);

  const ids = [...userIds, ...groupIds];
  const idValue = fc.oneof(fc.constantFrom(...ids), fc.constantFrom(...ids).map((s) => s.toUpperCase()), fc.constantFrom(...ids).map((s) => s.slice(0, 4)), fc.constant('not-a-uuid'));
  const displays = memberRows.flatMap((m) => (m.display !== null ? [m.display] : []));
  const memberAtom = fc.oneof(
    compare(['value', 'VALUE'], TEXT_OPS, quoted(idValue)),
    compare(['type'], ['eq', 'ne', 'sw'], fc.constantFrom('"User"', '"group"', 'Group')),
    compare(['display'], TEXT_OPS, quoted(textValue(displays))),
    fc.constantFrom('value pr', 'display pr', 'type pr'),
  );
  const atom = fc.oneof(
    fc.tuple(fc.constantFrom('members', 'Members'), combine(memberAtom, 2)).map(([p, f]) => `${p}[${f}]`),
    compare(['members', 'members.value', 'MEMBERS.value'], TEXT_OPS, quoted(idValue)),
    compare(['members.display'], TEXT_OPS, quoted(textValue(displays))),
    compare(['members.type'], ['eq', 'ne'], fc.constantFrom('"User"', '"Group"')),
    fc.constantFrom('members pr', 'members.display pr', 'externalId pr', 'displayName pr'),
    compare(['displayName', 'DISPLAYNAME'], TEXT_OPS, quoted(textValue(rendered.map((r) => r.displayName as string)))),
    compare(['externalId'], TEXT_OPS, quoted(textValue(rendered.flatMap((r) => (typeof r.externalId === 'string' ? [r.externalId] : []))))),
    compare(['id'], ['eq', 'ne'], quoted(fc.constantFrom(...groupIds))),
    compare(['meta.created'], ORDER_OPS, dateValues(rendered.map((r) => (r.meta as { created: string }).created))),
  );
  const outcome: Outcome = { runs: 0, rejected: 0, nontrivial: 0 };
  await fc.assert(
    fc.asyncProperty(combine(atom, 2), (f) => agree(f, query, rendered, GROUPS, registry, outcome)),
    { seed: SEED + 3, numRuns: Math.ceil(RUNS * 0.4) },
  );
  t.pass(`${Math.ceil(RUNS * 0.4)} random filters agree over ${rendered.length} groups`);
  t.ok(outcome.nontrivial > outcome.runs * 0.3, `filters select some but not all groups in ${outcome.nontrivial}/${outcome.runs} runs`);
});
