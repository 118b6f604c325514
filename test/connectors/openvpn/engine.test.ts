/**
 * The openvpn connector in the whole engine (real Temporal dev server, PostgreSQL, the gateway's
 * SCIM and admin API, a real easy-rsa PKI from ./test-pki.ts) with real one-time download links: a
 * rule maps the SCIM group "VPN Users" to office routes; a user added to it gets a certificate and
 * a signed delivery notice whose link serves, once, a profile with a key that matches the
 * certificate; the key leaves the PKI and nothing readable stays in the database; Okta's
 * deactivation revokes the certificate in the CRL the server reads and removes the ccd file, while
 * another user's certificate stays valid. No link or profile text reaches the audit log or account
 * errors. Everything is driven as an operator and Okta would: admin API and SCIM only.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { NativeConnection } from '@temporalio/worker';
import { loadWorkerConfig } from '../../../core/config.js';
import { deliveryFactory, type DeliveryNotice } from '../../../core/delivery/index.js';
import { parseIndex, type IndexEntry } from '../../../connectors/openvpn/easyrsa.js';
import { createWorker } from '../../../workflows/worker.js';
import { createTestDatabase } from '../../helpers/db.js';
import { startTestGateway, userBody } from '../../helpers/gateway.js';
import { eventually, testTemporal, workflowBundle } from '../../helpers/temporal.js';
import { startNoticeReceiver } from '../../core/delivery/notice-receiver.js';
import { connectorConfig, createTestPki, type TestPki } from './test-pki.js';

const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
const SECRET = 'openvpn-engine-notice-secret-0123456789';
const PUBLIC_URL = 'https://gw.example.test/idm';
const OFFICE = { name: 'office', routes: ['10.20.0.0/16', 'fd00:20::/48'], dnsServers: ['10.20.0.53'] };

const pki = await createTestPki('ovpn-engine');
t.teardown(() => pki.close());
const database = await createTestDatabase(t);
const temporal = await testTemporal(t);
const receiver = await startNoticeReceiver(t, SECRET);
// The gateway and the worker read the same settings, as they would from one environment.
const env = { PUBLIC_URL, DELIVERY_WEBHOOK_URL: receiver.url, DELIVERY_WEBHOOK_SECRET: SECRET, USER_SYNC_IDLE_MS: '1000' };
const gw = await startTestGateway(t, { database, temporalAddress: temporal.address, taskQueue: temporal.taskQueue, scopes: ['scim:read', 'scim:write', 'admin'], env });
const api = gw.call;
const db = database.db;

// The worker of a VPN host: its connectors get ctx.deliver, built for the same configuration.
const workerDb = database.newPool(5);
const deliverFor = deliveryFactory(loadWorkerConfig(env), workerDb);
if (!deliverFor) throw new Error('deliveries should be on with PUBLIC_URL and a delivery webhook configured');
const connection = await NativeConnection.connect({ address: temporal.address });
const bundle = workflowBundle();
const worker = await createWorker({ connection, namespace: temporal.namespace, taskQueue: temporal.taskQueue, db: workerDb, deliverFor, ...(bundle ? { workflowBundle: bundle } : {}) });
const running = worker.run();
t.teardown(async () => {
  worker.shutdown();
  await running;
  await connection.close();
});


/** What one provisioned user received, for later checks. */
interface Provisioned {
  id: string;
  commonName: string;
  notice: DeliveryNotice;
  token: string;
  profile: string;
  certPath: string;
}
const people: Record<string, Provisioned> = {};
/** Account errors seen through the API while they were recorded (a later success clears them). */
const seenErrors: string[] = [];
/** The deliveries table as text (bytea as hex) while the links were still unused. */
let deliveriesBeforeDownload = '';

const tokenOf = (url: string) => url.split('/downloads/')[1]!;
const hex = (text: string) => Buffer.from(text, 'utf8').toString('hex');

function inlineBlock(profile: string, tag: string): string {
  const m = new RegExp(`<${tag}>\\n([\\s\\S]*?)\\n</${tag}>`).exec(profile);
  if (!m) throw new Error(`the profile has no <${tag}> block`);
  return m[1]!;
}

