/**
 * One-time download links end to end against real PostgreSQL and the real gateway app: what
 * `deliver` stores and tells the user, what GET /downloads/:token answers (once), how links expire,
 * are superseded, withdrawn and purged, and that neither the token nor the content reaches the
 * database in the clear, the audit log, error messages or the request log.
 */
import { createHash } from 'node:crypto';
import { createServer } from 'node:net';
import t from 'tap';
import { buildApp, loggerOptions } from '../../../gateway/app.js';
import { createToken } from '../../../core/auth/tokens.js';
import { ConfigError, loadCommonConfig, loadGatewayConfig, loadWorkerConfig } from '../../../core/config.js';
import { deliveryFactory, purgeDeliveries } from '../../../core/delivery/index.js';
import { TemporalAccess } from '../../../gateway/temporal.js';
import { PermanentError, TransientError, type Deliver } from '@scim-gateway/connector-sdk';
import { createTestDatabase } from '../../helpers/db.js';
import { startTestGateway, userBody } from '../../helpers/gateway.js';
import { eventually } from '../../helpers/temporal.js';
import { startNoticeReceiver } from './notice-receiver.js';

const SECRET = 'delivery-test-secret-0123456789abcdef';
const PUBLIC_URL = 'https://gateway.example.test/idm/';
const HOUR = 3_600_000;

const database = await createTestDatabase(t);
const receiver = await startNoticeReceiver(t, SECRET);
const env = {
  PUBLIC_URL,
  DELIVERY_WEBHOOK_URL: receiver.url,
  DELIVERY_WEBHOOK_SECRET: SECRET,
  DELIVERY_TTL_MS: String(HOUR),
  DELIVERY_MAX_TTL_MS: String(2 * HOUR),
};
const gw = await startTestGateway(t, { database, temporalAddress: '127.0.0.1:1', taskQueue: 'unused', dispatchOutbox: false, scopes: ['scim:read', 'scim:write', 'admin'], env });
const db = database.db;

await db.query(`INSERT INTO connectors (id, type) VALUES ('vpn', 'openvpn'), ('other', 'openvpn')`);
const alice = await gw.call('POST', '/scim/v2/Users', userBody('alice@example.com', { emails: [{ value: 'alice.work@example.com', primary: true }, { value: 'alice@home.example' }] }), 201);
const bob = await gw.call('POST', '/scim/v2/Users', userBody('bob@example.com'), 201);

const factory = deliveryFactory(loadWorkerConfig(env), db);
if (!factory) throw new Error('deliveries should be on with PUBLIC_URL and a webhook configured');
const deliverVpn: Deliver = factory('vpn');

/** A profile whose bytes the test can look for anywhere. */
function profile(marker: string): string {
  return `client\nremote vpn.example.com 1194\n<key>\n-----BEGIN PRIVATE KEY-----\n${marker}\n-----END PRIVATE KEY-----\n</key>\n`;
}

const tokenOf = (url: string) => url.split('/downloads/')[1]!;
const download = (token: string) => gw.app.inject({ method: 'GET', url: `/downloads/${token}` });
/** Everything the database holds about deliveries and audit events, as text. */
async function everythingStored(): Promise<string> {
  const { rows } = await db.query<{ text: string }>(
    `SELECT coalesce((SELECT string_agg(row_to_json(d)::text, E'\\n') FROM deliveries d), '') || E'\\n' ||
            coalesce((SELECT string_agg(row_to_json(e)::text, E'\\n') FROM audit_events e), '') AS text`,
  );
  return rows[0]!.text;
}
function hexOf(text: string): string {
  return Buffer.from(text, 'utf8').toString('hex');
}

