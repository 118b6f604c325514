/**
 * Inputs that used to reach PostgreSQL or Fastify's own error answers: every one is a SCIM error
 * (RFC 7644 §3.12) with a 4xx status, and nothing is stored.
 */
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import t, { type Test } from 'tap';
import type { LightMyRequestResponse } from 'fastify';
import { createTestDatabase } from '../../../helpers/db.js';
import { startTestGateway, userBody } from '../../../helpers/gateway.js';
import { uniqueTaskQueue } from '../../../helpers/temporal.js';
import { MAX_INDEXED_VALUE_BYTES, MAX_VALUE_BYTES } from '../../../../core/scim/schemas.js';
import { MAX_JSON_DEPTH } from '../../../../gateway/routes/scim/index.js';

const database = await createTestDatabase(t);
const gw = await startTestGateway(t, { database, temporalAddress: '127.0.0.1:1', taskQueue: uniqueTaskQueue(), dispatchOutbox: false });
const ERROR_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:Error';
const ENTERPRISE = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH_OP = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
const BULK = 'urn:ietf:params:scim:api:messages:2.0:BulkRequest';

/** Random text that PostgreSQL cannot compress into a smaller index entry. */
function incompressible(chars: number): string {
  return randomBytes(chars).toString('base64').slice(0, chars);
}

function assertScimError(t: Test, res: LightMyRequestResponse, status: number, scimType: string | undefined, what: string): void {
  t.equal(res.statusCode, status, `${what}: status (${res.body.slice(0, 300)})`);
  t.match(res.headers['content-type'], /^application\/scim\+json/, `${what}: SCIM media type`);
  const body = res.json();
  t.same(body.schemas, [ERROR_SCHEMA], `${what}: SCIM error schema`);
  t.equal(body.status, String(status), `${what}: status as a string`);
  t.equal(body.scimType, scimType, `${what}: scimType`);
  t.type(body.detail, 'string', `${what}: a detail`);
}

async function count(table: string): Promise<number> {
  const { rows } = await database.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
  return rows[0]!.n;
}

// JSON text with a NUL and with a lone surrogate: JSON.stringify would escape them the same way.
const NUL = '\\u0000';
const SURROGATE = '\\ud800';

