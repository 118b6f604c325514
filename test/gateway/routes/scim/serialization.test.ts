/**
 * Response schemas must not lose data: Fastify serializes answers with fast-json-stringify, which
 * writes only the properties a schema names. A user with core, enterprise and custom-extension
 * attributes goes through every way SCIM reads and writes it, and comes back whole each time.
 * Every answer also passes the test gateway's own check (checkSerialization), which this file
 * shows to catch a lossy schema.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import t from 'tap';
import { createTestDatabase } from '../../../helpers/db.js';
import { checkSerialization, CORE_USER, startTestGateway } from '../../../helpers/gateway.js';
import { uniqueTaskQueue } from '../../../helpers/temporal.js';

const ENTERPRISE = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';
const CUSTOM = 'urn:example:params:scim:schemas:extension:badge:2.0:User';
const dir = mkdtempSync(join(tmpdir(), 'scimgw-serialize-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const extensions = join(dir, 'extensions.json');
writeFileSync(
  extensions,
  JSON.stringify([
    {
      id: CUSTOM,
      name: 'BadgeUser',
      resourceType: 'User',
      attributes: [
        { name: 'badgeNumber' },
        { name: 'floors', multiValued: true, type: 'integer' },
        { name: 'issuedAt', type: 'dateTime' },
        { name: 'escort', type: 'boolean' },
        { name: 'vehicle', type: 'complex', subAttributes: [{ name: 'plate' }, { name: 'spot', type: 'integer' }] },
      ],
    },
  ]),
);

function userWithEverything(userName: string, badge: string): Record<string, unknown> {
  return {
    schemas: [CORE_USER, ENTERPRISE, CUSTOM],
    userName,
    externalId: `ext-${badge}`,
    name: { givenName: 'Grace', familyName: 'Hopper', formatted: 'Grace Hopper' },
    displayName: 'Grace Hopper',
    title: 'Rear Admiral',
    active: true,
    emails: [{ value: userName, type: 'work', primary: true }],
    phoneNumbers: [{ value: '+1 555 0100', type: 'work' }],
    addresses: [{ streetAddress: '1 Navy Way', locality: 'Arlington', country: 'US', type: 'work' }],
    [ENTERPRISE]: { employeeNumber: badge, department: 'Computing', costCenter: 'CC-7', organization: 'Navy' },
    [CUSTOM]: { badgeNumber: badge, floors: [2, 7], issuedAt: '2024-03-01T08:00:00Z', escort: false, vehicle: { plate: 'COBOL-1', spot: 42 } },
  };
}

/** The attributes the client sent, as the resource must carry them (schemas aside: compared as a set). */
function sent(body: Record<string, unknown>): Record<string, unknown> {
  const { schemas: _schemas, ...attributes } = body;
  return attributes;
}

