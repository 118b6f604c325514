/**
 * Auth0 as a source of users: its configuration, the Management API client the import and the log
 * stream read users with (the auth0 connector's client and keyset listing, so paging, rate limits
 * and error classification behave exactly as they do for provisioning), and how an Auth0 user
 * becomes a SCIM user of the directory.
 */
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { createSecretResolver, PermanentError, SECRET_REFERENCE_PATTERN, type SecretResolver } from '../../connectors/index.js';
import { Auth0Api, DEFAULT_TIMEOUT_MS } from '../../connectors/auth0/client.js';
import { UserOperations, type Auth0User } from '../../connectors/auth0/user.js';

export const auth0SourceConfigSchema = Type.Object(
  {
    domain: Type.String({ pattern: '^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$', maxLength: 253, description: 'Tenant domain of the Management API, without scheme, e.g. "acme.eu.auth0.com".' }),
    clientId: Type.String({ minLength: 1, maxLength: 128, description: 'Client ID of a Machine to Machine application authorized for the Management API.' }),
    clientSecret: Type.String({ pattern: SECRET_REFERENCE_PATTERN, description: 'Reference to its client secret: env:NAME or file:/path.' }),
    audience: Type.Optional(Type.String({ pattern: '^https://\\S+$', maxLength: 2048, description: 'Token audience; default https://<domain>/api/v2/.' })),
    connection: Type.String({ pattern: '^[A-Za-z0-9]([A-Za-z0-9-]{0,126}[A-Za-z0-9])?$', description: 'The database connection whose users are imported (and into which invitations create users).' }),
    pageSize: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 100, description: 'Users per page of the import (at most 100).' })),
    timeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 300_000, default: DEFAULT_TIMEOUT_MS, description: 'Deadline of one Management API request in milliseconds.' })),
    logStreamSecret: Type.Optional(
      Type.String({ pattern: SECRET_REFERENCE_PATTERN, description: 'Reference to the secret Auth0 Log Streams sends in the Authorization header (env:NAME or file:/path); without it the log stream endpoint refuses everything.' }),
    ),
    actionSecret: Type.Optional(
      Type.String({ pattern: SECRET_REFERENCE_PATTERN, description: 'Reference to the secret the Auth0 Actions send (Authorization: Bearer) when they redeem invitations and ask whether a login may go on; without it those endpoints refuse everything.' }),
    ),
    invitationUrl: Type.Optional(
      Type.String({ pattern: '^https?://\\S+$', maxLength: 2048, description: "The application's login URL; invitation links are this URL with ?scim_invitation=<token>, which the application passes on to Auth0's /authorize." }),
    ),
    onProvisioningFailure: Type.Optional(
      Type.Union([Type.Literal('deny'), Type.Literal('continue')], {
        default: 'deny',
        description: 'At a first login whose provisioning failed in some target: deny the login (default) or let it continue; either way the status page shows what failed.',
      }),
    ),
    ticketTtlSeconds: Type.Optional(Type.Integer({ minimum: 60, maximum: 2_592_000, default: 432_000, description: 'Lifetime of the password-change ticket sent to an invited user who is new to the connection.' })),
    ticketResultUrl: Type.Optional(Type.String({ pattern: '^https://\\S+$', maxLength: 2048, description: 'Where Auth0 sends an invited user after setting a password (Classic Universal Login).' })),
  },
  { additionalProperties: false },
);

export type Auth0SourceConfig = Static<typeof auth0SourceConfigSchema>;

/** Checks a source configuration; throws an Error listing the problems. */
export function parseAuth0SourceConfig(config: unknown): Auth0SourceConfig {
  const filled = Value.Default(auth0SourceConfigSchema, Value.Clone(config));
  if (Value.Check(auth0SourceConfigSchema, filled)) return filled;
  const problems = [...Value.Errors(auth0SourceConfigSchema, filled)].slice(0, 10).map((e) => `${e.path || '/'}: ${e.message}`);
  throw new PermanentError(`invalid auth0 source configuration: ${problems.join('; ')}`, 'invalidConfig');
}

const quietLog = { info: () => {}, warn: () => {} };

/** The Management API of one source, and its users listed and read the connector's way. */
export interface Auth0Source {
  api: Auth0Api;
  users: UserOperations;
  config: Auth0SourceConfig;
}

export function auth0Source(config: Auth0SourceConfig, secret: SecretResolver = createSecretResolver()): Auth0Source {
  const api = new Auth0Api({ domain: config.domain, clientId: config.clientId, clientSecret: () => secret(config.clientSecret), audience: config.audience, timeoutMs: config.timeoutMs });
  const users = new UserOperations(
    api,
    {
      connection: config.connection,
      emailVerified: false,
      allowEmailChange: false,
      invitation: 'none',
      ticketTtlSeconds: config.ticketTtlSeconds ?? 432_000,
      ticketResultUrl: config.ticketResultUrl,
      pageSize: config.pageSize ?? 100,
    },
    quietLog,
    undefined,
  );
  return { api, users, config };
}

const CORE_USER = 'urn:ietf:params:scim:schemas:core:2.0:User';

/**
 * The SCIM user an Auth0 user becomes: userName is the email (else the username, else the
 * user_id), externalId the user_id, active unless blocked.
 */
export function auth0UserToScim(user: Auth0User & { user_id: string }): Record<string, unknown> {
  const userName = user.email?.toLowerCase() ?? user.username ?? user.user_id;
  const name: Record<string, string> = {};
  if (user.given_name) name.givenName = user.given_name;
  if (user.family_name) name.familyName = user.family_name;
  if (user.name && user.name !== user.email) name.formatted = user.name;
  return {
    schemas: [CORE_USER],
    userName,
    externalId: user.user_id,
    active: user.blocked !== true,
    ...(user.name ? { displayName: user.name } : {}),
    ...(Object.keys(name).length ? { name } : {}),
    ...(user.email ? { emails: [{ value: user.email.toLowerCase(), primary: true, type: 'work' }] } : {}),
  };
}
