/**
 * The openvpn connector against a real easy-rsa PKI (./test-pki.ts): the contract kit, what a
 * delivered profile holds, revocation proven with `openssl verify -crl_check`, reconciliation of what
 * is in the PKI, the PKI lock under parallel and cross-process use, and failure classification.
 * The VPN itself (a real server and clients in network namespaces) is in ./network.test.ts.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { parseCcd } from '../../../connectors/openvpn/ccd.js';
import { checkCommonName, sanitizeCommonName } from '../../../connectors/openvpn/common-name.js';
import { parseIndex } from '../../../connectors/openvpn/easyrsa.js';
import { openvpnConnector } from '../../../connectors/openvpn/index.js';
import { collectPages, runContractKit, sampleUser, seedThroughConnector } from '@scim-gateway/connector-sdk/kit';
import { PermanentError, TransientError, type AccountInput, type Artifact, type RemoteAccount } from '@scim-gateway/connector-sdk';
import { validateConfig } from '@scim-gateway/connector-sdk/registry';
import { createSecretResolver } from '@scim-gateway/connector-sdk';
import { connectorConfig, createTestPki, type TestPki } from './test-pki.js';
import { errorRecorder } from '../../helpers/errors.js';

const run = promisify(execFile);
const MGMT_PASSWORD = 'mgmt-pw-7f3a9c1e5b';

const pki = await createTestPki();
t.teardown(() => pki.close());

/** What the test deliver function received, newest last. */
interface Delivered {
  artifact: Artifact;
  url: string;
}

function baseConfig(p: TestPki = pki): Record<string, unknown> {
  return connectorConfig(p);
}

const logLines: string[] = [];
function connect(config: Record<string, unknown> = baseConfig(), opts: { deliver?: boolean; failDelivery?: () => Error | undefined } = {}) {
  validateConfig(openvpnConnector, config);
  const delivered: Delivered[] = [];
  const instance = openvpnConnector.create({
    config: config as never,
    secret: createSecretResolver({ MGMT_PASSWORD }),
    log: {
      info: (msg, fields) => logLines.push(`${msg} ${JSON.stringify(fields ?? {})}`),
      warn: (msg, fields) => logLines.push(`${msg} ${JSON.stringify(fields ?? {})}`),
    },
    deliver:
      opts.deliver === false
        ? undefined
        : async (artifact) => {
            const failure = opts.failDelivery?.();
            if (failure) throw failure;
            const url = `https://gateway.test/downloads/${Math.random().toString(36).slice(2)}`;
            delivered.push({ artifact, url });
            return { url, expiresAt: new Date(Date.now() + (artifact.ttlMs ?? 3_600_000)).toISOString() };
          },
  });
  return { instance, delivered };
}

function user(name: string): AccountInput {
  return { ...sampleUser(name.replace(/[^a-z0-9]/g, '').slice(0, 12)), userName: name };
}

/** The inline block `tag` of a profile. */
function inlineBlock(profile: string, tag: string): string | undefined {
  const m = new RegExp(`<${tag}>\\n([\\s\\S]*?)\\n</${tag}>`).exec(profile);
  return m?.[1];
}

/** Writes the certificate of a delivered profile to a file, for openssl. */
async function certFileOf(d: Delivered): Promise<string> {
  const path = join(pki.dir, `${d.artifact.filename}.${d.url.split('/').pop()}.crt`);
  await writeFile(path, `${inlineBlock(String(d.artifact.content), 'cert')}\n`);
  return path;
}


/** Every error message the tests saw, to check at the end that none carries a secret. */
const { messages, expectError } = errorRecorder();

const entitlement = { id: 'ent-office', target: { name: 'office', routes: ['10.20.0.0/16', 'fd00:20::/48'], dnsServers: ['10.20.0.53'] } };

