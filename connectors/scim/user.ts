/**
 * Account operations on the target's /Users: the directory's user mapped onto SCIM core User
 * attributes, found by userName, and changed only when something differs, so every write is
 * idempotent and a repeated call sends no write at all.
 */
import { PermanentError, type AccountInput, type Page, type RemoteAccount, type WriteResult } from '@scim-gateway/connector-sdk';
import { PATCH_OP_SCHEMA, asResource, filterString, type PatchOperation, type ScimClient, type ScimResource } from './client.js';

export const USER_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:User';

export interface UserOptions {
  /** Which input field becomes the target's userName. */
  userNameAttribute: 'userName' | 'email';
  /** Which input field becomes the target's externalId: the gateway's user id, or the directory's externalId. */
  externalIdSource: 'userId' | 'externalId';
  /** Accounts per listAccounts page (the SCIM `count`). */
  pageSize: number;
}

/** The attributes this connector manages on a target user; absent ones are left as the target has them. */
export interface MappedUser {
  userName: string;
  externalId: string;
  active: boolean;
  displayName?: string | undefined;
  givenName?: string | undefined;
  familyName?: string | undefined;
  email?: string | undefined;
}

const what = (op: string) => `scim: ${op}`;

export function mapUser(input: AccountInput, opts: Pick<UserOptions, 'userNameAttribute' | 'externalIdSource'>, op: string): MappedUser {
  const userName = opts.userNameAttribute === 'email' ? input.email : input.userName;
  if (!userName) {
    throw new PermanentError(`${what(op)}: user ${input.userId} has no ${opts.userNameAttribute === 'email' ? 'email address' : 'userName'}, which this connector uses as the target userName`, 'invalidInput');
  }
  const externalId = opts.externalIdSource === 'externalId' ? input.externalId : input.userId;
  if (!externalId) {
    throw new PermanentError(`${what(op)}: user ${input.userId} has no externalId in the directory, which this connector sends as the target externalId`, 'invalidInput');
  }
  return {
    userName,
    externalId,
    active: input.active,
    displayName: input.displayName || undefined,
    givenName: input.givenName || undefined,
    familyName: input.familyName || undefined,
    email: input.email || undefined,
  };
}

/** The SCIM User a POST creates. */
export function userResource(user: MappedUser): Record<string, unknown> {
  const name: Record<string, string> = {};
  if (user.givenName) name.givenName = user.givenName;
  if (user.familyName) name.familyName = user.familyName;
  return {
    schemas: [USER_SCHEMA],
    userName: user.userName,
    externalId: user.externalId,
    active: user.active,
    ...(user.displayName && { displayName: user.displayName }),
    ...(Object.keys(name).length > 0 && { name }),
    ...(user.email && { emails: [{ value: user.email, type: 'work', primary: true }] }),
  };
}

function primaryEmail(resource: Record<string, unknown>): string | undefined {
  const emails = Array.isArray(resource.emails) ? (resource.emails as { value?: unknown; primary?: unknown }[]) : [];
  const value = (emails.find((e) => e?.primary === true) ?? emails[0])?.value;
  return typeof value === 'string' ? value : undefined;
}

function nameOf(resource: Record<string, unknown>): { givenName?: unknown; familyName?: unknown } {
  const name = resource.name;
  return name && typeof name === 'object' ? name : {};
}

/** A target that does not return `active` is taken to mean active (the SCIM default in practice). */
function isActive(resource: Record<string, unknown>): boolean {
  return resource.active !== false;
}

/** The PATCH operations that would bring `remote` in line with `user`; empty when nothing differs. */
export function userChanges(remote: Record<string, unknown>, user: MappedUser): PatchOperation[] {
  const ops: PatchOperation[] = [];
  if (remote.userName !== user.userName) ops.push({ op: 'replace', path: 'userName', value: user.userName });
  if (remote.externalId !== user.externalId) ops.push({ op: 'replace', path: 'externalId', value: user.externalId });
  if (isActive(remote) !== user.active) ops.push({ op: 'replace', path: 'active', value: user.active });
  if (user.displayName !== undefined && remote.displayName !== user.displayName) ops.push({ op: 'replace', path: 'displayName', value: user.displayName });
  const name = nameOf(remote);
  if (user.givenName !== undefined && name.givenName !== user.givenName) ops.push({ op: 'replace', path: 'name.givenName', value: user.givenName });
  if (user.familyName !== undefined && name.familyName !== user.familyName) ops.push({ op: 'replace', path: 'name.familyName', value: user.familyName });
  if (user.email !== undefined && primaryEmail(remote)?.toLowerCase() !== user.email.toLowerCase()) {
    ops.push({ op: 'replace', path: 'emails', value: [{ value: user.email, type: 'work', primary: true }] });
  }
  return ops;
}

/** The full resource a PUT sends: what the target has, with the managed attributes overlaid. */
export function replacedUser(remote: Record<string, unknown>, user: MappedUser): Record<string, unknown> {
  const { meta: _meta, ...kept } = remote;
  const overlay = userResource(user);
  const name = { ...nameOf(remote), ...(overlay.name as Record<string, unknown> | undefined) };
  const replaced: Record<string, unknown> = { ...kept, ...overlay, schemas: Array.isArray(remote.schemas) ? remote.schemas : [USER_SCHEMA] };
  if (Object.keys(name).length > 0) replaced.name = name;
  if (user.email !== undefined && primaryEmail(remote)?.toLowerCase() === user.email.toLowerCase()) replaced.emails = remote.emails;
  return replaced;
}

