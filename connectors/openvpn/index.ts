/**
 * The openvpn connector: VPN access through an easy-rsa PKI the connector owns. An account is a
 * client certificate (remote id: its common name), handed to the user as a complete .ovpn profile
 * through a one-time download link (ctx.deliver). Entitlements are the client's client-config-dir
 * file, which the server requires with `ccd-exclusive`. Deprovisioning revokes the certificate,
 * installs a new CRL where the server reads it (`crl-verify`) and drops the live session through the
 * management interface. docs/connectors/openvpn.md describes configuration and the server side.
 *
 * The PKI, the CRL path and the ccd directory are local files, so the connector must run on a worker
 * that has them on its filesystem (normally a worker on the VPN host).
 */
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Type } from '@sinclair/typebox';
import { PermanentError, defineConnector, SECRET_REFERENCE_PATTERN } from '@scim-gateway/connector-sdk';
import { isSecretReference } from '@scim-gateway/connector-sdk';
import { AccountOperations } from './account.js';
import { CcdDirectory, openvpnEntitlementSchema, parseEntitlement } from './ccd.js';
import { checkCommonName } from './common-name.js';
import { EasyRsa } from './easyrsa.js';
import { ManagementClient } from './management.js';
import { profileSchema } from './profile.js';
import { configError } from '@scim-gateway/connector-sdk';

export const DEFAULT_EASYRSA_PATH = '/usr/share/easy-rsa/easyrsa';
export const DEFAULT_PAGE_SIZE = 100;

export const openvpnConfigSchema = Type.Object(
  {
    pkiDir: Type.String({
      pattern: '^/',
      description: 'Absolute path of the easy-rsa 3 PKI directory (the one holding ca.crt, index.txt, issued/, private/). The connector owns it: it runs easyrsa on it with EASYRSA_PKI.',
      examples: ['/etc/openvpn/easy-rsa/pki'],
    }),
    easyrsaPath: Type.Optional(Type.String({ pattern: '^/', default: DEFAULT_EASYRSA_PATH, description: `Absolute path of the easyrsa program (default ${DEFAULT_EASYRSA_PATH}).` })),
    crlPath: Type.String({
      pattern: '^/',
      description: "Absolute path where the OpenVPN server reads its CRL (its crl-verify file). Replaced atomically (temp file + rename) whenever a certificate is revoked; its folder must be writable by the worker.",
      examples: ['/etc/openvpn/server/crl.pem'],
    }),
    ccdDir: Type.String({
      pattern: '^/',
      description: "Absolute path of the server's client-config-dir. With ccd-exclusive on the server, a client connects only while its file exists: entitlements write and remove these files.",
      examples: ['/etc/openvpn/server/ccd'],
    }),
    management: Type.Optional(
      Type.Object(
        {
          address: Type.String({
            pattern: '^(/.+|\\[?[A-Za-z0-9.:-]+\\]?:[0-9]{1,5})$',
            description: "The server's management interface: an absolute unix socket path (management /path unix) or host:port (keep it on loopback).",
            examples: ['/run/openvpn/server.sock', '127.0.0.1:7505'],
          }),
          password: Type.Optional(
            Type.String({ pattern: SECRET_REFERENCE_PATTERN, description: "Reference (env:NAME or file:/path) to the management password, when the server's management directive names a password file." }),
          ),
          timeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 60_000, default: 5_000, description: 'Deadline for one management command, in milliseconds (default 5000); missing it is a transient failure.' })),
        },
        { additionalProperties: false, description: 'Where to drop live sessions on deprovisioning and read who is connected. Without it, revoked clients stay connected until they reconnect.' },
      ),
    ),
    profile: profileSchema,
    commonName: Type.Optional(
      Type.Union([Type.Literal('userName'), Type.Literal('email'), Type.Literal('userId'), Type.Literal('externalId')], {
        default: 'userName',
        description: "Which field of the directory user becomes the certificate's common name (default userName), lower-cased and reduced to a-z 0-9 . _ @ -.",
      }),
    ),
    certDays: Type.Optional(Type.Integer({ minimum: 1, maximum: 3650, default: 825, description: 'Validity of issued client certificates in days (default 825, easy-rsa\'s default).' })),
    crlDays: Type.Optional(Type.Integer({ minimum: 1, maximum: 3650, default: 180, description: 'Validity of each generated CRL in days (default 180). The server refuses every client once its CRL has expired: see the docs.' })),
    keyAlgorithm: Type.Optional(Type.Union([Type.Literal('rsa'), Type.Literal('ec'), Type.Literal('ed')], { description: "Client key algorithm (EASYRSA_ALGO); default: the PKI's vars, else easy-rsa's default (rsa)." })),
    curve: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9-]{1,32}$', description: 'Curve for ec/ed keys (EASYRSA_CURVE), e.g. prime256v1 or ed25519.' })),
    rsaKeySize: Type.Optional(Type.Union([Type.Literal(2048), Type.Literal(3072), Type.Literal(4096)], { description: 'RSA key size in bits (EASYRSA_KEY_SIZE).' })),
    digest: Type.Optional(Type.Union([Type.Literal('sha256'), Type.Literal('sha384'), Type.Literal('sha512')], { description: 'Signature digest (EASYRSA_DIGEST).' })),
    ttlMs: Type.Optional(
      Type.Integer({ minimum: 60_000, maximum: 30 * 24 * 3_600_000, description: "How long the profile's download link works, in milliseconds (the gateway caps it with DELIVERY_MAX_TTL_MS; default: the gateway's)." }),
    ),
    pageSize: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000, default: DEFAULT_PAGE_SIZE, description: `Accounts per listAccounts page (default ${DEFAULT_PAGE_SIZE}).` })),
    easyrsaTimeoutMs: Type.Optional(Type.Integer({ minimum: 1_000, maximum: 600_000, default: 60_000, description: 'Deadline for one easyrsa run in milliseconds (default 60000); a run that misses it is killed and fails as transient.' })),
    lockWaitMs: Type.Optional(
      Type.Integer({ minimum: 0, maximum: 600_000, default: 30_000, description: 'How long to wait for the PKI lock held by another worker, in milliseconds (default 30000), before failing as transient.' }),
    ),
  },
  { additionalProperties: false },
);