t.test('configuration', async (t) => {
  t.doesNotThrow(() => validateConfig(openvpnConnector, baseConfig()), 'a complete configuration');
  t.throws(() => validateConfig(openvpnConnector, { ...baseConfig(), pkiDir: 'relative/pki' }), /\/pkiDir/, 'paths are absolute');
  t.throws(() => validateConfig(openvpnConnector, { ...baseConfig(), management: { address: '/run/x.sock', password: 'hunter2' } }), /\/management\/password/, 'a plaintext password is refused');
  t.throws(() => validateConfig(openvpnConnector, { ...baseConfig(), profile: { remotes: [{ host: 'vpn;rm -rf' }] } }), /host/, 'a remote host is a host name');
  t.throws(() => validateConfig(openvpnConnector, { ...baseConfig(), profile: { remotes: [{ host: 'vpn' }], extraLines: ['auth-nocache\n<key>'] } }), /extraLines/, 'extra lines are single directives');
  t.throws(() => validateConfig(openvpnConnector, { ...baseConfig(), serverName: 'x' }), /serverName|additional/i, 'no unknown fields');
  const both = { ...baseConfig(), profile: { remotes: [{ host: 'vpn' }], tlsCrypt: 'env:A', tlsAuth: 'env:B' } };
  const err = t.throws(() => connect(both));
  t.equal((err as PermanentError).kind, 'invalidConfig', 'tlsCrypt and tlsAuth exclude each other');
});

t.test('common names are held to a strict character set', async (t) => {
  t.equal(sanitizeCommonName('Alice.Smith@Example.com'), 'alice.smith@example.com');
  t.equal(sanitizeCommonName('José Núñez'), 'jose_nunez', 'accents dropped, spaces mapped');
  t.equal(sanitizeCommonName('--help'), 'help', 'never starts like an option');
  t.equal(sanitizeCommonName('a/../../b'), 'a_.._.._b', 'no path separators');
  for (const bad of ['--help', '../ca', 'a b', 'A', '', 'x'.repeat(65), 'a\nb']) {
    t.throws(() => checkCommonName(bad, 'grant'), PermanentError, `remote id ${JSON.stringify(bad)} is refused`);
  }
  const { instance } = connect();
  const err = await expectError(instance.createAccount!({ ...user('x'), userName: '///' }), PermanentError);
  t.equal(err.kind, 'invalidInput', 'a user name with nothing usable is refused');
});

// Provisioned before the contract kit and left entitled: its certificate must still verify afterwards.
const keeper = connect();
const keeperUser = user('keeper.one@example.com');

t.test('a provisioned user receives a complete profile through the delivery link', async (t) => {
  const result = await keeper.instance.createAccount!(keeperUser);
  t.same(result, { status: 'applied', remoteId: 'keeper.one@example.com' }, 'the remote id is the common name');
  t.equal(keeper.delivered.length, 1, 'one profile delivered');
  const { artifact } = keeper.delivered[0]!;
  t.equal(artifact.userId, keeperUser.userId);
  t.equal(artifact.filename, 'keeper.one@example.com.ovpn');
  t.equal(artifact.contentType, 'application/x-openvpn-profile');
  const profile = String(artifact.content);
  t.match(profile, /^client\ndev tun\nremote vpn\.example\.test 1194 udp\n/, 'connection settings first');
  t.match(profile, /\nremote-cert-tls server\n/, 'the client checks it talks to a server');
  t.match(profile, /\nverify-x509-name server name\n/, 'and which one');
  t.equal(inlineBlock(profile, 'ca'), (await readFile(pki.caPath, 'utf8')).trim(), 'the CA inline');
  t.equal(inlineBlock(profile, 'tls-crypt'), (await readFile(pki.tlsCryptPath, 'utf8')).trim(), 'the tls-crypt key inline');
  t.match(inlineBlock(profile, 'key'), /^-----BEGIN PRIVATE KEY-----/, 'the private key inline');
  const certPath = await certFileOf(keeper.delivered[0]!);
  const subject = (await run('openssl', ['x509', '-in', certPath, '-noout', '-subject', '-ext', 'extendedKeyUsage'])).stdout;
  t.match(subject, /CN ?= ?keeper\.one@example\.com/, 'a certificate for the user');
  t.match(subject, /TLS Web Client Authentication/, 'for client use');
  const verified = await pki.verify(certPath);
  t.ok(verified.ok, `the certificate verifies against the CA and CRL: ${verified.output}`);
  t.notOk(existsSync(join(pki.pkiDir, 'private', 'keeper.one@example.com.key')), 'the private key is gone from the PKI');
  t.notOk(existsSync(join(pki.pkiDir, 'reqs', 'keeper.one@example.com.req')), 'and so is the request');
  t.notOk(logLines.join('\n').includes('PRIVATE KEY') || logLines.join('\n').includes(keeper.delivered[0]!.url), 'neither the profile nor the link is logged');
  t.same(await keeper.instance.createAccount!(keeperUser), { status: 'alreadyApplied', remoteId: 'keeper.one@example.com' }, 'again: alreadyApplied');
  t.equal(keeper.delivered.length, 1, 'and nothing delivered again');
  t.equal((await keeper.instance.grant!('keeper.one@example.com', entitlement)).status, 'applied');
});

