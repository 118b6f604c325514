/**
 * Account operations on Identity Store users: the directory's user mapped onto the attributes IAM
 * Identity Center keeps, found by userName (GetUserId on the `userName` unique attribute), and
 * changed with UpdateUser attribute operations only when something differs, so every write is
 * idempotent and a repeated call sends no write at all.
 */
import {
  CreateUserCommand,
  DeleteUserCommand,
  DescribeUserCommand,
  GetUserIdCommand,
  ListUsersCommand,
  UpdateUserCommand,
  type AttributeOperation,
  type DescribeUserResponse,
  type User,
} from '@aws-sdk/client-identitystore';
import { PermanentError, type AccountInput, type Page, type RemoteAccount, type WriteResult } from '@scim-gateway/connector-sdk';
import type { AwsClients } from './client.js';

const what = (op: string, call: string) => `aws-identity-center: ${op}: ${call}`;

/** The attributes this connector manages on an Identity Store user. */
export interface MappedUser {
  userName: string;
  displayName: string;
  givenName: string;
  familyName: string;
  email?: string | undefined;
}

/**
 * IAM Identity Center requires a display name, a given name and a family name on every user. Where
 * the directory has none, the userName stands in, so provisioning never fails on a missing name;
 * a later update replaces the stand-in once the directory has the real value.
 */
export function mapUser(input: AccountInput): MappedUser {
  const full = [input.givenName, input.familyName].filter(Boolean).join(' ');
  return {
    userName: input.userName,
    displayName: input.displayName || full || input.userName,
    givenName: input.givenName || input.userName,
    familyName: input.familyName || input.userName,
    email: input.email || undefined,
  };
}

function primaryEmail(user: Pick<User, 'Emails'>): string | undefined {
  const emails = user.Emails ?? [];
  return (emails.find((e) => e.Primary) ?? emails[0])?.Value;
}

/** The UpdateUser operations that bring `remote` in line with `input`; empty when nothing differs. */
export function userChanges(remote: DescribeUserResponse, input: AccountInput): AttributeOperation[] {
  const user = mapUser(input);
  const ops: AttributeOperation[] = [];
  if (remote.UserName !== user.userName) ops.push({ AttributePath: 'userName', AttributeValue: user.userName });
  // Names are compared only when the directory has them: a stand-in never overwrites a real value.
  const wantDisplay = input.displayName || [input.givenName, input.familyName].filter(Boolean).join(' ');
  if (wantDisplay && remote.DisplayName !== wantDisplay) ops.push({ AttributePath: 'displayName', AttributeValue: wantDisplay });
  if (input.givenName && remote.Name?.GivenName !== input.givenName) ops.push({ AttributePath: 'name.givenName', AttributeValue: input.givenName });
  if (input.familyName && remote.Name?.FamilyName !== input.familyName) ops.push({ AttributePath: 'name.familyName', AttributeValue: input.familyName });
  if (user.email && primaryEmail(remote)?.toLowerCase() !== user.email.toLowerCase()) {
    ops.push({ AttributePath: 'emails', AttributeValue: [{ Value: user.email, Type: 'work', Primary: true }] });
  }
  return ops;
}

export class UserOperations {
  constructor(
    private readonly aws: AwsClients,
    private readonly opts: { identityStoreId: string; pageSize: number },
  ) {}

  /** The UserId of the user with this userName, if there is one. */
  async findByUserName(op: string, userName: string): Promise<string | undefined> {
    const res = await this.aws.sendExpecting(
      what(op, 'GetUserId'),
      () => this.aws.identityStore.send(new GetUserIdCommand({ IdentityStoreId: this.opts.identityStoreId, AlternateIdentifier: { UniqueAttribute: { AttributePath: 'userName', AttributeValue: userName } } })),
      ['ResourceNotFoundException'],
    );
    if ('error' in res) return undefined;
    return res.ok.UserId;
  }

  async create(input: AccountInput): Promise<WriteResult> {
    const op = 'createAccount';
    const user = mapUser(input);
    const existing = await this.findByUserName(op, user.userName);
    if (existing) return { status: 'alreadyApplied', remoteId: existing };
    const res = await this.aws.sendExpecting(
      what(op, 'CreateUser'),
      () => this.aws.identityStore.send(new CreateUserCommand({
        IdentityStoreId: this.opts.identityStoreId,
        UserName: user.userName,
        DisplayName: user.displayName,
        Name: { GivenName: user.givenName, FamilyName: user.familyName },
        ...(user.email && { Emails: [{ Value: user.email, Type: 'work', Primary: true }] }),
      })),
      ['ConflictException'],
    );
    if ('ok' in res) {
      if (!res.ok.UserId) throw new PermanentError(`${what(op, 'CreateUser')} answered no UserId`, 'invalidResponse');
      return { status: 'applied', remoteId: res.ok.UserId };
    }
    // Created in between (by someone else, or an earlier attempt of ours whose answer was lost): adopt it.
    const raced = await this.findByUserName(op, user.userName);
    if (raced) return { status: 'alreadyApplied', remoteId: raced };
    throw this.aws.classify(what(op, 'CreateUser'), res.err);
  }

  async describe(op: string, remoteId: string): Promise<DescribeUserResponse> {
    return await this.aws.send(
      what(op, 'DescribeUser'),
      () => this.aws.identityStore.send(new DescribeUserCommand({ IdentityStoreId: this.opts.identityStoreId, UserId: remoteId })),
    );
  }

  async update(remoteId: string, input: AccountInput): Promise<WriteResult> {
    const op = 'updateAccount';
    const remote = await this.describe(op, remoteId);
    const ops = userChanges(remote, input);
    if (ops.length === 0) return { status: 'alreadyApplied', remoteId };
    await this.aws.send(what(op, 'UpdateUser'), () => this.aws.identityStore.send(new UpdateUserCommand({ IdentityStoreId: this.opts.identityStoreId, UserId: remoteId, Operations: ops })));
    return { status: 'applied', remoteId };
  }

  async delete(remoteId: string): Promise<WriteResult> {
    const op = 'deleteAccount';
    const res = await this.aws.sendExpecting(
      what(op, 'DeleteUser'),
      () => this.aws.identityStore.send(new DeleteUserCommand({ IdentityStoreId: this.opts.identityStoreId, UserId: remoteId })),
      ['ResourceNotFoundException'],
    );
    return { status: 'ok' in res ? 'applied' : 'alreadyApplied', remoteId };
  }

  /** One page of users; the cursor is AWS's NextToken, passed through untouched. */
  async list(cursor?: string): Promise<Page<RemoteAccount>> {
    const res = await this.aws.send(
      what('listAccounts', 'ListUsers'),
      () => this.aws.identityStore.send(new ListUsersCommand({ IdentityStoreId: this.opts.identityStoreId, MaxResults: this.opts.pageSize, ...(cursor ? { NextToken: cursor } : {}) })),
    );
    const items = (res.Users ?? []).flatMap((u): RemoteAccount[] => {
      if (!u.UserId) return [];
      const email = primaryEmail(u);
      return [
        {
          remoteId: u.UserId,
          ...(u.UserName !== undefined && { userName: u.UserName }),
          ...(email !== undefined && { email }),
          // Users carry a status only where AWS reports one; without it they are active.
          active: u.UserStatus !== 'DISABLED',
          attributes: { ...(u.DisplayName !== undefined && { displayName: u.DisplayName }) },
        },
      ];
    });
    return { items, next: res.NextToken || undefined };
  }
}