t.test('deliver stores only ciphertext and announces the link in a signed notice', async (t) => {
  const marker = 'MARKER-alice-private-key-7f3a9c';
  const before = receiver.notices.length;
  const link = await deliverVpn({ userId: alice.id, filename: 'alice.ovpn', contentType: 'application/x-openvpn-profile', content: profile(marker) });

  t.match(link.url, /^https:\/\/gateway\.example\.test\/idm\/downloads\/[A-Za-z0-9_-]{43}$/, 'the link is under PUBLIC_URL, its path prefix kept');
  const expiresIn = Date.parse(link.expiresAt) - Date.now();
  t.ok(expiresIn > HOUR - 60_000 && expiresIn <= HOUR, `the default lifetime is DELIVERY_TTL_MS (expires in ${expiresIn} ms)`);

  t.equal(receiver.notices.length, before + 1, 'one notice reached the receiver');
  t.equal(receiver.rejected, 0, 'its signature verified with the shared secret');
  const notice = receiver.notices.at(-1)!;
  t.same(
    { ...notice, id: undefined },
    { id: undefined, type: 'delivery.created', userId: alice.id, userName: 'alice@example.com', email: 'alice.work@example.com', connectorId: 'vpn', filename: 'alice.ovpn', url: link.url, expiresAt: link.expiresAt },
    'the notice names the user, their primary email, the file and the link',
  );

  const token = tokenOf(link.url);
  const { rows } = await db.query<{ id: string; token_hash: Buffer; ciphertext: Buffer; nonce: Buffer; auth_tag: Buffer; size: number; user_id: string; connector_id: string }>(
    'SELECT * FROM deliveries WHERE id = $1',
    [notice.id],
  );
  const row = rows[0]!;
  t.same(row.token_hash, createHash('sha256').update(token).digest(), 'the row keeps the SHA-256 of the token');
  t.equal(row.size, Buffer.byteLength(profile(marker)));
  t.equal(row.ciphertext.length, row.size, 'GCM ciphertext is as long as the content');
  t.equal(row.nonce.length, 12);
  t.equal(row.auth_tag.length, 16);
  t.equal(row.ciphertext.indexOf(Buffer.from(marker)), -1, 'the private key is not in the ciphertext');
  t.equal(row.ciphertext.indexOf(Buffer.from('BEGIN PRIVATE KEY')), -1, 'no plaintext fragment either');

  const stored = await everythingStored();
  for (const [what, needle] of [
    ['the private key', marker],
    ['the private key (hex)', hexOf(marker)],
    ['the token', token],
    ['the token (hex)', hexOf(token)],
    ['the token bytes (hex)', Buffer.from(token, 'base64url').toString('hex')],
    ['the link', '/downloads/'],
  ] as const) {
    t.notOk(stored.includes(needle), `${what} appears nowhere in the deliveries or audit tables`);
  }
  const { rows: audit } = await db.query<{ actor: string; resource_type: string; resource_id: string; after: Record<string, unknown> }>(
    `SELECT actor, resource_type, resource_id, after FROM audit_events WHERE action = 'delivery.created' AND after->>'deliveryId' = $1`,
    [notice.id],
  );
  t.match(audit, [{ actor: 'connector:vpn', resource_type: 'User', resource_id: alice.id, after: { connectorId: 'vpn', filename: 'alice.ovpn', expiresAt: link.expiresAt } }], 'delivery.created is audited against the user');
});

