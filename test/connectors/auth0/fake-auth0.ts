/**
 * A fake Auth0 tenant for tests: a stateful HTTPS server on 127.0.0.1 serving the token endpoint
 * and the Management API endpoints the auth0 connector uses, with Auth0's wire format.
 *
 * - POST /oauth/token (client credentials, form or JSON): checks client id, secret and audience,
 *   issues random bearer tokens with the client's scopes and an expiry. Every /api/v2 call checks
 *   the token (401 "Invalid token" / "Expired token") and the endpoint's scopes (403
 *   insufficient_scope), as Auth0 does.
 * - Users with blocked, app_metadata and user_metadata. PATCH merges metadata the way Auth0
 *   documents it: top-level keys are merged, a key set to null is deleted, and a nested object is
 *   replaced as a whole (not deep-merged).
 * - GET /users with search engine v3: `q` understands terms joined by AND, `field:"value"`
 *   (identities.connection, email, user_id, blocked) and date ranges on created_at / updated_at
 *   (`[a TO b]` inclusive, `{a TO b}` exclusive, `*` open, values quoted); `sort=<field>:1|-1`
 *   with ties in an order that changes per request; page/per_page (at most 100), include_totals;
 *   and it refuses, with Auth0's 400, any page reaching past the first 1000 results of a query.
 * - users-by-email, password-change tickets, roles (name_filter, offset pages), a role's users
 *   (checkpoint pages: take/from/next), a user's roles (assign, delete, offset pages).
 * - Errors in Auth0's envelope {statusCode, error, message, errorCode}; programmed failures per
 *   request (429 with x-ratelimit-reset, 5xx, 403 …); direct access to the state for drift.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeUser {
  user_id: string;
  email: string;
  email_verified: boolean;
  name?: string;
  given_name?: string;
  family_name?: string;
  nickname?: string;
  blocked?: boolean;
  app_metadata: Record<string, unknown>;
  user_metadata: Record<string, unknown>;
  identities: Array<{ connection: string; provider: string; user_id: string; isSocial: boolean }>;
  created_at: string;
  updated_at: string;
}

export interface FakeRole {
  id: string;
  name: string;
  description?: string;
  users: Set<string>;
}

export interface FakeTicket {
  user_id: string;
  url: string;
  ttl_sec?: number;
  mark_email_as_verified?: boolean;
  client_id?: string;
  result_url?: string;
}

export interface FakeClient {
  secret: string;
  scopes: string[];
  /** Token lifetime in seconds. */
  expiresIn?: number;
}

/** A programmed failure for the next matching request(s). */
export interface Failure {
  method?: string;
  /** Matched against the path without query, e.g. /api/v2/users or /oauth/token. */
  path: RegExp;
  status: number;
  message?: string;
  errorCode?: string;
  headers?: Record<string, string>;
  times?: number;
}

export interface RecordedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  body: unknown;
}

export const ALL_SCOPES = [
  'read:users',
  'create:users',
  'update:users',
  'update:users_app_metadata',
  'delete:users',
  'create:user_tickets',
  'read:roles',
  'read:role_members',
  'create:role_members',
  'delete:role_members',
];

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly errorCode?: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const UPDATABLE = new Set([
  'blocked', 'email_verified', 'email', 'phone_number', 'phone_verified', 'user_metadata', 'app_metadata', 'given_name', 'family_name',
  'name', 'nickname', 'picture', 'verify_email', 'verify_phone_number', 'password', 'connection', 'client_id', 'username',
]);

/** Auth0's documented metadata merge: top-level keys merge, null deletes, nested objects are replaced. */
export function mergeMetadata(current: Record<string, unknown>, patch: Record<string, unknown>): Record<string, unknown> {
  const out = { ...current };
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else out[key] = value;
  }
  return out;
}

export interface FakeAuth0 {
  /** "127.0.0.1:<port>", what the connector's `domain` is set to. */
  domain: string;
  audience: string;
  clients: Map<string, FakeClient>;
  /** Database connections users may be created in. */
  connections: Set<string>;
  users: Map<string, FakeUser>;
  roles: Map<string, FakeRole>;
  tickets: FakeTicket[];
  /** Passwords set at creation, by user id (what the tenant knows; tests check they leak nowhere). */
  passwords: Map<string, string>;
  requests: RecordedRequest[];
  /** Tokens issued so far. */
  tokensIssued(): number;
  fail(failure: Failure): void;
  addRole(name: string): FakeRole;
  /** A user as if created elsewhere (Dashboard, signup), for adoption and drift. */
  addUser(user: Partial<FakeUser> & { email: string; connection?: string }): FakeUser;
  close(): Promise<void>;
}

