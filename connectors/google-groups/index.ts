/**
 * The google-groups connector: Google group memberships (with a role) for existing Google Workspace
 * users, through the Admin SDK Directory API with a service account and domain-wide delegation.
 * docs/connectors/google-groups.md describes configuration, the Workspace setup, what each
 * operation sends, and the policies.
 *
 * Accounts are Workspace users found by primary email; the connector never creates or deletes
 * them. The `delete` deprovision policy therefore ends in disableAccount too (deleteAccount is not
 * declared), which suspends the user only under `suspendOnDeprovision`.
 */
import { Type } from '@sinclair/typebox';
import type { PermanentError} from '@scim-gateway/connector-sdk';
import { defineConnector, SECRET_REFERENCE_PATTERN } from '@scim-gateway/connector-sdk';
import { isSecretReference } from '@scim-gateway/connector-sdk';
import {
  DEFAULT_TIMEOUT_MS,
  GOOGLE_ROOT_URL,
  GOOGLE_TOKEN_URL,
  GoogleDirectoryClient,
  SCOPE_GROUP_MEMBER,
  SCOPE_USER,
  SCOPE_USER_READONLY,
  parseServiceAccountKey,
  type ServiceAccountCredentials,
} from './client.js';
import { MemberOperations, googleGroupsEntitlementSchema } from './member.js';
import { UserOperations } from './user.js';
import { configError, checkEndpointUrl } from '@scim-gateway/connector-sdk';

const EMAIL_PATTERN = '^[^\\s@]+@[^\\s@]+$';
export const DEFAULT_PAGE_SIZE = 200;

export const googleGroupsConfigSchema = Type.Object(
  {
    serviceAccountKey: Type.Optional(
      Type.String({
        pattern: SECRET_REFERENCE_PATTERN,
        description:
          "Reference (env:NAME or file:/path) to the service account's JSON key file contents. Give either this, or clientEmail and privateKey. Read on every call, so a rotated key file is used without a restart.",
        examples: ['file:/run/secrets/google-sa.json', 'env:GOOGLE_SA_KEY'],
      }),
    ),
    clientEmail: Type.Optional(
      Type.String({
        pattern: EMAIL_PATTERN,
        maxLength: 320,
        description: "The service account's email (client_email of its key), when the key is given as privateKey instead of serviceAccountKey.",
        examples: ['scim-gateway@my-project.iam.gserviceaccount.com'],
      }),
    ),
    privateKey: Type.Optional(
      Type.String({
        pattern: SECRET_REFERENCE_PATTERN,
        description: "Reference (env:NAME or file:/path) to the service account's PEM private key (private_key of its key), with clientEmail.",
        examples: ['file:/run/secrets/google-sa.pem'],
      }),
    ),
    subject: Type.String({
      pattern: EMAIL_PATTERN,
      maxLength: 320,
      description:
        'The Workspace administrator the service account acts as (domain-wide delegation). Needs the admin privileges Groups (or Groups → Read + Update members) and Users → Read (Users → Update with suspendOnDeprovision or manageNames). Never suspended by the connector.',
      examples: ['provisioning-admin@example.com'],
    }),
    customer: Type.Optional(
      Type.String({
        pattern: '^(my_customer|C[0-9a-z]+)$',
        default: 'my_customer',
        description: 'The Workspace customer whose users listAccounts lists: my_customer (default, the subject\'s own account) or a customer id such as C03az79cb.',
      }),
    ),
    domain: Type.Optional(
      Type.String({
        pattern: '^[A-Za-z0-9.-]+\\.[A-Za-z]{2,}$',
        maxLength: 253,
        description: 'List only the users of this domain in listAccounts, instead of every user of the customer.',
        examples: ['example.com'],
      }),
    ),
    accountEmail: Type.Optional(
      Type.Union([Type.Literal('email'), Type.Literal('userName')], {
        default: 'email',
        description: "Which field of the directory user is the Workspace primary email: the primary email address (default) or the userName.",
      }),
    ),
    suspendOnDeprovision: Type.Optional(
      Type.Boolean({
        default: false,
        description:
          'Suspend the Workspace user when the engine deprovisions them (their last entitlement here ends), and lift the suspension when an active user needs access again. Needs the admin.directory.user scope. Default false: deprovisioning only removes memberships.',
      }),
    ),
    manageNames: Type.Optional(
      Type.Boolean({
        default: false,
        description: "Keep the Workspace user's given, family and display name equal to the directory's. Needs the admin.directory.user scope. Default false: names are left to whoever provisions Workspace.",
      }),
    ),
    pageSize: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 200,
        default: DEFAULT_PAGE_SIZE,
        description: `Members or users per page when listing (maxResults; default ${DEFAULT_PAGE_SIZE}, Google's maximum for members).`,
      }),
    ),
    timeoutMs: Type.Optional(
      Type.Integer({
        minimum: 100,
        maximum: 300_000,
        default: DEFAULT_TIMEOUT_MS,
        description: `Deadline for one request, token requests included, in milliseconds (default ${DEFAULT_TIMEOUT_MS}). A request that misses it is a transient failure.`,
      }),
    ),
    rootUrl: Type.Optional(
      Type.String({
        pattern: '^https?://\\S+$',
        maxLength: 2048,
        default: GOOGLE_ROOT_URL,
        description: `Root URL of the Admin SDK API (default ${GOOGLE_ROOT_URL}), for a private endpoint or a test double. https, or http for loopback hosts only.`,
      }),
    ),
    // Not called tokenUrl: the admin API takes any key containing "token" for a secret.
    oauthEndpoint: Type.Optional(
      Type.String({
        pattern: '^https?://\\S+$',
        maxLength: 2048,
        default: GOOGLE_TOKEN_URL,
        description: `OAuth 2.0 token endpoint the signed assertion is posted to (default ${GOOGLE_TOKEN_URL}), for a private endpoint or a test double. The assertion's audience stays ${GOOGLE_TOKEN_URL}. https, or http for loopback hosts only.`,
      }),
    ),
  },
  { additionalProperties: false },
);

