import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';
import t from 'tap';
import { PermanentError, TransientError, type ConnectorInstance, type ConnectorLogger } from '@scim-gateway/connector-sdk';
import { runContractKit, sampleUser, seedThroughConnector } from '@scim-gateway/connector-sdk/kit';
import { instantiate, loadConnector } from '@scim-gateway/connector-sdk/registry';
import { createSecretResolver } from '@scim-gateway/connector-sdk';
import { WebhookClient } from '../../../connectors/webhook/client.js';
import webhookConnector from '../../../connectors/webhook/index.js';
import { DEFAULT_TOLERANCE_SECONDS, SIGNATURE_HEADER, TIMESTAMP_HEADER, signPayload, verifySignature } from '@scim-gateway/connector-sdk/signature';
import { startFakeReceiver } from './fake-receiver.js';

const SECRET = 'whsec_test_5b1f0c9e2d7a4e38a1c6f0b94d2e7a13';
const OTHER_SECRET = 'whsec_other_91c4e7d2a0b84f6c9e1d3b5a7c0f2e48';
const PLAIN_SECRET = 'plain-secret-written-into-config-7f3a';
const SECRETS = [SECRET, OTHER_SECRET, PLAIN_SECRET];
const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

const fake = await startFakeReceiver({ secret: SECRET });
const secretDir = await mkdtemp(join(tmpdir(), 'webhook-secret-'));
const secretFile = join(secretDir, 'hook-secret');
await writeFile(secretFile, `${SECRET}\n`, { mode: 0o600 });

const resolver = createSecretResolver({ HOOK_SECRET: SECRET, OTHER_SECRET, SHORT_SECRET: 'too-short' });
/** Everything the connector logged and every error it raised, checked for the secret at the end. */
const logged: string[] = [];
const errors: unknown[] = [];
const log: ConnectorLogger = {
  info: (msg, fields) => logged.push(`${msg} ${JSON.stringify(fields ?? {})}`),
  warn: (msg, fields) => logged.push(`${msg} ${JSON.stringify(fields ?? {})}`),
};
const instances: ConnectorInstance[] = [];

function baseConfig(): Record<string, unknown> {
  return { url: fake.url, secret: 'env:HOOK_SECRET', caFile: fake.caFile, headers: { 'x-tenant': 'acme' } };
}

function connect(overrides: Record<string, unknown> = {}): ConnectorInstance {
  const instance = instantiate(webhookConnector, { ...baseConfig(), ...overrides }, { secret: resolver, log });
  instances.push(instance);
  return instance;
}

/** The error `work` fails with (recorded for the secret check); fails the test if it succeeds. */
async function failure(work: Promise<unknown> | (() => unknown)): Promise<Error> {
  try {
    await (typeof work === 'function' ? work() : work);
  } catch (err) {
    errors.push(err);
    return err as Error;
  }
  throw new Error('expected a failure, got success');
}

