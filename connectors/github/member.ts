/**
 * Accounts in a GitHub organization. An account is the person's place in the organization:
 *
 * - a known GitHub username: an organization membership, active or pending (GitHub invites a
 *   non-member added by username, and the membership stays pending until they accept); remoteId is
 *   the lowercased login, since GitHub logins are case-insensitive;
 * - no username yet: a pending invitation by email; remoteId is `email:<lowercased address>`, which
 *   stays the same if the invitation has to be sent again.
 *
 * Both are listed by listAccounts (members, then pending invitations), so reconciliation sees them.
 */
import type { AccountInput, Page, RemoteAccount, WriteResult } from '@scim-gateway/connector-sdk';
import { PermanentError } from '@scim-gateway/connector-sdk';
import type { GitHubClient } from './client.js';

/** GitHub's login rules: letters, digits and single inner hyphens, at most 39 characters. */
const LOGIN = /^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$/;
const EMAIL_PREFIX = 'email:';

export type DeprovisionPolicy = 'removeFromOrg' | 'teamsOnly';

export interface MemberOptions {
  org: string;
  usernameAttribute: string;
  deprovision: DeprovisionPolicy;
  managedTeams?: string[] | undefined;
}

export interface OrgMembership {
  state: 'active' | 'pending';
  role: 'admin' | 'member' | 'billing_manager';
}

export interface Invitation {
  id: number;
  login: string | null;
  email: string | null;
  role: string;
}

interface SimpleUser {
  login: string;
}

/** What a remoteId names: a GitHub login, or a person invited by email. */
export type Invitee = { kind: 'login'; login: string } | { kind: 'email'; email: string };

export function parseRemoteId(remoteId: string): Invitee {
  if (remoteId.startsWith(EMAIL_PREFIX)) return { kind: 'email', email: remoteId.slice(EMAIL_PREFIX.length) };
  if (!LOGIN.test(remoteId)) throw new PermanentError(`github: "${remoteId}" is not a GitHub username or an email: remote id`, 'invalidInput');
  return { kind: 'login', login: remoteId.toLowerCase() };
}

export const emailRemoteId = (email: string) => `${EMAIL_PREFIX}${email.toLowerCase()}`;

/**
 * Reads a SCIM attribute by path: "userName", "name.givenName", or "<schema URN>:<attribute>[.sub]"
 * for an extension. Attribute names are case-insensitive (RFC 7643 §2.1).
 */
export function readAttribute(resource: Record<string, unknown>, path: string): unknown {
  const get = (obj: unknown, key: string): unknown => {
    if (!obj || typeof obj !== 'object' || Array.isArray(obj)) return undefined;
    const entries = Object.entries(obj as Record<string, unknown>);
    return entries.find(([k]) => k === key)?.[1] ?? entries.find(([k]) => k.toLowerCase() === key.toLowerCase())?.[1];
  };
  let base: unknown = resource;
  let rest = path;
  if (path.toLowerCase().startsWith('urn:')) {
    const cut = path.lastIndexOf(':');
    base = get(resource, path.slice(0, cut));
    rest = path.slice(cut + 1);
  }
  return rest.split('.').reduce<unknown>((obj, key) => get(obj, key), base);
}

export class MemberOperations {
  constructor(
    readonly client: GitHubClient,
    readonly opts: MemberOptions,
  ) {}

  get org(): string {
    return this.opts.org;
  }

  /** The organization is visible, and the credentials may manage its members (owners only). */
  async validate(): Promise<void> {
    const what = 'github: validate';
    try {
      await this.client.request(what, 'GET /orgs/{org}', { org: this.org });
    } catch (err) {
      if (err instanceof PermanentError && err.kind === 'notFound') {
        throw new PermanentError(`${err.message}; organization "${this.org}" does not exist or these credentials cannot see it (for an App: is it installed on this organization?)`, 'notFound', { cause: err });
      }
      throw err;
    }
    // Only owners can read pending invitations: a cheap proof that writes will be allowed.
    try {
      await this.client.request(what, 'GET /orgs/{org}/invitations', { org: this.org, per_page: 1 });
    } catch (err) {
      if (err instanceof PermanentError && (err.kind === 'notFound' || err.kind === 'forbidden')) {
        throw new PermanentError(`${err.message}; the credentials can see "${this.org}" but cannot manage its members: they need organization owner rights`, 'forbidden', { cause: err });
      }
      throw err;
    }
  }

  /** The user's GitHub username from the configured attribute, if it holds a valid one. */
  username(input: AccountInput): string | undefined {
    const value = this.opts.usernameAttribute === 'userName' ? input.userName : readAttribute(input.attributes, this.opts.usernameAttribute);
    if (typeof value !== 'string') return undefined;
    const login = value.trim();
    return LOGIN.test(login) ? login.toLowerCase() : undefined;
  }

