/**
 * Account operations on Auth0 users of one database connection: found by email, created with a
 * random password nobody keeps and invited with a password-change ticket, blocked with a flag in
 * app_metadata on deprovisioning (the shipped Action denies logins while the flag is set), and
 * unblocked again only when the gateway was the one that blocked them.
 */
import { randomBytes } from 'node:crypto';
import { PermanentError, type AccountInput, type ConnectorLogger, type Deliver, type Page, type RemoteAccount, type WriteResult } from '@scim-gateway/connector-sdk';
import type { Auth0Api } from './client.js';

/** The app_metadata key of the deprovisioning flag; the Action in actions/ reads the same key. */
export const FLAG_KEY = 'scimGateway';
/** The app_metadata key marking a created user whose invitation has not been issued yet. */
export const INVITATION_KEY = 'scimGatewayInvitation';
export const FLAG_SOURCE = 'scim-gateway';
/** Auth0's user search returns at most this many results for one query, however it is paged. */
export const SEARCH_LIMIT = 1000;

export interface UserOptions {
  connection: string;
  emailVerified: boolean;
  allowEmailChange: boolean;
  invitation: 'ticket' | 'none';
  ticketTtlSeconds: number;
  ticketClientId?: string | undefined;
  ticketResultUrl?: string | undefined;
  pageSize: number;
}

/** The fields of an Auth0 user this connector reads. */
export interface Auth0User {
  user_id?: string | undefined;
  email?: string | undefined;
  name?: string | undefined;
  given_name?: string | undefined;
  family_name?: string | undefined;
  blocked?: boolean | undefined;
  app_metadata?: Record<string, unknown> | undefined;
  identities?: Array<{ connection?: string | undefined }> | undefined;
  created_at?: string | undefined;
  updated_at?: string | undefined;
  username?: string | undefined;
  email_verified?: boolean | undefined;
}

const what = (op: string) => `auth0: ${op}`;

/** The deprovisioning flag, when the gateway set it. */
export function gatewayFlag(user: Auth0User): Record<string, unknown> | undefined {
  const flag = user.app_metadata?.[FLAG_KEY];
  return flag && typeof flag === 'object' && (flag as { deprovisioned?: unknown }).deprovisioned === true ? (flag as Record<string, unknown>) : undefined;
}

function invitationPending(user: Auth0User): boolean {
  const mark = user.app_metadata?.[INVITATION_KEY];
  return !!mark && typeof mark === 'object' && (mark as { pending?: unknown }).pending === true;
}

/**
 * A password nobody will know: 256 random bits, plus one character of each class so any Auth0
 * password policy (up to "excellent") accepts it. It is sent once, in the create request, and
 * never kept or logged; the user sets their own through the invitation or "Forgot password".
 */
function unguessablePassword(): string {
  return `${randomBytes(32).toString('base64url')}aZ7!`;
}

function emailOf(input: AccountInput, op: string): string {
  const email = input.email ?? (input.userName.includes('@') ? input.userName : undefined);
  if (!email) throw new PermanentError(`${what(op)}: user ${input.userId} has no email address, which Auth0 database users are found and created by`, 'invalidInput');
  // Auth0 keeps database users' emails in lower case, and users-by-email matches case-sensitively.
  return email.toLowerCase();
}

/** Profile attributes as Auth0 names them; absent ones are left as Auth0 has them. */
function profileOf(input: AccountInput): { name?: string; given_name?: string; family_name?: string } {
  return {
    ...(input.displayName && { name: input.displayName }),
    ...(input.givenName && { given_name: input.givenName }),
    ...(input.familyName && { family_name: input.familyName }),
  };
}

function blockBody(connection: string): Record<string, unknown> {
  return { blocked: true, app_metadata: { [FLAG_KEY]: { deprovisioned: true, source: FLAG_SOURCE, at: new Date().toISOString(), connection } } };
}