export class UserOperations {
  constructor(
    private readonly client: ScimClient,
    private readonly opts: UserOptions,
  ) {}

  /** The target user with this userName (compared without case, as SCIM's userName is), if any. */
  async findByUserName(op: string, userName: string): Promise<ScimResource | undefined> {
    const filter = encodeURIComponent(`userName eq ${filterString(userName)}`);
    const list = await this.client.list(what(op), `/Users?filter=${filter}&startIndex=1&count=10`);
    // Only an exact match counts: a target that ignored the filter must not make us adopt a stranger.
    return list.Resources.find((r) => typeof r.userName === 'string' && r.userName.toLowerCase() === userName.toLowerCase());
  }

  async create(input: AccountInput): Promise<WriteResult> {
    const op = 'createAccount';
    const user = mapUser(input, this.opts, op);
    const existing = await this.findByUserName(op, user.userName);
    if (existing) return { status: 'alreadyApplied', remoteId: existing.id };
    try {
      const created = asResource(what(op), (await this.client.request(what(op), 'POST', '/Users', userResource(user))).body);
      return { status: 'applied', remoteId: created.id };
    } catch (err) {
      // Created meanwhile by someone else (or a concurrent run of ours): adopt it like any existing account.
      if (err instanceof PermanentError && err.kind === 'conflict') {
        const raced = await this.findByUserName(op, user.userName);
        if (raced) return { status: 'alreadyApplied', remoteId: raced.id };
      }
      throw err;
    }
  }

  async update(remoteId: string, input: AccountInput): Promise<WriteResult> {
    const op = 'updateAccount';
    const user = mapUser(input, this.opts, op);
    const path = `/Users/${encodeURIComponent(remoteId)}`;
    const remote = asResource(what(op), await this.client.get(what(op), path));
    const ops = userChanges(remote, user);
    if (ops.length === 0) return { status: 'alreadyApplied', remoteId };
    if ((await this.client.serviceProviderFeatures(what(op))).patch) {
      await this.client.request(what(op), 'PATCH', path, { schemas: [PATCH_OP_SCHEMA], Operations: ops });
    } else {
      await this.client.request(what(op), 'PUT', path, replacedUser(remote, user));
    }
    return { status: 'applied', remoteId };
  }

  async disable(remoteId: string): Promise<WriteResult> {
    const op = 'disableAccount';
    const path = `/Users/${encodeURIComponent(remoteId)}`;
    let remote: ScimResource;
    try {
      remote = asResource(what(op), await this.client.get(what(op), path));
    } catch (err) {
      // An account that no longer exists is not active: deprovisioning has nothing left to do.
      if (err instanceof PermanentError && err.kind === 'notFound') return { status: 'alreadyApplied', remoteId };
      throw err;
    }
    if (!isActive(remote)) return { status: 'alreadyApplied', remoteId };
    if ((await this.client.serviceProviderFeatures(what(op))).patch) {
      await this.client.request(what(op), 'PATCH', path, { schemas: [PATCH_OP_SCHEMA], Operations: [{ op: 'replace', path: 'active', value: false }] });
    } else {
      const { meta: _meta, ...kept } = remote;
      await this.client.request(what(op), 'PUT', path, { ...kept, active: false });
    }
    return { status: 'applied', remoteId };
  }

  async delete(remoteId: string): Promise<WriteResult> {
    const op = 'deleteAccount';
    try {
      await this.client.request(what(op), 'DELETE', `/Users/${encodeURIComponent(remoteId)}`);
      return { status: 'applied', remoteId };
    } catch (err) {
      if (err instanceof PermanentError && err.kind === 'notFound') return { status: 'alreadyApplied', remoteId };
      throw err;
    }
  }

  /** One page of target users; the cursor is the next SCIM startIndex (1-based). */
  async list(cursor?: string): Promise<Page<RemoteAccount>> {
    const op = 'listAccounts';
    const startIndex = cursor === undefined ? 1 : Number(cursor);
    if (!Number.isSafeInteger(startIndex) || startIndex < 1) throw new PermanentError(`${what(op)}: invalid cursor ${JSON.stringify(cursor)}`, 'invalidCursor');
    const list = await this.client.list(what(op), `/Users?startIndex=${startIndex}&count=${this.opts.pageSize}`);
    const items = list.Resources.map((r): RemoteAccount => {
      const email = primaryEmail(r);
      return {
        remoteId: r.id,
        ...(typeof r.userName === 'string' && { userName: r.userName }),
        ...(email !== undefined && { email }),
        active: isActive(r),
        attributes: {
          ...(typeof r.externalId === 'string' && { externalId: r.externalId }),
          ...(typeof r.displayName === 'string' && { displayName: r.displayName }),
        },
      };
    });
    const nextIndex = startIndex + list.Resources.length;
    return { items, next: list.Resources.length > 0 && nextIndex <= list.totalResults ? String(nextIndex) : undefined };
  }
}