t.test('the first GET returns exactly the content, privately; the second answers 410', async (t) => {
  const content = profile('MARKER-first-get');
  const link = await deliverVpn({ userId: alice.id, filename: 'alice.ovpn', contentType: 'application/x-openvpn-profile', content });
  const token = tokenOf(link.url);

  const first = await download(token);
  t.equal(first.statusCode, 200);
  t.equal(first.body, content, 'the bytes delivered are the bytes handed over');
  t.equal(first.headers['content-type'], 'application/x-openvpn-profile');
  t.equal(first.headers['content-disposition'], 'attachment; filename="alice.ovpn"');
  t.equal(first.headers['cache-control'], 'no-store');
  t.equal(first.headers['referrer-policy'], 'no-referrer');
  t.equal(first.headers['x-content-type-options'], 'nosniff');
  t.equal(Number(first.headers['content-length']), Buffer.byteLength(content));

  const { rows } = await db.query<{ ciphertext: Buffer | null; nonce: Buffer | null; auth_tag: Buffer | null; downloaded_at: Date | null }>(
    'SELECT ciphertext, nonce, auth_tag, downloaded_at FROM deliveries WHERE token_hash = $1',
    [createHash('sha256').update(token).digest()],
  );
  t.same({ ciphertext: rows[0]!.ciphertext, nonce: rows[0]!.nonce, auth_tag: rows[0]!.auth_tag }, { ciphertext: null, nonce: null, auth_tag: null }, 'after download the encrypted content is gone');
  t.ok(rows[0]!.downloaded_at, 'and the download time is recorded');

  const second = await download(token);
  t.equal(second.statusCode, 410, 'a used link is gone');
  t.same(second.json(), { statusCode: 410, error: 'Gone', message: 'this download link has been used or has expired; ask for a new one' });
  t.equal(second.headers['cache-control'], 'no-store', 'errors are not cached either');
  t.notOk(second.body.includes('MARKER'), 'no content in the answer');

  const { rows: audit } = await db.query<{ resource_id: string; after: Record<string, unknown> }>(`SELECT resource_id, after FROM audit_events WHERE action = 'delivery.downloaded'`);
  t.equal(audit.length, 1, 'the download is audited once');
  t.match(audit[0], { resource_id: alice.id, after: { connectorId: 'vpn', filename: 'alice.ovpn' } });

  const head = await gw.app.inject({ method: 'HEAD', url: `/downloads/${tokenOf((await deliverVpn({ userId: bob.id, filename: 'bob.ovpn', contentType: 'application/x-openvpn-profile', content: 'x' })).url)}` });
  t.equal(head.statusCode, 404, 'HEAD is not served, so a link checker cannot spend a link');
});

t.test('unknown and malformed tokens answer 404, revealing nothing', async (t) => {
  const unknown = Buffer.alloc(32, 7).toString('base64url');
  for (const token of [unknown, 'short', `${unknown}A`, unknown.replace(/.$/, '!'), '%2e%2e%2fetc', 'A'.repeat(500)]) {
    const res = await download(token);
    t.equal(res.statusCode, 404, `404 for ${token.slice(0, 20)}…`);
    t.same(res.json(), { statusCode: 404, error: 'Not Found', message: 'no such download link' });
  }
  // Base64url of 32 bytes has one spelling: the same bytes written with stray low bits are not a token.
  const link = await deliverVpn({ userId: bob.id, filename: 'bob.ovpn', contentType: 'application/x-openvpn-profile', content: 'bob' });
  const token = tokenOf(link.url);
  const last = token.at(-1)!;
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const twin = token.slice(0, -1) + alphabet[alphabet.indexOf(last) ^ 1];
  t.equal((await download(twin)).statusCode, 404, 'a non-canonical spelling is not the token');
  t.equal((await download(token)).statusCode, 200, 'the real token still works');
});

t.test('an expired link answers 410 and its content is wiped on access', async (t) => {
  const link = await deliverVpn({ userId: bob.id, filename: 'bob.ovpn', contentType: 'application/x-openvpn-profile', content: 'expiring' });
  const hash = createHash('sha256').update(tokenOf(link.url)).digest();
  await db.query(`UPDATE deliveries SET expires_at = now() - interval '1 second' WHERE token_hash = $1`, [hash]);
  const res = await download(tokenOf(link.url));
  t.equal(res.statusCode, 410);
  t.same(res.json().message, 'this download link has been used or has expired; ask for a new one', 'the same answer as a used link');
  const { rows } = await db.query<{ ciphertext: Buffer | null; downloaded_at: Date | null }>('SELECT ciphertext, downloaded_at FROM deliveries WHERE token_hash = $1', [hash]);
  t.same(rows[0], { ciphertext: null, downloaded_at: null }, 'wiped, and not counted as downloaded');
});

t.test('concurrent GETs of one link: exactly one gets the file', async (t) => {
  const content = profile('MARKER-race');
  const link = await deliverVpn({ userId: bob.id, filename: 'race.ovpn', contentType: 'application/x-openvpn-profile', content });
  const answers = await Promise.all(Array.from({ length: 8 }, () => download(tokenOf(link.url))));
  const codes = answers.map((a) => a.statusCode).sort();
  t.same(codes, [200, 410, 410, 410, 410, 410, 410, 410], 'one 200, every other request 410');
  t.equal(answers.find((a) => a.statusCode === 200)!.body, content);
});