/** Unblocking removes the flag with `null`: Auth0 merges app_metadata's top-level keys and deletes null ones. */
const UNBLOCK_BODY = { blocked: false, app_metadata: { [FLAG_KEY]: null } };

function invitationPage(url: string): string {
  const href = url.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
  return `<!doctype html><meta charset="utf-8"><meta name="referrer" content="no-referrer"><title>Set your password</title><p>Your account is ready. <a href="${href}">Set your password</a> to sign in. The link works once.</p>\n`;
}

export class UserOperations {
  constructor(
    private readonly api: Auth0Api,
    private readonly opts: UserOptions,
    private readonly log: ConnectorLogger,
    private readonly deliver: Deliver | undefined,
  ) {}

  private inConnection(user: Auth0User): boolean {
    return (user.identities ?? []).some((i) => i.connection === this.opts.connection);
  }

  /** The user of the configured connection with this email (users-by-email, exact match). */
  async findByEmail(op: string, email: string): Promise<Auth0User | undefined> {
    const users = (await this.api.call(what(op), (m) => m.users.listUsersByEmail({ email }))) as unknown as Auth0User[];
    return (Array.isArray(users) ? users : []).find((u) => typeof u.user_id === 'string' && u.email?.toLowerCase() === email && this.inConnection(u));
  }

  async get(op: string, remoteId: string): Promise<Auth0User | undefined> {
    return await this.api.maybe(what(op), (m) => m.users.get(remoteId));
  }

  private async patch(op: string, remoteId: string, body: Record<string, unknown>): Promise<void> {
    await this.api.call(what(op), (m) => m.users.update(remoteId, body));
  }

  async create(input: AccountInput): Promise<WriteResult> {
    const op = 'createAccount';
    const email = emailOf(input, op);
    let existing = await this.findByEmail(op, email);
    if (!existing) {
      try {
        existing = (await this.api.call(what(op), (m) =>
          m.users.create({
            connection: this.opts.connection,
            email,
            password: unguessablePassword(),
            email_verified: this.opts.emailVerified,
            verify_email: false,
            ...profileOf(input),
            ...(this.opts.invitation === 'ticket' && { app_metadata: { [INVITATION_KEY]: { pending: true } } }),
          }),
        ));
      } catch (err) {
        // Created meanwhile (a concurrent or timed-out earlier attempt): adopt it like any existing user.
        if (!(err instanceof PermanentError && err.kind === 'conflict')) throw err;
        existing = await this.findByEmail(op, email);
        if (!existing) throw err;
        return await this.adopt(op, existing, input);
      }
      const remoteId = existing.user_id;
      if (!remoteId) throw new PermanentError(`${what(op)} failed: Auth0 answered a created user without user_id`, 'invalidResponse');
      if (this.opts.invitation === 'ticket') await this.invite(op, remoteId, input.userId);
      if (!input.active) await this.patch(op, remoteId, blockBody(this.opts.connection));
      return { status: 'applied', remoteId };
    }
    return await this.adopt(op, existing, input);
  }

  /** An existing user: reactivated if we blocked them, invited if an earlier attempt did not get that far. */
  private async adopt(op: string, user: Auth0User, input: AccountInput): Promise<WriteResult> {
    const remoteId = user.user_id!;
    let status: WriteResult['status'] = 'alreadyApplied';
    if (this.opts.invitation === 'ticket' && invitationPending(user)) {
      await this.invite(op, remoteId, input.userId);
      status = 'applied';
    }
    if (input.active && user.blocked === true && gatewayFlag(user)) {
      await this.patch(op, remoteId, UNBLOCK_BODY);
      status = 'applied';
    }
    return { status, remoteId };
  }

