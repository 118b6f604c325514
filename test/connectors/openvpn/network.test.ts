/**
 * The openvpn connector with a real OpenVPN 2.6 server and real clients, each in its own network
 * namespace (./vpn-lab.ts): profiles delivered by the connector connect; a user without a ccd file is
 * refused (ccd-exclusive); deprovisioning drops the live session through the management interface and
 * the CRL keeps the user out, while another user still connects; listAccounts sees live sessions and
 * a certificate revoked by hand that is still connected.
 *
 * Needs root, /dev/net/tun and `ip netns`; without them every case is skipped, loudly.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { openvpnConnector } from '../../../connectors/openvpn/index.js';
import { collectPages, sampleUser } from '@scim-gateway/connector-sdk/kit';
import { PermanentError, type Artifact, type RemoteAccount } from '@scim-gateway/connector-sdk';
import { validateConfig } from '@scim-gateway/connector-sdk/registry';
import { createSecretResolver } from '@scim-gateway/connector-sdk';
import { FAST_KEY_CONFIG, createTestPki } from './test-pki.js';
import { CLIENT_ADDRESS, SERVER_ADDRESS, TUNNEL_SERVER_ADDRESS, VpnLab, namespaceSupport, type VpnProcess } from './vpn-lab.js';

const MGMT_PASSWORD = 'mgmt-lab-2b9d4e61';
const INIT_DONE = /Initialization Sequence Completed/;
const ECHO_SERVER = `require('node:net').createServer((s) => s.on('data', (d) => s.end('echo: ' + d))).listen(7070, process.argv[1], () => console.log('listening'))`;
const ECHO_CLIENT = `const s = require('node:net').connect(7070, process.argv[1], () => s.write('hello through the tunnel')); s.setTimeout(10000, () => process.exit(2)); s.pipe(process.stdout)`;

const unsupported = await namespaceSupport();
if (unsupported) {
  console.error(`WARNING: openvpn network tests SKIPPED: ${unsupported}. The VPN itself (server, clients, session drop, CRL) is NOT tested on this machine.`);
}

t.test('a real OpenVPN server and clients in network namespaces', { skip: unsupported ? `network namespaces unavailable: ${unsupported}` : false }, async (t) => {
  const pki = await createTestPki('ovpn-net');
  t.teardown(() => pki.close());
  const lab = new VpnLab();
  t.teardown(() => lab.close());
  await lab.setUp();

  const sock = join(pki.dir, 'server', 'management.sock');
  await writeFile(join(pki.dir, 'server', 'management.pw'), `${MGMT_PASSWORD}\n`, { mode: 0o600 });
  const serverConf = join(pki.dir, 'server', 'server.conf');
  await writeFile(
    serverConf,
    [
      `local ${SERVER_ADDRESS}`,
      'port 1194',
      'proto udp',
      'dev tun',
      'topology subnet',
      'server 10.251.77.0 255.255.255.0',
      `ca ${pki.caPath}`,
      `cert ${pki.serverCert}`,
      `key ${pki.serverKey}`,
      'dh none',
      `tls-crypt ${pki.tlsCryptPath}`,
      `crl-verify ${pki.crlPath}`,
      `client-config-dir ${pki.ccdDir}`,
      'ccd-exclusive',
      `management ${sock} unix ${join(pki.dir, 'server', 'management.pw')}`,
      'keepalive 1 5',
      'verb 3',
      '',
    ].join('\n'),
  );
  const server = lab.start('server', lab.serverNs, ['--config', serverConf], pki.dir);
  await server.waitFor(INIT_DONE);

  const delivered: Artifact[] = [];
  const config = {
    pkiDir: pki.pkiDir,
    crlPath: pki.crlPath,
    ccdDir: pki.ccdDir,
    management: { address: sock, password: 'env:MGMT_PASSWORD' },
    profile: { remotes: [{ host: SERVER_ADDRESS, port: 1194, proto: 'udp' }], verifyServerName: 'server', tlsCrypt: `file:${pki.tlsCryptPath}` },
    ...FAST_KEY_CONFIG,
  };
  validateConfig(openvpnConnector, config);
  const connector = openvpnConnector.create({
    config: config as never,
    secret: createSecretResolver({ MGMT_PASSWORD, WRONG_PASSWORD: 'not-the-password' }),
    log: { info: () => {}, warn: () => {} },
    deliver: async (artifact) => {
      delivered.push(artifact);
      return { url: `https://gateway.test/downloads/${delivered.length}`, expiresAt: new Date(Date.now() + 3_600_000).toISOString() };
    },
  });
  await t.resolves(connector.validate(), 'validate reaches the management interface');

  const entitlement = { id: 'ent-vpn', target: { name: 'lab', routes: ['10.20.0.0/16'] } };
  const profileOf = async (name: string): Promise<string> => {
    const artifact = delivered.find((a) => a.filename === `${name}.ovpn`);
    if (!artifact) throw new Error(`no profile delivered for ${name}`);
    const path = join(pki.dir, `${name}-${delivered.indexOf(artifact)}.ovpn`);
    await writeFile(path, artifact.content, { mode: 0o600 });
    return path;
  };
  for (const name of ['alice', 'bob', 'carol']) {
    t.equal((await connector.createAccount!({ ...sampleUser(name), userName: name })).status, 'applied', `${name} provisioned`);
  }
  t.equal((await connector.grant!('alice', entitlement)).status, 'applied');
  t.equal((await connector.grant!('bob', entitlement)).status, 'applied');

  // Each client gets its own tun device, so both can live in the one client namespace.
  const startClient = async (name: string): Promise<VpnProcess> =>
    lab.start(name, lab.clientNs, ['--config', await profileOf(name), '--dev-type', 'tun', '--dev', `tun${name}`, '--connect-retry', '1'], pki.dir);
  const accounts = async (): Promise<Map<string, RemoteAccount>> => new Map((await collectPages((c) => connector.listAccounts!(c))).map((a) => [a.remoteId, a]));

  const alice = await startClient('alice');
  await alice.waitFor(INIT_DONE, { others: [server] });
  // Traffic through the tunnel: a TCP echo on the server's tunnel address, reached from the client namespace.
  const echo = lab.spawnIn('echo', lab.serverNs, [process.execPath, '-e', ECHO_SERVER, TUNNEL_SERVER_ADDRESS], pki.dir);
  await echo.waitFor(/listening/);
  const reply = await lab.exec(lab.clientNs, [process.execPath, '-e', ECHO_CLIENT, TUNNEL_SERVER_ADDRESS]);
  t.match(reply, { ok: true, output: /^echo: hello through the tunnel/ }, `alice reaches the server through the tunnel: ${reply.output}`);
  await echo.stop();
  t.match(await lab.exec(lab.clientNs, ['ip', 'route', 'show', '10.20.0.0/16']), { output: /dev tunalice/ }, 'the entitlement route was pushed');
  let bob = await startClient('bob');
  await bob.waitFor(INIT_DONE, { others: [server] });

  const carolFrom = server.output.length;
  const carol = await startClient('carol');
  await server.waitFor(/carol[^\n]*(ccd-exclusive|client-config-dir)|client-config-dir[^\n]*carol/i, { from: carolFrom, others: [carol] });
  t.notMatch(carol.output, INIT_DONE, 'carol, with a valid certificate but no ccd file, is refused');
  await carol.stop();

  const before = await accounts();
  t.match(before.get('alice'), { active: true, attributes: { state: 'valid', connected: true, sessions: [{ realAddress: new RegExp(`^${CLIENT_ADDRESS}:`) }] } }, 'alice is listed as connected');
  t.match(before.get('bob'), { active: true, attributes: { connected: true } });
  t.match(before.get('carol'), { active: true, attributes: { connected: false, ccd: false } }, JSON.stringify(before.get('carol')));

  await t.test('deprovisioning drops the session and the CRL keeps the user out', async (t) => {
    const from = server.output.length;
    const aliceFrom = alice.output.length;
    t.same(await connector.disableAccount!('alice'), { status: 'applied', remoteId: 'alice' });
    // The server drops alice's session; her client reconnects by itself and is refused by the CRL.
    await server.waitFor(/CRL CHECK FAILED[^\n]*alice|alice[^\n]*is REVOKED|certificate revoked[^\n]*alice/i, { from, others: [alice] });
    t.notMatch(alice.output.slice(aliceFrom), INIT_DONE, 'alice never completes a new connection');
    const after = await accounts();
    t.match(after.get('alice'), { active: false, attributes: { state: 'revoked', connected: false } }, 'alice is revoked and gone');
    t.match(after.get('bob'), { active: true, attributes: { connected: true } }, 'bob stayed connected');
    await bob.stop();
    bob = await startClient('bob');
    await bob.waitFor(INIT_DONE, { others: [server] });
    t.pass('bob, still entitled, connects afresh under the new CRL');
    t.same(await connector.disableAccount!('alice'), { status: 'alreadyApplied', remoteId: 'alice' }, 'again: alreadyApplied');
    await alice.stop();
  });

  await t.test('a certificate revoked by hand while connected shows as drift', async (t) => {
    await pki.easyrsa(['revoke', 'bob']);
    const listed = (await accounts()).get('bob');
    t.match(listed, { active: false, attributes: { state: 'revoked', connected: true } });
    t.ok((listed?.attributes?.warnings as string[] | undefined)?.includes('revoked certificate still connected'), 'with a warning');
    const from = server.output.length;
    t.equal((await connector.disableAccount!('bob')).status, 'applied', 'deprovisioning publishes the CRL and drops the session');
    await server.waitFor(/CRL CHECK FAILED[^\n]*bob|bob[^\n]*is REVOKED|certificate revoked[^\n]*bob/i, { from, others: [bob] });
    t.match((await accounts()).get('bob'), { attributes: { connected: false } });
  });

  await t.test('a wrong management password is a permanent failure', async (t) => {
    const wrong = openvpnConnector.create({
      config: { ...config, management: { address: sock, password: 'env:WRONG_PASSWORD' } } as never,
      secret: createSecretResolver({ WRONG_PASSWORD: 'not-the-password' }),
      log: { info: () => {}, warn: () => {} },
    });
    const err = await wrong.validate().then(
      () => undefined,
      (e: unknown) => e,
    );
    t.type(err, PermanentError, String(err));
    t.equal((err as PermanentError).kind, 'unauthorized');
  });

});