export async function startFakeAuth0(opts: { cert: string; key: string; host?: string; maxPerPage?: number }): Promise<FakeAuth0> {
  const clients = new Map<string, FakeClient>();
  const connections = new Set<string>();
  const users = new Map<string, FakeUser>();
  const roles = new Map<string, FakeRole>();
  const tickets: FakeTicket[] = [];
  const passwords = new Map<string, string>();
  const requests: RecordedRequest[] = [];
  const failures: Failure[] = [];
  const tokens = new Map<string, { clientId: string; scopes: Set<string>; expiresAt: number }>();
  let issued = 0;
  let searches = 0;
  let domain = '';
  const maxPerPage = opts.maxPerPage ?? 100;

  const now = () => new Date().toISOString();
  const newUser = (email: string, connection: string, extra: Partial<FakeUser> = {}): FakeUser => {
    const local = randomBytes(12).toString('hex');
    const user: FakeUser = {
      user_id: `auth0|${local}`,
      email: email.toLowerCase(),
      email_verified: false,
      app_metadata: {},
      user_metadata: {},
      identities: [{ connection, provider: 'auth0', user_id: local, isSocial: false }],
      created_at: now(),
      updated_at: now(),
      ...extra,
    };
    users.set(user.user_id, user);
    return user;
  };

  const userJson = (u: FakeUser) => ({ ...u, name: u.name ?? u.email, nickname: u.nickname ?? u.email.split('@')[0] });
  const findUser = (id: string) => {
    const u = users.get(id);
    if (!u) throw new ApiError(404, 'The user does not exist.', 'inexistent_user');
    return u;
  };
  const findRole = (id: string) => {
    const r = roles.get(id);
    if (!r) throw new ApiError(404, 'The role does not exist.');
    return r;
  };

  function authenticate(req: IncomingMessage): Set<string> {
    const header = req.headers.authorization ?? '';
    const match = /^Bearer (\S+)$/.exec(header);
    if (!match) throw new ApiError(401, 'Missing authentication');
    const token = tokens.get(match[1]!);
    if (!token) throw new ApiError(401, 'Invalid token');
    if (Date.now() >= token.expiresAt) throw new ApiError(401, 'Expired token');
    return token.scopes;
  }

  function need(scopes: Set<string>, ...required: string[]): void {
    const missing = required.filter((s) => !scopes.has(s));
    if (missing.length > 0) throw new ApiError(403, `Insufficient scope, expected all of: ${required.join(',')}`, 'insufficient_scope');
  }

  function paged<T>(items: T[], q: URLSearchParams, key: string): unknown {
    const page = Number(q.get('page') ?? '0');
    const perPage = Number(q.get('per_page') ?? '50');
    if (!Number.isInteger(page) || page < 0 || !Number.isInteger(perPage) || perPage < 1 || perPage > maxPerPage) {
      throw new ApiError(400, `Query validation error: per_page must be between 1 and ${maxPerPage}; page must be 0 or more`, 'invalid_query_string');
    }
    const slice = items.slice(page * perPage, page * perPage + perPage);
    if (q.get('include_totals') !== 'true') return slice;
    return { start: page * perPage, limit: perPage, length: slice.length, total: items.length, [key]: slice };
  }

  /**
   * The subset of Lucene the connector sends: terms joined by AND, each `field:"value"`,
   * `field:value`, or a range `field:[a TO b]` with `[ ]` inclusive, `{ }` exclusive (mixable), `*`
   * for an open end, and quoted values (an ISO 8601 instant has colons, which Lucene needs quoted).
   */
  function searchUsers(query: string | null): FakeUser[] {
    const all = [...users.values()];
    if (!query) return all;
    const preds: Array<(u: FakeUser) => boolean> = [];
    const term = /^([a-z_.]+):(?:"((?:[^"\\]|\\.)*)"|([[{])\s*("(?:[^"\\]|\\.)*"|[^\s"\]}]+)\s+TO\s+("(?:[^"\\]|\\.)*"|[^\s"\]}]+)\s*([\]}])|([^\s"[\]{}()]+))/;
    let rest = query.trim();
    for (;;) {
      const m = term.exec(rest);
      if (!m) throw new ApiError(400, `Query validation error: unsupported query near ${JSON.stringify(rest.slice(0, 40))}`, 'invalid_query_string');
      const [whole, field, quoted, open, low, high, close, bare] = m as unknown as [string, string, string?, string?, string?, string?, string?, string?];
      preds.push(open !== undefined ? rangePredicate(field, open === '[', unquote(low!), unquote(high!), close === ']') : termPredicate(field, quoted ?? bare!));
      rest = rest.slice(whole.length).trim();
      if (rest === '') break;
      const and = /^AND\s+/.exec(rest);
      if (!and) throw new ApiError(400, `Query validation error: expected AND near ${JSON.stringify(rest.slice(0, 40))}`, 'invalid_query_string');
      rest = rest.slice(and[0].length);
    }
    return all.filter((u) => preds.every((p) => p(u)));
  }

  function unquote(value: string): string {
    if (value.startsWith('"')) return value.slice(1, -1).replace(/\\(.)/g, '$1');
    // Lucene reads an unquoted colon as a field separator: a timestamp must be quoted.
    if (value.includes(':')) throw new ApiError(400, `Query validation error: unexpected ':' in ${JSON.stringify(value)}; quote the value`, 'invalid_query_string');
    return value;
  }

  function termPredicate(field: string, value: string): (u: FakeUser) => boolean {
    switch (field) {
      case 'identities.connection':
        return (u) => u.identities.some((i) => i.connection === value);
      case 'email':
        return (u) => u.email === value.toLowerCase();
      case 'user_id':
        return (u) => u.user_id === value;
      case 'blocked':
        return (u) => (u.blocked === true) === (value === 'true');
      default:
        throw new ApiError(400, `Query validation error: field ${field} is not searchable here`, 'invalid_query_string');
    }
  }

  /** Ranges over the date fields, compared as instants (a bare date is its midnight UTC). */
  function rangePredicate(field: string, lowInclusive: boolean, low: string, high: string, highInclusive: boolean): (u: FakeUser) => boolean {
    if (field !== 'created_at' && field !== 'updated_at') throw new ApiError(400, `Query validation error: range on ${field} is not supported here`, 'invalid_query_string');
    const bound = (v: string) => {
      if (v === '*') return undefined;
      const at = Date.parse(v);
      if (Number.isNaN(at)) throw new ApiError(400, `Query validation error: ${JSON.stringify(v)} is not a date`, 'invalid_query_string');
      return at;
    };
    const from = bound(low);
    const to = bound(high);
    return (u) => {
      const at = Date.parse(u[field]);
      return (from === undefined || (lowInclusive ? at >= from : at > from)) && (to === undefined || (highInclusive ? at <= to : at < to));
    };
  }

  /**
   * `sort=<field>:1|-1`. Users with equal sort keys come in an order that changes from one
   * request to the next (a hash of the request number and the user id), as nothing promises Auth0
   * orders ties stably; without `sort`, in creation order of the map.
   */
  function sortUsers(found: FakeUser[], sort: string | null): FakeUser[] {
    if (sort === null) return found;
    const m = /^(created_at|updated_at|email):(1|-1)$/.exec(sort);
    if (!m) throw new ApiError(400, `Query validation error: cannot sort by ${JSON.stringify(sort)}`, 'invalid_query_string');
    const field = m[1] as 'created_at' | 'updated_at' | 'email';
    const direction = m[2] === '1' ? 1 : -1;
    const salt = String(++searches);
    const tie = (u: FakeUser) => createHash('sha256').update(salt).update(u.user_id).digest('hex');
    const key = (u: FakeUser) => (field === 'email' ? u.email : Date.parse(u[field]));
    return found
      .map((u) => ({ u, k: key(u), t: tie(u) }))
      .sort((a, b) => (a.k < b.k ? -direction : a.k > b.k ? direction : a.t.localeCompare(b.t)))
      .map((x) => x.u);
  }

  function token(body: Record<string, unknown>): { status: number; json: unknown } {
    if (body.grant_type !== 'client_credentials') return { status: 400, json: { error: 'unsupported_grant_type', error_description: 'Unsupported grant type' } };
    const client = clients.get(typeof body.client_id === 'string' ? body.client_id : '');
    if (!client || client.secret !== body.client_secret) return { status: 401, json: { error: 'access_denied', error_description: 'Unauthorized' } };
    if (body.audience !== `https://${domain}/api/v2/`) return { status: 403, json: { error: 'access_denied', error_description: `Service not found: ${String(body.audience)}` } };
    const access = randomBytes(24).toString('base64url');
    const expiresIn = client.expiresIn ?? 86_400;
    tokens.set(access, { clientId: String(body.client_id), scopes: new Set(client.scopes), expiresAt: Date.now() + expiresIn * 1000 });
    issued++;
    return { status: 200, json: { access_token: access, token_type: 'Bearer', expires_in: expiresIn, scope: client.scopes.join(' ') } };
  }

  function api(method: string, path: string, q: URLSearchParams, body: Record<string, unknown>, scopes: Set<string>): { status: number; json?: unknown } {
    let m: RegExpExecArray | null;
    if (path === '/api/v2/users' && method === 'GET') {
      need(scopes, 'read:users');
      if (q.get('search_engine') !== 'v3') throw new ApiError(400, 'This fake Auth0 only answers search_engine=v3', 'invalid_query_string');
      const page = Number(q.get('page') ?? '0');
      const perPage = Number(q.get('per_page') ?? '50');
      if ((page + 1) * perPage > 1000) {
        throw new ApiError(400, 'You can only page through the first 1000 records. See https://auth0.com/docs/users/search/v3/view-search-results-by-page#limitation', 'invalid_paging');
      }
      const found = sortUsers(searchUsers(q.get('q')), q.get('sort'));
      return { status: 200, json: paged(found.map(userJson), q, 'users') };
    }
    if (path === '/api/v2/users' && method === 'POST') {
      need(scopes, 'create:users');
      const connection = typeof body.connection === 'string' ? body.connection : '';
      if (!connections.has(connection)) throw new ApiError(400, 'The connection does not exist.', 'inexistent_connection');
      const email = typeof body.email === 'string' ? body.email.toLowerCase() : '';
      if (!/^[^@\s]+@[^@\s]+$/.test(email)) throw new ApiError(400, 'Payload validation error: \'Object didn\'t pass validation for format email\' on property email.', 'invalid_body');
      if (typeof body.password !== 'string' || body.password.length < 8) throw new ApiError(400, 'PasswordStrengthError: Password is too weak', 'invalid_password');
      if ([...users.values()].some((u) => u.email === email && u.identities.some((i) => i.connection === connection))) throw new ApiError(409, 'The user already exists.', 'auth0_idp_error');
      const user = newUser(email, connection, {
        email_verified: body.email_verified === true,
        ...(typeof body.name === 'string' && { name: body.name }),
        ...(typeof body.given_name === 'string' && { given_name: body.given_name }),
        ...(typeof body.family_name === 'string' && { family_name: body.family_name }),
        ...(body.blocked === true && { blocked: true }),
        app_metadata: (body.app_metadata as Record<string, unknown> | undefined) ?? {},
        user_metadata: (body.user_metadata as Record<string, unknown> | undefined) ?? {},
      });
      passwords.set(user.user_id, body.password);
      return { status: 201, json: userJson(user) };
    }
    if (path === '/api/v2/users-by-email' && method === 'GET') {
      need(scopes, 'read:users');
      const email = q.get('email');
      if (!email) throw new ApiError(400, 'Query validation error: Missing required property: email', 'invalid_query_string');
      return { status: 200, json: [...users.values()].filter((u) => u.email === email).map(userJson) };
    }
    if ((m = /^\/api\/v2\/users\/([^/]+)\/roles$/.exec(path))) {
      const user = findUser(decodeURIComponent(m[1]!));
      if (method === 'GET') {
        need(scopes, 'read:users', 'read:roles');
        const held = [...roles.values()].filter((r) => r.users.has(user.user_id)).map((r) => ({ id: r.id, name: r.name, description: r.description ?? '' }));
        return { status: 200, json: paged(held, q, 'roles') };
      }
      const ids = Array.isArray(body.roles) ? (body.roles as unknown[]).map(String) : [];
      if (ids.length === 0) throw new ApiError(400, 'Payload validation error: roles must have at least 1 item', 'invalid_body');
      const list = ids.map(findRole);
      if (method === 'POST') {
        need(scopes, 'create:role_members');
        for (const r of list) r.users.add(user.user_id);
        return { status: 204 };
      }
      if (method === 'DELETE') {
        need(scopes, 'delete:role_members');
        for (const r of list) r.users.delete(user.user_id);
        return { status: 204 };
      }
    }
    if ((m = /^\/api\/v2\/users\/([^/]+)$/.exec(path))) {
      const id = decodeURIComponent(m[1]!);
      if (method === 'GET') {
        need(scopes, 'read:users');
        return { status: 200, json: userJson(findUser(id)) };
      }
      if (method === 'DELETE') {
        need(scopes, 'delete:users');
        // Auth0 answers 204 whether or not the user existed.
        users.delete(id);
        for (const r of roles.values()) r.users.delete(id);
        return { status: 204 };
      }
      if (method === 'PATCH') {
        need(scopes, 'update:users');
        if ('app_metadata' in body) need(scopes, 'update:users_app_metadata');
        const user = findUser(id);
        for (const key of Object.keys(body)) if (!UPDATABLE.has(key)) throw new ApiError(400, `Payload validation error: 'Additional properties not allowed: ${key}'.`, 'invalid_body');
        if (typeof body.email === 'string') {
          const email = body.email.toLowerCase();
          if ([...users.values()].some((u) => u.user_id !== id && u.email === email)) throw new ApiError(400, 'The specified new email already exists', 'email_used');
          user.email = email;
        }
        for (const key of ['name', 'given_name', 'family_name', 'nickname'] as const) {
          if (body[key] === null) delete user[key];
          else if (typeof body[key] === 'string') user[key] = body[key];
        }
        if (typeof body.blocked === 'boolean') user.blocked = body.blocked;
        if (typeof body.email_verified === 'boolean') user.email_verified = body.email_verified;
        if (body.app_metadata && typeof body.app_metadata === 'object') user.app_metadata = mergeMetadata(user.app_metadata, body.app_metadata as Record<string, unknown>);
        if (body.user_metadata && typeof body.user_metadata === 'object') user.user_metadata = mergeMetadata(user.user_metadata, body.user_metadata as Record<string, unknown>);
        if (typeof body.password === 'string') passwords.set(id, body.password);
        user.updated_at = now();
        return { status: 200, json: userJson(user) };
      }
    }
    if (path === '/api/v2/tickets/password-change' && method === 'POST') {
      need(scopes, 'create:user_tickets');
      if (typeof body.user_id !== 'string') throw new ApiError(400, 'Payload validation error: user_id or connection_id and email are required', 'invalid_body');
      if (body.client_id !== undefined && body.result_url !== undefined) throw new ApiError(400, 'Cannot specify both result_url and client_id in this tenant', 'invalid_body');
      findUser(body.user_id);
      const url = `https://${domain}/lo/reset?ticket=${randomBytes(18).toString('base64url')}#`;
      tickets.push({
        user_id: body.user_id,
        url,
        ...(typeof body.ttl_sec === 'number' && { ttl_sec: body.ttl_sec }),
        ...(typeof body.mark_email_as_verified === 'boolean' && { mark_email_as_verified: body.mark_email_as_verified }),
        ...(typeof body.client_id === 'string' && { client_id: body.client_id }),
        ...(typeof body.result_url === 'string' && { result_url: body.result_url }),
      });
      return { status: 201, json: { ticket: url } };
    }
    if (path === '/api/v2/roles' && method === 'GET') {
      need(scopes, 'read:roles');
      const filter = q.get('name_filter')?.toLowerCase();
      const list = [...roles.values()].filter((r) => !filter || r.name.toLowerCase().includes(filter)).map((r) => ({ id: r.id, name: r.name, description: r.description ?? '' }));
      return { status: 200, json: paged(list, q, 'roles') };
    }
    if ((m = /^\/api\/v2\/roles\/([^/]+)\/users$/.exec(path)) && method === 'GET') {
      need(scopes, 'read:users', 'read:roles', 'read:role_members');
      const role = findRole(decodeURIComponent(m[1]!));
      const holders = [...role.users].sort();
      const take = Number(q.get('take') ?? '50');
      if (!Number.isInteger(take) || take < 1 || take > maxPerPage) throw new ApiError(400, `Query validation error: take must be between 1 and ${maxPerPage}`, 'invalid_query_string');
      const from = q.get('from');
      let start = 0;
      if (from) {
        start = Number(Buffer.from(from, 'base64url').toString('utf8'));
        if (!Number.isInteger(start) || start < 0) throw new ApiError(400, 'Query validation error: invalid from', 'invalid_query_string');
      }
      const slice = holders.slice(start, start + take).map((id) => ({ user_id: id, email: users.get(id)?.email, name: users.get(id)?.name }));
      const end = start + slice.length;
      return { status: 200, json: { users: slice, ...(end < holders.length && { next: Buffer.from(String(end)).toString('base64url') }) } };
    }
    if ((m = /^\/api\/v2\/roles\/([^/]+)$/.exec(path)) && method === 'GET') {
      need(scopes, 'read:roles');
      const r = findRole(decodeURIComponent(m[1]!));
      return { status: 200, json: { id: r.id, name: r.name, description: r.description ?? '' } };
    }
    throw new ApiError(404, `Not Found: ${method} ${path}`);
  }

  async function readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    if (!raw) return {};
    if ((req.headers['content-type'] ?? '').includes('application/x-www-form-urlencoded')) return Object.fromEntries(new URLSearchParams(raw));
    return JSON.parse(raw) as Record<string, unknown>;
  }

  function send(res: ServerResponse, status: number, json: unknown, headers: Record<string, string> = {}): void {
    if (json === undefined) {
      res.writeHead(status, headers).end();
      return;
    }
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers }).end(JSON.stringify(json));
  }

  const server: Server = createServer({ cert: opts.cert, key: opts.key }, (req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', `https://${domain}`);
      const method = req.method ?? 'GET';
      let body: Record<string, unknown> = {};
      try {
        body = await readBody(req);
      } catch {
        send(res, 400, { statusCode: 400, error: 'Bad Request', message: 'Invalid request payload JSON format', errorCode: 'invalid_body' });
        return;
      }
      requests.push({ method, path: url.pathname, query: url.searchParams, body });
      const failure = failures.find((f) => f.path.test(url.pathname) && (!f.method || f.method === method));
      if (failure) {
        failure.times = (failure.times ?? 1) - 1;
        if (failure.times <= 0) failures.splice(failures.indexOf(failure), 1);
        if (url.pathname === '/oauth/token') {
          send(res, failure.status, { error: failure.errorCode ?? 'server_error', error_description: failure.message ?? REASONS[failure.status] }, failure.headers);
        } else {
          send(res, failure.status, { statusCode: failure.status, error: REASONS[failure.status] ?? 'Error', message: failure.message ?? REASONS[failure.status] ?? 'Error', ...(failure.errorCode && { errorCode: failure.errorCode }) }, failure.headers);
        }
        return;
      }
      if (url.pathname === '/oauth/token' && method === 'POST') {
        const answer = token(body);
        send(res, answer.status, answer.json);
        return;
      }
      try {
        const scopes = authenticate(req);
        const answer = api(method, url.pathname, url.searchParams, body, scopes);
        send(res, answer.status, answer.json);
      } catch (err) {
        if (!(err instanceof ApiError)) {
          send(res, 500, { statusCode: 500, error: 'Internal Server Error', message: String(err) });
          return;
        }
        send(res, err.status, { statusCode: err.status, error: REASONS[err.status] ?? 'Error', message: err.message, ...(err.errorCode && { errorCode: err.errorCode }) }, err.headers);
      }
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, opts.host ?? '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  domain = `${opts.host ?? '127.0.0.1'}:${port}`;

  return {
    domain,
    audience: `https://${domain}/api/v2/`,
    clients,
    connections,
    users,
    roles,
    tickets,
    passwords,
    requests,
    tokensIssued: () => issued,
    fail: (failure) => failures.push({ ...failure }),
    addRole(name) {
      const role: FakeRole = { id: `rol_${randomBytes(8).toString('hex')}`, name, users: new Set() };
      roles.set(role.id, role);
      return role;
    },
    addUser({ email, connection, ...rest }) {
      return newUser(email, connection ?? [...connections][0] ?? 'Username-Password-Authentication', rest);
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
