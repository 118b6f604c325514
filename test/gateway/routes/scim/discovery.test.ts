import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { MAX_RESULTS } from '../../../../core/scim/list.js';
import { createTestDatabase } from '../../../helpers/db.js';
import { startTestGateway } from '../../../helpers/gateway.js';
import { uniqueTaskQueue } from '../../../helpers/temporal.js';

const FIXTURES = fileURLToPath(new URL('../../../fixtures/rfc7643-7644/', import.meta.url));
const HAVE_FIXTURES = existsSync(FIXTURES);
/** A fixture as parsed JSON (loosely typed, like a response body). */
const fixture = (name: string) => JSON.parse(readFileSync(`${FIXTURES}${name}`, 'utf8'));

/** An attribute as /Schemas publishes it. */
interface PublishedAttribute {
  name: string;
  type: string;
  subAttributes?: PublishedAttribute[];
  [characteristic: string]: unknown;
}

const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const ENTERPRISE = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';
const LIST = 'urn:ietf:params:scim:api:messages:2.0:ListResponse';
const ERROR = 'urn:ietf:params:scim:api:messages:2.0:Error';
const BASE = 'http://localhost:80/scim/v2';

const database = await createTestDatabase(t);
const gw = await startTestGateway(t, { database, temporalAddress: '127.0.0.1:1', taskQueue: uniqueTaskQueue(), dispatchOutbox: false });

/** Discovery needs no token: every request here is sent without one. */
async function get(url: string, g = gw) {
  const res = await g.scim({ method: 'GET', url: `/scim/v2${url}`, token: null });
  return { status: res.statusCode, body: res.json(), type: res.headers['content-type'] };
}

t.test('GET /ServiceProviderConfig has the RFC 7643 §8.5 structure and tells the truth', async (t) => {
  const { status, body, type } = await get('/ServiceProviderConfig');
  t.equal(status, 200);
  t.match(type, /^application\/scim\+json/);
  if (HAVE_FIXTURES) {
    const example = fixture('rfc7643-8.5-service_provider_configuration.json');
    t.same(Object.keys(body).sort(), Object.keys(example).sort(), 'the same top-level keys as RFC 7643 §8.5');
    for (const feature of ['patch', 'bulk', 'filter', 'changePassword', 'sort', 'etag']) {
      t.same(Object.keys(body[feature]).sort(), Object.keys(example[feature]).sort(), `${feature} has the RFC's keys`);
    }
    const schemeKeys = new Set(Object.keys(example.authenticationSchemes[0]));
    for (const key of Object.keys(body.authenticationSchemes[0])) t.ok(schemeKeys.has(key), `authenticationSchemes.${key} is an RFC key`);
  }
  t.same(body.schemas, ['urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig']);
  t.same(body.patch, { supported: true });
  t.same(body.bulk, { supported: true, maxOperations: 1000, maxPayloadSize: 1048576 }, 'the defaults');
  t.same(body.filter, { supported: true, maxResults: MAX_RESULTS });
  t.equal(MAX_RESULTS, 1000);
  t.same(body.changePassword, { supported: false }, 'passwords are never stored');
  t.same(body.sort, { supported: true });
  t.same(body.etag, { supported: true });
  t.equal(body.authenticationSchemes.length, 1);
  t.match(body.authenticationSchemes[0], { type: 'oauthbearertoken', primary: true, name: String, description: String, specUri: String });
  t.equal(body.documentationUri, 'http://localhost:80/docs');
  t.same(body.meta, { resourceType: 'ServiceProviderConfig', location: `${BASE}/ServiceProviderConfig` });
});