t.test('NUL or a lone surrogate in any stored string is 400 invalidValue, not a PostgreSQL error', async (t) => {
  const existing = await gw.call('POST', '/scim/v2/Users', userBody('target@example.com'), 201);
  const group = await gw.call('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'target group' }, 201);
  const users = await count('users');
  for (const bad of [NUL, SURROGATE]) {
    const user = (extra: string) => `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","${ENTERPRISE}"],"userName":"u-${bad === NUL ? 'nul' : 'sur'}"${extra}}`;
    const cases: Array<[string, string, string, string]> = [
      ['userName', 'POST', '/scim/v2/Users', `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"a${bad}b"}`],
      ['displayName', 'POST', '/scim/v2/Users', user(`,"displayName":"a${bad}"`)],
      ['externalId', 'POST', '/scim/v2/Users', user(`,"externalId":"${bad}"`)],
      ['a sub-attribute', 'POST', '/scim/v2/Users', user(`,"emails":[{"value":"x${bad}@example.com"}]`)],
      ['an extension value', 'POST', '/scim/v2/Users', user(`,"${ENTERPRISE}":{"department":"${bad}"}`)],
      ['a group displayName', 'POST', '/scim/v2/Groups', `{"schemas":["${GROUP}"],"displayName":"g${bad}"}`],
      ['a PUT', 'PUT', `/scim/v2/Users/${existing.id}`, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"target@example.com","title":"${bad}"}`],
      ['a PATCH value', 'PATCH', `/scim/v2/Users/${existing.id}`, `{"schemas":["${PATCH_OP}"],"Operations":[{"op":"replace","path":"title","value":"t${bad}"}]}`],
      ['a path-less PATCH value', 'PATCH', `/scim/v2/Users/${existing.id}`, `{"schemas":["${PATCH_OP}"],"Operations":[{"op":"replace","value":{"nickName":"${bad}"}}]}`],
      ['a group PATCH', 'PATCH', `/scim/v2/Groups/${group.id}`, `{"schemas":["${PATCH_OP}"],"Operations":[{"op":"replace","path":"displayName","value":"${bad}"}]}`],
    ];
    for (const [what, method, url, payload] of cases) {
      const res = await gw.scim({ method, url, payload });
      assertScimError(t, res, 400, 'invalidValue', `${what} with ${bad}`);
      t.match(res.json().detail, /cannot be stored/, `${what} with ${bad}: the detail says why`);
    }
    const bulk = await gw.scim({
      method: 'POST',
      url: '/scim/v2/Bulk',
      payload: `{"schemas":["${BULK}"],"Operations":[{"method":"POST","bulkId":"b","path":"/Users","data":${user(`,"title":"${bad}"`)}}]}`,
    });
    t.equal(bulk.statusCode, 200, 'the bulk request itself is fine');
    t.equal(bulk.json().Operations[0].status, '400', `Bulk data with ${bad}: the operation fails with 400`);
    t.equal(bulk.json().Operations[0].response.scimType, 'invalidValue');
  }
  t.equal(await count('users'), users, 'nothing was stored');
  t.equal((await gw.call('GET', `/scim/v2/Users/${existing.id}`)).meta.version, 'W/"1"', 'the user was not changed');
});

t.test('indexed strings are bounded in UTF-8 bytes; longer ones are 400 invalidValue', async (t) => {
  const cases: Array<[string, string, (v: string) => Record<string, unknown>]> = [
    ['userName', '/scim/v2/Users', (v) => userBody(v)],
    ['externalId', '/scim/v2/Users', (v) => userBody(`ext-${randomBytes(4).toString('hex')}`, { externalId: v })],
    ['Group displayName', '/scim/v2/Groups', (v) => ({ schemas: [GROUP], displayName: v })],
    ['Group externalId', '/scim/v2/Groups', (v) => ({ schemas: [GROUP], displayName: `g-${randomBytes(4).toString('hex')}`, externalId: v })],
  ];
  for (const [what, url, body] of cases) {
    // The sizes the issue reported as 500s, and one byte over the limit.
    for (const chars of [MAX_INDEXED_VALUE_BYTES + 1, 2800, 3000]) {
      const res = await gw.scim({ method: 'POST', url, payload: body(incompressible(chars)) });
      assertScimError(t, res, 400, 'invalidValue', `${what} of ${chars} characters`);
      t.match(res.json().detail, new RegExp(`at most ${MAX_INDEXED_VALUE_BYTES}`), `${what}: the detail names the limit`);
    }
    t.equal((await gw.scim({ method: 'POST', url, payload: body(incompressible(MAX_INDEXED_VALUE_BYTES)) })).statusCode, 201, `${what} of exactly the limit is stored`);
  }
  // Bytes, not characters: 342 three-byte characters are 1026 bytes.
  const cjk = '漢'.repeat(Math.floor(MAX_INDEXED_VALUE_BYTES / 3) + 1);
  assertScimError(t, await gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: userBody(cjk) }), 400, 'invalidValue', 'userName over the limit in bytes');
  t.equal((await gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: userBody(cjk.slice(1)) })).statusCode, 201, '1023 bytes of CJK fit');
});

t.test('any other string is bounded too', async (t) => {
  const huge = await gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: userBody('huge@example.com', { title: incompressible(900_000) }) });
  assertScimError(t, huge, 400, 'invalidValue', 'a 900,000-character title');
  t.match(huge.json().detail, new RegExp(`"title" .* at most ${MAX_VALUE_BYTES}`));
  const fits = await gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: userBody('fits@example.com', { title: incompressible(MAX_VALUE_BYTES) }) });
  t.equal(fits.statusCode, 201, 'a title of exactly the limit is stored');
});

t.test('deeply nested JSON is 400 invalidSyntax everywhere, Bulk included', async (t) => {
  const deep = `${'['.repeat(20_000)}1${']'.repeat(20_000)}`;
  const user = `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"deep","title":${deep}}`;
  const bulk = `{"schemas":["${BULK}"],"Operations":[{"method":"POST","bulkId":"d","path":"/Users","data":${user}}]}`;
  assertScimError(t, await gw.scim({ method: 'POST', url: '/scim/v2/Bulk', payload: bulk }), 400, 'invalidSyntax', 'Bulk with deep data');
  assertScimError(t, await gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: user }), 400, 'invalidSyntax', 'POST /Users with deep data');
  const atLimit = `{"schemas":["${BULK}"],"Operations":[{"method":"POST","bulkId":"d","path":"/Users","data":{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"x","title":${'['.repeat(MAX_JSON_DEPTH - 5)}1${']'.repeat(MAX_JSON_DEPTH - 5)}}}]}`;
  const res = await gw.scim({ method: 'POST', url: '/scim/v2/Bulk', payload: atLimit });
  t.equal(res.statusCode, 200, `${MAX_JSON_DEPTH} levels are parsed: ${res.body}`);
  t.equal(res.json().Operations[0].response.scimType, 'invalidValue', 'and the operation fails on the value, as POST /Users would');
});

t.test("Fastify's own errors under /scim/v2 are SCIM errors", async (t) => {
  assertScimError(t, await gw.scim({ method: 'GET', url: '/scim/v2/Users/%ff' }), 400, undefined, 'a %-escape that is not UTF-8');
  assertScimError(t, await gw.scim({ method: 'GET', url: `/scim/v2/Users/${'a'.repeat(5000)}` }), 414, undefined, 'a 5,000-character id');
  assertScimError(t, await gw.scim({ method: 'GET', url: '/scim/v2/NoSuchEndpoint' }), 404, undefined, 'an unknown endpoint');
  assertScimError(t, await gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: '{"schemas":' }), 400, 'invalidSyntax', 'bad JSON');
  assertScimError(t, await gw.scim({ method: 'POST', url: '/scim/v2/Users', headers: { 'content-type': 'text/plain' }, payload: 'userName=x' }), 415, undefined, 'text/plain');
  const big = JSON.stringify(userBody('big@example.com', { title: 'x'.repeat(gw.config.bodyLimitBytes) }));
  assertScimError(t, await gw.scim({ method: 'POST', url: '/scim/v2/Users', payload: big }), 413, undefined, 'a body over the limit');

  const api = await gw.app.inject({ method: 'GET', url: '/api/%ff' });
  t.equal(api.statusCode, 400, 'outside /scim/v2 the status is the same');
  t.equal(api.json().code, 'FST_ERR_BAD_URL', "outside /scim/v2 the answer stays Fastify's");
});

/** Sends raw bytes to a listening gateway and answers the raw HTTP response. */
async function rawRequest(port: number, text: string): Promise<string> {
  return await new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect(port, '127.0.0.1', () => socket.end(text));
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks).toString()));
  });
}

t.test('a request line over the HTTP parser limit is a SCIM error under /scim/v2', async (t) => {
  const listening = await startTestGateway(t, { database, temporalAddress: '127.0.0.1:1', taskQueue: uniqueTaskQueue(), dispatchOutbox: false });
  await listening.app.listen({ port: 0, host: '127.0.0.1' });
  const port = (listening.app.server.address() as { port: number }).port;
  const long = 'a'.repeat(20_000);

  const scim = await rawRequest(port, `GET /scim/v2/Users?filter=${long} HTTP/1.1\r\nHost: x\r\n\r\n`);
  const [head, body] = scim.split('\r\n\r\n') as [string, string];
  t.match(head, /^HTTP\/1\.1 431 /, 'Node refuses it with 431');
  t.match(head, /content-type: application\/scim\+json/i, 'as application/scim+json');
  t.same(JSON.parse(body), {
    schemas: ['urn:ietf:params:scim:api:messages:2.0:Error'],
    status: '431',
    detail: 'the request line and headers are larger than the server accepts',
  });

  const other = await rawRequest(port, `GET /api/tokens?x=${long} HTTP/1.1\r\nHost: x\r\n\r\n`);
  t.match(other, /^HTTP\/1\.1 431 /, 'elsewhere too');
  t.equal(JSON.parse(other.split('\r\n\r\n')[1]!).statusCode, 431, "elsewhere the body keeps Fastify's shape");
});