/** Posts bytes straight to the fake (trusting its certificate), bypassing the connector. */
async function rawPost(body: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  const ca = await readFile(fake.caFile, 'utf8');
  return await new Promise((done, reject) => {
    const req = request(fake.url, { method: 'POST', ca, agent: false, headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => done({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

t.teardown(async () => {
  for (const instance of instances) await instance.close?.();
  await fake.close();
  await rm(secretDir, { recursive: true, force: true });
});

t.test('contract kit against the fake receiver', async (t) => {
  const user = sampleUser('kit001');
  // The fake serves two per page; the seeds make every listing span several.
  await runContractKit({
    test: t.test.bind(t),
    definition: webhookConnector,
    connect: () => connect(),
    entitlement: { id: 'ent-eng', target: { name: 'engineering', role: 'member' } },
    user,
    ...seedThroughConnector(() => connect(), 5),
    // What a disabled account keeps is the receiver's business; the fake keeps its grants.
    disableKeepsGrants: true,
  });
  const left = [...fake.accounts.values()].find((a) => a.userName === user.userName);
  t.equal(left?.active, false, 'the receiver holds the round-trip account disabled');
});

t.test('deliveries follow the protocol', async (t) => {
  const c = connect();
  const user = sampleUser('proto1');
  const before = Math.floor(Date.now() / 1000);
  const created = await c.createAccount!(user);
  await c.grant!(created.remoteId!, { id: 'ent-ops', target: { name: 'ops', role: 'admin', expires: '2030-01-01' } });

  const [create, grant] = fake.deliveries.slice(-2);
  t.ok(create && grant, 'two deliveries arrived');
  const ts = Number(create!.headers[TIMESTAMP_HEADER]);
  t.ok(ts >= before && ts <= before + 5, 'the timestamp header is the current unix time in seconds');
  t.match(create!.headers[SIGNATURE_HEADER], /^v1=[0-9a-f]{64}$/, 'the signature header is v1=<hex HMAC-SHA256>');
  t.equal(create!.headers[SIGNATURE_HEADER], signPayload(SECRET, ts, create!.rawBody), 'signed over "<timestamp>.<raw body>"');
  t.equal(create!.headers['content-type'], 'application/json');
  t.equal(create!.headers['x-tenant'], 'acme', 'configured extra headers are sent');

  const body = JSON.parse(create!.rawBody);
  t.equal(body.operation, 'createAccount');
  t.match(body.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'the delivery id is a UUID');
  t.same(body.account, user, 'the account is sent as the engine gave it');
  const grantBody = JSON.parse(grant!.rawBody);
  t.same(grantBody.entitlement, { id: 'ent-ops', target: { name: 'ops', role: 'admin', expires: '2030-01-01' } }, 'the entitlement target is passed through');
  t.equal(grantBody.remoteId, created.remoteId);

  const ids = fake.deliveries.map((d) => d.id);
  t.equal(new Set(ids).size, ids.length, 'every delivery so far had its own id');
});

t.test('the fake really verifies: another secret is refused as unauthorized', async (t) => {
  const err = await failure(connect({ secret: 'env:OTHER_SECRET' }).validate());
  t.type(err, PermanentError);
  t.equal((err as PermanentError).kind, 'unauthorized');
  t.match(err.message, /signature check failed: signatureMismatch/, "with the receiver's reason");
  t.equal(fake.rejections.at(-1), 'signatureMismatch');
});

t.test('old timestamps and replayed deliveries are refused', async (t) => {
  const stale = new WebhookClient({ url: fake.url, caFile: fake.caFile, secret: async () => SECRET, now: () => Math.floor(Date.now() / 1000) - 600 });
  t.teardown(() => stale.close());
  const err = await failure(stale.validate());
  t.equal((err as PermanentError).kind, 'unauthorized', 'a correctly signed delivery from 10 minutes ago is refused');
  t.match(err.message, /outside the accepted window/);
  t.equal(fake.rejections.at(-1), 'timestampOutOfTolerance');

  await connect().validate();
  const captured = fake.deliveries.at(-1)!;
  const replay = await rawPost(captured.rawBody, {
    [TIMESTAMP_HEADER]: String(captured.headers[TIMESTAMP_HEADER]),
    [SIGNATURE_HEADER]: String(captured.headers[SIGNATURE_HEADER]),
  });
  t.equal(replay.status, 401, 'the same delivery sent again, byte for byte, is refused');
  t.match(replay.body, /already received/);
  t.equal(fake.rejections.at(-1), 'replayed');

  const old = Math.floor(Date.now() / 1000) - DEFAULT_TOLERANCE_SECONDS - 60;
  const body = JSON.stringify({ operation: 'validate', id: '6f1c2b9e-0d4a-4c1e-9b7f-2a3d4e5f6a7b' });
  const resigned = await rawPost(body, { [TIMESTAMP_HEADER]: String(old), [SIGNATURE_HEADER]: signPayload(SECRET, old, body) });
  t.equal(resigned.status, 401, 'a fresh id with a stale (but validly signed) timestamp is refused');

  const tampered = await rawPost(captured.rawBody.replace('validate', 'listAccounts'), {
    [TIMESTAMP_HEADER]: String(captured.headers[TIMESTAMP_HEADER]),
    [SIGNATURE_HEADER]: String(captured.headers[SIGNATURE_HEADER]),
  });
  t.equal(tampered.status, 401, 'a body changed after signing is refused');
});

t.test('429 with Retry-After is transient and carries the wait', async (t) => {
  fake.fail('createAccount', { status: 429, message: 'slow down', headers: { 'retry-after': '7' } });
  const before = fake.requestCount();
  const err = await failure(connect().createAccount!(sampleUser('rl0001')));
  t.type(err, TransientError);
  t.equal((err as TransientError).retryAfterMs, 7000);
  t.equal(fake.requestCount() - before, 1, 'the connector sent one request and did not retry');
});

t.test('503 with Retry-After and 500 are transient', async (t) => {
  fake.fail('listAccounts', { status: 503, message: 'maintenance', headers: { 'retry-after': '3' } });
  const unavailable = await failure(connect().listAccounts!());
  t.type(unavailable, TransientError);
  t.equal((unavailable as TransientError).retryAfterMs, 3000);

  fake.fail('grant', { status: 500, message: 'database unavailable' });
  const before = fake.requestCount();
  const err = await failure(connect().grant!('acct-1', { id: 'e', target: { name: 'engineering' } }));
  t.type(err, TransientError);
  t.equal((err as TransientError).retryAfterMs, undefined, 'no wait was asked for');
  t.match(err.message, /webhook: grant failed: HTTP 500: database unavailable/);
  t.equal(fake.requestCount() - before, 1, 'one request, no retry');
});

t.test("403 is permanent 'forbidden' with the receiver's message", async (t) => {
  fake.fail('grant', { status: 403, message: 'the gateway may not manage group "admins"' });
  const err = await failure(connect().grant!('acct-1', { id: 'e', target: { name: 'admins' } }));
  t.type(err, PermanentError);
  t.equal((err as PermanentError).kind, 'forbidden');
  t.match(err.message, 'the gateway may not manage group "admins"');
});

t.test('other statuses are classified', async (t) => {
  const cases: [number, string][] = [
    [400, 'rejected'],
    [401, 'unauthorized'],
    [404, 'notFound'],
    [409, 'conflict'],
    [422, 'rejected'],
    [408, 'transient'],
    [425, 'transient'],
    [502, 'transient'],
    [504, 'transient'],
  ];
  const c = connect();
  for (const [status, expected] of cases) {
    fake.fail('updateAccount', { status, message: `receiver says ${status}` });
    const err = await failure(c.updateAccount!('acct-1', sampleUser('cls001')));
    if (expected === 'transient') t.type(err, TransientError, `${status} is transient`);
    else {
      t.type(err, PermanentError, `${status} is permanent`);
      t.equal((err as PermanentError).kind, expected, `${status} is ${expected}`);
    }
    t.match(err.message, `receiver says ${status}`, "the receiver's message is kept");
  }
});

t.test("a malformed 2xx answer is permanent 'invalidResponse'", async (t) => {
  const c = connect();
  const cases: [Parameters<typeof fake.fail>[0], string, () => Promise<unknown>][] = [
    ['disableAccount', 'not json', () => c.disableAccount!('acct-1')],
    ['disableAccount', '{"status":"done"}', () => c.disableAccount!('acct-1')],
    ['createAccount', '{"status":"applied"}', () => c.createAccount!(sampleUser('bad001'))],
    ['listAccounts', '{"items":[{"name":"no remote id"}]}', () => c.listAccounts!()],
    ['listGrants', '{"items":"acct-1"}', () => c.listGrants!({ id: 'e', target: { name: 'engineering' } })],
    ['listGrants', '{"items":[],"next":"abc"}', () => c.listGrants!({ id: 'e', target: { name: 'engineering' } }, 'abc')],
  ];
  for (const [operation, body, call] of cases) {
    fake.fail(operation, { status: 200, body });
    const err = await failure(call());
    t.type(err, PermanentError, `${operation} answering ${body}`);
    t.equal((err as PermanentError).kind, 'invalidResponse');
  }
});

t.test('a redirect is not followed', async (t) => {
  fake.fail('validate', { status: 307, body: '', headers: { location: 'https://elsewhere.example/' } });
  const err = await failure(connect().validate());
  t.type(err, PermanentError);
  t.match(err.message, /redirects are not followed/);
});

t.test("invalid configuration is permanent 'invalidConfig' and names the field", async (t) => {
  const cases: [string, Record<string, unknown>, string][] = [
    ['an http URL', { ...baseConfig(), url: fake.url.replace('https:', 'http:') }, '/url'],
    ['a plain secret', { ...baseConfig(), secret: PLAIN_SECRET }, '/secret'],
    ['no url', { secret: 'env:HOOK_SECRET' }, '/url'],
    ['no secret', { url: fake.url }, '/secret'],
    ['credentials in the URL', { ...baseConfig(), url: fake.url.replace('https://', 'https://user:pw@') }, '/url'],
    ['an Authorization header', { ...baseConfig(), headers: { Authorization: 'Bearer abc' } }, '/headers/Authorization'],
    ['a protocol header', { ...baseConfig(), headers: { 'X-Scim-Gateway-Signature': 'v1=00' } }, '/headers/X-Scim-Gateway-Signature'],
    ['a cookie header', { ...baseConfig(), headers: { cookie: 'session=abc' } }, '/headers/cookie'],
    ['a header in the protocol namespace', { ...baseConfig(), headers: { 'x-scim-gateway-tenant': 'acme' } }, '/headers/x-scim-gateway-tenant'],
    ['a header value that is a secret reference', { ...baseConfig(), headers: { 'x-api-key': 'env:API_KEY' } }, '/headers/x-api-key'],
    ['a header value with a newline', { ...baseConfig(), headers: { 'x-a': 'b\r\nx-injected: 1' } }, '/headers/x-a'],
    ['a malformed header name', { ...baseConfig(), headers: { 'x a': 'b' } }, '/headers/x a'],
    ['a tiny timeout', { ...baseConfig(), timeoutMs: 5 }, '/timeoutMs'],
    ['an unknown property', { ...baseConfig(), secert: 'env:HOOK_SECRET' }, '/secert'],
  ];
  for (const [what, config, field] of cases) {
    const err = await failure(() => instantiate(webhookConnector, config, { secret: resolver }));
    t.type(err, PermanentError, what);
    t.equal((err as PermanentError).kind, 'invalidConfig', `${what} is invalidConfig`);
    t.match(err.message, field, `${what}: the message names ${field}`);
  }
});

t.test('problems found only when the secret or CA is read are invalidConfig too', async (t) => {
  const unset = await failure(connect({ secret: 'env:NOT_SET_ANYWHERE' }).validate());
  t.equal((unset as PermanentError).kind, 'invalidConfig', 'an unset variable');
  t.match(unset.message, 'env:NOT_SET_ANYWHERE');

  const short = await failure(connect({ secret: 'env:SHORT_SECRET' }).validate());
  t.equal((short as PermanentError).kind, 'invalidConfig', 'a secret too short to be a key');
  t.notMatch(short.message, 'too-short', 'without quoting it');

  const noCa = await failure(connect({ caFile: join(secretDir, 'missing.pem') }).validate());
  t.equal((noCa as PermanentError).kind, 'invalidConfig', 'an unreadable caFile');
  t.match(noCa.message, 'ENOENT');
});

t.test('the secret can come from a file', async (t) => {
  await t.resolves(connect({ secret: `file:${secretFile}` }).validate());
});

t.test('an entitlement without a name is refused before anything is sent', async (t) => {
  const before = fake.requestCount();
  const err = await failure(connect().grant!('acct-1', { id: 'e', target: { role: 'admin' } }));
  t.equal((err as PermanentError).kind, 'invalidEntitlement');
  t.equal(fake.requestCount(), before);
});

t.test('an unreachable receiver is transient', async (t) => {
  const probe = createServer();
  await new Promise<void>((done) => probe.listen(0, '127.0.0.1', done));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((done) => probe.close(() => done()));

  const err = await failure(connect({ url: `https://127.0.0.1:${port}/hooks/scim` }).createAccount!(sampleUser('down01')));
  t.type(err, TransientError);
  t.match(err.message, /ECONNREFUSED/);
});

t.test('a receiver slower than timeoutMs is transient', async (t) => {
  fake.fail('validate', { status: 204, delayMs: 5_000 });
  const started = Date.now();
  const err = await failure(connect({ timeoutMs: 200 }).validate());
  t.type(err, TransientError);
  t.match(err.message, /within 200 ms/);
  t.ok(Date.now() - started < 2_000, 'and the deadline is kept');
});

t.test('TLS is verified: without caFile the self-signed receiver is not trusted', async (t) => {
  const before = fake.requestCount();
  const err = await failure(connect({ caFile: undefined }).validate());
  t.type(err, PermanentError);
  t.equal((err as PermanentError).kind, 'tlsError');
  t.match(err.message, /caFile/, 'with a hint what to do');
  t.equal(fake.requestCount(), before, 'nothing reached the receiver');
});

t.test('a receiver echoing the secret does not get it into the error', async (t) => {
  fake.fail('validate', { status: 400, message: `your key ${SECRET} is wrong` });
  const err = await failure(connect().validate());
  t.match(err.message, '[redacted]');
});

t.test('the definition loads by path like a plugin, and documents its configuration', async (t) => {
  t.equal(await loadConnector('./connectors/webhook/index.ts', REPO_ROOT), webhookConnector, 'loadConnector finds the default export');
  const properties = webhookConnector.configSchema.properties as Record<string, { description?: string }>;
  for (const [name, schema] of Object.entries(properties)) t.ok(schema.description, `${name} has a description`);
  t.same([...webhookConnector.capabilities].sort(), ['createAccount', 'deleteAccount', 'disableAccount', 'grant', 'listAccounts', 'listGrants', 'revoke', 'updateAccount']);
});

t.test('signPayload and verifySignature', async (t) => {
  const body = '{"operation":"validate","id":"x"}';
  const now = 1_700_000_000;
  const sig = signPayload(SECRET, now, body);

  t.match(sig, /^v1=[0-9a-f]{64}$/);
  t.same(verifySignature(SECRET, body, String(now), sig, { now }), { ok: true, timestamp: now }, 'a genuine delivery verifies');
  t.same(verifySignature(SECRET, Buffer.from(body), String(now), sig, { now }), { ok: true, timestamp: now }, 'raw bytes verify the same as the string');
  t.equal(signPayload(SECRET, now, Buffer.from(body)), sig);

  const fail = (r: ReturnType<typeof verifySignature>) => (r.ok ? 'ok' : r.reason);
  t.equal(fail(verifySignature(SECRET, body.replace('validate', 'deleteAccount'), String(now), sig, { now })), 'signatureMismatch', 'a changed body is detected');
  t.equal(fail(verifySignature(SECRET, `${body} `, String(now), sig, { now })), 'signatureMismatch', 'even by one byte');
  t.equal(fail(verifySignature(SECRET, body, String(now + 1), sig, { now })), 'signatureMismatch', 'a changed timestamp is detected');
  t.equal(fail(verifySignature(OTHER_SECRET, body, String(now), sig, { now })), 'signatureMismatch', 'another secret does not verify');
  const flipped = `${sig.slice(0, -1)}${sig.endsWith('0') ? '1' : '0'}`;
  t.equal(fail(verifySignature(SECRET, body, String(now), flipped, { now })), 'signatureMismatch', 'a changed signature is detected');

  t.equal(fail(verifySignature(SECRET, body, String(now), sig, { now: now + DEFAULT_TOLERANCE_SECONDS })), 'ok', 'at the edge of the window');
  t.equal(fail(verifySignature(SECRET, body, String(now), sig, { now: now + DEFAULT_TOLERANCE_SECONDS + 1 })), 'timestampOutOfTolerance', 'just past it');
  t.equal(fail(verifySignature(SECRET, body, String(now), sig, { now: now - DEFAULT_TOLERANCE_SECONDS - 1 })), 'timestampOutOfTolerance', 'or too far in the future');
  t.equal(fail(verifySignature(SECRET, body, String(now), sig, { now: now + 30, toleranceSeconds: 10 })), 'timestampOutOfTolerance', 'a custom tolerance');

  t.equal(fail(verifySignature(SECRET, body, undefined, sig)), 'missingHeader');
  t.equal(fail(verifySignature(SECRET, body, String(now), '')), 'missingHeader');
  t.equal(fail(verifySignature(SECRET, body, '17e8', sig, { now })), 'malformedTimestamp');
  t.equal(fail(verifySignature(SECRET, body, String(now), sig.replace('v1=', 'v0='), { now })), 'malformedSignature');
  t.equal(fail(verifySignature(SECRET, body, String(now), 'v1=abc', { now })), 'malformedSignature');

  t.equal(fail(verifySignature([OTHER_SECRET, SECRET], body, String(now), sig, { now })), 'ok', 'any of several secrets (rotation)');
  t.equal(fail(verifySignature(SECRET, body, String(now), `v1=${'0'.repeat(64)}, ${sig}`, { now })), 'ok', 'any of several signatures');
  t.throws(() => signPayload(SECRET, 1.5, body), RangeError);
});

t.test('the secret appears in no error and no log line', async (t) => {
  t.ok(errors.length >= 30, `${errors.length} errors were collected`);
  for (const err of errors) {
    // inspect shows message, stack, cause chain and own properties alike.
    const text = inspect(err, { depth: 10 });
    t.notOk(SECRETS.some((secret) => text.includes(secret)), `no secret in: ${(err as Error).message.slice(0, 80)}`);
  }
  t.notOk(logged.some((line) => SECRETS.some((secret) => line.includes(secret))), 'no secret in the log');
});
