/**
 * Generated bad (and some good) SCIM requests through the real app and PostgreSQL: bodies for every
 * write, filters, PATCH paths, query parameters, Bulk operations, URLs and raw bodies. Whatever is
 * sent, the gateway answers without a 5xx (also inside a Bulk response) and without hanging, and every
 * 4xx is an RFC 7644 §3.12 error body.
 *
 * One run uses a fixed seed, one a fresh seed printed on failure; SCIM_FUZZ_SEED replays a reported
 * seed and SCIM_FUZZ_RUNS runs more (or fewer) requests per run.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import t, { type Test } from 'tap';
import type { InjectOptions } from 'fastify';
import { createTestDatabase } from '../../../helpers/db.js';
import { startTestGateway, userBody } from '../../../helpers/gateway.js';
import { uniqueTaskQueue } from '../../../helpers/temporal.js';

const FIXED_SEED = 7644_312;
const RUNS = Number(process.env.SCIM_FUZZ_RUNS ?? 1500);

const database = await createTestDatabase(t);
const gw = await startTestGateway(t, { database, temporalAddress: '127.0.0.1:1', taskQueue: uniqueTaskQueue(), dispatchOutbox: false });

const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const ENTERPRISE = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';
const PATCH_OP = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
const SEARCH = 'urn:ietf:params:scim:api:messages:2.0:SearchRequest';
const BULK = 'urn:ietf:params:scim:api:messages:2.0:BulkRequest';
const ERROR_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:Error';

const user = await gw.call('POST', '/scim/v2/Users', userBody('fuzz-target@example.com', { emails: [{ value: 'a@example.com', type: 'work' }] }), 201);
const group = await gw.call('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'fuzz target', members: [{ value: user.id }] }, 201);

// ------------------------------------------------------------------------------------ arbitraries

const longText = (n: number) => 'x'.repeat(n - 1) + '\u00e9';
/** Strings that have hurt before: NUL, lone surrogates, quotes, brackets, URNs, long ones. */
const nasty = fc.oneof(
  fc.constantFrom('', ' ', '\u0000', '\ud800', '\udfff', 'a\u0000b', '"', '\\', '[', ']', '.', ':', ',', '%', '%ff', 'null', 'True', '1e999', '漢字', '😀'),
  fc.constantFrom(longText(1025), longText(3000), longText(70_000)),
  fc.string({ unit: 'binary', maxLength: 6 }),
  fc.string({ maxLength: 12 }),
);
const ATTRIBUTES = [
  'userName', 'displayName', 'name', 'name.givenName', 'emails', 'emails.value', 'emails[type eq "work"]', 'emails[type eq "work"].value',
  'members', 'members.value', 'members[value eq "x"]', 'active', 'title', 'externalId', 'id', 'meta', 'meta.lastModified', 'groups', 'schemas',
  'password', 'phoneNumbers', 'x509Certificates', 'manager', ENTERPRISE, `${ENTERPRISE}:manager`, `${ENTERPRISE}:manager.value`, `${ENTERPRISE}:department`,
  'urn:x:y', 'value', 'type', 'primary', 'display', 'displayname', '$ref', 'givenName',
];
const key = fc.oneof(fc.constantFrom(...ATTRIBUTES), nasty);
const { value } = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    nasty,
    fc.integer(),
    fc.double(),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('value'), { maxLength: 3 }),
    fc.dictionary(key, tie('value'), { maxKeys: 4 }),
  ),
}));
const schemas = fc.oneof(fc.constant([USER]), fc.constant([USER, ENTERPRISE]), fc.constant([GROUP]), fc.array(nasty, { maxLength: 2 }), value);
const resource = fc
  .tuple(schemas, fc.oneof(nasty, value), fc.dictionary(key, value, { maxKeys: 5 }))
  .map(([s, userName, rest]) => ({ schemas: s, userName, displayName: userName, ...rest }));