/** The base64 body of a PEM block (what would show up if key material leaked anywhere). */
function pemBody(pem: string): string {
  return pem.split('\n').filter((l) => l && !l.startsWith('-----')).join('');
}

async function indexEntries(p: TestPki = pki): Promise<IndexEntry[]> {
  return parseIndex(await readFile(join(p.pkiDir, 'index.txt'), 'utf8'));
}

async function groupId(displayName: string): Promise<string> {
  const [group] = (await api('GET', `/scim/v2/Groups?filter=${encodeURIComponent(`displayName eq "${displayName}"`)}`)).Resources;
  return group.id as string;
}

async function accountOf(userId: string, connectorId = 'vpn'): Promise<{ state: string; remoteId: string | null; lastError: string | null } | undefined> {
  const accounts: Array<{ connectorId: string; state: string; remoteId: string | null; lastError: string | null }> = await api('GET', `/api/users/${userId}/provisioning`);
  return accounts.find((a) => a.connectorId === connectorId);
}

/** Every file under `dir`, recursively, with its content. */
async function filesUnder(dir: string): Promise<Array<{ path: string; content: Buffer }>> {
  const out: Array<{ path: string; content: Buffer }> = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    out.push({ path, content: await readFile(path) });
  }
  return out;
}

t.test('setup: the connector is configured and tested through the admin API; an entitlement and a rule', async (t) => {
  const saved = await api('PUT', '/api/connectors/vpn', { id: 'vpn', type: 'openvpn', config: connectorConfig(pki, { commonName: 'externalId' }) });
  t.equal(saved.type, 'openvpn');
  t.same(await api('POST', '/api/connectors/vpn/test'), { ok: true }, 'validate() passes in the worker, against the real PKI');
  const bad = await gw.scim({ method: 'POST', url: '/api/entitlements', headers: { 'content-type': 'application/json' }, payload: { connectorId: 'vpn', name: 'x', target: { name: 'x', gateway: '10.0.0.1' } } });
  t.equal(bad.statusCode, 400, 'an entitlement target outside the schema is refused');
  await api('POST', '/api/entitlements', { connectorId: 'vpn', name: 'office', target: OFFICE }, 201);
  await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'VPN Users' }, 201);
  await api('POST', '/api/rules', { name: 'vpn-users', group: 'VPN Users', entitlements: ['vpn/office'] }, 201);
  t.same(await readdir(pki.ccdDir), [], 'nothing is granted before anyone is in the group');
});