t.test('contract kit against a real easy-rsa PKI', async (t) => {
  // Every instance the kit makes delivers into its own list; together they are what users received.
  const deliveries: Delivered[][] = [];
  const kitConnect = (config = baseConfig()) => {
    const k = connect(config);
    deliveries.push(k.delivered);
    return k.instance;
  };
  const kitUser = user('contract.kit@example.com');
  const deletedUser = user('contract.kit2@example.com');
  const seeds = seedThroughConnector(() => kitConnect({ ...baseConfig(), pageSize: 2 }), 3, (i) => user(`contract.seed${i}@example.com`));
  await runContractKit({
    test: t.test.bind(t),
    definition: openvpnConnector,
    connect: () => kitConnect({ ...baseConfig(), pageSize: 2 }),
    entitlement,
    user: kitUser,
    anotherUser: () => deletedUser,
    ...seeds,
    // Disabling revokes the certificate; the ccd file goes when the last entitlement is revoked.
    disableKeepsGrants: true,
  });
  // The seeds leave, so the checks below see the round trip's users only.
  for (const id of await seeds.seedAccounts()) await kitConnect().deleteAccount!(id);
  const delivered = deliveries.flat();

  await t.test('afterwards openssl reports the certificate revoked, the other user still valid', async (t) => {
    const kitDelivered = delivered.filter((d) => d.artifact.userId === kitUser.userId);
    t.equal(kitDelivered.length, 1, 'one profile was delivered to the round trip user');
    const revoked = await pki.verify(await certFileOf(kitDelivered[0]!));
    t.notOk(revoked.ok, 'openssl verify fails for the deprovisioned user');
    t.match(revoked.output, /certificate revoked/, `because of the CRL: ${revoked.output}`);
    const kept = await pki.verify(await certFileOf(keeper.delivered[0]!));
    t.ok(kept.ok, `the still-entitled user's certificate verifies: ${kept.output}`);
    t.match(kept.output, /: OK/);
    t.same(await readdir(pki.ccdDir), ['keeper.one@example.com'], 'only the entitled user has a ccd file');
    const index = parseIndex(await readFile(join(pki.pkiDir, 'index.txt'), 'utf8'));
    const entry = index.find((e) => e.commonName === 'contract.kit@example.com');
    t.equal(entry?.status, 'R', 'the index records the revocation');
    t.equal(entry?.revocationReason, 'cessationOfOperation', 'with its reason');
    const deleted = index.find((e) => e.commonName === 'contract.kit2@example.com');
    t.equal(deleted?.status, 'R', 'the deleted user is revoked too');
    t.notOk(existsSync(join(pki.pkiDir, 'revoked', 'certs_by_serial', `${deleted?.serial}.crt`)), 'deleteAccount removed the revoked certificate file');
  });
});

