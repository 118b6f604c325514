/**
 * A connector for a chat workspace's user groups, as a third-party author would write it from
 * docs/writing-a-connector.md, against an in-memory workspace the tests share by name. With
 * `plant`, it carries one of the bugs the contract kit must catch (see contract-kit.test.ts).
 */
import { Type } from '@sinclair/typebox';
import { defineConnector, PermanentError, type AccountInput, type Page, type RemoteAccount, type WriteResult } from '@scim-gateway/connector-sdk';

/** Bugs planted on purpose, each one the kit once let through. */
export type PlantedBug =
  | 'create-idempotent-in-memory'
  | 'delete-keeps-memberships'
  | 'disable-keeps-memberships'
  | 'list-accounts-drops-cursor'
  | 'list-grants-first-page-only'
  | 'disable-does-nothing';

interface Member {
  id: string;
  handle: string;
  deactivated: boolean;
  /** Set by the planted disable that answers but does nothing. */
  disableRequested?: boolean;
}

/** The chat workspace: members, user groups, and an id counter (ids are the workspace's). */
export interface Workspace {
  members: Map<string, Member>;
  groups: Map<string, Set<string>>;
  nextId: number;
}

const workspaces = new Map<string, Workspace>();

export function workspace(name: string): Workspace {
  let w = workspaces.get(name);
  if (!w) workspaces.set(name, (w = { members: new Map(), groups: new Map(), nextId: 1 }));
  return w;
}

const configSchema = Type.Object({
  workspace: Type.String({ minLength: 1, description: 'Name of the chat workspace' }),
  pageSize: Type.Integer({ minimum: 1, maximum: 200, default: 2, description: 'Members per listing page' }),
});

const entitlementSchema = Type.Object({ userGroup: Type.String({ minLength: 1, description: 'Handle of the user group' }) });

export function chatConnector(plant?: PlantedBug) {
  return defineConnector({
    type: plant ? `chat (${plant})` : 'chat',
    description: "Provisions a chat workspace's members and user groups",
    configSchema,
    entitlementSchema,
    capabilities: ['createAccount', 'disableAccount', 'deleteAccount', 'grant', 'revoke', 'listAccounts', 'listGrants'],
    create({ config }) {
      const w = workspace(config.workspace);
      const created = new Map<string, string>();
      const result = (applied: boolean, remoteId?: string): WriteResult => ({ status: applied ? 'applied' : 'alreadyApplied', ...(remoteId ? { remoteId } : {}) });
      const handleOf = (input: AccountInput) => input.userName.toLowerCase();
      const member = (id: string) => {
        const m = w.members.get(id);
        if (!m) throw new PermanentError(`chat: no member ${id}`, 'notFound');
        return m;
      };
      const group = (target: Record<string, unknown>) => {
        const handle = String(target.userGroup);
        let g = w.groups.get(handle);
        if (!g) w.groups.set(handle, (g = new Set()));
        return g;
      };
      const dropMemberships = (id: string) => {
        for (const g of w.groups.values()) g.delete(id);
      };
      const page = <T>(all: T[], cursor: string | undefined): Page<T> => {
        const start = cursor ? Number(cursor) : 0;
        const end = start + config.pageSize;
        return { items: all.slice(start, end), ...(end < all.length ? { next: String(end) } : {}) };
      };
      return {
        async validate() {},
        async createAccount(input) {
          const handle = handleOf(input);
          if (plant === 'create-idempotent-in-memory') {
            const known = created.get(handle);
            if (known) return result(false, known);
          } else {
            const existing = [...w.members.values()].find((m) => m.handle === handle && !m.deactivated);
            if (existing) return result(false, existing.id);
          }
          const id = `U${String(w.nextId++).padStart(6, '0')}`;
          w.members.set(id, { id, handle, deactivated: false });
          created.set(handle, id);
          return result(true, id);
        },
        async disableAccount(remoteId) {
          const m = member(remoteId);
          if (plant === 'disable-does-nothing') {
            const first = !m.disableRequested;
            m.disableRequested = true;
            return result(first);
          }
          if (plant !== 'disable-keeps-memberships') dropMemberships(remoteId);
          if (m.deactivated) return result(false);
          m.deactivated = true;
          return result(true);
        },
        async deleteAccount(remoteId) {
          if (plant !== 'delete-keeps-memberships') dropMemberships(remoteId);
          return result(w.members.delete(remoteId));
        },
        async grant(remoteId, e) {
          member(remoteId);
          const g = group(e.target);
          if (g.has(remoteId)) return result(false);
          g.add(remoteId);
          return result(true);
        },
        async revoke(remoteId, e) {
          return result(group(e.target).delete(remoteId));
        },
        async listAccounts(cursor) {
          const all: RemoteAccount[] = [...w.members.values()].map((m) => ({ remoteId: m.id, userName: m.handle, active: !m.deactivated }));
          const p = page(all, cursor);
          return plant === 'list-accounts-drops-cursor' ? { items: p.items } : p;
        },
        async listGrants(e, cursor) {
          const p = page([...group(e.target)].sort(), cursor);
          return plant === 'list-grants-first-page-only' ? { items: p.items } : p;
        },
      };
    },
  });
}
