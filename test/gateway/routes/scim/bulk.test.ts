import { readFileSync } from 'node:fs';
import t from 'tap';
import { createTestDatabase } from '../../../helpers/db.js';
import { startTestGateway, userBody } from '../../../helpers/gateway.js';
import { uniqueTaskQueue } from '../../../helpers/temporal.js';

const FIXTURES = new URL('../../../fixtures/rfc7643-7644/', import.meta.url);
const fixture = (name: string) => JSON.parse(readFileSync(new URL(name, FIXTURES), 'utf8'));
const database = await createTestDatabase(t);
const gw = await startTestGateway(t, {
  database,
  temporalAddress: '127.0.0.1:1',
  taskQueue: uniqueTaskQueue(),
  dispatchOutbox: false,
  env: { SCIM_BULK_MAX_OPERATIONS: '10', SCIM_BULK_MAX_PAYLOAD_BYTES: '65536' },
});
const BULK = 'urn:ietf:params:scim:api:messages:2.0:BulkRequest';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';

t.test('bulkId references resolve across operations, in any order', async (t) => {
  const res = await gw.scim({
    method: 'POST',
    url: '/scim/v2/Bulk',
    payload: {
      schemas: [BULK],
      Operations: [
        { method: 'POST', path: '/Groups', bulkId: 'g1', data: { schemas: [GROUP], displayName: 'Bulk Group', members: [{ type: 'User', value: 'bulkId:u1' }] } },
        { method: 'POST', path: '/Users', bulkId: 'u1', data: userBody('bulk.user@example.com') },
        { method: 'PATCH', path: '/Users/bulkId:u1', data: { schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'], Operations: [{ op: 'replace', path: 'title', value: 'Bulked' }] } },
      ],
    },
  });
  t.equal(res.statusCode, 200, res.body);
  const body = res.json();
  t.same(body.schemas, ['urn:ietf:params:scim:api:messages:2.0:BulkResponse']);
  t.same(body.Operations.map((o: { status: string }) => o.status), ['201', '201', '200']);
  const groupId = body.Operations[0].location.split('/').pop();
  const userId = body.Operations[1].location.split('/').pop();
  const g = (await gw.scim({ method: 'GET', url: `/scim/v2/Groups/${groupId}` })).json();
  t.same(g.members.map((m: { value: string }) => m.value), [userId], 'the group references the user created after it in the request');
  t.equal((await gw.scim({ method: 'GET', url: `/scim/v2/Users/${userId}` })).json().title, 'Bulked');
});

t.test('RFC 7644 §3.7.1: circular references fail with 409', async (t) => {
  const res = await gw.scim({ method: 'POST', url: '/scim/v2/Bulk', payload: fixture('rfc7644-3.7.1-bulk_request-circular_conflict.json') });
  t.equal(res.statusCode, 200);
  t.same(res.json().Operations.map((o: { status: string }) => o.status), ['409', '409']);
  const left = await database.db.query("SELECT count(*)::int AS n FROM groups WHERE display_name IN ('Group A', 'Group B')");
  t.equal(left.rows[0].n, 0, 'nothing half-linked is left behind');
});

t.test('RFC 7644 §3.7.3 examples and failOnErrors', async (t) => {
  const multi = fixture('rfc7644-3.7.3-bulk_request-multiple_operations.json');
  const res = await gw.scim({ method: 'POST', url: '/scim/v2/Bulk', payload: multi });
  t.equal(res.statusCode, 200, res.body);
  // The RFC's POST names the schema urn:ietf:params:scim:api:messages:2.0:User, which is not a
  // resource schema, and the request says failOnErrors 1: that error ends it.
  t.same(res.json().Operations.map((o: { status: string }) => o.status), ['400']);
  t.equal(res.json().Operations[0].response.scimType, 'invalidSyntax');
  const { failOnErrors: _ignored, ...keepGoing } = multi;
  const all = await gw.scim({ method: 'POST', url: '/scim/v2/Bulk', payload: keepGoing });
  // Without failOnErrors every operation runs; the other three address resources that do not exist here.
  t.same(all.json().Operations.map((o: { status: string }) => o.status), ['400', '404', '404', '404']);

  const stopEarly = await gw.scim({
    method: 'POST',
    url: '/scim/v2/Bulk',
    payload: {
      schemas: [BULK],
      failOnErrors: 1,
      Operations: [
        { method: 'POST', path: '/Users', bulkId: 'a', data: { schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'] } },
        { method: 'POST', path: '/Users', bulkId: 'b', data: userBody('never.created@example.com') },
      ],
    },
  });
  const ops = stopEarly.json().Operations;
  t.equal(ops.length, 1, 'processing stops after failOnErrors errors');
  t.equal(ops[0].status, '400');
  t.equal(ops[0].response.scimType, 'invalidValue');
  const created = await database.db.query("SELECT count(*)::int AS n FROM users WHERE user_name = 'never.created@example.com'");
  t.equal(created.rows[0].n, 0);
});

t.test('limits: maxOperations and maxPayloadSize answer 413, and are advertised', async (t) => {
  const tooMany = await gw.scim({
    method: 'POST',
    url: '/scim/v2/Bulk',
    payload: { schemas: [BULK], Operations: Array.from({ length: 11 }, (_, i) => ({ method: 'POST', path: '/Users', bulkId: `x${i}`, data: userBody(`x${i}@example.com`) })) },
  });
  t.equal(tooMany.statusCode, 413);
  t.equal(tooMany.json().status, '413');
  const big = await gw.scim({
    method: 'POST',
    url: '/scim/v2/Bulk',
    payload: { schemas: [BULK], Operations: [{ method: 'POST', path: '/Users', bulkId: 'big', data: userBody('big@example.com', { nickName: 'x'.repeat(70_000) }) }] },
  });
  t.equal(big.statusCode, 413);
  const spc = (await gw.scim({ method: 'GET', url: '/scim/v2/ServiceProviderConfig' })).json();
  t.same(spc.bulk, { supported: true, maxOperations: 10, maxPayloadSize: 65536 });
  const bad = await gw.scim({ method: 'POST', url: '/scim/v2/Bulk', payload: { schemas: [BULK], Operations: [{ method: 'GET', path: '/Users' }] } });
  t.equal(bad.statusCode, 400);
  t.equal(bad.json().scimType, 'invalidSyntax');
});
