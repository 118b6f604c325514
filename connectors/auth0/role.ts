/**
 * Entitlements as Auth0 roles: `{ "role": "<name or id>" }`. Granting assigns the role to the user,
 * revoking removes it; each reads the user's roles first, so doing what is already so sends no
 * write. The role must exist: the connector never creates roles.
 */
import { Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { PermanentError, type EntitlementRef, type Page, type WriteResult } from '@scim-gateway/connector-sdk';
import type { Auth0Api } from './client.js';

export const auth0EntitlementSchema = Type.Object(
  {
    role: Type.String({
      minLength: 1,
      maxLength: 256,
      description: 'The Auth0 role to assign: its id (rol_…) or its exact name. The role must already exist in the tenant.',
      examples: ['Customers-Portal', 'rol_0a1B2c3D4e5F6g7H'],
    }),
  },
  { additionalProperties: false },
);

const ROLE_ID = /^rol_[A-Za-z0-9]+$/;
const USER_ROLES_PAGE = 100;
const what = (op: string) => `auth0: ${op}`;

export class RoleOperations {
  /** Role name → id, learnt once per instance (ids never change; a deleted role is forgotten on 404). */
  private readonly ids = new Map<string, string>();

  constructor(
    private readonly api: Auth0Api,
    private readonly pageSize: number,
  ) {}

  private roleOf(op: string, entitlement: EntitlementRef): string {
    if (!Value.Check(auth0EntitlementSchema, entitlement.target)) {
      throw new PermanentError(`${what(op)}: entitlement ${entitlement.id} has an invalid target for auth0: expected {"role": "<name or id>"}`, 'invalidEntitlement');
    }
    return entitlement.target.role;
  }

  /** The role's id; a name is looked up (exact match) among the roles Auth0 finds by name_filter. */
  async resolve(op: string, role: string): Promise<string> {
    if (ROLE_ID.test(role)) return role;
    const known = this.ids.get(role);
    if (known) return known;
    for (let page = 0; ; page++) {
      const result = await this.api.call(what(op), (m) => m.roles.list({ name_filter: role, page, per_page: 100, include_totals: true }));
      const match = result.data.find((r) => r.name === role && typeof r.id === 'string');
      if (match?.id) {
        this.ids.set(role, match.id);
        return match.id;
      }
      const total = result.response?.total ?? 0;
      if (result.data.length < 100 || (page + 1) * 100 >= total) break;
    }
    throw new PermanentError(`${what(op)} failed: role "${role}" does not exist in the Auth0 tenant; create it (User Management → Roles) or fix the entitlement`, 'notFound');
  }

  private forget(role: string): void {
    this.ids.delete(role);
  }

  /** Whether the user holds the role; undefined when the user does not exist. */
  private async holds(op: string, remoteId: string, roleId: string): Promise<boolean | undefined> {
    for (let page = 0; ; page++) {
      const result = await this.api.maybe(what(op), (m) => m.users.roles.list(remoteId, { page, per_page: USER_ROLES_PAGE, include_totals: true }));
      if (!result) return undefined;
      if (result.data.some((r) => r.id === roleId)) return true;
      const total = result.response?.total ?? 0;
      if (result.data.length < USER_ROLES_PAGE || (page + 1) * USER_ROLES_PAGE >= total) return false;
    }
  }

  async grant(remoteId: string, entitlement: EntitlementRef): Promise<WriteResult> {
    const op = 'grant';
    const role = this.roleOf(op, entitlement);
    const roleId = await this.resolve(op, role);
    const held = await this.holds(op, remoteId, roleId);
    if (held === undefined) throw new PermanentError(`${what(op)} failed: HTTP 404: user ${remoteId} does not exist in Auth0`, 'notFound');
    if (held) return { status: 'alreadyApplied', remoteId };
    try {
      await this.api.call(what(op), (m) => m.users.roles.assign(remoteId, { roles: [roleId] }));
    } catch (err) {
      if (err instanceof PermanentError && err.kind === 'notFound') this.forget(role);
      throw err;
    }
    return { status: 'applied', remoteId };
  }

  async revoke(remoteId: string, entitlement: EntitlementRef): Promise<WriteResult> {
    const op = 'revoke';
    const role = this.roleOf(op, entitlement);
    let roleId: string;
    try {
      roleId = await this.resolve(op, role);
    } catch (err) {
      // A role that no longer exists is held by nobody.
      if (err instanceof PermanentError && err.kind === 'notFound') return { status: 'alreadyApplied', remoteId };
      throw err;
    }
    if (!(await this.holds(op, remoteId, roleId))) return { status: 'alreadyApplied', remoteId };
    await this.api.call(what(op), (m) => m.users.roles.delete(remoteId, { roles: [roleId] }));
    return { status: 'applied', remoteId };
  }

  /** The users holding the role, with Auth0's checkpoint pagination (`from`/`take`); the cursor is Auth0's `next`. */
  async listGrants(entitlement: EntitlementRef, cursor?: string): Promise<Page<string>> {
    const op = 'listGrants';
    const role = this.roleOf(op, entitlement);
    let roleId: string;
    try {
      roleId = await this.resolve(op, role);
    } catch (err) {
      if (err instanceof PermanentError && err.kind === 'notFound') return { items: [] };
      throw err;
    }
    const result = await this.api.call(what(op), (m) => m.roles.users.list(roleId, { take: this.pageSize, ...(cursor !== undefined && { from: cursor }) }));
    const items = result.data.map((u) => u.user_id).filter((id): id is string => typeof id === 'string');
    const next = result.response?.next;
    return { items, next: typeof next === 'string' && next !== '' && next !== cursor ? next : undefined };
  }
}