const invalidConfig = (field: string, problem: string): PermanentError => configError('openvpn', field, problem);

async function requireFile(path: string, what: string): Promise<void> {
  try {
    if (!(await stat(path)).isFile()) throw new Error('not a file');
  } catch {
    throw new PermanentError(`openvpn: validate failed: ${path} is missing; ${what}`, 'invalidPki');
  }
}

async function requireWritableDir(path: string, field: string): Promise<void> {
  try {
    if (!(await stat(path)).isDirectory()) throw new Error('not a directory');
    await access(path, constants.W_OK);
  } catch (err) {
    throw new PermanentError(`openvpn: validate failed: ${field}: ${path} is not a writable directory (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, 'invalidConfig');
  }
}

export const openvpnConnector = defineConnector({
  type: 'openvpn',
  description: 'VPN access on an OpenVPN server: client certificates from an easy-rsa PKI delivered as one-time profile links, access through ccd-exclusive files, revocation through the CRL and the management interface.',
  configSchema: openvpnConfigSchema,
  entitlementSchema: openvpnEntitlementSchema,
  capabilities: ['createAccount', 'disableAccount', 'deleteAccount', 'grant', 'revoke', 'listAccounts', 'listGrants'],
  create({ config, secret, log, deliver }) {
    for (const [field, ref] of [
      ['/management/password', config.management?.password],
      ['/profile/tlsCrypt', config.profile.tlsCrypt],
      ['/profile/tlsAuth', config.profile.tlsAuth],
    ] as const) {
      if (ref !== undefined && !isSecretReference(ref)) throw invalidConfig(field, 'must be a secret reference, env:NAME or file:/path');
    }
    if (config.profile.tlsCrypt && config.profile.tlsAuth) throw invalidConfig('/profile', 'tlsCrypt and tlsAuth exclude each other');

    // Secret values seen so far, removed from any program output that becomes an error message.
    const known = new Set<string>();
    const resolve = async (ref: string) => {
      const value = await secret(ref);
      if (value.length >= 4) known.add(value);
      return value;
    };
    const redact = (text: string) => [...known].reduce((acc, v) => acc.split(v).join('[redacted]'), text);

    const easyrsa = new EasyRsa({
      easyrsaPath: config.easyrsaPath ?? DEFAULT_EASYRSA_PATH,
      pkiDir: config.pkiDir.replace(/\/+$/, ''),
      certDays: config.certDays ?? 825,
      crlDays: config.crlDays ?? 180,
      keyAlgorithm: config.keyAlgorithm,
      curve: config.curve,
      rsaKeySize: config.rsaKeySize,
      digest: config.digest,
      timeoutMs: config.easyrsaTimeoutMs ?? 60_000,
      redact,
    });
    const management = config.management
      ? new ManagementClient({
          address: config.management.address,
          password: async () => (config.management?.password ? await resolve(config.management.password) : undefined),
          timeoutMs: config.management.timeoutMs ?? 5_000,
        })
      : undefined;
    const ccd = new CcdDirectory(config.ccdDir);
    const accounts = new AccountOperations({
      easyrsa,
      ccd,
      management,
      crlPath: config.crlPath,
      lock: { waitMs: config.lockWaitMs ?? 30_000, staleMs: 10 * 60_000 },
      commonName: config.commonName ?? 'userName',
      profile: config.profile,
      secret: resolve,
      deliver,
      ttlMs: config.ttlMs,
      pageSize: config.pageSize ?? DEFAULT_PAGE_SIZE,
      log,
      crlDays: config.crlDays ?? 180,
    });

    return {
      async validate() {
        await requireFile(easyrsa.path('ca.crt'), 'pkiDir must be an easy-rsa PKI with a CA (easyrsa build-ca)');
        await requireFile(easyrsa.path('private', 'ca.key'), 'the CA key must be in the PKI for the connector to issue certificates');
        await requireFile(easyrsa.path('index.txt'), 'pkiDir must be an initialised easy-rsa PKI');
        await easyrsa.run('validate', ['show-ca']);
        await requireWritableDir(dirname(config.crlPath), '/crlPath');
        await requireWritableDir(config.ccdDir, '/ccdDir');
        for (const ref of [config.profile.tlsCrypt, config.profile.tlsAuth]) if (ref) await resolve(ref);
        if (management) await management.version();
      },
      createAccount: (input) => accounts.create(input),
      disableAccount: (remoteId) => accounts.deprovision('disableAccount', remoteId, false),
      deleteAccount: (remoteId) => accounts.deprovision('deleteAccount', remoteId, true),
      listAccounts: (cursor) => accounts.list(cursor),
      async grant(remoteId, entitlement) {
        const cn = checkCommonName(remoteId, 'grant');
        return { status: await ccd.grant(cn, entitlement), remoteId: cn };
      },
      async revoke(remoteId, entitlement) {
        const cn = checkCommonName(remoteId, 'revoke');
        const { change } = await ccd.revoke(cn, entitlement);
        // The client keeps what it was pushed until it reconnects: end the session so the change holds now.
        if (change === 'applied' && management) await management.kill(cn);
        return { status: change, remoteId: cn };
      },
      async listGrants(entitlement, cursor) {
        if (cursor !== undefined && !/^[A-Za-z0-9]/.test(cursor)) throw new PermanentError('openvpn: listGrants: invalid cursor', 'invalidCursor');
        parseEntitlement(entitlement);
        const pageSize = config.pageSize ?? DEFAULT_PAGE_SIZE;
        const names = (await ccd.list()).filter((n) => cursor === undefined || n > cursor);
        const holders: string[] = [];
        let i = 0;
        for (; i < names.length && holders.length < pageSize; i++) {
          if ((await ccd.entitlementsOf(names[i]!)).includes(entitlement.id)) holders.push(names[i]!);
        }
        return { items: holders, next: i < names.length ? names[i - 1] : undefined };
      },
    };
  },
});

export default openvpnConnector;
