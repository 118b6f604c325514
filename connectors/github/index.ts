/**
 * The github connector: provisions people into a GitHub organization (membership, owner role) and
 * its teams (member or maintainer), with a personal access token or as a GitHub App installation,
 * through @octokit/rest. docs/connectors/github.md describes configuration, entitlements, the
 * deprovision policies, reconciliation and limits.
 *
 * An account is the person's place in the organization: an active or pending membership for a
 * known GitHub username (remoteId: the lowercased login), or a pending email invitation for someone
 * whose username is not known yet (remoteId: `email:<address>`).
 */
import { Type } from '@sinclair/typebox';
import type { PermanentError} from '@scim-gateway/connector-sdk';
import { defineConnector, SECRET_REFERENCE_PATTERN } from '@scim-gateway/connector-sdk';
import { isSecretReference } from '@scim-gateway/connector-sdk';
import { DEFAULT_BASE_URL, DEFAULT_TIMEOUT_MS, GitHubClient, type GitHubAuth } from './client.js';
import { MemberOperations } from './member.js';
import { TeamOperations, githubEntitlementSchema } from './team.js';
import { configError, checkEndpointUrl } from '@scim-gateway/connector-sdk';

export const DEFAULT_PAGE_SIZE = 100;
export const DEFAULT_USERNAME_ATTRIBUTE = 'userName';

export const githubConfigSchema = Type.Object(
  {
    baseUrl: Type.Optional(
      Type.String({
        pattern: '^https?://\\S+$',
        maxLength: 2048,
        default: DEFAULT_BASE_URL,
        description: `The REST API root (default ${DEFAULT_BASE_URL}; GitHub Enterprise Server: https://<host>/api/v3). Must be https; plain http only for loopback hosts. No credentials, query or fragment.`,
      }),
    ),
    org: Type.String({
      pattern: '^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$',
      description: "The organization's login, as in https://github.com/<org>.",
    }),
    token: Type.Optional(
      Type.String({
        pattern: SECRET_REFERENCE_PATTERN,
        description:
          'Reference (env:NAME or file:/path) to a personal access token of an organization owner: classic with the admin:org scope, or fine-grained with organization Members read and write. Give either this or the three App fields. Read on every request.',
        examples: ['env:GITHUB_TOKEN'],
      }),
    ),
    appId: Type.Optional(
      Type.Union([Type.Integer({ minimum: 1 }), Type.String({ pattern: '^(\\d+|Iv[0-9A-Za-z.]+)$' })], {
        description: "The GitHub App's id (or client id), for App authentication; needs privateKey and installationId too.",
      }),
    ),
    privateKey: Type.Optional(
      Type.String({
        pattern: SECRET_REFERENCE_PATTERN,
        description: "Reference (env:NAME or file:/path) to the GitHub App's private key, the PEM file GitHub issued. Read when the connector first authenticates.",
        examples: ['file:/run/secrets/github-app.pem'],
      }),
    ),
    installationId: Type.Optional(
      Type.Integer({ minimum: 1, description: "The App installation's id on the organization (Settings → GitHub Apps → Configure: the number at the end of the URL)." }),
    ),
    usernameAttribute: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 512,
        default: DEFAULT_USERNAME_ATTRIBUTE,
        description:
          'Where the GitHub username is in the SCIM user: a core attribute ("userName", "nickName"), a dotted sub-attribute, or an extension attribute as "<schema URN>:<attribute>", e.g. "urn:ietf:params:scim:schemas:extension:acme:2.0:User:githubUsername". A user without a valid username there is invited by email instead.',
      }),
    ),
    deprovision: Type.Optional(
      Type.Union([Type.Literal('removeFromOrg'), Type.Literal('teamsOnly')], {
        default: 'removeFromOrg',
        description:
          'What deprovisioning does: removeFromOrg (default) removes the person from the organization, and so from all its teams, or cancels their pending invitation; teamsOnly removes them only from the managed teams and keeps their organization membership.',
      }),
    ),
    managedTeams: Type.Optional(
      Type.Array(Type.String({ pattern: '^[a-z0-9][a-z0-9_.-]*$', maxLength: 255 }), {
        uniqueItems: true,
        maxItems: 1000,
        description:
          'Team slugs the teamsOnly policy removes people from. Default: every team of the organization. Entitlement revocations are not limited by this list.',
      }),
    ),
    pageSize: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 100, default: DEFAULT_PAGE_SIZE, description: `Items per page when listing (GitHub's per_page; default and maximum ${DEFAULT_PAGE_SIZE}).` }),
    ),
    timeoutMs: Type.Optional(
      Type.Integer({
        minimum: 100,
        maximum: 300_000,
        default: DEFAULT_TIMEOUT_MS,
        description: `Deadline for one request, from connecting to reading the whole answer, in milliseconds (default ${DEFAULT_TIMEOUT_MS}). A request that misses it is a transient failure.`,
      }),
    ),
  },
  { additionalProperties: false },
);