const invalidConfig = (field: string, problem: string): PermanentError => configError('google-groups', field, problem);

/** The scopes to request: what the configured features need, and nothing more. */
export function scopesFor(config: { suspendOnDeprovision?: boolean | undefined; manageNames?: boolean | undefined }): string[] {
  const writesUsers = config.suspendOnDeprovision === true || config.manageNames === true;
  return [SCOPE_GROUP_MEMBER, writesUsers ? SCOPE_USER : SCOPE_USER_READONLY];
}

export const googleGroupsConnector = defineConnector({
  type: 'google-groups',
  description: 'Google group memberships (MEMBER, MANAGER or OWNER) for existing Google Workspace users, through the Admin SDK Directory API with a domain-wide delegated service account; optionally suspends users on deprovisioning.',
  configSchema: googleGroupsConfigSchema,
  entitlementSchema: googleGroupsEntitlementSchema,
  capabilities: ['createAccount', 'updateAccount', 'disableAccount', 'grant', 'revoke', 'listAccounts', 'listGrants'],
  create({ config, secret }) {
    const { serviceAccountKey, clientEmail, privateKey } = config;
    if (serviceAccountKey !== undefined && (clientEmail !== undefined || privateKey !== undefined)) {
      throw invalidConfig('/serviceAccountKey', 'give either serviceAccountKey, or clientEmail with privateKey, not both');
    }
    if (serviceAccountKey === undefined && (clientEmail === undefined || privateKey === undefined)) {
      throw invalidConfig(clientEmail === undefined ? '/clientEmail' : '/privateKey', 'give serviceAccountKey, or both clientEmail and privateKey');
    }
    for (const [field, value] of [['/serviceAccountKey', serviceAccountKey], ['/privateKey', privateKey]] as const) {
      if (value !== undefined && !isSecretReference(value)) throw invalidConfig(field, 'must be a secret reference, env:NAME or file:/path, never the key itself');
    }
    const rootUrl = checkEndpointUrl('google-groups', '/rootUrl', config.rootUrl ?? GOOGLE_ROOT_URL);
    const tokenUrl = checkEndpointUrl('google-groups', '/oauthEndpoint', config.oauthEndpoint ?? GOOGLE_TOKEN_URL);
    const credentials = async (): Promise<ServiceAccountCredentials> => {
      if (serviceAccountKey !== undefined) return parseServiceAccountKey(await secret(serviceAccountKey));
      return { clientEmail: clientEmail!, privateKey: (await secret(privateKey!)).replace(/\\n/g, '\n') };
    };
    const pageSize = config.pageSize ?? DEFAULT_PAGE_SIZE;
    const client = new GoogleDirectoryClient({
      credentials,
      subject: config.subject,
      scopes: scopesFor(config),
      rootUrl,
      tokenUrl,
      timeoutMs: config.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    });
    const users = new UserOperations(client, {
      accountEmail: config.accountEmail ?? 'email',
      suspendOnDeprovision: config.suspendOnDeprovision ?? false,
      manageNames: config.manageNames ?? false,
      customer: config.customer ?? 'my_customer',
      domain: config.domain,
      pageSize,
    });
    const members = new MemberOperations(client, pageSize);
    return {
      async validate() {
        // The token proves the key and the delegation of every scope; reading the subject proves it
        // is an administrator who may read users.
        await client.authorize('google-groups: validate: token');
        await client.call('google-groups: validate: users.get (the subject)', (d) => d.users.get({ userKey: config.subject, projection: 'basic' }));
      },
      listAccounts: (cursor) => users.list(cursor),
      createAccount: (input) => users.create(input),
      updateAccount: (remoteId, input) => users.update(remoteId, input),
      disableAccount: (remoteId) => users.disable(remoteId),
      grant: (remoteId, entitlement) => members.grant(remoteId, entitlement),
      revoke: (remoteId, entitlement) => members.revoke(remoteId, entitlement),
      listGrants: (entitlement, cursor) => members.listGrants(entitlement, cursor),
    };
  },
});

export default googleGroupsConnector;