t.test('ccd files: one block per entitlement, the file goes with the last one', async (t) => {
  const { instance } = connect();
  const cn = 'keeper.one@example.com';
  const second = { id: 'ent-lab', target: { name: 'lab', routes: ['192.168.50.0/24'] } };
  t.equal((await instance.grant!(cn, second)).status, 'applied');
  const text = await readFile(join(pki.ccdDir, cn), 'utf8');
  t.match(text, /push "route 10\.20\.0\.0 255\.255\.0\.0"\npush "route-ipv6 fd00:20::\/48"\npush "dhcp-option DNS 10\.20\.0\.53"/, 'routes and DNS as pushed options');
  t.match(text, /push "route 192\.168\.50\.0 255\.255\.255\.0"/);
  t.same([...parseCcd(text).blocks.keys()], ['ent-office', 'ent-lab']);
  t.same(await collectPages((c) => instance.listGrants!(second, c)), [cn], 'listGrants reads the blocks');
  t.equal((await instance.grant!(cn, { ...second, target: { name: 'lab', routes: ['192.168.51.0/24'] } })).status, 'applied', 'a changed entitlement rewrites its block');
  t.match(await readFile(join(pki.ccdDir, cn), 'utf8'), /192\.168\.51\.0/);
  t.equal((await instance.revoke!(cn, second)).status, 'applied');
  t.ok(existsSync(join(pki.ccdDir, cn)), 'the file stays while another entitlement is held');
  const err = await expectError(instance.grant!(cn, { id: 'ent-bad', target: { name: 'bad', routes: ['10.0.0.0/33'] } }), PermanentError);
  t.equal(err.kind, 'invalidEntitlement', 'an invalid route is refused');
  const err2 = await expectError(instance.grant!(cn, { id: 'ent-bad', target: { name: 'bad', routes: ['10.0.0.0/8"\npush "x'] } }), PermanentError);
  t.equal(err2.kind, 'invalidEntitlement', 'nothing can be smuggled into the file');
});

t.test('createAccount without a delivery channel fails before issuing anything', async (t) => {
  const { instance } = connect(baseConfig(), { deliver: false });
  const before = await readFile(join(pki.pkiDir, 'index.txt'), 'utf8');
  const err = await expectError(instance.createAccount!(user('nodelivery@example.com')), PermanentError);
  t.equal(err.kind, 'deliveryUnavailable');
  t.match(err.message, /PUBLIC_URL/, 'the message says what to configure');
  t.equal(await readFile(join(pki.pkiDir, 'index.txt'), 'utf8'), before, 'no certificate was issued');
  t.same(await instance.createAccount!(keeperUser), { status: 'alreadyApplied', remoteId: 'keeper.one@example.com' }, 'an existing account needs no delivery');
});

t.test('a failed delivery is delivered again by the next createAccount, with the same certificate', async (t) => {
  let fail: Error | undefined = new TransientError('gateway: delivery store unavailable');
  const { instance, delivered } = connect(baseConfig(), { failDelivery: () => fail });
  const u = user('retry.me@example.com');
  await expectError(instance.createAccount!(u), TransientError);
  t.ok(existsSync(join(pki.pkiDir, 'private', 'retry.me@example.com.key')), 'the key is kept until the profile is delivered');
  fail = undefined;
  t.same(await instance.createAccount!(u), { status: 'applied', remoteId: 'retry.me@example.com' }, 'the retry delivers');
  t.equal(delivered.length, 1);
  t.notOk(existsSync(join(pki.pkiDir, 'private', 'retry.me@example.com.key')), 'then the key is removed');
  const issued = parseIndex(await readFile(join(pki.pkiDir, 'index.txt'), 'utf8')).filter((e) => e.commonName === 'retry.me@example.com');
  t.equal(issued.length, 1, 'one certificate only');
  t.equal((await instance.createAccount!(u)).status, 'alreadyApplied');
});