const invalidConfig = (field: string, problem: string): PermanentError => configError('github', field, problem);

export const githubConnector = defineConnector({
  type: 'github',
  description: 'Provisions GitHub organization membership (member or owner) and team membership (member or maintainer), with a token or as a GitHub App.',
  configSchema: githubConfigSchema,
  entitlementSchema: githubEntitlementSchema,
  capabilities: ['createAccount', 'updateAccount', 'disableAccount', 'grant', 'revoke', 'listAccounts', 'listGrants'],
  create({ config, secret }) {
    const baseUrl = checkEndpointUrl('github', '/baseUrl', config.baseUrl ?? DEFAULT_BASE_URL);
    const hasApp = config.appId !== undefined || config.privateKey !== undefined || config.installationId !== undefined;
    let auth: GitHubAuth;
    if (config.token !== undefined) {
      if (hasApp) throw invalidConfig('/token', 'give either a token or the App fields (appId, privateKey, installationId), not both');
      if (!isSecretReference(config.token)) throw invalidConfig('/token', 'must be a secret reference, env:NAME or file:/path');
      const ref = config.token;
      auth = { kind: 'token', token: () => secret(ref) };
    } else {
      if (config.appId === undefined || config.privateKey === undefined || config.installationId === undefined) {
        const missing = (['appId', 'privateKey', 'installationId'] as const).filter((k) => config[k] === undefined);
        throw invalidConfig(hasApp ? `/${missing[0]}` : '/token', hasApp ? `App authentication needs ${missing.join(', ')}` : 'give a token, or appId, privateKey and installationId');
      }
      if (!isSecretReference(config.privateKey)) throw invalidConfig('/privateKey', 'must be a secret reference, env:NAME or file:/path');
      const ref = config.privateKey;
      auth = { kind: 'app', appId: String(config.appId), installationId: config.installationId, privateKey: () => secret(ref) };
    }
    const client = new GitHubClient({ baseUrl, auth, timeoutMs: config.timeoutMs, pageSize: config.pageSize ?? DEFAULT_PAGE_SIZE });
    const members = new MemberOperations(client, {
      org: config.org,
      usernameAttribute: config.usernameAttribute ?? DEFAULT_USERNAME_ATTRIBUTE,
      deprovision: config.deprovision ?? 'removeFromOrg',
      managedTeams: config.managedTeams,
    });
    const teams = new TeamOperations(client, members);
    return {
      validate: () => members.validate(),
      listAccounts: (cursor) => members.list(cursor),
      createAccount: (input) => members.create(input),
      updateAccount: (remoteId, input) => members.update(remoteId, input),
      disableAccount: (remoteId) => members.deprovision(remoteId),
      grant: (remoteId, entitlement) => teams.grant(remoteId, entitlement),
      revoke: (remoteId, entitlement) => teams.revoke(remoteId, entitlement),
      listGrants: (entitlement, cursor) => teams.listGrants(entitlement, cursor),
    };
  },
});

export default githubConnector;