t.test('users added to "VPN Users" each get a certificate and a one-time link to their profile', async (t) => {
  const okta = { alice: '00uA1ice7Okta0x1', bob: '00uB0b9Okta0x2' };
  const ids: Record<string, string> = {};
  for (const [name, externalId] of Object.entries(okta)) {
    const body = userBody(`${name}@example.com`, { externalId, name: { givenName: name, familyName: 'Tester' }, emails: [{ value: `${name}@example.com`, type: 'work', primary: true }], active: true });
    ids[name] = (await api('POST', '/scim/v2/Users', body, 201)).id as string;
  }
  await api('PATCH', `/scim/v2/Groups/${await groupId('VPN Users')}`, {
    schemas: [PATCH],
    Operations: [{ op: 'add', path: 'members', value: Object.values(ids).map((value) => ({ value })) }],
  });

  const notices: Record<string, DeliveryNotice> = {};
  for (const name of Object.keys(okta)) {
    notices[name] = await eventually(async () => receiver.notices.find((n) => n.userId === ids[name]), 60_000, `${name}'s delivery notice`);
  }
  t.equal(receiver.rejected, 0, 'every notice carried a valid signature (verified by the receiver with the shared secret)');
  t.equal(receiver.notices.length, 2, 'one notice per user');

  // The link is not spent yet: this is what a database dump would hold meanwhile.
  deliveriesBeforeDownload = (await db.query<{ text: string }>(`SELECT coalesce(string_agg(row_to_json(d)::text, E'\\n'), '') AS text FROM deliveries d`)).rows[0]!.text;
  t.match(deliveriesBeforeDownload, /"ciphertext":"\\\\x[0-9a-f]+"/, 'the rows hold ciphertext while the links are unused');

  for (const [name, externalId] of Object.entries(okta)) {
    await t.test(name, async (t) => {
      const cn = externalId.toLowerCase();
      const notice = notices[name]!;
      t.match(
        notice,
        { type: 'delivery.created', userId: ids[name], userName: `${name}@example.com`, email: `${name}@example.com`, connectorId: 'vpn', filename: `${cn}.ovpn` },
        'the notice names the user, the connector and the profile',
      );
      t.match(notice.url, /^https:\/\/gw\.example\.test\/idm\/downloads\/[A-Za-z0-9_-]{43}$/, 'the link is under PUBLIC_URL');
      t.ok(Date.parse(notice.expiresAt) > Date.now(), 'and has not expired');

      const issued = (await indexEntries()).filter((e) => e.commonName === cn);
      t.equal(issued.length, 1, 'one certificate was issued in the PKI');
      t.equal(issued[0]!.status, 'V', 'and it is valid');
      const issuedPem = await readFile(join(pki.pkiDir, 'issued', `${cn}.crt`), 'utf8');

      const token = tokenOf(notice.url);
      const res = await gw.app.inject({ method: 'GET', url: `/downloads/${token}` });
      t.equal(res.statusCode, 200, 'the link serves the profile');
      t.equal(res.headers['cache-control'], 'no-store', 'uncacheable');
      t.equal(res.headers['content-type'], 'application/x-openvpn-profile');
      t.equal(res.headers['content-disposition'], `attachment; filename="${cn}.ovpn"`);
      const profile = res.body;
      t.match(profile, /^client\ndev tun\nremote vpn\.example\.test 1194 udp\n/, 'a client profile for the configured server');
      t.match(profile, /\nverify-x509-name server name\n/);

      t.equal(inlineBlock(profile, 'ca'), (await readFile(pki.caPath, 'utf8')).trim(), 'it holds the CA');
      t.equal(inlineBlock(profile, 'tls-crypt'), (await readFile(pki.tlsCryptPath, 'utf8')).trim(), 'and the tls-crypt key');
      const certPem = `${inlineBlock(profile, 'cert')}\n`;
      const cert = new X509Certificate(certPem);
      t.equal(cert.serialNumber.toUpperCase().replace(/^0+/, ''), issued[0]!.serial.replace(/^0+/, ''), "the user's certificate, the one in the PKI's index");
      t.ok(issuedPem.includes(certPem.trim()), 'the same certificate as issued/<cn>.crt');
      t.match(cert.subject, new RegExp(`CN=${cn}`), 'for the common name taken from the Okta externalId');
      t.ok(cert.verify(new X509Certificate(await readFile(pki.caPath, 'utf8')).publicKey), 'signed by the CA');
      const keyPem = inlineBlock(profile, 'key');
      t.match(keyPem, /^-----BEGIN PRIVATE KEY-----\n/, 'and a private key');
      t.ok(cert.checkPrivateKey(createPrivateKey(keyPem)), 'which matches the certificate');
      t.notOk(new X509Certificate(await readFile(pki.serverCert, 'utf8')).checkPrivateKey(createPrivateKey(keyPem)), '(the check tells keys apart: it fails for the server certificate)');

      const again = await gw.app.inject({ method: 'GET', url: `/downloads/${token}` });
      t.equal(again.statusCode, 410, 'a second GET answers 410');
      t.notOk(again.body.includes('PRIVATE KEY'), 'with nothing of the profile');

      t.notOk(existsSync(join(pki.pkiDir, 'private', `${cn}.key`)), "the key is gone from the PKI's private/ directory");
      const holding = (await filesUnder(pki.pkiDir)).filter((f) => f.content.includes(pemBody(keyPem).slice(0, 60))).map((f) => f.path);
      t.same(holding, [], 'no file of the PKI holds the key any more');

      for (const [what, needle] of [
        ['the token', token],
        ['the token (hex)', hex(token)],
        ['the token bytes (hex)', Buffer.from(token, 'base64url').toString('hex')],
        ['the key', pemBody(keyPem).slice(0, 60)],
        ['the key (hex)', hex(pemBody(keyPem).slice(0, 60))],
        ['the profile text', 'remote vpn.example.test'],
        ['the profile text (hex)', hex('remote vpn.example.test')],
        ['a PEM header (hex)', hex('PRIVATE KEY')],
      ] as const) {
        t.notOk(deliveriesBeforeDownload.includes(needle), `the deliveries rows held no plaintext: not ${what}`);
      }
      const { rows } = await db.query<{ ciphertext: Buffer | null; downloaded_at: Date | null; size: number }>('SELECT ciphertext, downloaded_at, size FROM deliveries WHERE id = $1', [notice.id]);
      t.equal(rows[0]!.size, Buffer.byteLength(profile), 'the row was this profile');
      t.equal(rows[0]!.ciphertext, null, 'and holds no content once downloaded');
      t.ok(rows[0]!.downloaded_at, 'the download is recorded');

      const ccd = await eventually(async () => (existsSync(join(pki.ccdDir, cn)) ? await readFile(join(pki.ccdDir, cn), 'utf8') : undefined), 30_000, `${name}'s ccd file`);
      t.match(ccd, /push "route 10\.20\.0\.0 255\.255\.0\.0"\npush "route-ipv6 fd00:20::\/48"\npush "dhcp-option DNS 10\.20\.0\.53"/, 'the office routes are granted in the ccd file');
      const account = await eventually(async () => {
        const a = await accountOf(ids[name]!);
        return a?.state === 'active' ? a : undefined;
      }, 30_000, `${name}'s account`);
      t.match(account, { remoteId: cn, lastError: null }, 'the account is active under its common name');
      const [listed] = await api('GET', `/api/users/${ids[name]}/deliveries`);
      t.match(listed, { id: notice.id, connectorId: 'vpn', filename: `${cn}.ovpn`, state: 'downloaded' }, 'the admin listing shows the link as used');

      const certPath = join(pki.dir, `${cn}.delivered.crt`);
      await writeFile(certPath, certPem);
      const verified = await pki.verify(certPath);
      t.ok(verified.ok, `openssl verifies it against the CA and the installed CRL: ${verified.output.trim()}`);
      people[name] = { id: ids[name]!, commonName: cn, notice, token, profile, certPath };
    });
  }
});