t.test('the configured bulk limits and PUBLIC_URL are advertised', async (t) => {
  const other = await startTestGateway(t, {
    database,
    temporalAddress: '127.0.0.1:1',
    taskQueue: uniqueTaskQueue(),
    dispatchOutbox: false,
    env: { SCIM_BULK_MAX_OPERATIONS: '50', SCIM_BULK_MAX_PAYLOAD_BYTES: '65536', PUBLIC_URL: 'https://scim.example.com/' },
  });
  const { body } = await get('/ServiceProviderConfig', other);
  if ('scimBulkMaxOperations' in other.config) {
    t.same(body.bulk, { supported: true, maxOperations: 50, maxPayloadSize: 65536 });
  } else {
    t.same(body.bulk, { supported: true, maxOperations: 1000, maxPayloadSize: 1048576 }, 'no bulk settings in the configuration: defaults');
  }
  t.equal(body.meta.location, 'https://scim.example.com/scim/v2/ServiceProviderConfig');
  t.equal(body.documentationUri, 'https://scim.example.com/docs');
  const rt = await get('/ResourceTypes/User', other);
  t.equal(rt.body.meta.location, 'https://scim.example.com/scim/v2/ResourceTypes/User');
});

t.test('GET /ResourceTypes: a ListResponse as in RFC 7644 §4', async (t) => {
  const { status, body } = await get('/ResourceTypes');
  t.equal(status, 200);
  t.same(body.schemas, [LIST]);
  t.equal(body.totalResults, 2);
  t.equal(body.itemsPerPage, 2);
  t.equal(body.startIndex, 1);
  t.same(body.Resources.map((r: { id: string }) => r.id), ['User', 'Group']);
  if (HAVE_FIXTURES) {
    const example = fixture('rfc7644-4-list_response-resource_types.json');
    t.same(Object.keys(body).sort(), Object.keys(example).sort(), 'the RFC example has the same keys');
    const user = fixture('rfc7643-8.6-resource_type-user.json');
    const group = fixture('rfc7643-8.6-resource_type-group.json');
    t.same(body.Resources[0], {
      ...user,
      // Deviation: the Enterprise extension is optional here; RFC 7643 §8.6's example makes it required.
      schemaExtensions: [{ schema: ENTERPRISE, required: false }],
      meta: { ...user.meta, location: `${BASE}/ResourceTypes/User` },
    });
    t.same(body.Resources[1], { ...group, meta: { ...group.meta, location: `${BASE}/ResourceTypes/Group` } }, 'no schemaExtensions when there are none, as in the RFC');
  }
});

t.test('GET /ResourceTypes/:id', async (t) => {
  const user = await get('/ResourceTypes/User');
  t.equal(user.status, 200);
  t.same(user.body.schemas, ['urn:ietf:params:scim:schemas:core:2.0:ResourceType']);
  t.match(user.body, { id: 'User', name: 'User', endpoint: '/Users', schema: USER, meta: { resourceType: 'ResourceType', location: `${BASE}/ResourceTypes/User` } });
  const group = await get('/ResourceTypes/group');
  t.equal(group.body.id, 'Group', 'ids match case-insensitively');
  t.equal(group.body.endpoint, '/Groups');
  const missing = await get('/ResourceTypes/Device');
  t.equal(missing.status, 404);
  t.same(missing.body.schemas, [ERROR]);
  t.equal(missing.body.status, '404');
});

const CHARACTERISTICS = ['type', 'multiValued', 'mutability', 'returned', 'uniqueness', 'required', 'caseExact', 'canonicalValues', 'referenceTypes'] as const;
/**
 * Where this server's schemas differ from RFC 7643 §8.7.1, as "<schema>|<path>|<characteristic>" →
 * our value. Either value is accepted, so correcting a deviation does not fail this test.
 */
const DEVIATIONS: Record<string, unknown> = {
  // Intentional: Group displayName is unique in this directory (clients match groups by it).
  [`${GROUP}|displayName|uniqueness`]: 'server',
  // Intentional: clients send members' display names and they are kept.
  [`${GROUP}|members.display|mutability`]: 'readWrite',
  // Intentional: RFC 7643 §4.3's text makes manager.value and $ref RECOMMENDED, not required, and
  // Entra ID sends a manager with value only.
  [`${ENTERPRISE}|manager.value|required`]: false,
  [`${ENTERPRISE}|manager.$ref|required`]: false,
  // Not intentional (schemas.ts): the RFC schema has these caseExact, and User groups.$ref
  // referencing Groups only.
  [`${ENTERPRISE}|manager.value|caseExact`]: false,
  [`${USER}|photos.value|caseExact`]: false,
  [`${USER}|x509Certificates.value|caseExact`]: false,
  [`${USER}|groups.$ref|referenceTypes`]: ['User', 'Group'],
};