t.test('a user re-provisioned after revocation gets a new certificate for the same name', async (t) => {
  const { instance, delivered } = connect();
  const u = user('comeback@example.com');
  await instance.createAccount!(u);
  t.equal((await instance.disableAccount!('comeback@example.com')).status, 'applied');
  t.same(await instance.createAccount!(u), { status: 'applied', remoteId: 'comeback@example.com' }, 'issued again');
  t.equal(delivered.length, 2, 'and delivered again');
  const [first, second] = await Promise.all(delivered.map((d) => certFileOf(d)));
  t.notOk((await pki.verify(first!)).ok, 'the old certificate stays revoked');
  t.ok((await pki.verify(second!)).ok, 'the new one is valid');
  const accounts = await collectPages((c) => instance.listAccounts!(c));
  t.match(accounts.find((a) => a.remoteId === 'comeback@example.com'), { active: true, attributes: { state: 'valid', olderCertificates: 1, managed: true } });
});

t.test('listAccounts reads the PKI: pages, states and drift', async (t) => {
  const { instance } = connect({ ...baseConfig(), pageSize: 2 });
  // Issued by hand, outside the gateway; and one revoked by hand without a new CRL.
  await pki.easyrsa(['build-client-full', 'byhand', 'nopass']);
  await writeFile(join(pki.ccdDir, 'byhand'), 'push "route 10.99.0.0 255.255.0.0"\n');
  const pages: RemoteAccount[][] = [];
  const accounts = await collectPages(async (cursor) => {
    const page = await instance.listAccounts!(cursor);
    pages.push(page.items);
    return page;
  });
  t.ok(pages.length >= 3 && pages.every((p) => p.length <= 2), `paged in twos (${pages.map((p) => p.length).join(',')})`);
  const names = accounts.map((a) => a.remoteId);
  t.same(names, [...names].sort(), 'sorted by common name');
  t.equal(new Set(names).size, names.length, 'each name once');
  t.notOk(names.includes('server'), 'the server certificate is no account');
  t.match(accounts.find((a) => a.remoteId === 'byhand'), { active: true, attributes: { state: 'valid', managed: false, ccd: true, warnings: ['certificate not issued by the gateway'] } }, 'a certificate issued by hand is reported as drift');
  t.match(accounts.find((a) => a.remoteId === 'contract.kit@example.com'), { active: false, attributes: { state: 'revoked', revocationReason: 'cessationOfOperation' } });
  t.match(accounts.find((a) => a.remoteId === 'keeper.one@example.com'), { active: true, attributes: { state: 'valid', ccd: true, managed: true } });
  t.notOk('connected' in (accounts[0]!.attributes ?? {}), 'without a management interface nothing is said about sessions');

  await pki.easyrsa(['revoke', 'byhand']);
  const after = await collectPages((c) => instance.listAccounts!(c));
  t.match(after.find((a) => a.remoteId === 'byhand'), { active: false, attributes: { state: 'revoked', warnings: ['ccd file present for a revoked certificate', 'certificate not issued by the gateway'] } });
  t.equal((await instance.disableAccount!('byhand')).status, 'applied', 'deprovisioning it publishes the CRL and removes the ccd file');
  t.notOk(existsSync(join(pki.ccdDir, 'byhand')));
  t.match((await pki.verify(join(pki.pkiDir, 'revoked', 'certs_by_serial', `${after.find((a) => a.remoteId === 'byhand')!.attributes!.serial as string}.crt`))).output, /certificate revoked/, 'the CRL now lists it');
  const err = await expectError(instance.listAccounts!(''), PermanentError);
  t.equal(err.kind, 'invalidCursor');
});