t.test('a user with enterprise and custom extension attributes keeps every attribute through every SCIM route', async (t) => {
  const database = await createTestDatabase(t);
  const gw = await startTestGateway(t, {
    database,
    temporalAddress: '127.0.0.1:1',
    taskQueue: uniqueTaskQueue(),
    dispatchOutbox: false,
    env: { SCIM_EXTENSIONS_FILE: extensions },
  });
  const body = userWithEverything('grace@example.com', 'B-1');
  const whole = (resource: Record<string, unknown>, expected: Record<string, unknown>, what: string) => {
    t.has(resource, sent(expected), `${what}: every attribute sent`);
    t.same([...(resource.schemas as string[])].sort(), [...(expected.schemas as string[])].sort(), `${what}: schemas`);
    t.match(resource, { id: String, meta: { resourceType: 'User', created: String, lastModified: String, location: String, version: String } }, `${what}: id and meta`);
  };

  const created = await gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: body });
  t.equal(created.statusCode, 201, created.body);
  whole(created.json(), body, 'POST');
  const id = created.json().id as string;

  const got = await gw.scim({ method: 'GET', url: `/scim/v2/Users/${id}` });
  t.equal(got.statusCode, 200, got.body);
  whole(got.json(), body, 'GET');

  const listed = await gw.scim({ method: 'GET', url: `/scim/v2/Users?filter=${encodeURIComponent(`${CUSTOM}:badgeNumber eq "B-1"`)}` });
  t.equal(listed.statusCode, 200, listed.body);
  t.equal(listed.json().totalResults, 1);
  whole(listed.json().Resources[0], body, 'GET list');

  const searched = await gw.scim({ method: 'POST', url: '/scim/v2/Users/.search', payload: { schemas: ['urn:ietf:params:scim:api:messages:2.0:SearchRequest'], filter: 'userName eq "grace@example.com"' } });
  t.equal(searched.statusCode, 200, searched.body);
  whole(searched.json().Resources[0], body, 'POST /Users/.search');

  const everywhere = await gw.scim({ method: 'POST', url: '/scim/v2/.search', payload: { schemas: ['urn:ietf:params:scim:api:messages:2.0:SearchRequest'], filter: `${ENTERPRISE}:employeeNumber eq "B-1"` } });
  t.equal(everywhere.statusCode, 200, everywhere.body);
  whole(everywhere.json().Resources[0], body, 'POST /.search');

  const patched = await gw.scim({
    method: 'PATCH',
    url: `/scim/v2/Users/${id}`,
    payload: {
      schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'],
      Operations: [
        { op: 'replace', path: `${ENTERPRISE}:department`, value: 'Research' },
        { op: 'add', path: `${CUSTOM}:floors`, value: [9] },
        { op: 'replace', path: `${CUSTOM}:vehicle.spot`, value: 43 },
      ],
    },
  });
  t.equal(patched.statusCode, 200, patched.body);
  const afterPatch = {
    ...body,
    [ENTERPRISE]: { ...(body[ENTERPRISE] as object), department: 'Research' },
    [CUSTOM]: { ...(body[CUSTOM] as object), floors: [2, 7, 9], vehicle: { plate: 'COBOL-1', spot: 43 } },
  };
  whole(patched.json(), afterPatch, 'PATCH');
  whole((await gw.scim({ method: 'GET', url: `/scim/v2/Users/${id}` })).json(), afterPatch, 'GET after PATCH');

  const replacement: Record<string, unknown> = { ...userWithEverything('grace@example.com', 'B-1'), title: 'Commodore' };
  const put = await gw.scim({ method: 'PUT', url: `/scim/v2/Users/${id}`, payload: replacement });
  t.equal(put.statusCode, 200, put.body);
  whole(put.json(), replacement, 'PUT');

  const second = userWithEverything('ada@example.com', 'B-2');
  const bulk = await gw.scim({
    method: 'POST',
    url: '/scim/v2/Bulk',
    payload: {
      schemas: ['urn:ietf:params:scim:api:messages:2.0:BulkRequest'],
      Operations: [
        { method: 'POST', path: '/Users', bulkId: 'ada', data: second },
        { method: 'PATCH', path: `/Users/${id}`, data: { schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'], Operations: [{ op: 'replace', path: `${CUSTOM}:escort`, value: true }] } },
        { method: 'DELETE', path: '/Users/00000000-0000-4000-8000-000000000000' },
      ],
    },
  });
  t.equal(bulk.statusCode, 200, bulk.body);
  const ops = bulk.json().Operations as Array<Record<string, unknown>>;
  t.match(ops[0], { method: 'POST', bulkId: 'ada', status: '201', location: String, version: String }, 'Bulk POST result whole');
  t.match(ops[1], { method: 'PATCH', status: '200', location: String, version: String }, 'Bulk PATCH result whole');
  t.match(ops[2], { method: 'DELETE', status: '404', response: { schemas: ['urn:ietf:params:scim:api:messages:2.0:Error'], status: '404', detail: String } }, 'Bulk error result keeps its SCIM error');
  const adaId = String(ops[0]!.location).split('/').pop()!;
  whole((await gw.scim({ method: 'GET', url: `/scim/v2/Users/${adaId}` })).json(), second, 'GET after Bulk POST');
  whole(
    (await gw.scim({ method: 'GET', url: `/scim/v2/Users/${id}` })).json(),
    { ...replacement, [CUSTOM]: { ...(replacement[CUSTOM] as object), escort: true } },
    'GET after Bulk PATCH',
  );

  // Discovery documents keep every characteristic of a custom attribute.
  const schema = (await gw.scim({ method: 'GET', url: `/scim/v2/Schemas/${CUSTOM}`, token: null })).json();
  t.has(schema.attributes.find((a: { name: string }) => a.name === 'vehicle'), {
    name: 'vehicle',
    type: 'complex',
    multiValued: false,
    required: false,
    mutability: 'readWrite',
    returned: 'default',
    subAttributes: [{ name: 'plate', type: 'string' }, { name: 'spot', type: 'integer' }],
  });
});

t.test('the test gateway turns an answer a schema would change into a failure', async (t) => {
  const app = Fastify();
  const schema = { response: { 200: { type: 'object', properties: { kept: { type: 'string' }, nothing: { type: 'string' } } } } };
  app.get('/dropped', { schema }, async () => ({ kept: 'yes', extra: 1 }));
  app.get('/coerced', { schema }, async () => ({ kept: 'yes', nothing: null }));
  app.get('/whole', { schema }, async () => ({ kept: 'yes', nothing: 'here' }));
  checkSerialization(app);
  await app.ready();
  t.teardown(() => app.close());

  const dropped = await app.inject({ url: '/dropped' });
  t.equal(dropped.statusCode, 500);
  t.same(dropped.json().serializationLoss, { route: '/dropped', given: { kept: 'yes', extra: 1 }, sent: { kept: 'yes' } });
  const coerced = await app.inject({ url: '/coerced' });
  t.equal(coerced.statusCode, 500, 'null written as "" is a change too');
  t.same(coerced.json().serializationLoss.sent, { kept: 'yes', nothing: '' });
  const whole = await app.inject({ url: '/whole' });
  t.equal(whole.statusCode, 200);
  t.same(whole.json(), { kept: 'yes', nothing: 'here' });
});