  /**
   * Issues a password-change ticket (the invitation) and hands its URL to the gateway's delivery
   * channel. The URL is a credential: it goes nowhere else, not into logs or errors.
   */
  private async invite(op: string, remoteId: string, userId: string): Promise<void> {
    const answer = await this.api.call(what(op), (m) =>
      m.tickets.changePassword({
        user_id: remoteId,
        ttl_sec: this.opts.ticketTtlSeconds,
        mark_email_as_verified: true,
        ...(this.opts.ticketClientId !== undefined && { client_id: this.opts.ticketClientId }),
        ...(this.opts.ticketResultUrl !== undefined && { result_url: this.opts.ticketResultUrl }),
      }),
    );
    const url = typeof answer?.ticket === 'string' ? answer.ticket : undefined;
    if (!url) throw new PermanentError(`${what(op)} failed: Auth0 answered the password-change ticket without a URL`, 'invalidResponse');
    if (this.deliver) {
      await this.deliver({ userId, filename: 'set-password.html', contentType: 'text/html; charset=utf-8', content: invitationPage(url), ttlMs: this.opts.ticketTtlSeconds * 1000 });
      this.log.info('auth0: invitation delivered', { remoteId, expiresInSeconds: this.opts.ticketTtlSeconds });
    } else {
      this.log.warn('auth0: invitation ticket issued, but the gateway has no delivery channel; the user can set a password with "Forgot password"', { remoteId });
    }
    await this.patch(op, remoteId, { app_metadata: { [INVITATION_KEY]: null } });
  }

