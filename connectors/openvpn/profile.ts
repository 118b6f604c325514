/**
 * The client profile (.ovpn) a user receives: the configured connection settings with the CA
 * certificate, the user's certificate and key, and the tls-crypt or tls-auth key inline, so the one
 * file is all a client needs.
 */
import { Type, type Static } from '@sinclair/typebox';
import { PermanentError, SECRET_REFERENCE_PATTERN } from '@scim-gateway/connector-sdk';

export const profileSchema = Type.Object(
  {
    remotes: Type.Array(
      Type.Object(
        {
          host: Type.String({ pattern: '^[A-Za-z0-9]([A-Za-z0-9.:-]{0,252})$', description: 'Server host name or IP address the client connects to.' }),
          port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535, default: 1194, description: 'Server port (default 1194).' })),
          proto: Type.Optional(
            Type.Union([Type.Literal('udp'), Type.Literal('tcp-client'), Type.Literal('udp4'), Type.Literal('udp6'), Type.Literal('tcp4-client'), Type.Literal('tcp6-client')], {
              default: 'udp',
              description: 'Transport protocol (default udp).',
            }),
          ),
        },
        { additionalProperties: false, description: 'One server the client may connect to.' },
      ),
      { minItems: 1, maxItems: 16, description: 'Servers written as `remote` lines, tried in order.' },
    ),
    dev: Type.Optional(Type.Union([Type.Literal('tun'), Type.Literal('tap')], { default: 'tun', description: 'Tunnel device type; must match the server (default tun).' })),
    verifyServerName: Type.Optional(
      Type.String({
        pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$',
        description: "The server certificate's common name; the client refuses any other server (verify-x509-name <name> name). Recommended.",
      }),
    ),
    dataCiphers: Type.Optional(
      Type.Array(Type.String({ pattern: '^[A-Za-z0-9-]{1,40}$', description: 'A cipher name, e.g. AES-256-GCM.' }), {
        minItems: 1,
        maxItems: 8,
        description: 'Data channel ciphers the client offers (data-ciphers); default: the OpenVPN 2.6 client default.',
      }),
    ),
    tlsCrypt: Type.Optional(
      Type.String({
        pattern: SECRET_REFERENCE_PATTERN,
        description: 'Reference (env:NAME or file:/path) to the OpenVPN static key the server uses with tls-crypt (openvpn --genkey tls-crypt). Inlined as <tls-crypt>.',
      }),
    ),
    tlsAuth: Type.Optional(
      Type.String({
        pattern: SECRET_REFERENCE_PATTERN,
        description: 'Reference (env:NAME or file:/path) to the static key the server uses with tls-auth (key direction 0 on the server, 1 in the profile). Inlined as <tls-auth>. Not together with tlsCrypt.',
      }),
    ),
    caFile: Type.Optional(
      Type.String({
        pattern: '^/',
        description: "Absolute path of the CA certificate(s) inlined as <ca> (default: the PKI's ca.crt). Use it to ship a chain or a CA bundle during a CA rollover.",
      }),
    ),
    extraLines: Type.Optional(
      Type.Array(Type.String({ pattern: '^[a-z][a-z0-9-]*( [^\\r\\n<>]*)?$', maxLength: 256, description: 'One OpenVPN directive with its arguments, e.g. "auth-nocache".' }), {
        maxItems: 50,
        description: 'Further client directives written as given, after the generated ones (no inline <blocks>).',
      }),
    ),
  },
  { additionalProperties: false, description: 'How the delivered client profile (.ovpn) connects.' },
);
export type ProfileConfig = Static<typeof profileSchema>;

export interface ProfileMaterial {
  ca: string;
  cert: string;
  key: string;
  tlsCrypt?: string | undefined;
  tlsAuth?: string | undefined;
}

function inline(tag: string, content: string): string {
  const body = content.trim();
  if (body.includes(`</${tag}>`)) throw new PermanentError(`openvpn: the ${tag} material cannot be inlined in a profile`, 'invalidConfig');
  return `<${tag}>\n${body}\n</${tag}>`;
}

/** The .ovpn text for one user. Holds the private key: never log it. */
export function buildProfile(config: ProfileConfig, material: ProfileMaterial): string {
  if (config.tlsCrypt && config.tlsAuth) throw new PermanentError('openvpn: profile.tlsCrypt and profile.tlsAuth exclude each other', 'invalidConfig');
  const lines = ['client', `dev ${config.dev ?? 'tun'}`];
  for (const r of config.remotes) lines.push(`remote ${r.host} ${r.port ?? 1194} ${r.proto ?? 'udp'}`);
  lines.push('resolv-retry infinite', 'nobind', 'persist-key', 'persist-tun', 'remote-cert-tls server');
  if (config.verifyServerName) lines.push(`verify-x509-name ${config.verifyServerName} name`);
  if (config.dataCiphers) lines.push(`data-ciphers ${config.dataCiphers.join(':')}`);
  lines.push('verb 3');
  lines.push(...(config.extraLines ?? []));
  lines.push(inline('ca', material.ca), inline('cert', material.cert), inline('key', material.key));
  if (material.tlsCrypt) lines.push(inline('tls-crypt', material.tlsCrypt));
  if (material.tlsAuth) lines.push('key-direction 1', inline('tls-auth', material.tlsAuth));
  return `${lines.join('\n')}\n`;
}
