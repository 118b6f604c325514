/**
 * The scim connector: provisions users and group memberships to any SCIM 2.0 service provider
 * (RFC 7643/7644) with a bearer token. Accounts are /Users found by userName; entitlements are
 * /Groups named by displayName. docs/connectors/scim.md describes configuration, what each
 * operation sends, and what typical targets need.
 *
 * Whether deprovisioning disables or deletes the account is the connector's `deprovision` policy
 * (kept beside its configuration, not in it): the engine calls disableAccount or deleteAccount
 * accordingly, and each does exactly what its name says.
 */
import { Type } from '@sinclair/typebox';
import { PermanentError, defineConnector, SECRET_REFERENCE_PATTERN } from '@scim-gateway/connector-sdk';
import { isSecretReference } from '@scim-gateway/connector-sdk';
import { DEFAULT_TIMEOUT_MS, ScimClient } from './client.js';
import { GroupOperations, scimEntitlementSchema } from './group.js';
import { UserOperations } from './user.js';
import { configError, checkEndpointUrl } from '@scim-gateway/connector-sdk';

export const DEFAULT_PAGE_SIZE = 100;

export const scimConfigSchema = Type.Object(
  {
    baseUrl: Type.String({
      pattern: '^https?://\\S+$',
      maxLength: 2048,
      description:
        'The SCIM base URL, the one /Users and /Groups hang off. Must be https; plain http is accepted only for loopback hosts (localhost, 127.0.0.0/8, ::1). No credentials, query or fragment.',
      examples: ['https://scim.us-east-1.amazonaws.com/AbCdEf-1234/scim/v2', 'https://api.slack.com/scim/v2'],
    }),
    token: Type.String({
      pattern: SECRET_REFERENCE_PATTERN,
      description: "Reference to the bearer token, env:NAME or file:/path, never the token itself. It is read on every request, so rotating a mounted file needs no restart.",
      examples: ['env:SCIM_TOKEN', 'file:/run/secrets/scim-token'],
    }),
    userNameAttribute: Type.Optional(
      Type.Union([Type.Literal('userName'), Type.Literal('email')], {
        default: 'userName',
        description: "Which field of the directory user becomes the target's userName: the directory's userName (default) or its primary email address.",
      }),
    ),
    externalIdSource: Type.Optional(
      Type.Union([Type.Literal('userId'), Type.Literal('externalId')], {
        default: 'userId',
        description:
          "What the target's externalId is set to: the gateway's id of the user (default), or the externalId the directory holds for the user (the upstream identity provider's id), for targets that match sign-ins to provisioned users by it, such as GitHub Enterprise Managed Users.",
      }),
    ),
    timeoutMs: Type.Optional(
      Type.Integer({
        minimum: 100,
        maximum: 300_000,
        default: DEFAULT_TIMEOUT_MS,
        description: `Deadline for one request, from connecting to reading the whole answer, in milliseconds (default ${DEFAULT_TIMEOUT_MS}). A request that misses it is a transient failure.`,
      }),
    ),
    pageSize: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 1000,
        default: DEFAULT_PAGE_SIZE,
        description: `Users per page when listing accounts (the SCIM count parameter; default ${DEFAULT_PAGE_SIZE}). Targets may cap it lower.`,
      }),
    ),
    groupDisplayNamePrefix: Type.Optional(
      Type.String({
        maxLength: 128,
        description: 'Prepended to every entitlement\'s group name to form the target group\'s displayName, e.g. "gw-" so the gateway only ever touches its own groups.',
      }),
    ),
    readGroupMembers: Type.Optional(
      Type.Boolean({
        default: true,
        description:
          'Whether the target returns group members when a group is read (default true). Set false for targets that never do (AWS IAM Identity Center): grant and revoke then always send their PATCH and answer applied, and listGrants is unsupported.',
      }),
    ),
  },
  { additionalProperties: false },
);

const invalidConfig = (field: string, problem: string): PermanentError => configError('scim', field, problem);

export const scimConnector = defineConnector({
  type: 'scim',
  description: 'Provisions users and group memberships to any SCIM 2.0 service provider (AWS IAM Identity Center, GitHub Enterprise Managed Users, Slack, …) with a bearer token.',
  configSchema: scimConfigSchema,
  entitlementSchema: scimEntitlementSchema,
  capabilities: ['createAccount', 'updateAccount', 'disableAccount', 'deleteAccount', 'grant', 'revoke', 'listAccounts', 'listGrants'],
  create({ config, secret }) {
    const baseUrl = checkEndpointUrl('scim', '/baseUrl', config.baseUrl);
    if (!isSecretReference(config.token)) throw invalidConfig('/token', 'must be a secret reference, env:NAME or file:/path, never the token itself');
    const client = new ScimClient({ baseUrl, token: () => secret(config.token), timeoutMs: config.timeoutMs });
    const users = new UserOperations(client, {
      userNameAttribute: config.userNameAttribute ?? 'userName',
      externalIdSource: config.externalIdSource ?? 'userId',
      pageSize: config.pageSize ?? DEFAULT_PAGE_SIZE,
    });
    const groups = new GroupOperations(client, { displayNamePrefix: config.groupDisplayNamePrefix ?? '', readMembers: config.readGroupMembers ?? true });
    return {
      async validate() {
        const spc = await client.serviceProviderConfig('scim: validate');
        const schemas = Array.isArray(spc.schemas) ? (spc.schemas as unknown[]) : [];
        if (!schemas.some((s) => typeof s === 'string' && s.endsWith(':ServiceProviderConfig')) && !('patch' in spc)) {
          throw new PermanentError(`scim: validate failed: ${baseUrl}/ServiceProviderConfig is not a SCIM ServiceProviderConfig; is baseUrl the SCIM endpoint?`, 'invalidConfig');
        }
        // Some targets serve ServiceProviderConfig without authentication; one user read proves the token.
        await client.list('scim: validate', '/Users?startIndex=1&count=1');
      },
      listAccounts: (cursor) => users.list(cursor),
      createAccount: (input) => users.create(input),
      updateAccount: (remoteId, input) => users.update(remoteId, input),
      disableAccount: (remoteId) => users.disable(remoteId),
      deleteAccount: (remoteId) => users.delete(remoteId),
      grant: (remoteId, entitlement) => groups.grant(remoteId, entitlement),
      revoke: (remoteId, entitlement) => groups.revoke(remoteId, entitlement),
      listGrants: (entitlement, cursor) => groups.listGrants(entitlement, cursor),
    };
  },
});

export default scimConnector;