t.test('a newer link for the same file supersedes the older one', async (t) => {
  const older = await deliverVpn({ userId: alice.id, filename: 'laptop.ovpn', contentType: 'application/x-openvpn-profile', content: 'v1' });
  const elsewhere = await factory('other')({ userId: alice.id, filename: 'laptop.ovpn', contentType: 'application/x-openvpn-profile', content: 'other connector' });
  const otherFile = await deliverVpn({ userId: alice.id, filename: 'phone.ovpn', contentType: 'application/x-openvpn-profile', content: 'phone' });
  const newer = await deliverVpn({ userId: alice.id, filename: 'laptop.ovpn', contentType: 'application/x-openvpn-profile', content: 'v2' });
  t.equal((await download(tokenOf(older.url))).statusCode, 410, 'the older link no longer works');
  t.equal((await download(tokenOf(newer.url))).body, 'v2');
  t.equal((await download(tokenOf(elsewhere.url))).body, 'other connector', "another connector's file is untouched");
  t.equal((await download(tokenOf(otherFile.url))).body, 'phone', 'another file name is untouched');
  const { rows } = await db.query<{ after: { superseded: string[] } }>(`SELECT after FROM audit_events WHERE action = 'delivery.created' ORDER BY id DESC LIMIT 1`);
  t.equal(rows[0]!.after.superseded.length, 1, 'the audit event names the link it replaced');
});