const memberList = fc.array(fc.record({ value: fc.oneof(fc.constant(user.id as string), nasty), displayName: nasty, type: fc.constantFrom('User', 'Group', 'x') }, { requiredKeys: ['value'] }), { maxLength: 3 });
const groupBody = fc.tuple(fc.oneof(nasty, value), memberList, fc.dictionary(key, value, { maxKeys: 3 })).map(([displayName, members, rest]) => ({ schemas: [GROUP], displayName, members, ...rest }));

const FILTER_TOKENS = ['userName', 'emails', 'emails.value', 'emails[type', 'members', 'meta.created', 'active', 'title', `${ENTERPRISE}:department`, 'eq', 'ne', 'co', 'sw', 'ew', 'pr', 'gt', 'ge', 'lt', 'le', 'and', 'or', 'not', '(', ')', '[', ']', '"x"', 'true', 'null', '42', '"2024-01-01T00:00:00Z"'];
const filter = fc.array(fc.oneof(fc.constantFrom(...FILTER_TOKENS), nasty.map((s) => JSON.stringify(s)), nasty), { maxLength: 10 }).map((a) => a.join(' '));
const path = fc.oneof(fc.constantFrom(...ATTRIBUTES), filter.map((f) => `emails[${f}]`), nasty);
const patchBody = fc.record({
  schemas: fc.oneof(fc.constant([PATCH_OP]), value),
  Operations: fc.oneof(
    fc.array(fc.record({ op: fc.oneof(fc.constantFrom('add', 'remove', 'replace', 'Replace'), nasty), path, value }, { requiredKeys: ['op'] }), { maxLength: 4 }),
    value,
  ),
});
const listParams = fc.record(
  { filter, startIndex: nasty, count: fc.oneof(nasty, fc.integer().map(String)), sortBy: path, sortOrder: nasty, attributes: path, excludedAttributes: path },
  { requiredKeys: [] },
);
const ENDPOINTS = ['Users', 'users', 'Groups', 'GROUPS', 'Bulk', 'Schemas', 'ResourceTypes', 'ServiceProviderConfig', '.search', 'Me', 'nope'];

/** encodeURIComponent, except that a lone surrogate becomes its (invalid) CESU-8 bytes instead of throwing. */
const encode = (s: string) =>
  s
    .split(/(\p{Cs})/u)
    .map((part) => (/^\p{Cs}$/u.test(part) ? [...Buffer.from([0xe0 | (part.charCodeAt(0) >> 12), 0x80 | ((part.charCodeAt(0) >> 6) & 0x3f), 0x80 | (part.charCodeAt(0) & 0x3f)])].map((b) => `%${b.toString(16)}`).join('') : encodeURIComponent(part)))
    .join('');

