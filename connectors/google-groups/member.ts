/**
 * Entitlements are memberships of Google groups with a role: `{ "group": "eng@example.com",
 * "role": "MEMBER" }`. An account's remote id is the Workspace user's primary email (lower case), so
 * it is what a membership is keyed by.
 *
 * - grant inserts the member; "Member already exists" (409) reads the membership and, when its role
 *   differs, patches the role, so a role change (MEMBER → MANAGER) is one grant.
 * - revoke removes the membership only when it has the entitlement's role: a user moved from MEMBER
 *   to MANAGER keeps the group when the MEMBER entitlement is revoked after the MANAGER one is
 *   granted. Not a member (404) is alreadyApplied.
 * - listGrants lists the group's direct members with the entitlement's role, one API page per page
 *   (the cursor is Google's page token). Members that are groups or whole customers are not
 *   accounts and are left out, so reconciliation never removes a nested group.
 */
import { Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { PermanentError, TransientError, type EntitlementRef, type Page, type WriteResult } from '@scim-gateway/connector-sdk';
import type { GoogleDirectoryClient } from './client.js';

export type Role = 'MEMBER' | 'MANAGER' | 'OWNER';

export const googleGroupsEntitlementSchema = Type.Object(
  {
    group: Type.String({
      minLength: 1,
      maxLength: 256,
      description: "The group's email address (or its unique id), e.g. eng@example.com.",
      examples: ['eng@example.com'],
    }),
    role: Type.Optional(
      Type.Union([Type.Literal('MEMBER'), Type.Literal('MANAGER'), Type.Literal('OWNER')], {
        default: 'MEMBER',
        description: 'The role in the group: MEMBER (default), MANAGER or OWNER.',
      }),
    ),
  },
  { additionalProperties: false },
);

interface MembershipTarget {
  group: string;
  role: Role;
}

const what = (op: string) => `google-groups: ${op}`;

function target(op: string, entitlement: EntitlementRef): MembershipTarget {
  if (!Value.Check(googleGroupsEntitlementSchema, entitlement.target)) {
    const problems = [...Value.Errors(googleGroupsEntitlementSchema, entitlement.target)].slice(0, 5).map((e) => `${e.path || '/'}: ${e.message}`);
    throw new PermanentError(
      `${what(op)}: entitlement ${entitlement.id} has an invalid target (${problems.join('; ')}); expected {"group": "<group email>", "role"?: "MEMBER" | "MANAGER" | "OWNER"}`,
      'invalidEntitlement',
    );
  }
  return { group: entitlement.target.group, role: entitlement.target.role ?? 'MEMBER' };
}

function isKind(err: unknown, kind: string): boolean {
  return err instanceof PermanentError && err.kind === kind;
}

export class MemberOperations {
  constructor(
    private readonly client: GoogleDirectoryClient,
    private readonly pageSize: number,
  ) {}

  /** The member's current role, or undefined when not a member (or the group is gone). */
  private async role(op: string, group: string, remoteId: string): Promise<string | undefined> {
    try {
      const member = await this.client.call(`${what(op)}: members.get ${group}`, (d) => d.members.get({ groupKey: group, memberKey: remoteId }));
      return member.role ?? 'MEMBER';
    } catch (err) {
      if (isKind(err, 'notFound')) return undefined;
      throw err;
    }
  }

  async grant(remoteId: string, entitlement: EntitlementRef): Promise<WriteResult> {
    const op = 'grant';
    const { group, role } = target(op, entitlement);
    try {
      await this.client.call(`${what(op)}: members.insert ${group}`, (d) => d.members.insert({ groupKey: group, requestBody: { email: remoteId, role } }));
      return { status: 'applied', remoteId };
    } catch (err) {
      if (isKind(err, 'notFound')) {
        throw new PermanentError(`${(err as Error).message}; does group ${group} exist, and is ${remoteId} a user of the domain?`, 'notFound', { cause: err });
      }
      if (!isKind(err, 'conflict')) throw err;
    }
    // Already a member: make sure of the role.
    const current = await this.role(op, group, remoteId);
    if (current === role) return { status: 'alreadyApplied', remoteId };
    if (current === undefined) {
      // Removed between the insert and the read: the engine's next attempt inserts it.
      throw new TransientError(`${what(op)}: ${remoteId} was reported as a member of ${group} and then not found; the group changed meanwhile`);
    }
    await this.client.call(`${what(op)}: members.patch ${group}`, (d) => d.members.patch({ groupKey: group, memberKey: remoteId, requestBody: { role } }));
    return { status: 'applied', remoteId };
  }

  async revoke(remoteId: string, entitlement: EntitlementRef): Promise<WriteResult> {
    const op = 'revoke';
    const { group, role } = target(op, entitlement);
    const current = await this.role(op, group, remoteId);
    // Not a member, or a member by another entitlement's role: this one is not held.
    if (current !== role) return { status: 'alreadyApplied', remoteId };
    try {
      await this.client.call(`${what(op)}: members.delete ${group}`, (d) => d.members.delete({ groupKey: group, memberKey: remoteId }));
    } catch (err) {
      // Removed by someone else since the read.
      if (isKind(err, 'notFound')) return { status: 'alreadyApplied', remoteId };
      throw err;
    }
    return { status: 'applied', remoteId };
  }

  async listGrants(entitlement: EntitlementRef, cursor?: string): Promise<Page<string>> {
    const op = 'listGrants';
    const { group, role } = target(op, entitlement);
    const page = await this.client.call(`${what(op)}: members.list ${group}`, (d) =>
      d.members.list({ groupKey: group, roles: role, maxResults: this.pageSize, ...(cursor ? { pageToken: cursor } : {}) }),
    );
    const items = (page.members ?? [])
      .filter((m) => (m.type ?? 'USER') === 'USER' && (m.role ?? 'MEMBER') === role && typeof m.email === 'string')
      .map((m) => m.email!.toLowerCase());
    const next = page.nextPageToken || undefined;
    return { items, ...(next ? { next } : {}) };
  }
}
