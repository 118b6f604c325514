/**
 * A throw-away easy-rsa PKI for the openvpn connector's tests, made with the real programs: easyrsa
 * (init-pki, build-ca, a server certificate, gen-crl) and `openvpn --genkey tls-crypt`. Keys are
 * P-256 so the whole setup takes well under a second. Everything lives in one temp dir.
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const EASYRSA = '/usr/share/easy-rsa/easyrsa';
export const OPENVPN = '/usr/sbin/openvpn';

/** Key settings for every certificate of the tests (and the connector's matching config). */
export const FAST_KEYS = { EASYRSA_ALGO: 'ec', EASYRSA_CURVE: 'prime256v1', EASYRSA_DIGEST: 'sha256' };
export const FAST_KEY_CONFIG = { keyAlgorithm: 'ec', curve: 'prime256v1', digest: 'sha256' } as const;

export interface TestPki {
  dir: string;
  pkiDir: string;
  /** Where the (simulated) server reads its CRL. */
  crlPath: string;
  ccdDir: string;
  tlsCryptPath: string;
  caPath: string;
  serverCert: string;
  serverKey: string;
  /** Runs easyrsa on the PKI directly, as an administrator would (outside the connector). */
  easyrsa(args: string[], env?: Record<string, string>): Promise<{ stdout: string; stderr: string }>;
  /** `openssl verify -crl_check` of a certificate file against the CA and the installed CRL. */
  verify(certPath: string): Promise<{ ok: boolean; output: string }>;
  close(): Promise<void>;
}

/** The openvpn connector's configuration for a test PKI (profile for vpn.example.test, tls-crypt, fast keys). */
export function connectorConfig(p: TestPki, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    pkiDir: p.pkiDir,
    crlPath: p.crlPath,
    ccdDir: p.ccdDir,
    profile: { remotes: [{ host: 'vpn.example.test', port: 1194, proto: 'udp' }], verifyServerName: 'server', tlsCrypt: `file:${p.tlsCryptPath}` },
    ...FAST_KEY_CONFIG,
    ...extra,
  };
}

export async function createTestPki(name = 'ovpn'): Promise<TestPki> {
  const dir = await mkdtemp(join(tmpdir(), `${name}-`));
  const pkiDir = join(dir, 'pki');
  const ccdDir = join(dir, 'ccd');
  const crlPath = join(dir, 'server', 'crl.pem');
  const tlsCryptPath = join(dir, 'server', 'tc.key');
  await mkdir(ccdDir);
  await mkdir(join(dir, 'server'));
  const easyrsa = (args: string[], env: Record<string, string> = {}) =>
    run(EASYRSA, args, { cwd: dir, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', EASYRSA_PKI: pkiDir, EASYRSA_BATCH: '1', ...FAST_KEYS, ...env } });
  await easyrsa(['init-pki']);
  await easyrsa(['build-ca', 'nopass'], { EASYRSA_REQ_CN: 'Test VPN CA' });
  await easyrsa(['build-server-full', 'server', 'nopass']);
  await easyrsa(['gen-crl']);
  await copyFile(join(pkiDir, 'crl.pem'), crlPath);
  await run(OPENVPN, ['--genkey', 'tls-crypt', tlsCryptPath]);
  const caPath = join(pkiDir, 'ca.crt');
  return {
    dir,
    pkiDir,
    crlPath,
    ccdDir,
    tlsCryptPath,
    caPath,
    serverCert: join(pkiDir, 'issued', 'server.crt'),
    serverKey: join(pkiDir, 'private', 'server.key'),
    easyrsa,
    async verify(certPath) {
      try {
        const { stdout, stderr } = await run('openssl', ['verify', '-crl_check', '-CAfile', caPath, '-CRLfile', crlPath, certPath]);
        return { ok: true, output: `${stdout}${stderr}` };
      } catch (err) {
        const e = err as { stdout?: string; stderr?: string };
        return { ok: false, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
      }
    },
    // A userSync still finishing in the worker may write one more client config into the
    // directory while it is removed (ENOTEMPTY); removing again after a moment gets it too.
    close: () => rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 }),
  };
}