type Req = InjectOptions & { method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'; url: string };
const json = (method: Req['method'], url: string) => (payload: unknown): Req => ({ method, url, payload: JSON.stringify(payload) });
const request: fc.Arbitrary<Req> = fc.oneof(
  resource.map(json('POST', '/scim/v2/Users')),
  groupBody.map(json('POST', '/scim/v2/Groups')),
  resource.map(json('PUT', `/scim/v2/Users/${user.id}`)),
  groupBody.map(json('PUT', `/scim/v2/Groups/${group.id}`)),
  patchBody.map(json('PATCH', `/scim/v2/Users/${user.id}`)),
  patchBody.map(json('PATCH', `/scim/v2/Groups/${group.id}`)),
  fc.tuple(fc.constantFrom('Users', 'Groups'), listParams).map(([type, params]): Req => ({
    method: 'GET',
    url: `/scim/v2/${type}?${Object.entries(params).map(([k, v]) => `${k}=${encode(v)}`).join('&')}`,
  })),
  fc.tuple(fc.constantFrom('/scim/v2/Users/.search', '/scim/v2/Groups/.search', '/scim/v2/.search'), listParams, fc.dictionary(key, value, { maxKeys: 2 })).map(
    ([url, params, extra]) => json('POST', url)({ schemas: [SEARCH], ...params, ...extra }),
  ),
  fc
    .array(fc.record({ method: fc.oneof(fc.constantFrom('POST', 'PUT', 'PATCH', 'DELETE'), nasty), path: fc.oneof(fc.constantFrom('/Users', '/Groups', `/Users/${user.id}`, `/Groups/${group.id}`, '/users', '/Users/bulkId:a'), nasty), bulkId: fc.oneof(fc.constantFrom('a', 'b'), nasty), data: fc.oneof(resource, groupBody, patchBody, value) }, { requiredKeys: ['method', 'path'] }), { maxLength: 4 })
    .map((ops) => json('POST', '/scim/v2/Bulk')({ schemas: [BULK], Operations: ops })),
  fc.tuple(fc.constantFrom(...ENDPOINTS), fc.array(fc.oneof(nasty.map(encode), fc.constantFrom('%ff', '%', '%00', user.id as string, 'a'.repeat(600))), { maxLength: 2 }), fc.constantFrom('GET', 'DELETE', 'PUT', 'PATCH') as fc.Arbitrary<Req['method']>).map(
    ([endpoint, segments, method]): Req => ({ method, url: ['/scim/v2', endpoint, ...segments].join('/') }),
  ),
  fc.tuple(fc.string({ maxLength: 40 }), fc.constantFrom('application/scim+json', 'application/json', 'text/plain', 'application/xml', 'application/x-www-form-urlencoded'), fc.constantFrom('/scim/v2/Users', '/scim/v2/Bulk', `/scim/v2/Users/${user.id}`)).map(
    ([payload, contentType, url]): Req => ({ method: url.endsWith(user.id as string) ? 'PATCH' : 'POST', url, payload, headers: { 'content-type': contentType } }),
  ),
);

// ------------------------------------------------------------------------------------- property

const answersWell = fc.asyncProperty(request, async (req) => {
  const res = await gw.scim(req);
  assert.ok(res.statusCode < 500, `${req.method} ${req.url} answered ${res.statusCode}: ${res.body.slice(0, 500)}`);
  if (res.statusCode === 200 && /\/bulk$/i.test(req.url)) {
    // A Bulk response is 200 whatever its operations did: each one must be below 500 too.
    for (const op of res.json<{ Operations: Array<{ status: string; response?: unknown }> }>().Operations) {
      assert.ok(Number(op.status) < 500, `${req.method} ${req.url}: an operation answered ${op.status}: ${JSON.stringify(op.response)} for ${typeof req.payload === 'string' ? req.payload.slice(0, 500) : ''}`);
    }
  }
  // Dot segments (`/scim/v2/x/../..`) are resolved before routing and may leave /scim/v2.
  const underScim = /^\/scim\/v2(\/|$)/i.test(new URL(req.url, 'http://localhost').pathname);
  if (res.statusCode >= 400 && underScim) {
    assert.match(String(res.headers['content-type']), /^application\/scim\+json/, `${req.method} ${req.url}: ${res.statusCode} is not application/scim+json`);
    const body = res.json<{ schemas?: unknown; status?: unknown; detail?: unknown }>();
    assert.deepEqual(body.schemas, [ERROR_SCHEMA], `${req.method} ${req.url}: not a SCIM error body: ${res.body.slice(0, 300)}`);
    assert.equal(body.status, String(res.statusCode), `${req.method} ${req.url}: status member`);
  }
});

async function run(t: Test, seed: number): Promise<void> {
  try {
    await fc.assert(answersWell, { seed, numRuns: RUNS, endOnFailure: true });
    t.pass(`${RUNS} generated requests with seed ${seed}`);
  } catch (err) {
    t.fail(`seed ${seed} (replay with SCIM_FUZZ_SEED=${seed}): ${(err as Error).message}`);
  }
}

const replay = process.env.SCIM_FUZZ_SEED;
if (replay !== undefined) {
  t.test(`replay of seed ${replay}`, (t) => run(t, Number(replay)));
} else {
  t.test('fixed seed', (t) => run(t, FIXED_SEED));
  const seed = Math.floor(Math.random() * 2 ** 31);
  t.test(`random seed ${seed}`, (t) => run(t, seed));
}