t.test('Okta deactivates alice: her certificate is revoked in the CRL the server reads, bob keeps his', async (t) => {
  const alice = people.alice!;
  const bob = people.bob!;
  await api('PATCH', `/scim/v2/Users/${alice.id}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { active: false } }] });
  const account = await eventually(async () => {
    const a = await accountOf(alice.id);
    return a?.state === 'disabled' ? a : undefined;
  }, 60_000, "alice's account to be disabled");
  t.match(account, { remoteId: alice.commonName, lastError: null }, 'the account is disabled without error');

  const entries = (await indexEntries()).filter((e) => e.commonName === alice.commonName);
  t.equal(entries.length, 1, 'no new certificate was issued');
  t.match(entries[0], { status: 'R', revocationReason: 'cessationOfOperation' }, 'pki/index.txt records the revocation');
  const revoked = await pki.verify(alice.certPath);
  t.notOk(revoked.ok, 'openssl verify -crl_check fails for her certificate');
  t.match(revoked.output, /certificate revoked/, `because the installed CRL lists it: ${revoked.output.trim()}`);
  t.notOk(existsSync(join(pki.ccdDir, alice.commonName)), 'her ccd file is gone');

  const kept = await pki.verify(bob.certPath);
  t.ok(kept.ok, `bob's certificate still verifies: ${kept.output.trim()}`);
  t.match(kept.output, /: OK/);
  t.ok(existsSync(join(pki.ccdDir, bob.commonName)), 'bob keeps his ccd file');
  t.match(await accountOf(bob.id), { state: 'active', lastError: null });
  t.equal(receiver.notices.length, 2, 'nothing was delivered on deactivation');
});

t.test('a refused notice stops with its reason on the account; the next change delivers the same certificate', async (t) => {
  // The receiver refuses the next notice and echoes it (with the link) in its answer.
  receiver.failNext.push({ status: 400 });
  const carol = (await api('POST', '/scim/v2/Users', userBody('carol@example.com', { externalId: '00uCar0lOkta0x3', emails: [{ value: 'carol@example.com', primary: true }], active: true }), 201)).id as string;
  const cn = '00ucar0lokta0x3';
  // Her creation's sync round ends first: a round still running when she joins the group would see
  // the membership too, and the group change's own round would then retry (and succeed) at once.
  await eventually(async () => (await db.query('SELECT 1 FROM user_sync_state WHERE user_id = $1', [carol])).rowCount, 30_000, "carol's first sync round");
  await api('PATCH', `/scim/v2/Groups/${await groupId('VPN Users')}`, { schemas: [PATCH], Operations: [{ op: 'add', path: 'members', value: [{ value: carol }] }] });
  const error = await eventually(async () => (await accountOf(carol))?.lastError, 60_000, "carol's error to be recorded");
  t.match(error, /^vpn: createAccount: delivery: notifying http:\/\/127\.0\.0\.1:\d+ failed: HTTP 400/, `the account says why: ${error}`);
  t.notOk(error.includes('/downloads/'), 'without the link the receiver echoed');
  seenErrors.push(error);
  t.equal(receiver.failNext.length, 0, 'the refusal was used');
  t.same((await api('GET', `/api/users/${carol}/deliveries`)).map((d: { state: string }) => d.state), ['undelivered'], 'the link nobody heard of was withdrawn');
  t.ok(existsSync(join(pki.pkiDir, 'private', `${cn}.key`)), 'the key waits in the PKI for a delivery that reaches her');
  t.notOk(existsSync(join(pki.ccdDir, cn)), 'no access without a profile');
  const serial = (await indexEntries()).find((e) => e.commonName === cn)?.serial;
  t.ok(serial, 'a certificate was issued');

  // Any change to the user runs the sync again (here, Okta sending a new family name).
  await api('PATCH', `/scim/v2/Users/${carol}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { name: { givenName: 'Carol', familyName: 'Again' } } }] });
  const notice = await eventually(async () => receiver.notices.find((n) => n.userId === carol), 60_000, "carol's delivery notice");
  const res = await gw.app.inject({ method: 'GET', url: `/downloads/${tokenOf(notice.url)}` });
  t.equal(res.statusCode, 200);
  const cert = new X509Certificate(`${inlineBlock(res.body, 'cert')}\n`);
  t.equal(cert.serialNumber.toUpperCase().replace(/^0+/, ''), serial!.replace(/^0+/, ''), 'the same certificate is delivered, not a new one');
  t.ok(cert.checkPrivateKey(createPrivateKey(inlineBlock(res.body, 'key'))), 'with its key');
  t.equal((await indexEntries()).filter((e) => e.commonName === cn).length, 1, 'nothing else was issued');
  // The notice goes out before the activity that sent it removes the key and records the account.
  const account = await eventually(async () => {
    const a = await accountOf(carol);
    return a?.state === 'active' && existsSync(join(pki.ccdDir, cn)) ? a : undefined;
  }, 30_000, "carol's account and ccd file");
  t.notOk(existsSync(join(pki.pkiDir, 'private', `${cn}.key`)), 'now the key is gone from the PKI');
  t.equal(account.lastError, null, 'the error is cleared');
  people.carol = { id: carol, commonName: cn, notice, token: tokenOf(notice.url), profile: res.body, certPath: '' };
});

t.test('no link token or profile content appears in the audit log or in account errors', async (t) => {
  const audit = (await db.query<{ text: string }>(`SELECT coalesce(string_agg(row_to_json(e)::text, E'\\n'), '') AS text FROM audit_events e`)).rows[0]!.text;
  const { rows: actions } = await db.query<{ action: string; n: string }>(`SELECT action, count(*) AS n FROM audit_events WHERE action LIKE 'delivery.%' GROUP BY action ORDER BY action`);
  t.same(
    actions,
    [
      { action: 'delivery.created', n: '4' },
      { action: 'delivery.downloaded', n: '3' },
      { action: 'delivery.withdrawn', n: '1' },
    ],
    'the audit log does record the deliveries, downloads and the withdrawn link',
  );
  t.ok(seenErrors.length > 0, `account errors were recorded along the way (${seenErrors.length})`);
  const stored = (await db.query<{ text: string }>(`SELECT coalesce(string_agg(coalesce(last_error, ''), E'\\n'), '') AS text FROM accounts`)).rows[0]!.text;
  const errors = [stored, ...seenErrors].join('\n');
  for (const p of Object.values(people)) {
    const key = pemBody(inlineBlock(p.profile, 'key'));
    for (const [where, text] of [
      ['audit log', audit],
      ['account errors', errors],
    ] as const) {
      t.notOk(text.includes(p.token), `${where}: not ${p.commonName}'s token`);
      t.notOk(text.includes(Buffer.from(p.token, 'base64url').toString('hex')), `${where}: not the token's bytes`);
      t.notOk(text.includes(key.slice(0, 60)), `${where}: not ${p.commonName}'s private key`);
    }
  }
  for (const [where, text] of [
    ['audit log', audit],
    ['account errors', errors],
  ] as const) {
    t.notOk(text.includes('/downloads/'), `${where}: no download link`);
    t.notOk(text.includes('PRIVATE KEY'), `${where}: no PEM key block`);
    t.notOk(text.includes('remote vpn.example.test'), `${where}: no profile text`);
  }
});

