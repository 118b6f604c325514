/**
 * A throwaway certificate authority for the auth0 tests, trusted through NODE_EXTRA_CA_CERTS.
 *
 * The auth0 client always speaks https to `<domain>` and uses Node's default trust store, which
 * Node builds from NODE_EXTRA_CA_CERTS once, at process start. So a test file calls
 * {@link underTestCa} first thing: in the process tap started, it makes a CA and a certificate for
 * 127.0.0.1/localhost with the openssl CLI, runs the same file again in a child process started with
 * NODE_EXTRA_CA_CERTS pointing at the CA, passes the child's output through (tap sees only the
 * child's TAP), relays tap's IPC messages (timeouts) both ways, removes the files and exits with the
 * child's code. In the child it answers the key and certificate for the fake server.
 *
 * TLS verification is never turned off: the client trusts the fake only because the CA is trusted.
 * The file must not import `tap` statically, or the first process would print TAP of its own.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const DIR_VARIABLE = 'AUTH0_TEST_TLS_DIR';

export interface TestTls {
  /** PEM of the server certificate (for 127.0.0.1 and localhost), signed by the test CA. */
  cert: string;
  /** PEM of its private key. */
  key: string;
  /** Path of the CA certificate, the one NODE_EXTRA_CA_CERTS names. */
  caFile: string;
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

async function makeCa(dir: string): Promise<void> {
  await run('openssl', ['req', '-x509', ...EC, '-keyout', join(dir, 'ca.key'), '-out', join(dir, 'ca.pem'), '-days', '1', '-subj', '/CN=scim-gateway auth0 test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  await run('openssl', ['req', ...EC, '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'server.csr'), '-subj', '/CN=localhost']);
  await writeFile(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n');
  await run('openssl', ['x509', '-req', '-in', join(dir, 'server.csr'), '-CA', join(dir, 'ca.pem'), '-CAkey', join(dir, 'ca.key'), '-CAcreateserial',
    '-out', join(dir, 'cert.pem'), '-days', '1', '-extfile', join(dir, 'server.ext')]);
}

/**
 * In the process tap started: never returns (runs the file again under the CA and exits with its
 * code). In that second process: answers the server's key and certificate.
 */
export async function underTestCa(fileUrl: string): Promise<TestTls> {
  const dir = process.env[DIR_VARIABLE];
  if (dir && process.env.NODE_EXTRA_CA_CERTS === join(dir, 'ca.pem')) {
    // If the first process dies without passing on a signal, its IPC channel closes: end with it.
    process.once('disconnect', () => process.exit(1));
    process.channel?.unref();
    const [cert, key] = await Promise.all([readFile(join(dir, 'cert.pem'), 'utf8'), readFile(join(dir, 'key.pem'), 'utf8')]);
    return { cert, key, caFile: join(dir, 'ca.pem') };
  }

  const made = await mkdtemp(join(tmpdir(), 'auth0-test-ca-'));
  await makeCa(made);
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(fileUrl), ...process.argv.slice(2)], {
    env: { ...process.env, [DIR_VARIABLE]: made, NODE_EXTRA_CA_CERTS: join(made, 'ca.pem') },
    stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
  });
  const relayDown = (msg: unknown) => child.connected && child.send(msg as object);
  process.on('message', relayDown);
  child.on('message', (msg) => process.send?.(msg));
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, forward);
  const code = await new Promise<number>((resolve) => {
    child.on('error', () => resolve(1));
    child.on('exit', (c, s) => resolve(c ?? (s ? 1 : 0)));
  });
  await rm(made, { recursive: true, force: true });
  process.exit(code);
}