/** Compares every attribute and sub-attribute of the RFC schema with ours. */
function compareAttributes(t: Test, schemaId: string, rfc: PublishedAttribute[], ours: PublishedAttribute[], prefix = ''): void {
  for (const expected of rfc) {
    const path = `${prefix}${expected.name}`;
    const actual = ours.find((a) => a.name === expected.name);
    if (!actual) {
      t.fail(`${schemaId}: ${path} is not published`);
      continue;
    }
    for (const c of CHARACTERISTICS) {
      if (!(c in expected)) continue;
      const key = `${schemaId}|${path}|${c}`;
      const same = JSON.stringify(actual[c]) === JSON.stringify(expected[c]);
      const deviation = key in DEVIATIONS && JSON.stringify(actual[c]) === JSON.stringify(DEVIATIONS[key]);
      t.ok(same || deviation, `${path}.${c}: RFC ${JSON.stringify(expected[c])}, ours ${JSON.stringify(actual[c])}`);
    }
    if (expected.subAttributes) compareAttributes(t, schemaId, expected.subAttributes, actual.subAttributes ?? [], `${path}.`);
  }
}

/** Every attribute carries every RFC 7643 §7 characteristic. */
function everyCharacteristic(t: Test, attrs: PublishedAttribute[], prefix = ''): void {
  for (const a of attrs) {
    for (const c of ['name', 'type', 'multiValued', 'description', 'required', 'caseExact', 'mutability', 'returned', 'uniqueness']) {
      if (!(c in a)) t.fail(`${prefix}${a.name} lacks ${c}`);
    }
    if (a.type === 'complex') t.ok(Array.isArray(a.subAttributes) && a.subAttributes.length > 0, `${prefix}${a.name} has subAttributes`);
    if (a.subAttributes) everyCharacteristic(t, a.subAttributes, `${prefix}${a.name}.`);
  }
}

t.test('GET /Schemas: User, Enterprise User and Group per RFC 7643 §7', async (t) => {
  const { status, body } = await get('/Schemas');
  t.equal(status, 200);
  t.same(body.schemas, [LIST]);
  t.equal(body.startIndex, 1);
  t.equal(body.totalResults, body.Resources.length);
  t.same(body.Resources.map((s: { id: string }) => s.id).sort(), [ENTERPRISE, GROUP, USER].sort());
  for (const s of body.Resources) {
    t.same(s.schemas, ['urn:ietf:params:scim:schemas:core:2.0:Schema']);
    t.same(s.meta, { resourceType: 'Schema', location: `${BASE}/Schemas/${s.id}` });
    everyCharacteristic(t, s.attributes);
  }
  // RFC 7643 has no length characteristic; the description is where a client can read the limit.
  const describe = (schema: string, name: string) =>
    (body.Resources.find((s: { id: string }) => s.id === schema).attributes as Array<{ name: string; description: string }>).find((a) => a.name === name)!.description;
  // externalId is a common attribute (RFC 7643 §3.1), not published in /Schemas: its limit is documented only.
  for (const [schema, name] of [[USER, 'userName'], [GROUP, 'displayName']] as const) {
    t.match(describe(schema, name), /At most 1024 bytes \(UTF-8\)\./, `${name} of ${schema} advertises its maximum length`);
  }
});