  async update(remoteId: string, input: AccountInput): Promise<WriteResult> {
    const op = 'updateAccount';
    const user = await this.get(op, remoteId);
    if (!user) throw new PermanentError(`${what(op)} failed: HTTP 404: user ${remoteId} does not exist in Auth0`, 'notFound');
    const body: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(profileOf(input))) {
      if (user[key as keyof Auth0User] !== value) body[key] = value;
    }
    if (this.opts.allowEmailChange) {
      const email = emailOf(input, op);
      if (user.email?.toLowerCase() !== email) {
        body.email = email;
        body.email_verified = this.opts.emailVerified;
        body.connection = this.opts.connection;
      }
    }
    if (input.active && user.blocked === true && gatewayFlag(user)) Object.assign(body, UNBLOCK_BODY);
    if (!input.active && user.blocked !== true) Object.assign(body, blockBody(this.opts.connection));
    if (Object.keys(body).length === 0) return { status: 'alreadyApplied', remoteId };
    await this.patch(op, remoteId, body);
    return { status: 'applied', remoteId };
  }

  /** Blocks the user and flags why. A user blocked already (by us or an administrator) is left alone. */
  async disable(remoteId: string): Promise<WriteResult> {
    const op = 'disableAccount';
    const user = await this.get(op, remoteId);
    if (!user || user.blocked === true) return { status: 'alreadyApplied', remoteId };
    await this.patch(op, remoteId, blockBody(this.opts.connection));
    return { status: 'applied', remoteId };
  }

  async delete(remoteId: string): Promise<WriteResult> {
    const op = 'deleteAccount';
    // Auth0 answers 204 to deleting a user that does not exist, so look first to answer truthfully.
    if (!(await this.get(op, remoteId))) return { status: 'alreadyApplied', remoteId };
    try {
      await this.api.call(what(op), (m) => m.users.delete(remoteId));
    } catch (err) {
      if (err instanceof PermanentError && err.kind === 'notFound') return { status: 'alreadyApplied', remoteId };
      throw err;
    }
    return { status: 'applied', remoteId };
  }

  /**
   * One page of the connection's users in creation order, by keyset pagination: every page is a
   * fresh search (page 0) for users created at or after the cursor's instant, so Auth0's window of
   * {@link SEARCH_LIMIT} results per query never binds however large the connection is. See
   * {@link ListCursor} for how users created in the same millisecond are handled.
   */
  async list(cursor?: string): Promise<Page<RemoteAccount>> {
    const page = await this.listUsers(cursor);
    return { items: page.users.map(toAccount), ...(page.next !== undefined && { next: page.next }) };
  }

  /** Like {@link list}, with the Auth0 users as Auth0 answered them (what a source import reads). */
  async listUsers(cursor?: string): Promise<{ users: Array<Auth0User & { user_id: string }>; next?: string }> {
    const op = 'listAccounts';
    const from = cursor === undefined ? undefined : decodeListCursor(cursor);
    const perPage = this.opts.pageSize;
    const clause = from === undefined ? undefined : `created_at:${from.after ? '{' : '['}"${from.t}" TO *]`;
    const { users } = await this.search(op, clause, perPage);
    const floor = from === undefined ? -Infinity : Date.parse(from.t);
    checkOrder(op, users, floor, from?.after === true, clause);
    const seen = new Set(from?.seen ?? []);
    const fresh = (list: TimedUser[]) => list.filter((u) => !seen.has(u.user_id));
    if (users.length < perPage) return { users: fresh(users) };

    const first = users[0]!.at;
    const last = users[users.length - 1]!.at;
    if (first === last) {
      // A whole page from one millisecond: the group may be larger than a page, and Auth0 orders
      // equal sort keys arbitrarily from one query to the next, so the group is read in one answer.
      const instant = new Date(first).toISOString();
      const group = await this.search(op, `created_at:["${instant}" TO "${instant}"]`, SAME_INSTANT_LIMIT);
      checkOrder(op, group.users, first, false, 'the same millisecond');
      if (group.users.some((u) => u.at !== first)) throw invalidListing(op, `users outside created_at ${instant} answered for that instant`);
      if (group.users.length >= SAME_INSTANT_LIMIT && (group.total === undefined || group.total > group.users.length)) {
        throw new PermanentError(
          `${what(op)} failed: more than ${SAME_INSTANT_LIMIT} users of connection "${this.opts.connection}" were created in the same millisecond (${instant}); Auth0's user search answers at most ${SAME_INSTANT_LIMIT} users at once and orders them arbitrarily, so they cannot be listed completely`,
          'searchLimit',
        );
      }
      return { users: fresh(group.users), next: encodeListCursor({ v: 1, t: instant, after: true }) };
    }
    // The page ends inside `last`'s millisecond, possibly part way through its users: the next
    // page starts at that millisecond again and skips the ones already answered.
    const atLast = users.filter((u) => u.at === last).map((u) => u.user_id);
    return { users: fresh(users), next: encodeListCursor({ v: 1, t: new Date(last).toISOString(), seen: atLast }) };
  }

  /** One search of the connection's users in creation order, page 0; `clause` narrows it by AND. */
  private async search(op: string, clause: string | undefined, perPage: number): Promise<{ users: TimedUser[]; total: number | undefined }> {
    const q = `identities.connection:"${this.opts.connection}"${clause === undefined ? '' : ` AND ${clause}`}`;
    const result = await this.api.call(what(op), (m) => m.users.list({ q, search_engine: 'v3', page: 0, per_page: perPage, include_totals: true, sort: 'created_at:1' }));
    const raw = (Array.isArray(result.data) ? result.data : []) as unknown as Auth0User[];
    const users = raw.map((u): TimedUser => {
      if (typeof u.user_id !== 'string' || u.user_id === '') throw invalidListing(op, 'a user without user_id');
      const at = typeof u.created_at === 'string' ? Date.parse(u.created_at) : NaN;
      if (!Number.isFinite(at)) throw invalidListing(op, `user ${u.user_id} without a valid created_at`);
      return { ...u, user_id: u.user_id, at };
    });
    return { users, total: typeof result.response?.total === 'number' ? result.response.total : undefined };
  }
}

