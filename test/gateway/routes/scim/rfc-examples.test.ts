/**
 * The RFC 7644 request examples sent over HTTP, with the answers compared to the RFC's responses
 * (ids, timestamps, versions and locations are this server's own).
 */
import { readFileSync } from 'node:fs';
import t from 'tap';
import { createTestDatabase } from '../../../helpers/db.js';
import { startTestGateway } from '../../../helpers/gateway.js';
import { uniqueTaskQueue } from '../../../helpers/temporal.js';

const FIXTURES = new URL('../../../fixtures/rfc7643-7644/', import.meta.url);
const fixture = (name: string) => JSON.parse(readFileSync(new URL(name, FIXTURES), 'utf8'));
const database = await createTestDatabase(t);
const gw = await startTestGateway(t, { database, temporalAddress: '127.0.0.1:1', taskQueue: uniqueTaskQueue(), dispatchOutbox: false });
const strip = (r: Record<string, unknown>) => {
  const { id: _id, meta: _meta, ...rest } = r;
  return rest;
};

let bjensen = '';
t.test('§3.3 create and §3.4.1 read', async (t) => {
  const res = await gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: fixture('rfc7644-3.3-user-post_request.json') });
  t.equal(res.statusCode, 201, res.body);
  const expected = fixture('rfc7644-3.3-user-post_response.json');
  t.same(strip(res.json()), strip(expected), 'the created user is what the RFC answers');
  t.equal(res.json().meta.resourceType, 'User');
  bjensen = res.json().id;
  const got = await gw.scim({ method: 'GET', url: `/scim/v2/Users/${bjensen}` });
  t.same(got.json(), res.json());
});

t.test('§3.5.1 replace (of the user §3.3 created)', async (t) => {
  const put = fixture('rfc7644-3.5.1-user-put_request.json');
  const res = await gw.scim({ method: 'PUT', url: `/scim/v2/Users/${bjensen}`, payload: { ...put, id: bjensen } });
  t.equal(res.statusCode, 200, res.body);
  const expected = strip(fixture('rfc7644-3.5.1-user-put_response.json'));
  // The RFC echoes "roles": [] and "groups"; an empty list is "unassigned" (RFC 7643 §2.5), and groups are readOnly.
  delete expected.roles;
  delete expected.groups;
  t.same(strip(res.json()), expected);
});

t.test('§3.4.3 search request', async (t) => {
  const res = await gw.scim({ method: 'POST', url: '/scim/v2/.search', payload: fixture('rfc7644-3.4.3-search_request.json') });
  t.equal(res.statusCode, 200, res.body);
  const body = res.json();
  t.same(body.schemas, ['urn:ietf:params:scim:api:messages:2.0:ListResponse']);
  t.equal(typeof body.totalResults, 'number');
  const shape = fixture('rfc7644-3.4.3-list_response-post_query.json');
  t.same(Object.keys(body).sort(), Object.keys(shape).concat(Object.keys(shape).includes('itemsPerPage') ? [] : ['itemsPerPage']).sort());
});

t.test('§3.12 error bodies have the RFC shape', async (t) => {
  const notFound = await gw.scim({ method: 'GET', url: '/scim/v2/Users/2819c223-7f76-453a-919d-413861904646' });
  t.equal(notFound.statusCode, 404);
  const expected = fixture('rfc7644-3.12-error-not_found.json');
  t.same(Object.keys(notFound.json()).sort(), Object.keys(expected).sort());
  t.equal(notFound.json().status, expected.status);
  const bad = await gw.scim({ method: 'GET', url: '/scim/v2/Users?filter=userName%20xx%20%22x%22' });
  const expectedBad = fixture('rfc7644-3.12-error-bad_request.json');
  t.same(Object.keys(bad.json()).sort(), Object.keys(expectedBad).sort());
  t.equal(bad.json().status, '400');
});