t.test('GET /Schemas/:id matches RFC 7643 §8.7.1', async (t) => {
  for (const file of ['rfc7643-8.7.1-schema-user.json', 'rfc7643-8.7.1-schema-group.json', 'rfc7643-8.7.1-schema-enterprise_user.json']) {
    const rfc = fixture(file);
    const { status, body } = await get(`/Schemas/${rfc.id}`);
    t.equal(status, 200, file);
    t.same(Object.keys(body).sort(), Object.keys(rfc).sort(), `${file}: same top-level keys`);
    t.same(body.schemas, rfc.schemas);
    t.equal(body.id, rfc.id);
    t.equal(body.name, rfc.name);
    t.equal(body.description, rfc.description);
    t.equal(body.meta.resourceType, rfc.meta.resourceType);
    compareAttributes(t, rfc.id, rfc.attributes, body.attributes);
    // Names we publish beyond the RFC's would show up here.
    const names = (attrs: PublishedAttribute[], p = ''): string[] => attrs.flatMap((a) => [`${p}${a.name}`, ...names(a.subAttributes ?? [], `${p}${a.name}.`)]);
    t.same(names(body.attributes).sort(), names(rfc.attributes).sort(), `${file}: exactly the RFC's attribute and sub-attribute names`);
  }
});

t.test('GET /Schemas/:id lookups', async (t) => {
  const encoded = await get(`/Schemas/${encodeURIComponent(USER)}`);
  t.equal(encoded.status, 200, 'a percent-encoded URN');
  t.equal(encoded.body.id, USER);
  const lower = await get(`/Schemas/${ENTERPRISE.toLowerCase()}`);
  t.equal(lower.body.id, ENTERPRISE, 'URNs match case-insensitively');
  const missing = await get('/Schemas/urn:example:nope');
  t.equal(missing.status, 404);
  t.same(missing.body.schemas, [ERROR]);
});

t.test('RFC 7644 §4: a filter gets 403, other list parameters are ignored', async (t) => {
  for (const url of ['/ServiceProviderConfig', '/ResourceTypes', '/ResourceTypes/User', '/Schemas', `/Schemas/${USER}`]) {
    const res = await get(`${url}?filter=${encodeURIComponent('name eq "User"')}`);
    t.equal(res.status, 403, url);
    t.same(res.body.schemas, [ERROR], url);
    t.equal(res.body.status, '403', url);
  }
  const paged = await get('/Schemas?startIndex=2&count=1&sortBy=name&sortOrder=descending&attributes=name');
  t.equal(paged.status, 200);
  t.equal(paged.body.Resources.length, 3, 'all schemas, whatever the paging');
  t.equal(paged.body.startIndex, 1);
  t.ok(paged.body.Resources[0].attributes, 'attribute selection is ignored');
});

// Custom extensions reach discovery through SCIM_EXTENSIONS_FILE and the app's `scimRegistry`.
const EXTENSIONS_CONFIGURABLE = 'scimExtensionsFile' in gw.config && gw.app.hasDecorator('scimRegistry');

t.test('custom extensions from configuration are published', { skip: !EXTENSIONS_CONFIGURABLE && 'SCIM_EXTENSIONS_FILE is not supported by this build' }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'scim-ext-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'extensions.json');
  const EXT = 'urn:example:params:scim:schemas:extension:github:2.0:User';
  writeFileSync(file, JSON.stringify([{ id: EXT, name: 'GitHub', resourceType: 'User', attributes: [{ name: 'githubUsername', caseExact: true }] }]));
  const other = await startTestGateway(t, {
    database,
    temporalAddress: '127.0.0.1:1',
    taskQueue: uniqueTaskQueue(),
    dispatchOutbox: false,
    env: { SCIM_EXTENSIONS_FILE: file },
  });
  const schema = await get(`/Schemas/${EXT}`, other);
  t.equal(schema.status, 200);
  t.match(schema.body, { id: EXT, name: 'GitHub', attributes: [{ name: 'githubUsername', type: 'string', caseExact: true, mutability: 'readWrite' }] });
  const user = await get('/ResourceTypes/User', other);
  t.same(user.body.schemaExtensions, [{ schema: ENTERPRISE, required: false }, { schema: EXT, required: false }]);
  const all = await get('/Schemas', other);
  t.equal(all.body.totalResults, 4);
});