/** Users answered at once for one millisecond: Auth0's largest per_page. */
export const SAME_INSTANT_LIMIT = 100;
const MAX_CURSOR_LENGTH = 32_768;
const MAX_USER_ID_LENGTH = 512;
const ISO_INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/**
 * Where the next page of listAccounts starts, sent to the engine as base64url JSON. `t` is a
 * creation instant (ISO 8601, milliseconds, as Auth0 answers `created_at`).
 *
 * - `{t, seen}`: users created at `t` or later, except `seen`, the users created exactly at `t`
 *   that an earlier page answered already. The next search ranges inclusively from `t`; since
 *   equal instants sort first, a page that is not all one millisecond holds every user of `t`'s
 *   millisecond, and the others are skipped by id. Nothing depends on how Auth0 orders ties.
 * - `{t, after: true}`: every user of `t`'s millisecond has been answered; the next search ranges
 *   exclusively from `t`. This follows a page that was all one millisecond, after which the
 *   whole millisecond was read in one answer of up to {@link SAME_INSTANT_LIMIT} users.
 *
 * Each cursor starts strictly later than the one before, so a listing always ends. The cursor
 * names an instant, not a user, so deleting any user never breaks it; users created during a
 * listing have later instants and appear on a later page.
 */
export interface ListCursor {
  v: 1;
  t: string;
  seen?: string[] | undefined;
  after?: true | undefined;
}

type TimedUser = Auth0User & { user_id: string; at: number };

function toAccount(u: Auth0User & { user_id: string }): RemoteAccount {
  return {
    remoteId: u.user_id,
    ...(u.email !== undefined && { userName: u.email, email: u.email }),
    active: u.blocked !== true,
    attributes: {
      ...(u.name !== undefined && { name: u.name }),
      blockedByGateway: u.blocked === true && gatewayFlag(u) !== undefined,
    },
  };
}

function invalidListing(op: string, problem: string): PermanentError {
  return new PermanentError(`${what(op)} failed: Auth0 answered the user search with ${problem}`, 'invalidResponse');
}

/** Pages must come in creation order and within the range asked for, or keyset paging could skip users. */
function checkOrder(op: string, users: TimedUser[], floor: number, exclusive: boolean, range: string | undefined): void {
  let previous = -Infinity;
  for (const u of users) {
    if (u.at < previous) throw invalidListing(op, 'users out of created_at order (sort=created_at:1)');
    if (u.at < floor || (exclusive && u.at === floor)) throw invalidListing(op, `user ${u.user_id} outside the range ${range ?? ''}`);
    previous = u.at;
  }
}

export function encodeListCursor(cursor: ListCursor): string {
  return Buffer.from(JSON.stringify(cursor), 'utf8').toString('base64url');
}

/** The cursor back from the engine; anything but one this connector made is a PermanentError. */
export function decodeListCursor(cursor: string): ListCursor {
  const invalid = (why: string) => new PermanentError(`${what('listAccounts')}: invalid cursor (${why})`, 'invalidCursor');
  if (typeof cursor !== 'string' || cursor.length === 0 || cursor.length > MAX_CURSOR_LENGTH || !/^[A-Za-z0-9_-]+$/.test(cursor)) throw invalid('not base64url');
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw invalid('not JSON');
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw invalid('not an object');
  const { v, t, seen, after, ...rest } = value as Record<string, unknown>;
  if (Object.keys(rest).length > 0) throw invalid('unknown fields');
  if (v !== 1) throw invalid('unknown version');
  if (typeof t !== 'string' || !ISO_INSTANT.test(t) || Number.isNaN(Date.parse(t)) || new Date(Date.parse(t)).toISOString() !== t) throw invalid('bad instant');
  if (after !== undefined && after !== true) throw invalid('bad after');
  if (seen !== undefined) {
    if (after === true) throw invalid('after with seen');
    if (!Array.isArray(seen) || seen.length > SAME_INSTANT_LIMIT) throw invalid('bad seen');
    for (const id of seen) if (typeof id !== 'string' || id.length === 0 || id.length > MAX_USER_ID_LENGTH) throw invalid('bad seen');
  }
  return { v: 1, t, ...(seen !== undefined && { seen: seen as string[] }), ...(after === true && { after: true }) };
}
