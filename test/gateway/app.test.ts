/**
 * Application-wide behaviour: which proxies are believed (TRUST_PROXY), and that credentials in a
 * URL never reach the logs.
 */
import t from 'tap';
import { buildApp, loggerOptions } from '../../gateway/app.js';
import { loadGatewayConfig } from '../../core/config.js';
import { TemporalAccess } from '../../gateway/temporal.js';
import { createToken } from '../../core/auth/tokens.js';
import { redactUrl } from '../../core/log-redaction.js';
import { createTestDatabase } from '../helpers/db.js';
import { userBody } from '../helpers/gateway.js';
import { uniqueTaskQueue } from '../helpers/temporal.js';

const database = await createTestDatabase(t);
const { token } = await createToken(database.db, 'app-test', ['scim:read', 'scim:write']);

interface Teardown {
  teardown(fn: () => void | Promise<void>): void;
}

/** An app with the given settings whose log lines are collected. */
async function loggedApp(t: Teardown, env: Record<string, string> = {}) {
  const lines: string[] = [];
  const config = { ...loadGatewayConfig({ LOG_LEVEL: 'info', ...env }), databaseUrl: database.url, temporalAddress: '127.0.0.1:1', taskQueue: uniqueTaskQueue() };
  const app = await buildApp({
    config,
    db: database.newPool(3),
    temporal: new TemporalAccess('127.0.0.1:1', config.temporalNamespace, 1000),
    dispatchOutbox: false,
    logger: { ...(loggerOptions('info') as object), stream: { write: (line: string) => void lines.push(line) } },
  });
  await app.ready();
  t.teardown(() => app.close());
  return { app, lines };
}