  async membership(what: string, login: string): Promise<OrgMembership | undefined> {
    return await this.client.find<OrgMembership>(what, 'GET /orgs/{org}/memberships/{username}', { org: this.org, username: login });
  }

  async setMembership(what: string, login: string, role: 'admin' | 'member'): Promise<void> {
    try {
      await this.client.request(what, 'PUT /orgs/{org}/memberships/{username}', { org: this.org, username: login, role });
    } catch (err) {
      if (err instanceof PermanentError && err.kind === 'notFound') {
        throw new PermanentError(`${err.message}; there is no GitHub user "${login}" (check the username attribute) or no organization "${this.org}"`, 'notFound', { cause: err });
      }
      throw err;
    }
  }

  /** The pending invitation for `email`, if any (GitHub has no search; invitations are few). */
  async findInvitation(what: string, email: string): Promise<Invitation | undefined> {
    const wanted = email.toLowerCase();
    for await (const inv of this.client.listAll<Invitation>(what, 'GET /orgs/{org}/invitations', { org: this.org })) {
      if (inv.email?.toLowerCase() === wanted) return inv;
    }
    return undefined;
  }

  async invite(what: string, email: string, role: 'admin' | 'member' = 'member'): Promise<void> {
    await this.client.request(what, 'POST /orgs/{org}/invitations', { org: this.org, email, role: role === 'admin' ? 'admin' : 'direct_member' });
  }

  /** Gives `login` an organization membership with `role` unless they have one (owners stay owners); answers whether it wrote. */
  private async ensureMembership(what: string, login: string, role: 'admin' | 'member'): Promise<boolean> {
    const current = await this.membership(what, login);
    if (current && (role === 'member' || current.role === 'admin')) return false;
    await this.setMembership(what, login, role);
    return true;
  }

  /** Cancels a pending invitation; one already gone (accepted, cancelled, expired) is fine. */
  private async cancelInvitation(what: string, id: number): Promise<boolean> {
    try {
      await this.client.request(what, 'DELETE /orgs/{org}/invitations/{invitation_id}', { org: this.org, invitation_id: id });
      return true;
    } catch (err) {
      if (err instanceof PermanentError && err.kind === 'notFound') return false;
      throw err;
    }
  }

  /** Finds the user's membership or invitation, or creates it (member role; owners stay owners). */
  async create(input: AccountInput): Promise<WriteResult> {
    const what = 'github: createAccount';
    const login = this.username(input);
    if (login) {
      if (await this.membership(what, login)) return { status: 'alreadyApplied', remoteId: login };
      await this.setMembership(what, login, 'member');
      return { status: 'applied', remoteId: login };
    }
    const email = input.email?.trim();
    if (!email) {
      throw new PermanentError(`${what} failed: ${input.userName} has no GitHub username in ${this.opts.usernameAttribute} and no email address to invite`, 'invalidInput');
    }
    const remoteId = emailRemoteId(email);
    if (await this.findInvitation(what, email)) return { status: 'alreadyApplied', remoteId };
    await this.invite(what, email);
    return { status: 'applied', remoteId };
  }

  /**
   * Moves the account when the user's identity changed (updateAccount), to what createAccount would
   * make now: the username, else the email address.
   *
   * - Invited by email, and a username is now known (or the address changed): the username gets an
   *   organization membership (or the new address an invitation) with the role the invitation had,
   *   and the email invitation is cancelled if still pending.
   * - Username changed: the new login gets a membership with the old login's organization role. The
   *   old login's membership is left alone: after a rename on GitHub it is the same account under
   *   its new name, and otherwise it may be someone else's, so reconciliation reports it instead.
   * - A username is never given up for an email invitation: a user whose attribute was emptied
   *   keeps the membership they have.
   *
   * Answers the new remoteId, also when called again with the old one after the move was made.
   */
  async update(remoteId: string, input: AccountInput): Promise<WriteResult> {
    const what = 'github: updateAccount';
    const current = parseRemoteId(remoteId);
    const currentId = current.kind === 'login' ? current.login : emailRemoteId(current.email);
    const login = this.username(input);
    const email = input.email?.trim();
    const desired = login ?? (current.kind === 'email' && email ? emailRemoteId(email) : undefined);
    if (desired === undefined || desired === currentId) return { status: 'alreadyApplied', remoteId: currentId };
    let changed = false;
    if (current.kind === 'email') {
      const invitation = await this.findInvitation(what, current.email);
      const role = invitation?.role === 'admin' ? 'admin' : 'member';
      if (login) changed = await this.ensureMembership(what, login, role);
      else if (email && !(await this.findInvitation(what, email))) {
        await this.invite(what, email, role);
        changed = true;
      }
      if (invitation && (await this.cancelInvitation(what, invitation.id))) changed = true;
    } else if (login) {
      const old = await this.membership(what, current.login);
      changed = await this.ensureMembership(what, login, old?.role === 'admin' ? 'admin' : 'member');
    }
    return { status: changed ? 'applied' : 'alreadyApplied', remoteId: desired };
  }

