/**
 * The aws-identity-center connector: provisions AWS IAM Identity Center through its APIs, with IAM
 * credentials. Accounts are Identity Store users; entitlements are Identity Store group memberships
 * or permission-set assignments in AWS accounts (SSO Admin). docs/connectors/aws-identity-center.md
 * describes configuration, permissions and behaviour.
 */
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { DescribeInstanceCommand } from '@aws-sdk/client-sso-admin';
import { ListUsersCommand } from '@aws-sdk/client-identitystore';
import { PermanentError, defineConnector, type EntitlementRef, SECRET_REFERENCE_PATTERN } from '@scim-gateway/connector-sdk';
import { isSecretReference } from '@scim-gateway/connector-sdk';
import { AwsClients, DEFAULT_TIMEOUT_MS } from './client.js';
import { UserOperations } from './user.js';
import { GroupOperations, type GroupTarget } from './group.js';
import { AssignmentOperations, type AssignmentTarget } from './assignment.js';
import { configError } from '@scim-gateway/connector-sdk';

export const DEFAULT_PAGE_SIZE = 100;

const EndpointUrl = (service: string) =>
  Type.Optional(
    Type.String({
      pattern: '^https?://[^\\s/?#@]+/?$',
      description: `Overrides the ${service} endpoint (scheme, host and port only), e.g. an interface VPC endpoint's DNS name, or a local test double. Default: the public regional endpoint. Requests are still signed for the configured region.`,
    }),
  );

export const awsIdentityCenterConfigSchema = Type.Object(
  {
    region: Type.String({
      pattern: '^[a-z]{2}(-[a-z]+)+-\\d+$',
      description: 'The AWS Region of the IAM Identity Center instance, e.g. "eu-west-1".',
    }),
    identityStoreId: Type.String({
      pattern: '^(d-[0-9a-f]{10}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$',
      description: 'The identity store of the instance (Settings → Identity source in the console), e.g. "d-1234567890".',
    }),
    instanceArn: Type.Optional(
      Type.String({
        pattern: '^arn:aws[a-z-]*:sso:::instance/(sso)?ins-[a-zA-Z0-9-.]{16}$',
        description: 'The Identity Center instance ARN, e.g. "arn:aws:sso:::instance/ssoins-1234567890abcdef". Needed only for permission-set (account assignment) entitlements; validate() also checks that it belongs to identityStoreId.',
      }),
    ),
    accessKeyId: Type.String({
      pattern: SECRET_REFERENCE_PATTERN,
      description: 'Reference to the IAM access key id, env:NAME or file:/path.',
    }),
    secretAccessKey: Type.String({
      pattern: SECRET_REFERENCE_PATTERN,
      description: 'Reference to the IAM secret access key, env:NAME or file:/path, never the key itself. Read for every request, so rotating a mounted file needs no restart.',
    }),
    sessionToken: Type.Optional(
      Type.String({
        pattern: SECRET_REFERENCE_PATTERN,
        description: 'Reference to a session token, for temporary credentials (env:NAME or file:/path). Something outside the gateway must keep it fresh.',
      }),
    ),
    identityStoreEndpoint: EndpointUrl('Identity Store'),
    ssoAdminEndpoint: EndpointUrl('SSO Admin'),
    createGroups: Type.Optional(
      Type.Boolean({
        default: false,
        description: 'Create a group entitlement\'s group when it does not exist (default false: granting a missing group fails "notFound", so a typo never creates a stray group). An entitlement\'s own "create" overrides it.',
      }),
    ),
    pageSize: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 100, default: DEFAULT_PAGE_SIZE, description: `MaxResults of every list call, 1–100 (default ${DEFAULT_PAGE_SIZE}).` }),
    ),
    timeoutMs: Type.Optional(
      Type.Integer({
        minimum: 100,
        maximum: 300_000,
        default: DEFAULT_TIMEOUT_MS,
        description: `Deadline for one AWS request, in milliseconds (default ${DEFAULT_TIMEOUT_MS}). A request that misses it fails as transient.`,
      }),
    ),
  },
  { additionalProperties: false },
);
export type AwsIdentityCenterConfig = Static<typeof awsIdentityCenterConfigSchema>;

const GroupEntitlement = Type.Object(
  {
    group: Type.String({ minLength: 1, maxLength: 1024, description: 'The group\'s DisplayName in the identity store.' }),
    create: Type.Optional(Type.Boolean({ description: 'Create the group when it does not exist; overrides the connector\'s createGroups.' })),
  },
  { additionalProperties: false },
);
const AssignmentEntitlement = Type.Object(
  {
    permissionSet: Type.String({
      pattern: '^arn:aws[a-z-]*:sso:::permissionSet/(sso)?ins-[a-zA-Z0-9-.]{16}/ps-[a-zA-Z0-9-./]{16}$',
      description: 'The permission set ARN, e.g. "arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/ps-1234567890abcdef".',
    }),
    accountId: Type.String({ pattern: '^\\d{12}$', description: 'The AWS account (12 digits) the permission set is assigned in.' }),
  },
  { additionalProperties: false },
);

