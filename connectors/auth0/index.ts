/**
 * The auth0 connector: provisions users of one Auth0 database connection and their Auth0 roles
 * through the Management API, with the `auth0` package's ManagementClient and a Machine to Machine
 * application's client-credentials tokens. docs/connectors/auth0.md describes configuration, the
 * scopes the application needs, and what each operation sends.
 *
 * Deprovisioning under the `disable` policy blocks the user and flags it in
 * `app_metadata.scimGateway`; the Action in actions/deny-deprovisioned.js denies logins while the
 * flag is there. Under `delete` the user is deleted.
 */
import { Type } from '@sinclair/typebox';
import type { PermanentError} from '@scim-gateway/connector-sdk';
import { defineConnector, SECRET_REFERENCE_PATTERN } from '@scim-gateway/connector-sdk';
import { isSecretReference } from '@scim-gateway/connector-sdk';
import { Auth0Api, DEFAULT_TIMEOUT_MS } from './client.js';
import { RoleOperations, auth0EntitlementSchema } from './role.js';
import { UserOperations } from './user.js';
import { configError } from '@scim-gateway/connector-sdk';

export const DEFAULT_PAGE_SIZE = 50;
/** Auth0's own default lifetime of a password-change ticket (5 days). */
export const DEFAULT_TICKET_TTL_SECONDS = 432_000;

export const auth0ConfigSchema = Type.Object(
  {
    domain: Type.String({
      pattern: '^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$',
      maxLength: 253,
      description:
        'The tenant domain the Management API is reached at, without scheme or path: "<tenant>.<region>.auth0.com", or a custom domain. The client always uses https://<domain>.',
      examples: ['acme.eu.auth0.com'],
    }),
    clientId: Type.String({
      minLength: 1,
      maxLength: 128,
      description: 'Client ID of the Machine to Machine application authorized for the Auth0 Management API (tokens by the client-credentials grant).',
    }),
    clientSecret: Type.String({
      pattern: SECRET_REFERENCE_PATTERN,
      description: "Reference to that application's client secret, env:NAME or file:/path, never the secret itself. Read on every operation, so rotating a mounted file needs no restart.",
      examples: ['env:AUTH0_CLIENT_SECRET', 'file:/run/secrets/auth0-client-secret'],
    }),
    audience: Type.Optional(
      Type.String({
        pattern: '^https://\\S+$',
        maxLength: 2048,
        description: 'Audience of the token request. Default https://<domain>/api/v2/; set it to https://<tenant>.<region>.auth0.com/api/v2/ when domain is a custom domain.',
      }),
    ),
    connection: Type.String({
      pattern: '^[A-Za-z0-9]([A-Za-z0-9-]{0,126}[A-Za-z0-9])?$',
      description: 'Name of the database connection users are created in and listed from, e.g. "Username-Password-Authentication". Users of other connections are never adopted.',
    }),
    emailVerified: Type.Optional(
      Type.Boolean({
        default: false,
        description:
          "Whether created users' email_verified is true (default false). Either way Auth0 sends no verification email; using the invitation ticket marks the address verified.",
      }),
    ),
    allowEmailChange: Type.Optional(
      Type.Boolean({
        default: false,
        description: 'Whether updateAccount changes the Auth0 email when the directory\'s differs (default false: the email is how the connector finds users, and a change is left to the user or an administrator).',
      }),
    ),
    invitation: Type.Optional(
      Type.Union([Type.Literal('ticket'), Type.Literal('none')], {
        default: 'ticket',
        description:
          '"ticket" (default): a created user gets a password-change ticket, whose URL is handed to the gateway\'s delivery channel and never logged. "none": no ticket; users set a password with "Forgot password" on the login page.',
      }),
    ),
    ticketTtlSeconds: Type.Optional(
      Type.Integer({
        minimum: 60,
        maximum: 2_592_000,
        default: DEFAULT_TICKET_TTL_SECONDS,
        description: `How long the invitation ticket works, in seconds (ttl_sec; default ${DEFAULT_TICKET_TTL_SECONDS}, Auth0's 5 days).`,
      }),
    ),
    ticketClientId: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 128,
        description: 'client_id of the application users are sent to after setting their password (New Universal Login: its default login route).',
      }),
    ),
    ticketResultUrl: Type.Optional(
      Type.String({
        pattern: '^https://\\S+$',
        maxLength: 2048,
        description: 'result_url: where users go after setting their password, in the Classic Universal Login experience.',
      }),
    ),
    pageSize: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 100,
        default: DEFAULT_PAGE_SIZE,
        description: `Users per page when listing accounts and role members (per_page / take; default ${DEFAULT_PAGE_SIZE}, Auth0's maximum 100).`,
      }),
    ),
    timeoutMs: Type.Optional(
      Type.Integer({
        minimum: 100,
        maximum: 300_000,
        default: DEFAULT_TIMEOUT_MS,
        description: `Deadline of one Management API request in milliseconds (default ${DEFAULT_TIMEOUT_MS}). A request that misses it is a transient failure. The token request has the package's fixed 10 s.`,
      }),
    ),
  },
  { additionalProperties: false },
);