t.test('server certificates are never treated as accounts', async (t) => {
  const { instance } = connect();
  const err = await expectError(instance.createAccount!(user('server')), PermanentError);
  t.equal(err.kind, 'conflict', 'a user named like the server certificate is refused');
  const err2 = await expectError(instance.disableAccount!('server'), PermanentError);
  t.equal(err2.kind, 'conflict', 'and the server certificate is never revoked');
  t.ok((await pki.verify(pki.serverCert)).ok, 'the server certificate is still valid');
});

t.test('concurrent createAccount calls, in this process and another, all get distinct certificates', async (t) => {
  const local = Array.from({ length: 5 }, (_, i) => user(`parallel${i}@example.com`));
  const remote = ['other0@example.com', 'other1@example.com', 'other2@example.com'];
  const { instance, delivered } = connect();
  const child = run(process.execPath, ['--import=tsx', join(import.meta.dirname, 'create-accounts.ts'), JSON.stringify(baseConfig()), ...remote], { cwd: process.cwd() });
  const results = await Promise.all(local.map((u) => instance.createAccount!(u)));
  const childResults = JSON.parse((await child).stdout) as { status?: string; remoteId?: string; error?: string }[];
  t.same(results.map((r) => r.status), local.map(() => 'applied'), 'every local create applied');
  t.same(childResults.map((r) => r.status ?? r.error), remote.map(() => 'applied'), 'every create of the other process applied');
  t.equal(delivered.length, 5);
  const entries = parseIndex(await readFile(join(pki.pkiDir, 'index.txt'), 'utf8'));
  const names = [...local.map((u) => u.userName), ...remote];
  const issued = entries.filter((e) => e.commonName && names.includes(e.commonName));
  t.equal(issued.length, names.length, 'one index line per user: no line lost');
  t.equal(new Set(issued.map((e) => e.serial)).size, names.length, 'distinct serials');
  for (const d of delivered) t.ok((await pki.verify(await certFileOf(d))).ok, `${d.artifact.filename} verifies`);
  t.notOk(existsSync(join(pki.pkiDir, 'scim-gateway', 'lock')), 'the lock file is gone');
});

t.test('the PKI lock file: a live holder makes callers wait, a dead one is taken over', async (t) => {
  const lockPath = join(pki.pkiDir, 'scim-gateway', 'lock');
  await writeFile(lockPath, JSON.stringify({ pid: process.pid, host: hostname(), at: Date.now() }));
  const impatient = connect({ ...baseConfig(), lockWaitMs: 0 });
  const err = await expectError(impatient.instance.disableAccount!('nobody'), TransientError);
  t.match(err.message, /locked by another worker/);
  const dead = await run(process.execPath, ['-e', 'console.log(process.pid)']);
  await writeFile(lockPath, JSON.stringify({ pid: Number(dead.stdout.trim()), host: hostname(), at: Date.now() }));
  t.equal((await impatient.instance.disableAccount!('nobody')).remoteId, 'nobody', 'a lock left by a finished process is broken');
  t.notOk(existsSync(lockPath));
});

t.test('validate', async (t) => {
  await t.resolves(connect().instance.validate(), 'a complete PKI validates');
  const empty = await mkdtemp(join(tmpdir(), 'ovpn-empty-'));
  t.teardown(() => rm(empty, { recursive: true, force: true }));
  const err = await expectError(connect({ ...baseConfig(), pkiDir: empty }).instance.validate(), PermanentError);
  t.equal(err.kind, 'invalidPki');
  t.match(err.message, /ca\.crt/);
  const err2 = await expectError(connect({ ...baseConfig(), easyrsaPath: '/nonexistent/easyrsa' }).instance.validate(), PermanentError);
  t.equal(err2.kind, 'invalidConfig');
  t.match(err2.message, /easyrsaPath/);
  const err3 = await expectError(connect({ ...baseConfig(), ccdDir: join(empty, 'missing') }).instance.validate(), PermanentError);
  t.match(err3.message, /\/ccdDir/);
  const err4 = await expectError(connect({ ...baseConfig(), management: { address: join(empty, 'no.sock') } }).instance.validate(), TransientError);
  t.match(err4.message, /cannot reach the management interface/, 'an unreachable management interface is transient');
});

