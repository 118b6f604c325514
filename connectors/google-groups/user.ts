/**
 * Accounts are existing Google Workspace users, found by primary email. The connector never creates
 * or deletes Workspace users (that belongs to whoever provisions Workspace itself: the identity
 * provider's Google Workspace integration, GCDS, or an administrator); it checks that the user is
 * there, and, when configured, owns two things about them:
 *
 * - `suspendOnDeprovision`: disableAccount suspends the user; createAccount and updateAccount lift
 *   the suspension of an active directory user (how the engine restores access on reactivation).
 * - `manageNames`: createAccount and updateAccount keep the user's given, family and display name
 *   equal to the directory's.
 *
 * The remote id is the primary email in lower case: what group memberships are keyed by, and what
 * reconciliation matches.
 */
import { PermanentError, type AccountInput, type Page, type RemoteAccount, type WriteResult } from '@scim-gateway/connector-sdk';
import type { admin_directory_v1 } from '@googleapis/admin';
import type { GoogleDirectoryClient } from './client.js';

export interface UserOptions {
  /** Which input field holds the Workspace primary email. */
  accountEmail: 'email' | 'userName';
  suspendOnDeprovision: boolean;
  manageNames: boolean;
  /** users.list scope: a customer id (or my_customer), or a single domain when set. */
  customer: string;
  domain?: string | undefined;
  pageSize: number;
}

type User = admin_directory_v1.Schema$User;

const what = (op: string) => `google-groups: ${op}`;

function emailOf(input: AccountInput, opts: UserOptions, op: string): string {
  const value = opts.accountEmail === 'userName' ? input.userName : input.email;
  if (!value || !value.includes('@')) {
    throw new PermanentError(
      `${what(op)}: user ${input.userId} has no ${opts.accountEmail === 'userName' ? 'userName that is an email address' : 'email address'}, which this connector uses as the Workspace primary email`,
      'invalidInput',
    );
  }
  return value.toLowerCase();
}

/** The changes (users.update body) that bring the Workspace user in line; undefined when none. */
function changes(user: User, input: AccountInput, opts: UserOptions): User | undefined {
  const body: User = {};
  if (opts.suspendOnDeprovision && input.active && user.suspended === true) body.suspended = false;
  if (opts.manageNames) {
    const name: admin_directory_v1.Schema$UserName = {};
    if (input.givenName && user.name?.givenName !== input.givenName) name.givenName = input.givenName;
    if (input.familyName && user.name?.familyName !== input.familyName) name.familyName = input.familyName;
    if (input.displayName && user.name?.displayName !== input.displayName) name.displayName = input.displayName;
    if (Object.keys(name).length > 0) body.name = { ...user.name, ...name };
  }
  return Object.keys(body).length > 0 ? body : undefined;
}

export class UserOperations {
  constructor(
    private readonly client: GoogleDirectoryClient,
    private readonly opts: UserOptions,
  ) {}

  /** The Workspace user with this email (primary or alias), or undefined. */
  private async find(op: string, email: string): Promise<User | undefined> {
    try {
      return await this.client.call(`${what(op)}: users.get`, (d) => d.users.get({ userKey: email, projection: 'basic' }));
    } catch (err) {
      if (err instanceof PermanentError && err.kind === 'notFound') return undefined;
      throw err;
    }
  }

  private async write(op: string, userKey: string, body: User): Promise<void> {
    await this.client.call(`${what(op)}: users.update`, (d) => d.users.update({ userKey, requestBody: body }));
  }

  async create(input: AccountInput): Promise<WriteResult> {
    const op = 'createAccount';
    const email = emailOf(input, this.opts, op);
    const user = await this.find(op, email);
    if (!user?.primaryEmail) {
      throw new PermanentError(
        `${what(op)}: ${email} is not a user of the Google Workspace domain; this connector does not create Workspace users, so create the user in Workspace (or through your identity provider's Workspace provisioning) first`,
        'notFound',
      );
    }
    const remoteId = user.primaryEmail.toLowerCase();
    const body = changes(user, input, this.opts);
    if (!body) return { status: 'alreadyApplied', remoteId };
    await this.write(op, remoteId, body);
    return { status: 'applied', remoteId };
  }

  async update(remoteId: string, input: AccountInput): Promise<WriteResult> {
    const op = 'updateAccount';
    const user = await this.find(op, remoteId);
    if (!user) throw new PermanentError(`${what(op)}: Workspace user ${remoteId} no longer exists`, 'notFound');
    const body = changes(user, input, this.opts);
    if (!body) return { status: 'alreadyApplied', remoteId };
    await this.write(op, remoteId, body);
    return { status: 'applied', remoteId };
  }

  /**
   * Suspends the user under `suspendOnDeprovision`; otherwise there is nothing to do, the engine has
   * already revoked the memberships.
   */
  async disable(remoteId: string): Promise<WriteResult> {
    const op = 'disableAccount';
    if (!this.opts.suspendOnDeprovision) return { status: 'alreadyApplied', remoteId };
    if (remoteId.toLowerCase() === this.client.subject.toLowerCase()) {
      throw new PermanentError(`${what(op)}: ${remoteId} is the administrator the connector acts as; it is never suspended, or the connector would lock itself out`, 'forbidden');
    }
    const user = await this.find(op, remoteId);
    if (!user || user.suspended === true) return { status: 'alreadyApplied', remoteId };
    await this.write(op, remoteId, { suspended: true });
    return { status: 'applied', remoteId };
  }

  /** One page of the customer's (or the domain's) users; the cursor is Google's page token. */
  async list(cursor?: string): Promise<Page<RemoteAccount>> {
    const where = this.opts.domain ? { domain: this.opts.domain } : { customer: this.opts.customer };
    const page = await this.client.call(`${what('listAccounts')}: users.list`, (d) =>
      d.users.list({ ...where, maxResults: this.opts.pageSize, orderBy: 'email', projection: 'basic', ...(cursor ? { pageToken: cursor } : {}) }),
    );
    const items: RemoteAccount[] = (page.users ?? [])
      .filter((u) => typeof u.primaryEmail === 'string')
      .map((u) => ({
        remoteId: u.primaryEmail!.toLowerCase(),
        userName: u.primaryEmail!,
        email: u.primaryEmail!,
        active: u.suspended !== true && u.archived !== true,
        attributes: { id: u.id, suspended: u.suspended === true, isAdmin: u.isAdmin === true, ...(u.name?.fullName ? { fullName: u.name.fullName } : {}) },
      }));
    const next = page.nextPageToken || undefined;
    return { items, ...(next ? { next } : {}) };
  }
}