const forwarded = { 'x-forwarded-for': '203.0.113.7', 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https' };

t.test('by default no proxy is believed: X-Forwarded-* neither sets the client address nor meta.location', async (t) => {
  const { app, lines } = await loggedApp(t);
  const res = await app.inject({
    method: 'POST',
    url: '/scim/v2/Users',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/scim+json', host: 'gateway.internal:8080', ...forwarded },
    payload: userBody('no.proxy@example.com'),
  });
  t.equal(res.statusCode, 201, res.body);
  t.match(res.json().meta.location, /^http:\/\/gateway\.internal:8080\/scim\/v2\/Users\//, 'meta.location uses the Host header, not X-Forwarded-Host');
  const text = lines.join('');
  t.notOk(text.includes('203.0.113.7'), 'the forwarded client address is not taken for the client');
  t.ok(text.includes('"remoteAddress":"127.0.0.1"'), 'the socket address is');
});

t.test('TRUST_PROXY naming the proxy: its X-Forwarded-* headers are believed', async (t) => {
  const { app, lines } = await loggedApp(t, { TRUST_PROXY: '127.0.0.1' });
  const res = await app.inject({
    method: 'POST',
    url: '/scim/v2/Users',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/scim+json', host: 'gateway.internal:8080', ...forwarded },
    payload: userBody('behind.proxy@example.com'),
  });
  t.equal(res.statusCode, 201, res.body);
  t.match(res.json().meta.location, /^https:\/\/evil\.example\/scim\/v2\/Users\//, 'the trusted proxy decides the public host');
  t.ok(lines.join('').includes('"remoteAddress":"203.0.113.7"'), 'and the client address');

  const other = await loggedApp(t, { TRUST_PROXY: '10.0.0.0/8' });
  const res2 = await other.app.inject({ method: 'GET', url: '/scim/v2/Users', headers: { authorization: `Bearer ${token}`, ...forwarded } });
  t.equal(res2.statusCode, 200);
  t.notOk(other.lines.join('').includes('203.0.113.7'), 'a request from an address outside the trusted ranges is not believed');
});

t.test('credentials in the query string never reach the logs', async (t) => {
  const { app, lines } = await loggedApp(t);
  const secret = 'scimgw_querysecret_0123456789';
  const urls = [
    `/scim/v2/Users?access_token=${secret}`,
    `/scim/v2/Users?filter=userName%20eq%20%22x%22&token=${secret}`,
    `/api/tokens?api_key=${secret}`,
    `/nowhere?access_token=${secret}`,
    `/downloads/${secret}?x=1`,
  ];
  for (const url of urls) {
    const res = await app.inject({ method: 'GET', url });
    t.ok([401, 404].includes(res.statusCode), `${url.replace(secret, '…')} is refused (${res.statusCode})`);
    t.notOk(res.body.includes(secret), 'and the answer does not echo the credential');
  }
  const text = lines.join('');
  t.ok(lines.length >= urls.length, `the requests were logged (${lines.length} lines)`);
  t.notOk(text.includes(secret), 'the credential is in no log line');
  t.ok(text.includes('"url":"/scim/v2/Users?access_token=[redacted]"'), 'the request line shows the parameter, redacted');
  t.ok(text.includes('filter=userName%20eq%20%22x%22&token=[redacted]'), 'other parameters are kept');
});

t.test('one access-log line per request, with what Fastify logged in two', async (t) => {
  const { app, lines } = await loggedApp(t);
  const res = await app.inject({
    method: 'GET',
    url: '/scim/v2/Users?filter=userName%20eq%20%22nobody%40example.com%22',
    headers: { authorization: `Bearer ${token}`, cookie: 'console_session=cookie-secret-4711', 'x-slack-signature': 'v0=signature-secret-4711' },
  });
  t.equal(res.statusCode, 200, res.body);
  t.notMatch(lines.join(''), /cookie-secret-4711|signature-secret-4711/, 'no header value in the line');
  t.notOk(lines.join('').includes(token), 'nor the bearer token');
  const entries = lines.map((l) => JSON.parse(l) as { msg: string; reqId?: string; req?: Record<string, unknown>; res?: { statusCode: number }; responseTime?: number });
  const forRequest = entries.filter((e) => e.reqId !== undefined);
  t.equal(forRequest.length, 1, `one line for the request: ${lines.join('')}`);
  t.match(forRequest[0], {
    msg: 'request completed',
    req: { method: 'GET', url: '/scim/v2/Users?filter=userName%20eq%20%22nobody%40example.com%22', remoteAddress: '127.0.0.1' },
    res: { statusCode: 200 },
    responseTime: Number,
  });
});

t.test("a request's own log lines carry its id and the name of its token, like its access line", async (t) => {
  const { app, lines } = await loggedApp(t);
  const res = await app.inject({
    method: 'POST',
    url: '/scim/v2/Users',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/scim+json' },
    payload: userBody('logged@example.com', { favouriteColour: 'blue' }),
  });
  t.equal(res.statusCode, 201, res.body);
  const entries = lines.map((l) => JSON.parse(l) as { msg: string; reqId?: string; token?: string; level: number });
  const warning = entries.find((e) => /ignored attributes/.test(e.msg));
  const access = entries.find((e) => e.msg === 'request completed');
  t.ok(warning, `the request logged its warning: ${lines.join('')}`);
  t.equal(warning?.token, 'app-test', 'the warning names the token');
  t.ok(warning?.reqId, 'and carries the request id');
  t.equal(access?.reqId, warning?.reqId, 'the same id as the access line');
});

t.test('redactUrl', async (t) => {
  t.equal(redactUrl('/a?b=1&access_token=x&c'), '/a?b=1&access_token=[redacted]&c');
  t.equal(redactUrl('/a?Access%5FToken=x'), '/a?Access%5FToken=[redacted]', 'encoded names are recognised');
  t.equal(redactUrl('/a?client_secret=x&password=y&sig=z'), '/a?client_secret=[redacted]&password=[redacted]&sig=[redacted]');
  t.equal(redactUrl('/downloads/abc?token=x'), '/downloads/[redacted]?token=[redacted]');
  t.equal(redactUrl('/scim/v2/Users?startIndex=1&count=10'), '/scim/v2/Users?startIndex=1&count=10', 'ordinary parameters are left alone');
});