t.test('failures of the programs and of the management interface are classified', async (t) => {
  const broken = await createTestPki('ovpn-broken');
  t.teardown(() => broken.close());
  await rm(join(broken.pkiDir, 'private', 'ca.key'));
  const { instance } = connect(baseConfig(broken));
  const err = await expectError(instance.createAccount!(user('nokey@example.com')), PermanentError);
  t.equal(err.kind, 'easyrsaFailed', 'a failing easyrsa run is permanent');
  t.match(err.message, /openvpn: createAccount: easyrsa build-client-full failed \(exit \d+\): .+/, `with the program's words: ${err.message}`);

  const sock = join(broken.dir, 'absent.sock');
  const withMgmt = connect({ ...baseConfig(), management: { address: sock, password: 'env:MGMT_PASSWORD' } });
  await withMgmt.instance.createAccount!(user('mgmt.down@example.com'));
  const err2 = await expectError(withMgmt.instance.disableAccount!('mgmt.down@example.com'), TransientError);
  t.match(err2.message, /cannot reach the management interface/);
  t.notOk((await pki.verify(await certFileOf(withMgmt.delivered[0]!))).ok, 'the certificate was revoked before the session could be dropped');
  const err3 = await expectError(withMgmt.instance.disableAccount!('mgmt.down@example.com'), TransientError);
  t.ok(err3, 'the retry tries the management interface again rather than answering alreadyApplied');
});

t.test('no secret appears in any error or log line', async (t) => {
  const tlsKey = (await readFile(pki.tlsCryptPath, 'utf8')).split('\n').find((l) => /^[0-9a-f]{32}$/.test(l))!;
  const everything = [...messages, ...logLines].join('\n');
  t.ok(messages.length > 10, `errors were collected (${messages.length})`);
  t.notOk(everything.includes(MGMT_PASSWORD), 'not the management password');
  t.notOk(everything.includes(tlsKey), 'not the tls-crypt key');
  t.notOk(everything.includes('PRIVATE KEY'), 'not a private key');
  t.notOk(everything.includes('https://gateway.test/downloads/'), 'not a download link');
});

t.test('a CRL near its end is renewed by the next reconciliation', async (t) => {
  const p = await createTestPki('ovpn-crl');
  t.teardown(() => p.close());
  const DAY = 86_400_000;
  const nextUpdate = async (path: string) => Date.parse(/nextUpdate=(.+)/.exec((await run('openssl', ['crl', '-noout', '-nextupdate', '-in', path])).stdout)![1]!);
  const { instance } = connect(baseConfig(p));
  await collectPages((cursor) => instance.listAccounts!(cursor));
  const fresh = await nextUpdate(p.crlPath);
  t.ok(fresh > Date.now() + 170 * DAY, 'a fresh CRL is valid for crlDays (180)');

  // An administrator's CRL, or one left alone for months: one day left.
  await p.easyrsa(['gen-crl'], { EASYRSA_CRL_DAYS: '1' });
  await writeFile(p.crlPath, await readFile(join(p.pkiDir, 'crl.pem')));
  const soon = await nextUpdate(p.crlPath);
  t.ok(soon < Date.now() + 2 * DAY, 'the installed CRL ends tomorrow');
  await instance.listAccounts!('zzz');
  t.equal(await nextUpdate(p.crlPath), soon, 'a later page of a listing leaves it alone');
  await instance.listAccounts!();
  t.ok((await nextUpdate(p.crlPath)) > Date.now() + 170 * DAY, 'the first page of the next reconciliation renews and installs it');
  t.ok((await p.verify(p.serverCert)).ok, 'and it verifies against the CA');
});
