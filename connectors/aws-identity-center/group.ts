/**
 * Group entitlements: holding one means being a member of an Identity Store group, found by its
 * DisplayName (GetGroupId on the `displayName` unique attribute). Only the connector's own user is
 * ever added or removed; other members are never touched.
 */
import {
  CreateGroupCommand,
  CreateGroupMembershipCommand,
  DeleteGroupMembershipCommand,
  GetGroupIdCommand,
  GetGroupMembershipIdCommand,
  ListGroupMembershipsCommand,
} from '@aws-sdk/client-identitystore';
import { PermanentError, TransientError, type Page, type WriteResult } from '@scim-gateway/connector-sdk';
import type { AwsClients } from './client.js';

const what = (op: string, call: string) => `aws-identity-center: ${op}: ${call}`;

export interface GroupTarget {
  group: string;
  create?: boolean | undefined;
}

export class GroupOperations {
  constructor(
    private readonly aws: AwsClients,
    private readonly opts: { identityStoreId: string; pageSize: number; createGroups: boolean },
  ) {}

  /** The GroupId of the group with this DisplayName, if it exists. */
  async find(op: string, displayName: string): Promise<string | undefined> {
    const res = await this.aws.sendExpecting(
      what(op, 'GetGroupId'),
      () => this.aws.identityStore.send(new GetGroupIdCommand({ IdentityStoreId: this.opts.identityStoreId, AlternateIdentifier: { UniqueAttribute: { AttributePath: 'displayName', AttributeValue: displayName } } })),
      ['ResourceNotFoundException'],
    );
    return 'ok' in res ? res.ok.GroupId : undefined;
  }

  /** The group's id, creating the group when allowed (the entitlement's `create`, or `createGroups`). */
  private async findOrCreate(op: string, target: GroupTarget): Promise<string> {
    const found = await this.find(op, target.group);
    if (found) return found;
    if (!(target.create ?? this.opts.createGroups)) {
      throw new PermanentError(
        `${what(op, 'GetGroupId')}: group "${target.group}" does not exist in identity store ${this.opts.identityStoreId}; create it, or allow the connector to (createGroups, or "create": true on the entitlement)`,
        'notFound',
      );
    }
    const res = await this.aws.sendExpecting(
      what(op, 'CreateGroup'),
      () => this.aws.identityStore.send(new CreateGroupCommand({ IdentityStoreId: this.opts.identityStoreId, DisplayName: target.group, Description: 'Managed by the SCIM gateway' })),
      ['ConflictException'],
    );
    if ('ok' in res && res.ok.GroupId) return res.ok.GroupId;
    // Created in between by someone else: use it.
    const raced = await this.find(op, target.group);
    if (raced) return raced;
    throw 'err' in res ? this.aws.classify(what(op, 'CreateGroup'), res.err) : new PermanentError(`${what(op, 'CreateGroup')} answered no GroupId`, 'invalidResponse');
  }

  private async membershipId(op: string, groupId: string, userId: string): Promise<string | undefined> {
    const res = await this.aws.sendExpecting(
      what(op, 'GetGroupMembershipId'),
      () => this.aws.identityStore.send(new GetGroupMembershipIdCommand({ IdentityStoreId: this.opts.identityStoreId, GroupId: groupId, MemberId: { UserId: userId } })),
      ['ResourceNotFoundException'],
    );
    return 'ok' in res ? res.ok.MembershipId : undefined;
  }

  async grant(remoteId: string, target: GroupTarget): Promise<WriteResult> {
    const op = 'grant';
    const groupId = await this.findOrCreate(op, target);
    const res = await this.aws.sendExpecting(
      what(op, 'CreateGroupMembership'),
      () => this.aws.identityStore.send(new CreateGroupMembershipCommand({ IdentityStoreId: this.opts.identityStoreId, GroupId: groupId, MemberId: { UserId: remoteId } })),
      ['ConflictException'],
    );
    if ('ok' in res) return { status: 'applied' };
    // A conflict is an existing membership, unless the membership is not there after all (a
    // concurrent change to the group), which is worth another attempt.
    if (await this.membershipId(op, groupId, remoteId)) return { status: 'alreadyApplied' };
    const conflict = this.aws.classify(what(op, 'CreateGroupMembership'), res.err);
    throw new TransientError(`${conflict.message} (and no membership exists: a concurrent change, retried)`, undefined, { cause: res.err });
  }

  async revoke(remoteId: string, target: GroupTarget): Promise<WriteResult> {
    const op = 'revoke';
    const groupId = await this.find(op, target.group);
    if (!groupId) return { status: 'alreadyApplied' };
    const membershipId = await this.membershipId(op, groupId, remoteId);
    if (!membershipId) return { status: 'alreadyApplied' };
    const res = await this.aws.sendExpecting(
      what(op, 'DeleteGroupMembership'),
      () => this.aws.identityStore.send(new DeleteGroupMembershipCommand({ IdentityStoreId: this.opts.identityStoreId, MembershipId: membershipId })),
      ['ResourceNotFoundException'],
    );
    return { status: 'ok' in res ? 'applied' : 'alreadyApplied' };
  }

  /**
   * One page of the group's members (UserIds). The cursor is AWS's NextToken with the GroupId in
   * front, so later pages skip the group lookup and never mix up two groups.
   */
  async listGrants(target: GroupTarget, cursor?: string): Promise<Page<string>> {
    const op = 'listGrants';
    let groupId: string | undefined;
    let token: string | undefined;
    if (cursor) {
      const at = cursor.indexOf(':');
      if (at <= 0) throw new PermanentError(`${what(op, 'ListGroupMemberships')}: invalid cursor`, 'invalidCursor');
      groupId = cursor.slice(0, at);
      token = cursor.slice(at + 1);
    } else {
      groupId = await this.find(op, target.group);
      if (!groupId) return { items: [] };
    }
    const res = await this.aws.send(
      what(op, 'ListGroupMemberships'),
      () => this.aws.identityStore.send(new ListGroupMembershipsCommand({ IdentityStoreId: this.opts.identityStoreId, GroupId: groupId, MaxResults: this.opts.pageSize, ...(token ? { NextToken: token } : {}) })),
    );
    const items = (res.GroupMemberships ?? []).flatMap((m) => (m.MemberId?.UserId ? [m.MemberId.UserId] : []));
    return { items, next: res.NextToken ? `${groupId}:${res.NextToken}` : undefined };
  }
}
