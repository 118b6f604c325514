import { Type } from '@sinclair/typebox';
import {
  checkEndpointUrl,
  defineConnector,
  httpError,
  PermanentError,
  SECRET_REFERENCE_PATTERN,
  TransientError,
  type AccountInput,
  type Page,
  type WriteResult,
} from '@scim-gateway/connector-sdk';

const configSchema = Type.Object(
  {
    apiUrl: Type.String({ description: 'Base URL of the workspace API, e.g. https://acme.chat.example/api' }),
    token: Type.String({ pattern: SECRET_REFERENCE_PATTERN, description: 'Admin API token, by reference (env:NAME or file:/path)' }),
    pageSize: Type.Integer({ minimum: 1, maximum: 200, default: 100, description: 'Members per listing page (default 100)' }),
  },
  { additionalProperties: false },
);

const entitlementSchema = Type.Object(
  { userGroup: Type.String({ minLength: 1, description: 'Handle of the user group, e.g. "engineering"' }) },
  { additionalProperties: false },
);

interface Member { id: string; handle: string; deactivated: boolean }
const applied = (yes: boolean, remoteId?: string): WriteResult => ({ status: yes ? 'applied' : 'alreadyApplied', ...(remoteId ? { remoteId } : {}) });

export default defineConnector({
  type: '@acme/chat',
  description: "Provisions members of a chat workspace and their user groups",
  configSchema,
  entitlementSchema,
  capabilities: ['createAccount', 'disableAccount', 'deleteAccount', 'grant', 'revoke', 'listAccounts', 'listGrants'],
  create({ config, secret }) {
    const base = checkEndpointUrl('@acme/chat', '/apiUrl', config.apiUrl);

    /** One call; answers the JSON body (null for 204), or undefined for 404 when `missingOk`. */
    async function call<T>(op: string, method: string, path: string, body?: unknown, missingOk = false): Promise<T | undefined> {
      let res: Response;
      try {
        res = await fetch(`${base}${path}`, {
          method,
          headers: { authorization: `Bearer ${await secret(config.token)}`, 'content-type': 'application/json' },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
          signal: AbortSignal.timeout(10_000),
        });
      } catch (err) {
        throw new TransientError(`@acme/chat: ${op}: ${(err as Error).message}`, undefined, { cause: err });
      }
      if (res.status === 404 && missingOk) return undefined;
      if (!res.ok) throw httpError(`@acme/chat: ${op}`, res.status, await res.text(), res.headers);
      return res.status === 204 ? (null as T) : ((await res.json()) as T);
    }

    const group = (target: Record<string, unknown>) => encodeURIComponent(String(target.userGroup));
    const handleOf = (input: AccountInput) => input.userName.toLowerCase();

    return {
      async validate() {
        await call('validate', 'GET', '/auth.test');
      },
      async createAccount(input) {
        // The target is the memory: find by the natural key first, so a retry finds what it created.
        const handle = handleOf(input);
        const found = await call<Member>('createAccount', 'GET', `/members/by-handle/${encodeURIComponent(handle)}`, undefined, true);
        if (found && !found.deactivated) return applied(false, found.id);
        if (found) {
          await call('createAccount', 'POST', `/members/${found.id}/reactivate`);
          return applied(true, found.id);
        }
        const created = await call<Member>('createAccount', 'POST', '/members', { handle, email: input.email, name: input.displayName });
        if (!created?.id) throw new PermanentError('@acme/chat: createAccount: the answer has no member id', 'invalidResponse');
        return applied(true, created.id);
      },
      async disableAccount(remoteId) {
        const m = await call<Member>('disableAccount', 'GET', `/members/${remoteId}`, undefined, true);
        if (!m) return applied(false);
        // Deactivated members keep their groups in this workspace: leave none behind.
        await call('disableAccount', 'DELETE', `/members/${remoteId}/groups`);
        if (m.deactivated) return applied(false);
        await call('disableAccount', 'POST', `/members/${remoteId}/deactivate`);
        return applied(true);
      },
      async deleteAccount(remoteId) {
        const m = await call<Member>('deleteAccount', 'GET', `/members/${remoteId}`, undefined, true);
        if (!m) return applied(false);
        await call('deleteAccount', 'DELETE', `/members/${remoteId}/groups`);
        await call('deleteAccount', 'DELETE', `/members/${remoteId}`);
        return applied(true);
      },
      async grant(remoteId, e) {
        const members = await call<{ ids: string[] }>('grant', 'GET', `/usergroups/${group(e.target)}/members?only=${remoteId}`);
        if (members?.ids.includes(remoteId)) return applied(false);
        await call('grant', 'PUT', `/usergroups/${group(e.target)}/members/${remoteId}`);
        return applied(true);
      },
      async revoke(remoteId, e) {
        const gone = await call('revoke', 'DELETE', `/usergroups/${group(e.target)}/members/${remoteId}`, undefined, true);
        return applied(gone !== undefined);
      },
      async listAccounts(cursor) {
        const q = `limit=${config.pageSize}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
        const page = await call<{ members: Member[]; next_cursor?: string }>('listAccounts', 'GET', `/members?${q}`);
        // Pass the cursor on: without it, reconciliation sees the first page only.
        return { items: (page?.members ?? []).map((m) => ({ remoteId: m.id, userName: m.handle, active: !m.deactivated })), next: page?.next_cursor || undefined };
      },
      async listGrants(e, cursor): Promise<Page<string>> {
        const q = `limit=${config.pageSize}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
        const page = await call<{ ids: string[]; next_cursor?: string }>('listGrants', 'GET', `/usergroups/${group(e.target)}/members?${q}`);
        return { items: page?.ids ?? [], next: page?.next_cursor || undefined };
      },
    };
  },
});