const invalidConfig = (field: string, problem: string): PermanentError => configError('auth0', field, problem);

export const auth0Connector = defineConnector({
  type: 'auth0',
  description: 'Provisions users of an Auth0 database connection and their roles through the Management API (Machine to Machine application, client credentials).',
  configSchema: auth0ConfigSchema,
  entitlementSchema: auth0EntitlementSchema,
  capabilities: ['createAccount', 'updateAccount', 'disableAccount', 'deleteAccount', 'grant', 'revoke', 'listAccounts', 'listGrants'],
  create({ config, secret, log, deliver }) {
    if (!isSecretReference(config.clientSecret)) throw invalidConfig('/clientSecret', 'must be a secret reference, env:NAME or file:/path, never the secret itself');
    if (config.ticketClientId !== undefined && config.ticketResultUrl !== undefined) {
      throw invalidConfig('/ticketResultUrl', 'give either ticketClientId or ticketResultUrl, not both');
    }
    const pageSize = config.pageSize ?? DEFAULT_PAGE_SIZE;
    const api = new Auth0Api({
      domain: config.domain,
      clientId: config.clientId,
      clientSecret: () => secret(config.clientSecret),
      audience: config.audience,
      timeoutMs: config.timeoutMs,
    });
    const users = new UserOperations(
      api,
      {
        connection: config.connection,
        emailVerified: config.emailVerified ?? false,
        allowEmailChange: config.allowEmailChange ?? false,
        invitation: config.invitation ?? 'ticket',
        ticketTtlSeconds: config.ticketTtlSeconds ?? DEFAULT_TICKET_TTL_SECONDS,
        ticketClientId: config.ticketClientId,
        ticketResultUrl: config.ticketResultUrl,
        pageSize,
      },
      log,
      deliver,
    );
    const roles = new RoleOperations(api, pageSize);
    return {
      async validate() {
        // A token, and the scope every operation starts with (read:users), in one cheap call.
        await api.call('auth0: validate', (m) => m.users.list({ q: `identities.connection:"${config.connection}"`, search_engine: 'v3', page: 0, per_page: 1, include_totals: true }));
      },
      listAccounts: (cursor) => users.list(cursor),
      createAccount: (input) => users.create(input),
      updateAccount: (remoteId, input) => users.update(remoteId, input),
      disableAccount: (remoteId) => users.disable(remoteId),
      deleteAccount: (remoteId) => users.delete(remoteId),
      grant: (remoteId, entitlement) => roles.grant(remoteId, entitlement),
      revoke: (remoteId, entitlement) => roles.revoke(remoteId, entitlement),
      listGrants: (entitlement, cursor) => roles.listGrants(entitlement, cursor),
    };
  },
});

export default auth0Connector;