t.test('the default common name (userName) with an email-style Okta login', async (t) => {
  const second = await createTestPki('ovpn-engine-mail');
  t.teardown(() => second.close());
  await api('PUT', '/api/connectors/vpn-mail', { id: 'vpn-mail', type: 'openvpn', config: connectorConfig(second) });
  await api('POST', '/api/entitlements', { connectorId: 'vpn-mail', name: 'office', target: OFFICE }, 201);
  await api('POST', '/scim/v2/Groups', { schemas: [GROUP], displayName: 'VPN Mail Users' }, 201);
  await api('POST', '/api/rules', { name: 'vpn-mail-users', group: 'VPN Mail Users', entitlements: ['vpn-mail/office'] }, 201);
  const dana = (await api('POST', '/scim/v2/Users', userBody('dana@example.com', { emails: [{ value: 'dana@example.com', primary: true }], active: true }), 201)).id as string;
  await api('PATCH', `/scim/v2/Groups/${await groupId('VPN Mail Users')}`, { schemas: [PATCH], Operations: [{ op: 'add', path: 'members', value: [{ value: dana }] }] });
  const outcome = await eventually(
    async () => {
      const notice = receiver.notices.find((n) => n.userId === dana);
      const error = (await accountOf(dana, 'vpn-mail'))?.lastError;
      return notice || error ? { notice, error } : undefined;
    },
    60_000,
    "dana's notice or error",
  );
  if (outcome.error) {
    t.notOk(outcome.error.includes('/downloads/') || outcome.error.includes('PRIVATE KEY'), `the recorded error carries no link or key: ${outcome.error}`);
  }
  t.equal(outcome.error ?? null, null, 'no error on the account');
  t.match(outcome.notice, { filename: 'dana@example.com.ovpn', connectorId: 'vpn-mail' }, 'a profile link reached the receiver');
  await eventually(async () => !existsSync(join(second.pkiDir, 'private', 'dana@example.com.key')), 30_000, 'the key to leave the PKI');
  t.pass('and the key left the PKI');
});
