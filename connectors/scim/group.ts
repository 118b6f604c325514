/**
 * Entitlements on the target's /Groups: an entitlement names a group by displayName, and holding it
 * means being one of the group's members. Groups are looked up by name on every call (they can be
 * renamed or recreated in the target), and membership is read before it is changed, so a grant or
 * revoke that is already so sends no write.
 */
import { Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { PermanentError, type EntitlementRef, type Page, type WriteResult } from '@scim-gateway/connector-sdk';
import { PATCH_OP_SCHEMA, asResource, filterString, type ScimClient, type ScimResource } from './client.js';

export const GROUP_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:Group';

export const scimEntitlementSchema = Type.Object(
  {
    group: Type.String({
      minLength: 1,
      maxLength: 256,
      description: "The target group's displayName (without groupDisplayNamePrefix, which the connector adds).",
      examples: ['engineering'],
    }),
    create: Type.Optional(
      Type.Boolean({
        default: false,
        description: 'Create the group in the target when it does not exist (default false: granting a missing group is a permanent notFound failure).',
      }),
    ),
  },
  { additionalProperties: false },
);

export interface GroupOptions {
  /** Prepended to every entitlement's group name to form the target displayName. */
  displayNamePrefix: string;
  /**
   * Whether the target returns a group's members when the group is read. When false, grant and
   * revoke always send their PATCH and listGrants is unsupported.
   */
  readMembers: boolean;
}

const what = (op: string) => `scim: ${op}`;

interface GroupTarget {
  displayName: string;
  create: boolean;
}

function target(op: string, entitlement: EntitlementRef, prefix: string): GroupTarget {
  if (!Value.Check(scimEntitlementSchema, entitlement.target)) {
    const problems = [...Value.Errors(scimEntitlementSchema, entitlement.target)].slice(0, 5).map((e) => `${e.path || '/'}: ${e.message}`);
    throw new PermanentError(`${what(op)}: entitlement ${entitlement.id} has an invalid target (${problems.join('; ')}); expected {"group": "<displayName>", "create"?: boolean}`, 'invalidEntitlement');
  }
  return { displayName: `${prefix}${entitlement.target.group}`, create: entitlement.target.create === true };
}

function memberIds(group: Record<string, unknown>): string[] {
  if (!Array.isArray(group.members)) return [];
  return (group.members as { value?: unknown }[]).map((m) => m?.value).filter((v): v is string => typeof v === 'string');
}

export class GroupOperations {
  constructor(
    private readonly client: ScimClient,
    private readonly opts: GroupOptions,
  ) {}

  /** The target group with this displayName (compared without case, as SCIM's displayName is), if any. */
  private async find(op: string, displayName: string): Promise<ScimResource | undefined> {
    const filter = encodeURIComponent(`displayName eq ${filterString(displayName)}`);
    const list = await this.client.list(what(op), `/Groups?filter=${filter}&startIndex=1&count=10`);
    // Only an exact match counts: a target that ignored the filter must not make us use another group.
    const found = list.Resources.find((g) => typeof g.displayName === 'string' && g.displayName.toLowerCase() === displayName.toLowerCase());
    if (!found || !this.opts.readMembers || Array.isArray(found.members)) return found;
    // Some targets leave members out of list results; the group itself says for sure.
    return await this.read(op, found.id);
  }

  private async read(op: string, id: string): Promise<ScimResource | undefined> {
    try {
      return asResource(what(op), await this.client.get(what(op), `/Groups/${encodeURIComponent(id)}`));
    } catch (err) {
      if (err instanceof PermanentError && err.kind === 'notFound') return undefined;
      throw err;
    }
  }

  private async createGroup(op: string, displayName: string): Promise<ScimResource> {
    try {
      return asResource(what(op), (await this.client.request(what(op), 'POST', '/Groups', { schemas: [GROUP_SCHEMA], displayName })).body);
    } catch (err) {
      // Created meanwhile (a concurrent grant for another user): use that one.
      if (err instanceof PermanentError && err.kind === 'conflict') {
        const raced = await this.find(op, displayName);
        if (raced) return raced;
      }
      throw err;
    }
  }

  async grant(remoteId: string, entitlement: EntitlementRef): Promise<WriteResult> {
    const op = 'grant';
    const { displayName, create } = target(op, entitlement, this.opts.displayNamePrefix);
    let group = await this.find(op, displayName);
    if (!group) {
      if (!create) throw new PermanentError(`${what(op)}: group "${displayName}" does not exist in the target; create it there, or set "create": true on the entitlement`, 'notFound');
      group = await this.createGroup(op, displayName);
    }
    if (this.opts.readMembers && memberIds(group).includes(remoteId)) return { status: 'alreadyApplied', remoteId };
    await this.changeMembers(op, group, remoteId, 'add');
    return { status: 'applied', remoteId };
  }

  async revoke(remoteId: string, entitlement: EntitlementRef): Promise<WriteResult> {
    const op = 'revoke';
    const { displayName } = target(op, entitlement, this.opts.displayNamePrefix);
    const group = await this.find(op, displayName);
    // No group, no membership: nothing left to revoke.
    if (!group) return { status: 'alreadyApplied', remoteId };
    if (this.opts.readMembers && !memberIds(group).includes(remoteId)) return { status: 'alreadyApplied', remoteId };
    try {
      await this.changeMembers(op, group, remoteId, 'remove');
    } catch (err) {
      // The group was deleted between the lookup and the change.
      if (err instanceof PermanentError && err.kind === 'notFound' && !(await this.read(op, group.id))) return { status: 'alreadyApplied', remoteId };
      throw err;
    }
    return { status: 'applied', remoteId };
  }

  /** The target ids of the group's members, in one page. */
  async listGrants(entitlement: EntitlementRef, cursor?: string): Promise<Page<string>> {
    const op = 'listGrants';
    const { displayName } = target(op, entitlement, this.opts.displayNamePrefix);
    if (!this.opts.readMembers) {
      throw new PermanentError(`${what(op)}: readGroupMembers is off for this connector, so group members cannot be listed`, 'unsupported');
    }
    // Every listing is a single page, so the only cursor we hand out is none.
    if (cursor !== undefined) throw new PermanentError(`${what(op)}: invalid cursor ${JSON.stringify(cursor)}`, 'invalidCursor');
    const group = await this.find(op, displayName);
    return { items: group ? memberIds(group) : [] };
  }

  /** Adds or removes one member: PATCH where the target supports it, else PUT of the whole group. */
  private async changeMembers(op: string, group: ScimResource, remoteId: string, change: 'add' | 'remove'): Promise<void> {
    const path = `/Groups/${encodeURIComponent(group.id)}`;
    if ((await this.client.serviceProviderFeatures(what(op))).patch) {
      const operation =
        change === 'add'
          ? { op: 'add', path: 'members', value: [{ value: remoteId }] }
          : { op: 'remove', path: `members[value eq ${filterString(remoteId)}]` };
      await this.client.request(what(op), 'PATCH', path, { schemas: [PATCH_OP_SCHEMA], Operations: [operation] });
      return;
    }
    if (!this.opts.readMembers) {
      throw new PermanentError(`${what(op)}: the target supports neither PATCH nor reading group members, so membership cannot be changed safely`, 'unsupported');
    }
    const current = Array.isArray(group.members) ? (group.members as { value?: unknown }[]) : [];
    const members = change === 'add' ? [...current, { value: remoteId }] : current.filter((m) => m?.value !== remoteId);
    const { meta: _meta, ...kept } = group;
    await this.client.request(what(op), 'PUT', path, { ...kept, schemas: Array.isArray(group.schemas) ? group.schemas : [GROUP_SCHEMA], members });
  }
}
