/**
 * The webhook connector: provisions any system that can receive a signed HTTPS POST. Every operation
 * of the contract becomes one JSON delivery to the configured URL; the receiver applies it and
 * answers what it did. The protocol is described in docs/writing-a-connector.md ("The webhook
 * protocol"), and the connector SDK's `@scim-gateway/connector-sdk/signature` holds the signing helpers a receiver written in Node can import.
 */
import { Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { PermanentError, defineConnector, type EntitlementRef, SECRET_REFERENCE_PATTERN } from '@scim-gateway/connector-sdk';
import { isSecretReference } from '@scim-gateway/connector-sdk';
import { CREDENTIAL_HEADERS, DEFAULT_TIMEOUT_MS, RESERVED_HEADERS, WebhookClient } from './client.js';
import { configError } from '@scim-gateway/connector-sdk';

/** Letters of `text` as case-insensitive character classes, for header names in a schema pattern. */
function anyCase(text: string): string {
  return text.replace(/[a-z]/g, (c) => `[${c}${c.toUpperCase()}]`);
}
/**
 * An HTTP header name (RFC 9110 token) that is neither one the protocol sets (any `x-scim-gateway-*`
 * included, kept for the protocol) nor one that carries credentials. In the schema, not only in
 * `create`, so saving such a configuration is already refused.
 */
const HEADER_NAME_PATTERN = `^(?!(?:${[...RESERVED_HEADERS, ...CREDENTIAL_HEADERS].map(anyCase).join('|')}|${anyCase('x-scim-gateway-')}.*)$)[!#$%&'*+.^_\`|~0-9A-Za-z-]+$`;
/**
 * A header value without control characters (so configuration cannot smuggle in extra headers), and
 * not a secret reference: header values are sent as written, so a reference would go out literally.
 */
const HEADER_VALUE_PATTERN = '^(?!env:[A-Za-z_]|file:/)[\\t\\x20-\\x7e\\x80-\\xff]*$';

export const webhookConfigSchema = Type.Object(
  {
    url: Type.String({
      // No user:password@ before the host: credentials do not belong in configuration.
      pattern: '^https://[^\\s/?#@]+([/?#]\\S*)?$',
      maxLength: 2048,
      description: 'The receiver endpoint every operation is POSTed to. Must be https; it may not contain user:password credentials.',
      examples: ['https://provisioning.example.com/hooks/scim'],
    }),
    secret: Type.String({
      pattern: SECRET_REFERENCE_PATTERN,
      description:
        'Reference to the shared HMAC-SHA256 signing key, env:NAME or file:/path, never the key itself. The key must be at least 16 characters (32 random bytes recommended); it is read on every delivery, so rotating a mounted file needs no restart.',
      examples: ['env:WEBHOOK_SECRET', 'file:/run/secrets/webhook'],
    }),
    caFile: Type.Optional(
      Type.String({
        minLength: 1,
        description: "Path to a PEM file of extra CA certificates to trust for the receiver's TLS certificate, in addition to the public roots. Certificate checking cannot be turned off.",
      }),
    ),
    timeoutMs: Type.Optional(
      Type.Integer({
        minimum: 100,
        maximum: 300_000,
        default: DEFAULT_TIMEOUT_MS,
        description: `Deadline for one delivery, from connecting to reading the whole answer, in milliseconds (default ${DEFAULT_TIMEOUT_MS}). A delivery that misses it is a transient failure.`,
      }),
    ),
    headers: Type.Optional(
      Type.Record(Type.String({ pattern: HEADER_NAME_PATTERN }), Type.String({ pattern: HEADER_VALUE_PATTERN, maxLength: 4096 }), {
        additionalProperties: false,
        description:
          'Extra headers sent as written with every delivery, e.g. a tenant or routing header. Not for credentials: Authorization, Cookie, the protocol headers (x-scim-gateway-*, content-type, …) and secret references as values are refused; the signature authenticates the gateway.',
      }),
    ),
  },
  { additionalProperties: false },
);

/** An entitlement's target: `name` identifies what to grant; every other field is passed to the receiver as is. */
export const webhookEntitlementSchema = Type.Object(
  {
    name: Type.String({ minLength: 1, description: 'What the receiver grants, e.g. a group or role name.' }),
  },
  { additionalProperties: true, description: 'Passed through to the receiver in the delivery as entitlement.target.' },
);

const invalidConfig = (field: string, problem: string): PermanentError => configError('webhook', field, problem);

/**
 * What the schema cannot prove: that the URL parses. The secret check repeats the schema's with the
 * SDK's own test, so the pattern above cannot drift from what the resolver accepts.
 */
function checkConfig(config: { url: string; secret: string }): void {
  let url: URL;
  try {
    url = new URL(config.url);
  } catch {
    throw invalidConfig('/url', 'is not a valid URL');
  }
  if (url.protocol !== 'https:') throw invalidConfig('/url', 'must be an https URL');
  if (!isSecretReference(config.secret)) throw invalidConfig('/secret', 'must be a secret reference, env:NAME or file:/path, never the secret itself');
}

function checkEntitlement(entitlement: EntitlementRef): void {
  if (!Value.Check(webhookEntitlementSchema, entitlement.target)) {
    throw new PermanentError(`webhook: entitlement ${entitlement.id} needs a target with a non-empty "name"`, 'invalidEntitlement');
  }
}

export const webhookConnector = defineConnector({
  type: 'webhook',
  description: 'Provisions any system that accepts signed HTTPS deliveries (HMAC-SHA256) and answers in the webhook protocol.',
  configSchema: webhookConfigSchema,
  entitlementSchema: webhookEntitlementSchema,
  capabilities: ['createAccount', 'updateAccount', 'disableAccount', 'deleteAccount', 'grant', 'revoke', 'listAccounts', 'listGrants'],
  create({ config, secret }) {
    checkConfig(config);
    const client = new WebhookClient({
      url: config.url,
      secret: () => secret(config.secret),
      caFile: config.caFile,
      timeoutMs: config.timeoutMs,
      headers: config.headers,
    });
    // Entitlement checks run inside the async methods so a bad target is a rejected promise, like every other failure.
    return {
      validate: () => client.validate(),
      listAccounts: (cursor) => client.listAccounts(cursor),
      listGrants: async (entitlement, cursor) => {
        checkEntitlement(entitlement);
        return client.listGrants(entitlement, cursor);
      },
      createAccount: (account) => client.write('createAccount', { account }),
      updateAccount: (remoteId, account) => client.write('updateAccount', { remoteId, account }),
      disableAccount: (remoteId) => client.write('disableAccount', { remoteId }),
      deleteAccount: (remoteId) => client.write('deleteAccount', { remoteId }),
      grant: async (remoteId, entitlement) => {
        checkEntitlement(entitlement);
        return client.write('grant', { remoteId, entitlement });
      },
      revoke: async (remoteId, entitlement) => {
        checkEntitlement(entitlement);
        return client.write('revoke', { remoteId, entitlement });
      },
      close: () => client.close(),
    };
  },
});

export default webhookConnector;