t.test('a failed notice: transient or permanent error, and the unannounced link is withdrawn', async (t) => {
  const count = async () => Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM deliveries WHERE ciphertext IS NOT NULL')).rows[0]!.n);
  const live = await count();

  receiver.failNext.push({ status: 503, retryAfter: '7' });
  const err = await deliverVpn({ userId: bob.id, filename: 'retry.ovpn', contentType: 'application/x-openvpn-profile', content: 'retry me' }).catch((e: unknown) => e);
  t.ok(err instanceof TransientError, 'a 5xx from the receiver is transient: the engine retries the activity');
  t.equal((err as TransientError).retryAfterMs, 7000, 'with the wait the receiver asked for');
  t.match((err as Error).message, /^delivery: notifying http:\/\/127\.0\.0\.1:\d+ failed: HTTP 503$/, 'the receiver is named by origin only');
  t.notOk(JSON.stringify({ message: (err as Error).message, cause: String((err as Error).cause) }).includes('/downloads/'), 'the echoed link is not in the error');
  t.equal(await count(), live, 'the link nobody was told about holds no content');
  const { rows } = await db.query<{ revoked_reason: string }>(`SELECT revoked_reason FROM deliveries WHERE filename = 'retry.ovpn'`);
  t.same(rows, [{ revoked_reason: 'undelivered' }]);
  const { rows: withdrawn } = await db.query(`SELECT 1 FROM audit_events WHERE action = 'delivery.withdrawn' AND resource_id = $1`, [bob.id]);
  t.equal(withdrawn.length, 1, 'the withdrawal is audited');

  const retried = await deliverVpn({ userId: bob.id, filename: 'retry.ovpn', contentType: 'application/x-openvpn-profile', content: 'retry me' });
  t.equal((await download(tokenOf(retried.url))).body, 'retry me', 'the retried activity delivers a fresh, working link');

  receiver.failNext.push({ status: 400 });
  const rejected = await deliverVpn({ userId: bob.id, filename: 'x.ovpn', contentType: 'application/x-openvpn-profile', content: 'x' }).catch((e: unknown) => e);
  t.ok(rejected instanceof PermanentError, 'a 4xx is permanent');
  t.equal((rejected as PermanentError).kind, 'rejected');

  const wrongSecret = deliveryFactory(loadWorkerConfig({ ...env, DELIVERY_WEBHOOK_SECRET: 'another-secret-0123456789' }), db)!('vpn');
  const unauthorized = await wrongSecret({ userId: bob.id, filename: 'x.ovpn', contentType: 'application/x-openvpn-profile', content: 'x' }).catch((e: unknown) => e);
  t.ok(unauthorized instanceof PermanentError && unauthorized.kind === 'unauthorized', 'a receiver refusing the signature is a permanent failure');
  t.notOk((unauthorized as Error).message.includes('another-secret'), 'the secret is not in the message');

  const closedPort = await new Promise<number>((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
  const unreachable = deliveryFactory(loadWorkerConfig({ ...env, DELIVERY_WEBHOOK_URL: `http://127.0.0.1:${closedPort}/hook` }), db)!('vpn');
  const refused = await unreachable({ userId: bob.id, filename: 'x.ovpn', contentType: 'application/x-openvpn-profile', content: 'x' }).catch((e: unknown) => e);
  t.ok(refused instanceof TransientError, 'an unreachable receiver is transient');
  t.match((refused as Error).message, 'ECONNREFUSED');
  t.equal(await count(), live + 0, 'no failed attempt left content behind');
});

t.test('artifacts are checked; a deleted or inactive user gets nothing', async (t) => {
  const carol = await gw.call('POST', '/scim/v2/Users', userBody('carol@example.com', { active: false }), 201);
  const before = (await db.query('SELECT id FROM deliveries')).rowCount;
  const base = { userId: bob.id, filename: 'bob.ovpn', contentType: 'application/x-openvpn-profile', content: 'x' };
  for (const [what, artifact, kind] of [
    ['a path in the file name', { ...base, filename: '../etc/passwd' }, 'invalidArtifact'],
    ['a quote in the file name', { ...base, filename: 'a"b.ovpn' }, 'invalidArtifact'],
    ['a header in the content type', { ...base, contentType: 'text/plain\r\nset-cookie: x=y' }, 'invalidArtifact'],
    ['content over the limit', { ...base, content: new Uint8Array(1_048_577) }, 'invalidArtifact'],
    ['a zero lifetime', { ...base, ttlMs: 0 }, 'invalidArtifact'],
    ['a user id that is not a UUID', { ...base, userId: 'bob' }, 'invalidArtifact'],
    ['an unknown user', { ...base, userId: '00000000-0000-4000-8000-000000000000' }, 'notFound'],
    ['an inactive user', { ...base, userId: carol.id }, 'userInactive'],
  ] as const) {
    const err = await deliverVpn(artifact).catch((e: unknown) => e);
    t.ok(err instanceof PermanentError && err.kind === kind, `${what}: PermanentError ${kind} (${(err as Error).message})`);
  }
  t.equal((await db.query('SELECT id FROM deliveries')).rowCount, before, 'nothing was stored for them');

  const capped = await deliverVpn({ ...base, filename: 'capped.ovpn', ttlMs: 10 * 365 * 86_400_000 });
  const lifetime = Date.parse(capped.expiresAt) - Date.now();
  t.ok(lifetime <= 2 * HOUR && lifetime > 2 * HOUR - 60_000, `a longer lifetime is capped at DELIVERY_MAX_TTL_MS (${lifetime} ms)`);
  const binary = new Uint8Array([0, 255, 1, 254, 10, 13]);
  const bin = await deliverVpn({ ...base, filename: 'key.bin', contentType: 'application/octet-stream', content: binary });
  t.same([...(await download(tokenOf(bin.url))).rawPayload], [...binary], 'binary content comes back byte for byte');
});

t.test('a link dies with its user: deactivated or deleted before the download, it answers 410 and its content is wiped', async (t) => {
  const PATCH_OP = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
  for (const [name, end] of [
    ['erin@example.com', (id: string) => gw.call('PATCH', `/scim/v2/Users/${id}`, { schemas: [PATCH_OP], Operations: [{ op: 'replace', value: { active: false } }] })],
    ['finn@example.com', (id: string) => gw.call('DELETE', `/scim/v2/Users/${id}`, undefined, 204)],
  ] as const) {
    const user = await gw.call('POST', '/scim/v2/Users', userBody(name), 201);
    const link = await deliverVpn({ userId: user.id, filename: `${name}.ovpn`, contentType: 'application/x-openvpn-profile', content: profile(name) });
    await end(user.id);
    t.equal((await download(tokenOf(link.url))).statusCode, 410, `${name}: the link is gone`);
    const { rows } = await db.query<{ ciphertext: Buffer | null; downloaded_at: Date | null }>('SELECT ciphertext, downloaded_at FROM deliveries WHERE user_id = $1', [user.id]);
    t.same(rows, [{ ciphertext: null, downloaded_at: null }], `${name}: content wiped, never downloaded`);
  }
});

t.test('the sweep wipes expired links; purge deletes rows past retention', async (t) => {
  const sweeping = await startTestGateway(t, { database, temporalAddress: '127.0.0.1:1', taskQueue: 'unused', dispatchOutbox: false, env: { ...env, DELIVERY_SWEEP_MS: '100' } });
  t.equal(sweeping.config.deliverySweepMs, 100);
  const expired = await deliverVpn({ userId: bob.id, filename: 'sweep.ovpn', contentType: 'application/x-openvpn-profile', content: 'sweep' });
  const live = await deliverVpn({ userId: bob.id, filename: 'keep.ovpn', contentType: 'application/x-openvpn-profile', content: 'keep' });
  const hash = (url: string) => createHash('sha256').update(tokenOf(url)).digest();
  await db.query(`UPDATE deliveries SET expires_at = now() - interval '1 second' WHERE token_hash = $1`, [hash(expired.url)]);
  await eventually(
    async () => (await db.query<{ ciphertext: Buffer | null }>('SELECT ciphertext FROM deliveries WHERE token_hash = $1', [hash(expired.url)])).rows[0]!.ciphertext === null,
    10_000,
    'the gateway sweep to wipe the expired link',
  );
  const { rows } = await db.query<{ ciphertext: Buffer | null }>('SELECT ciphertext FROM deliveries WHERE token_hash = $1', [hash(live.url)]);
  t.ok(rows[0]!.ciphertext, 'a live link keeps its content');
  t.equal((await sweeping.app.inject({ method: 'GET', url: `/downloads/${tokenOf(expired.url)}` })).statusCode, 410, 'an expired link within retention is still known: 410');

  t.same(await purgeDeliveries(db), { wiped: 0, deleted: 0 }, 'within the default retention nothing is deleted');
  const purged = await purgeDeliveries(db, { retentionMs: 0 });
  t.ok(purged.deleted >= 1, `rows past retention are deleted (${purged.deleted})`);
  t.equal((await db.query('SELECT 1 FROM deliveries WHERE token_hash = $1', [hash(expired.url)])).rowCount, 0);
  t.equal((await download(tokenOf(expired.url))).statusCode, 404, 'a purged link is unknown');
  t.equal((await download(tokenOf(live.url))).body, 'keep', 'a live link survives the purge');
});

t.test('the token never reaches the request log', async (t) => {
  const lines: string[] = [];
  const temporal = new TemporalAccess('127.0.0.1:1', gw.config.temporalNamespace, 1000);
  const logged = await buildApp({
    config: { ...gw.config, logLevel: 'info' },
    db: database.newPool(3),
    temporal,
    dispatchOutbox: false,
    logger: { ...(loggerOptions('info') as object), stream: { write: (line: string) => void lines.push(line) } },
  });
  await logged.ready();
  t.teardown(() => logged.close());

  const link = await deliverVpn({ userId: alice.id, filename: 'logged.ovpn', contentType: 'application/x-openvpn-profile', content: 'logged' });
  const token = tokenOf(link.url);
  t.equal((await logged.inject({ method: 'GET', url: `/downloads/${token}` })).statusCode, 200);
  t.equal((await logged.inject({ method: 'GET', url: `/downloads/${token}` })).statusCode, 410);
  t.equal((await logged.inject({ method: 'GET', url: `/downloads/${token}/more?x=1` })).statusCode, 404, 'a path the route does not match');
  t.equal((await logged.inject({ method: 'GET', url: `/downloads/${token.repeat(4)}` })).statusCode, 404, 'an over-long token');

  const text = lines.join('');
  t.ok(lines.length >= 4, `the requests were logged, one line each (${lines.length} lines)`);
  t.notOk(text.includes(token), 'the token is in no log line');
  t.ok(text.includes('"url":"/downloads/[redacted]"'), 'the request line shows the route with the token replaced');
  t.ok(text.includes('"url":"/downloads/[redacted]?x=1"'), 'unmatched paths are redacted too, the query kept');
});

t.test('admin listing: states and times, never a link', async (t) => {
  await deliverVpn({ userId: alice.id, filename: 'pending.ovpn', contentType: 'application/x-openvpn-profile', content: 'pending' });
  const list = await gw.call('GET', `/api/users/${alice.id}/deliveries`);
  const states = new Set(list.map((d: { state: string }) => d.state));
  for (const s of ['downloaded', 'superseded', 'pending']) t.ok(states.has(s), `shows ${s} deliveries`);
  t.match(list[0], { id: String, connectorId: String, filename: String, contentType: String, size: Number, createdAt: String, expiresAt: String, state: String });
  t.notOk(JSON.stringify(list).includes('/downloads/'), 'no link in the listing');
  t.same(Object.keys(list[0]).sort(), ['connectorId', 'contentType', 'createdAt', 'downloadedAt', 'expiresAt', 'filename', 'id', 'size', 'state']);

  const bobList = await gw.call('GET', `/api/users/${bob.id}/deliveries`);
  t.ok(bobList.some((d: { filename: string; state: string }) => d.filename === 'retry.ovpn' && d.state === 'undelivered'), 'a withdrawn link shows as undelivered');

  t.equal((await gw.scim({ method: 'GET', url: `/api/users/${alice.id}/deliveries`, token: null })).statusCode, 401);
  const { token: scimOnly } = await createToken(db, 'scim-only', ['scim:read']);
  t.equal((await gw.scim({ method: 'GET', url: `/api/users/${alice.id}/deliveries`, token: scimOnly })).statusCode, 403, 'admin scope is required');
  t.equal((await gw.scim({ method: 'GET', url: '/api/users/00000000-0000-4000-8000-000000000000/deliveries' })).statusCode, 404);
});

t.test('without a public URL or a channel there is no ctx.deliver; configuration is checked', async (t) => {
  t.equal(deliveryFactory(loadCommonConfig({}), db), undefined, 'nothing configured: off');
  t.equal(deliveryFactory(loadCommonConfig({ PUBLIC_URL: 'https://gw.example.test' }), db), undefined, 'no channel: off');
  t.equal(deliveryFactory(loadCommonConfig({ DELIVERY_WEBHOOK_URL: receiver.url, DELIVERY_WEBHOOK_SECRET: SECRET }), db), undefined, 'no public URL: off');

  const refuse = (vars: Record<string, string>, variable: string, what: string) => {
    let err: unknown;
    try {
      loadGatewayConfig(vars);
    } catch (e) {
      err = e;
    }
    t.ok(err instanceof ConfigError && err.variable === variable, `${what}: ConfigError names ${variable}`);
    if (vars.DELIVERY_WEBHOOK_SECRET) t.notOk((err as Error).message.includes(vars.DELIVERY_WEBHOOK_SECRET), 'the secret is not in the message');
  };
  refuse({ DELIVERY_WEBHOOK_URL: receiver.url }, 'DELIVERY_WEBHOOK_SECRET', 'a URL without a secret');
  refuse({ DELIVERY_WEBHOOK_SECRET: SECRET }, 'DELIVERY_WEBHOOK_URL', 'a secret without a URL');
  refuse({ DELIVERY_WEBHOOK_URL: receiver.url, DELIVERY_WEBHOOK_SECRET: 'short-s3cret' }, 'DELIVERY_WEBHOOK_SECRET', 'a short secret');
  refuse({ DELIVERY_WEBHOOK_URL: 'ftp://x', DELIVERY_WEBHOOK_SECRET: SECRET }, 'DELIVERY_WEBHOOK_URL', 'a non-HTTP URL');
  refuse({ DELIVERY_TTL_MS: '7200000', DELIVERY_MAX_TTL_MS: '3600000' }, 'DELIVERY_TTL_MS', 'a default lifetime over the maximum');
  const defaults = loadGatewayConfig({});
  t.same([defaults.deliveryTtlMs, defaults.deliveryMaxTtlMs, defaults.deliverySweepMs], [86_400_000, 604_800_000, 60_000], 'defaults: one day, at most seven, sweep every minute');
  t.equal(loadGatewayConfig({ DELIVERY_MAX_TTL_MS: '3600000' }).deliveryTtlMs, 3_600_000, 'the default lifetime follows a smaller maximum');
});