/** An entitlement's target: a group membership, or a permission set in an account. */
export const awsIdentityCenterEntitlementSchema = Type.Union([GroupEntitlement, AssignmentEntitlement], {
  description: '{ "group": "<DisplayName>" } for a group membership, or { "permissionSet": "<arn>", "accountId": "<12 digits>" } for an account assignment.',
});

type Target = { kind: 'group'; group: GroupTarget } | { kind: 'assignment'; assignment: AssignmentTarget };

function targetOf(op: string, entitlement: EntitlementRef): Target {
  const t = entitlement.target;
  if (Value.Check(GroupEntitlement, t)) return { kind: 'group', group: t };
  if (Value.Check(AssignmentEntitlement, t)) return { kind: 'assignment', assignment: t };
  throw new PermanentError(
    `aws-identity-center: ${op}: entitlement ${entitlement.id} has an invalid target; expected { "group": "<DisplayName>" } or { "permissionSet": "<arn>", "accountId": "<12 digits>" }`,
    'invalidEntitlement',
  );
}

const invalidConfig = (field: string, problem: string): PermanentError => configError('aws-identity-center', field, problem);

export const awsIdentityCenterConnector = defineConnector({
  type: 'aws-identity-center',
  description: 'Provisions AWS IAM Identity Center users, group memberships and permission-set account assignments through the Identity Store and SSO Admin APIs, with IAM credentials.',
  configSchema: awsIdentityCenterConfigSchema,
  entitlementSchema: awsIdentityCenterEntitlementSchema,
  capabilities: ['createAccount', 'updateAccount', 'deleteAccount', 'grant', 'revoke', 'listAccounts', 'listGrants'],
  create({ config, secret }) {
    for (const field of ['accessKeyId', 'secretAccessKey', 'sessionToken'] as const) {
      const ref = config[field];
      if (ref !== undefined && !isSecretReference(ref)) throw invalidConfig(`/${field}`, 'must be a secret reference, env:NAME or file:/path');
    }
    const sessionTokenRef = config.sessionToken;
    const aws = new AwsClients({
      region: config.region,
      credentials: async () => ({
        accessKeyId: await secret(config.accessKeyId),
        secretAccessKey: await secret(config.secretAccessKey),
        ...(sessionTokenRef ? { sessionToken: await secret(sessionTokenRef) } : {}),
      }),
      identityStoreEndpoint: config.identityStoreEndpoint,
      ssoAdminEndpoint: config.ssoAdminEndpoint,
      timeoutMs: config.timeoutMs,
    });
    const pageSize = config.pageSize ?? DEFAULT_PAGE_SIZE;
    const users = new UserOperations(aws, { identityStoreId: config.identityStoreId, pageSize });
    const groups = new GroupOperations(aws, { identityStoreId: config.identityStoreId, pageSize, createGroups: config.createGroups ?? false });
    const assignments = new AssignmentOperations(aws, { instanceArn: config.instanceArn, pageSize });
    const storeMissing = (err: unknown) =>
      err instanceof PermanentError && err.kind === 'notFound'
        ? new PermanentError(`${err.message} (is identityStoreId ${config.identityStoreId} right, and in region ${config.region}?)`, 'invalidConfig', { cause: err })
        : err;
    return {
      async validate() {
        try {
          await aws.send('aws-identity-center: validate: ListUsers', () => aws.identityStore.send(new ListUsersCommand({ IdentityStoreId: config.identityStoreId, MaxResults: 1 })));
        } catch (err) {
          throw storeMissing(err);
        }
        if (config.instanceArn) {
          const instance = await aws.send(
            'aws-identity-center: validate: DescribeInstance',
            () => aws.ssoAdmin.send(new DescribeInstanceCommand({ InstanceArn: config.instanceArn })),
          );
          if (instance.IdentityStoreId && instance.IdentityStoreId !== config.identityStoreId) {
            throw invalidConfig('/instanceArn', `instance ${config.instanceArn} uses identity store ${instance.IdentityStoreId}, not ${config.identityStoreId}`);
          }
        }
      },
      listAccounts: (cursor) => users.list(cursor),
      createAccount: (input) => users.create(input),
      updateAccount: (remoteId, input) => users.update(remoteId, input),
      async deleteAccount(remoteId) {
        await assignments.revokeAll(remoteId);
        return users.delete(remoteId);
      },
      async grant(remoteId, entitlement) {
        const t = targetOf('grant', entitlement);
        return t.kind === 'group' ? groups.grant(remoteId, t.group) : assignments.grant(remoteId, t.assignment);
      },
      async revoke(remoteId, entitlement) {
        const t = targetOf('revoke', entitlement);
        return t.kind === 'group' ? groups.revoke(remoteId, t.group) : assignments.revoke(remoteId, t.assignment);
      },
      async listGrants(entitlement, cursor) {
        const t = targetOf('listGrants', entitlement);
        return t.kind === 'group' ? groups.listGrants(t.group, cursor) : assignments.listGrants(t.assignment, cursor);
      },
      close: () => aws.close(),
    };
  },
});

export default awsIdentityCenterConnector;