  /** Removes the person from the organization, or cancels their pending invitation. */
  async removeFromOrg(what: string, invitee: Invitee): Promise<WriteResult> {
    if (invitee.kind === 'email') {
      const inv = await this.findInvitation(what, invitee.email);
      if (!inv) return { status: 'alreadyApplied' };
      await this.client.request(what, 'DELETE /orgs/{org}/invitations/{invitation_id}', { org: this.org, invitation_id: inv.id });
      return { status: 'applied' };
    }
    if (!(await this.membership(what, invitee.login))) return { status: 'alreadyApplied' };
    // For a pending member this cancels the invitation; for an active one it also ends every team membership.
    await this.client.request(what, 'DELETE /orgs/{org}/memberships/{username}', { org: this.org, username: invitee.login });
    return { status: 'applied' };
  }

  /** Applies the deprovision policy (disableAccount). */
  async deprovision(remoteId: string): Promise<WriteResult> {
    const what = 'github: disableAccount';
    const invitee = parseRemoteId(remoteId);
    if (this.opts.deprovision === 'removeFromOrg') return await this.removeFromOrg(what, invitee);
    // teamsOnly: a pending email invitation belongs to no team yet; the invitation is kept.
    if (invitee.kind === 'email') return { status: 'alreadyApplied' };
    let removed = false;
    for await (const slug of this.managedTeams(what)) {
      const params = { org: this.org, team_slug: slug, username: invitee.login };
      if (!(await this.client.find(what, 'GET /orgs/{org}/teams/{team_slug}/memberships/{username}', params))) continue;
      await this.client.request(what, 'DELETE /orgs/{org}/teams/{team_slug}/memberships/{username}', params);
      removed = true;
    }
    return { status: removed ? 'applied' : 'alreadyApplied' };
  }

  private async *managedTeams(what: string): AsyncGenerator<string> {
    if (this.opts.managedTeams) {
      yield* this.opts.managedTeams;
      return;
    }
    for await (const team of this.client.listAll<{ slug: string }>(what, 'GET /orgs/{org}/teams', { org: this.org })) yield team.slug;
  }

  /**
   * One page of accounts: organization members (cursor `members:<page>`), then pending invitations
   * (`invitations:<page>`), each page as GitHub's Link header numbers it.
   */
  async list(cursor?: string): Promise<Page<RemoteAccount>> {
    const what = 'github: listAccounts';
    const { phase, page } = parseCursor(cursor, ['members', 'invitations']);
    if (phase === 'members') {
      const res = await this.client.listPage<SimpleUser>(what, 'GET /orgs/{org}/members', { org: this.org }, page);
      const items = res.items.map((u) => ({ remoteId: u.login.toLowerCase(), userName: u.login, active: true, attributes: { state: 'active' } }));
      return { items, next: res.nextPage ? `members:${res.nextPage}` : 'invitations:1' };
    }
    const res = await this.client.listPage<Invitation>(what, 'GET /orgs/{org}/invitations', { org: this.org }, page);
    const items = res.items.flatMap((inv): RemoteAccount[] => {
      const attributes = { state: 'pending', invitationId: inv.id, role: inv.role };
      if (inv.login) return [{ remoteId: inv.login.toLowerCase(), userName: inv.login, email: inv.email ?? undefined, active: true, attributes }];
      if (inv.email) return [{ remoteId: emailRemoteId(inv.email), email: inv.email, active: true, attributes }];
      return [];
    });
    return { items, next: res.nextPage ? `invitations:${res.nextPage}` : undefined };
  }
}

/** Splits a `<phase>:<page>` cursor; no cursor is the first page of the first phase. */
export function parseCursor<P extends string>(cursor: string | undefined, phases: readonly P[]): { phase: P; page: number } {
  if (cursor === undefined || cursor === '') return { phase: phases[0]!, page: 1 };
  const m = /^([a-z]+):(\d{1,9})$/.exec(cursor);
  const phase = m?.[1] as P | undefined;
  const page = Number(m?.[2]);
  if (!phase || !phases.includes(phase) || page < 1) throw new PermanentError(`github: "${cursor}" is not a cursor this connector made`, 'invalidCursor');
  return { phase, page };
}
