/**
 * A stateful fake of the two Google endpoints the google-groups connector talks to, on 127.0.0.1:
 *
 * - the OAuth 2.0 token endpoint for service accounts (jwt-bearer grant), which verifies the RS256
 *   assertion against the service account's public key and checks iss, sub (a user of the domain),
 *   aud, iat/exp and that every requested scope is delegated to the service account, answering
 *   Google's OAuth errors (invalid_grant, unauthorized_client) otherwise;
 * - the Admin SDK Directory API v1 (users get/update/patch/list, members get/insert/patch/delete/
 *   list) checking the access tokens it issued, their scopes and that the impersonated subject is an
 *   administrator, with small pages and Google's error envelope for every error.
 *
 * Tests (this folder's and others') use `startFakeGoogle()`: it answers the URLs to configure, a
 * service account key generated with node:crypto, the state (users, groups, members) to seed and
 * change behind the connector's back, programmable failures per operation, and a request log.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, verify, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';

export const GOOGLE_TOKEN_AUDIENCE = 'https://oauth2.googleapis.com/token';
export const SCOPES = {
  groupMember: 'https://www.googleapis.com/auth/admin.directory.group.member',
  group: 'https://www.googleapis.com/auth/admin.directory.group',
  userReadonly: 'https://www.googleapis.com/auth/admin.directory.user.readonly',
  user: 'https://www.googleapis.com/auth/admin.directory.user',
} as const;
const ALL_SCOPES = Object.values(SCOPES);

export type Operation =
  | 'token'
  | 'users.get'
  | 'users.update'
  | 'users.list'
  | 'members.get'
  | 'members.insert'
  | 'members.patch'
  | 'members.delete'
  | 'members.list';

export interface ServiceAccount {
  clientEmail: string;
  clientId: string;
  privateKeyPem: string;
  publicKey: KeyObject;
  /** Scopes granted to clientId through domain-wide delegation (the Admin console's list). */
  delegatedScopes: Set<string>;
  /** The JSON key file contents, as Google Cloud hands it out. */
  keyJson(): string;
}

export interface FakeUser {
  id: string;
  primaryEmail: string;
  aliases: string[];
  name: { givenName: string; familyName: string; fullName: string; displayName?: string };
  suspended: boolean;
  suspensionReason?: string;
  isAdmin: boolean;
}

export interface FakeMember {
  id: string;
  email: string;
  role: 'MEMBER' | 'MANAGER' | 'OWNER';
  type: 'USER' | 'GROUP';
  status: 'ACTIVE';
}

export interface FakeGroup {
  id: string;
  email: string;
  name: string;
  /** Keyed by lower-case email. */
  members: Map<string, FakeMember>;
}

export interface Failure {
  status: number;
  /** errors[0].reason of the envelope (or the OAuth `error` for the token operation). */
  reason?: string;
  message?: string;
  /** Retry-After header value. */
  retryAfter?: string;
  /** How many requests fail this way (default 1). */
  times?: number;
  /** Answer only after this long (to exercise the client's deadline). */
  delayMs?: number;
}

export interface RequestRecord {
  op: Operation | 'unknown';
  method: string;
  path: string;
  query: Record<string, string>;
  status: number;
}

export interface FakeGoogle {
  /** Root URL of the Directory API (the connector's rootUrl). */
  url: string;
  /** The token endpoint (the connector's tokenUrl). */
  tokenUrl: string;
  domain: string;
  customerId: string;
  /** A service account delegated every Directory scope the connector may ask for. */
  serviceAccount: ServiceAccount;
  /** A new service account (own key pair), delegated `delegatedScopes` (default: none). */
  createServiceAccount(opts?: { delegatedScopes?: string[] }): ServiceAccount;
  users: Map<string, FakeUser>;
  groups: Map<string, FakeGroup>;
  addUser(email: string, opts?: Partial<Omit<FakeUser, 'id' | 'primaryEmail'>>): FakeUser;
  user(email: string): FakeUser | undefined;
  addGroup(email: string, name?: string): FakeGroup;
  group(key: string): FakeGroup | undefined;
  addMember(group: string, email: string, role?: FakeMember['role'], type?: FakeMember['type']): FakeMember;
  removeMember(group: string, email: string): boolean;
  /** The member's role in the group, or undefined. */
  roleOf(group: string, email: string): string | undefined;
  fail(op: Operation, failure: Failure): void;
  clearFailures(): void;
  /** Runs `fn` once, just before the next `op` request is handled (to change state mid-operation). */
  before(op: Operation, fn: () => void): void;
  requests: RequestRecord[];
  count(op: Operation): number;
  /** Every access token issued, with what it was issued for. */
  tokens: Array<{ iss: string; sub: string | undefined; scopes: string[] }>;
  close(): Promise<void>;
}

const b64url = (buf: Buffer | string) => Buffer.from(buf).toString('base64url');

function googleStatus(code: number): string {
  if (code === 400) return 'INVALID_ARGUMENT';
  if (code === 401) return 'UNAUTHENTICATED';
  if (code === 403) return 'PERMISSION_DENIED';
  if (code === 404) return 'NOT_FOUND';
  if (code === 409) return 'ALREADY_EXISTS';
  if (code === 412) return 'FAILED_PRECONDITION';
  if (code === 429) return 'RESOURCE_EXHAUSTED';
  if (code === 503) return 'UNAVAILABLE';
  return code >= 500 ? 'INTERNAL' : 'UNKNOWN';
}

class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

class OAuthError extends Error {
  constructor(
    readonly code: number,
    readonly error: string,
    readonly description: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(description);
  }
}

function envelope(err: ApiError): unknown {
  return { error: { code: err.code, message: err.message, errors: [{ message: err.message, domain: err.code === 403 && /limit|quota/i.test(err.reason) ? 'usageLimits' : 'global', reason: err.reason }], status: googleStatus(err.code) } };
}

export async function startFakeGoogle(opts: { domain?: string; customerId?: string; pageSize?: number; admin?: string } = {}): Promise<FakeGoogle> {
  const domain = opts.domain ?? 'example.com';
  const customerId = opts.customerId ?? 'C01fake42';
  const pageSize = opts.pageSize ?? 2;
  const users = new Map<string, FakeUser>();
  const groups = new Map<string, FakeGroup>();
  const accounts = new Map<string, ServiceAccount>();
  const issued = new Map<string, { sub: string | undefined; scopes: Set<string>; expires: number }>();
  const tokens: FakeGoogle['tokens'] = [];
  const failures = new Map<Operation, Failure[]>();
  const hooks = new Map<Operation, Array<() => void>>();
  const requests: RequestRecord[] = [];
  let nextId = 100_000_000_000_000_000n;
  const newId = () => String(++nextId);

  function createServiceAccount(o: { delegatedScopes?: string[] } = {}): ServiceAccount {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const privateKeyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const clientId = newId();
    const clientEmail = `gateway-${clientId.slice(-6)}@fake-project.iam.gserviceaccount.com`;
    const sa: ServiceAccount = {
      clientEmail,
      clientId,
      privateKeyPem,
      publicKey: createPublicKey(createPrivateKey(privateKeyPem)),
      delegatedScopes: new Set(o.delegatedScopes ?? []),
      keyJson: () =>
        JSON.stringify({
          type: 'service_account',
          project_id: 'fake-project',
          private_key_id: randomBytes(20).toString('hex'),
          private_key: privateKeyPem,
          client_email: clientEmail,
          client_id: clientId,
          auth_uri: 'https://accounts.google.com/o/oauth2/auth',
          token_uri: GOOGLE_TOKEN_AUDIENCE,
        }),
    };
    accounts.set(clientEmail, sa);
    return sa;
  }

  const findUser = (key: string): FakeUser | undefined => {
    const k = key.toLowerCase();
    for (const u of users.values()) if (u.id === key || u.primaryEmail.toLowerCase() === k || u.aliases.some((a) => a.toLowerCase() === k)) return u;
    return undefined;
  };
  const findGroup = (key: string): FakeGroup | undefined => {
    const k = key.toLowerCase();
    for (const g of groups.values()) if (g.id === key || g.email.toLowerCase() === k) return g;
    return undefined;
  };

  function addUser(email: string, o: Partial<Omit<FakeUser, 'id' | 'primaryEmail'>> = {}): FakeUser {
    const local = email.split('@')[0] ?? email;
    const name = o.name ?? { givenName: local, familyName: 'Example', fullName: `${local} Example` };
    const user: FakeUser = { id: newId(), primaryEmail: email, aliases: o.aliases ?? [], name, suspended: o.suspended ?? false, isAdmin: o.isAdmin ?? false };
    users.set(user.id, user);
    return user;
  }

  function addGroup(email: string, name = email.split('@')[0] ?? email): FakeGroup {
    const group: FakeGroup = { id: `0${newId().slice(-11)}`, email, name, members: new Map() };
    groups.set(group.id, group);
    return group;
  }

  function addMember(groupKey: string, email: string, role: FakeMember['role'] = 'MEMBER', type: FakeMember['type'] = 'USER'): FakeMember {
    const g = findGroup(groupKey);
    if (!g) throw new Error(`no group ${groupKey}`);
    const u = type === 'USER' ? findUser(email) : undefined;
    const nested = type === 'GROUP' ? findGroup(email) : undefined;
    const member: FakeMember = { id: u?.id ?? nested?.id ?? newId(), email: u?.primaryEmail ?? nested?.email ?? email, role, type, status: 'ACTIVE' };
    g.members.set(member.email.toLowerCase(), member);
    return member;
  }

  // --- the token endpoint ------------------------------------------------------------------

  function issueToken(form: URLSearchParams): unknown {
    if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer') throw new OAuthError(400, 'unsupported_grant_type', 'Invalid grant_type: ' + (form.get('grant_type') ?? ''));
    const parts = (form.get('assertion') ?? '').split('.');
    if (parts.length !== 3) throw new OAuthError(400, 'invalid_request', 'Invalid JWT: malformed assertion');
    const [h, p, s] = parts as [string, string, string];
    let header: { alg?: string };
    let claims: { iss?: string; sub?: string; aud?: string; scope?: string; iat?: number; exp?: number };
    try {
      header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as typeof header;
      claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as typeof claims;
    } catch {
      throw new OAuthError(400, 'invalid_grant', 'Invalid JWT: the header or claim set is not JSON');
    }
    if (header.alg !== 'RS256') throw new OAuthError(400, 'invalid_grant', 'Invalid JWT: only RS256 is accepted');
    const sa = claims.iss ? accounts.get(claims.iss) : undefined;
    if (!sa || !verify('RSA-SHA256', Buffer.from(`${h}.${p}`), sa.publicKey, Buffer.from(s, 'base64url'))) throw new OAuthError(400, 'invalid_grant', 'Invalid JWT Signature.');
    if (claims.aud !== GOOGLE_TOKEN_AUDIENCE) throw new OAuthError(400, 'invalid_grant', 'Invalid JWT: Failed audience check.');
    const now = Math.floor(Date.now() / 1000);
    if (typeof claims.iat !== 'number' || typeof claims.exp !== 'number' || claims.iat > now + 300 || claims.exp <= now || claims.exp - claims.iat > 3600) {
      throw new OAuthError(400, 'invalid_grant', 'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.');
    }
    if (claims.sub !== undefined && !findUser(claims.sub)) throw new OAuthError(400, 'invalid_grant', 'Invalid email or User ID');
    const scopes = (claims.scope ?? '').split(' ').filter(Boolean);
    if (scopes.length === 0) throw new OAuthError(400, 'invalid_scope', 'Empty or missing scope not allowed.');
    if (claims.sub !== undefined && !scopes.every((x) => sa.delegatedScopes.has(x))) {
      throw new OAuthError(401, 'unauthorized_client', 'Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.');
    }
    const token = `ya29.fake-${randomBytes(24).toString('base64url')}`;
    issued.set(token, { sub: claims.sub, scopes: new Set(scopes), expires: Date.now() + 3600_000 });
    tokens.push({ iss: sa.clientEmail, sub: claims.sub, scopes });
    return { access_token: token, expires_in: 3599, token_type: 'Bearer' };
  }

  // --- the Directory API ---------------------------------------------------------------------

  const requiredScopes: Record<Exclude<Operation, 'token'>, string[]> = {
    'users.get': [SCOPES.user, SCOPES.userReadonly],
    'users.list': [SCOPES.user, SCOPES.userReadonly],
    'users.update': [SCOPES.user],
    'members.get': [SCOPES.group, SCOPES.groupMember],
    'members.list': [SCOPES.group, SCOPES.groupMember],
    'members.insert': [SCOPES.group, SCOPES.groupMember],
    'members.patch': [SCOPES.group, SCOPES.groupMember],
    'members.delete': [SCOPES.group, SCOPES.groupMember],
  };

  function authorize(req: IncomingMessage, op: Exclude<Operation, 'token'>): void {
    const auth = req.headers.authorization ?? '';
    const token = auth.startsWith('Bearer ') ? issued.get(auth.slice(7)) : undefined;
    if (!token || token.expires < Date.now()) throw new ApiError(401, 'authError', 'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.');
    if (!requiredScopes[op].some((x) => token.scopes.has(x))) throw new ApiError(403, 'insufficientPermissions', 'Request had insufficient authentication scopes.');
    const subject = token.sub ? findUser(token.sub) : undefined;
    if (!subject?.isAdmin || subject.suspended) throw new ApiError(403, 'forbidden', 'Not Authorized to access this resource/api');
  }

  function page<T>(items: T[], query: URLSearchParams, scope: string, max: number): { items: T[]; next?: string } {
    const size = Math.min(Number(query.get('maxResults') ?? max) || max, pageSize);
    let offset = 0;
    const tokenParam = query.get('pageToken');
    if (tokenParam) {
      try {
        const decoded = JSON.parse(Buffer.from(tokenParam, 'base64url').toString('utf8')) as { s?: string; o?: number };
        if (decoded.s !== scope || typeof decoded.o !== 'number') throw new Error('other listing');
        offset = decoded.o;
      } catch {
        throw new ApiError(400, 'invalid', 'Invalid Input: pageToken');
      }
    }
    const slice = items.slice(offset, offset + size);
    const end = offset + size;
    return { items: slice, ...(end < items.length ? { next: b64url(JSON.stringify({ s: scope, o: end })) } : {}) };
  }

  const userJson = (u: FakeUser) => ({
    kind: 'admin#directory#user',
    id: u.id,
    primaryEmail: u.primaryEmail,
    name: u.name,
    isAdmin: u.isAdmin,
    suspended: u.suspended,
    ...(u.suspensionReason ? { suspensionReason: u.suspensionReason } : {}),
    ...(u.aliases.length > 0 ? { aliases: u.aliases } : {}),
    customerId,
    orgUnitPath: '/',
  });
  const memberJson = (m: FakeMember) => ({ kind: 'admin#directory#member', etag: `"${m.id}-${m.role}"`, ...m });

  function route(method: string, path: string): { op: Operation; params: string[] } | undefined {
    if (method === 'POST' && path === '/token') return { op: 'token', params: [] };
    const m = /^\/admin\/directory\/v1\/(users|groups)(?:\/([^/]+))?(?:\/(members)(?:\/([^/]+))?)?$/.exec(path);
    if (!m) return undefined;
    const [, kind, key, members, memberKey] = m;
    const params = [key, memberKey].filter((x): x is string => x !== undefined).map((x) => decodeURIComponent(x));
    if (kind === 'users' && !members) {
      if (!key) return method === 'GET' ? { op: 'users.list', params } : undefined;
      if (method === 'GET') return { op: 'users.get', params };
      if (method === 'PUT' || method === 'PATCH') return { op: 'users.update', params };
      return undefined;
    }
    if (kind === 'groups' && key && members) {
      if (!memberKey) return method === 'GET' ? { op: 'members.list', params } : method === 'POST' ? { op: 'members.insert', params } : undefined;
      if (method === 'GET') return { op: 'members.get', params };
      if (method === 'PATCH' || method === 'PUT') return { op: 'members.patch', params };
      if (method === 'DELETE') return { op: 'members.delete', params };
    }
    return undefined;
  }

  function handle(op: Exclude<Operation, 'token'>, params: string[], query: URLSearchParams, body: Record<string, unknown>): { status: number; body?: unknown } {
    const groupOf = (key: string) => {
      const g = findGroup(key);
      if (!g) throw new ApiError(404, 'notFound', 'Resource Not Found: groupKey');
      return g;
    };
    const memberOf = (g: FakeGroup, key: string) => {
      const k = key.toLowerCase();
      const u = findUser(key);
      const m = g.members.get(k) ?? (u ? g.members.get(u.primaryEmail.toLowerCase()) : undefined) ?? [...g.members.values()].find((x) => x.id === key);
      if (!m) throw new ApiError(404, 'notFound', 'Resource Not Found: memberKey');
      return m;
    };
    const roleOf = (value: unknown): FakeMember['role'] => {
      const role = value ?? 'MEMBER';
      if (role !== 'MEMBER' && role !== 'MANAGER' && role !== 'OWNER') throw new ApiError(400, 'invalid', 'Invalid Input: role');
      return role;
    };
    const [key = '', memberKey = ''] = params;
    switch (op) {
      case 'users.get': {
        const u = findUser(key);
        if (!u) throw new ApiError(404, 'notFound', 'Resource Not Found: userKey');
        return { status: 200, body: userJson(u) };
      }
      case 'users.update': {
        const u = findUser(key);
        if (!u) throw new ApiError(404, 'notFound', 'Resource Not Found: userKey');
        if (typeof body.suspended === 'boolean') {
          u.suspended = body.suspended;
          if (u.suspended) u.suspensionReason = 'ADMIN';
          else delete u.suspensionReason;
        }
        if (body.name && typeof body.name === 'object') {
          const n = body.name as Record<string, unknown>;
          if (n.givenName === '' || n.familyName === '') throw new ApiError(400, 'invalid', 'Invalid Given/Family Name');
          for (const f of ['givenName', 'familyName', 'displayName'] as const) if (typeof n[f] === 'string') u.name[f] = n[f];
          u.name.fullName = `${u.name.givenName} ${u.name.familyName}`;
        }
        return { status: 200, body: userJson(u) };
      }
      case 'users.list': {
        const customer = query.get('customer');
        const dom = query.get('domain');
        if (!customer && !dom) throw new ApiError(400, 'badRequest', 'Bad Request');
        if (customer && customer !== 'my_customer' && customer !== customerId) throw new ApiError(400, 'badRequest', 'Bad Request');
        if (dom && dom !== domain) throw new ApiError(404, 'notFound', 'Domain not found.');
        const all = [...users.values()].sort((a, b) => a.primaryEmail.localeCompare(b.primaryEmail));
        const p = page(all, query, `users:${dom ?? customer}`, 100);
        return { status: 200, body: { kind: 'admin#directory#users', etag: '"u"', ...(p.items.length > 0 ? { users: p.items.map(userJson) } : {}), ...(p.next ? { nextPageToken: p.next } : {}) } };
      }
      case 'members.list': {
        const g = groupOf(key);
        const roles = query.get('roles')?.split(',').filter(Boolean);
        const all = [...g.members.values()].filter((m) => !roles || roles.includes(m.role));
        const p = page(all, query, `members:${g.id}:${roles?.join(',') ?? ''}`, 200);
        return { status: 200, body: { kind: 'admin#directory#members', etag: '"m"', ...(p.items.length > 0 ? { members: p.items.map(memberJson) } : {}), ...(p.next ? { nextPageToken: p.next } : {}) } };
      }
      case 'members.get': {
        return { status: 200, body: memberJson(memberOf(groupOf(key), memberKey)) };
      }
      case 'members.insert': {
        const g = groupOf(key);
        const email = typeof body.email === 'string' ? body.email : typeof body.id === 'string' ? body.id : '';
        const role = roleOf(body.role);
        const u = findUser(email);
        if (!u) throw new ApiError(404, 'notFound', 'Resource Not Found: memberKey');
        if (g.members.has(u.primaryEmail.toLowerCase())) throw new ApiError(409, 'duplicate', 'Member already exists.');
        return { status: 200, body: memberJson(addMember(g.id, u.primaryEmail, role)) };
      }
      case 'members.patch': {
        const m = memberOf(groupOf(key), memberKey);
        if (body.role !== undefined) m.role = roleOf(body.role);
        return { status: 200, body: memberJson(m) };
      }
      case 'members.delete': {
        const g = groupOf(key);
        const m = memberOf(g, memberKey);
        g.members.delete(m.email.toLowerCase());
        return { status: 204 };
      }
    }
  }

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://fake.local');
      const method = req.method ?? 'GET';
      const record: RequestRecord = { op: 'unknown', method, path: url.pathname, query: Object.fromEntries(url.searchParams), status: 0 };
      requests.push(record);
      const send = (status: number, body?: unknown, headers: Record<string, string> = {}) => {
        record.status = status;
        if (body === undefined) res.writeHead(status, headers).end();
        else res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8', ...headers }).end(JSON.stringify(body));
      };
      const r = route(method, url.pathname);
      if (!r) {
        send(404, envelope(new ApiError(404, 'notFound', `Not Found: ${method} ${url.pathname}`)));
        return;
      }
      record.op = r.op;
      const raw = Buffer.concat(chunks).toString('utf8');
      const hook = hooks.get(r.op)?.shift();
      if (hook) hook();
      const queued = failures.get(r.op);
      const failure = queued?.[0];
      if (failure) {
        failure.times = (failure.times ?? 1) - 1;
        if (failure.times <= 0) queued.shift();
        const headers: Record<string, string> = failure.retryAfter ? { 'retry-after': failure.retryAfter } : {};
        const answer = () => {
          if (res.destroyed) return;
          if (r.op === 'token') send(failure.status, { error: failure.reason ?? 'internal_failure', error_description: failure.message ?? 'injected failure' }, headers);
          else send(failure.status, envelope(new ApiError(failure.status, failure.reason ?? 'backendError', failure.message ?? 'injected failure')), headers);
        };
        if (failure.delayMs) setTimeout(answer, failure.delayMs).unref();
        else answer();
        return;
      }
      try {
        if (r.op === 'token') {
          send(200, issueToken(new URLSearchParams(raw)));
          return;
        }
        authorize(req, r.op);
        let body: Record<string, unknown> = {};
        if (raw) {
          try {
            body = JSON.parse(raw) as Record<string, unknown>;
          } catch {
            throw new ApiError(400, 'parseError', 'Parse Error');
          }
        }
        const out = handle(r.op, r.params, url.searchParams, body);
        send(out.status, out.body);
      } catch (err) {
        if (err instanceof OAuthError) send(err.code, { error: err.error, error_description: err.description }, err.headers);
        else if (err instanceof ApiError) send(err.code, envelope(err), err.headers);
        else send(500, envelope(new ApiError(500, 'backendError', String(err))));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  const serviceAccount = createServiceAccount({ delegatedScopes: ALL_SCOPES });
  addUser(opts.admin ?? `admin@${domain}`, { isAdmin: true });

  return {
    url: `http://127.0.0.1:${port}/`,
    tokenUrl: `http://127.0.0.1:${port}/token`,
    domain,
    customerId,
    serviceAccount,
    createServiceAccount,
    users,
    groups,
    addUser,
    user: findUser,
    addGroup,
    group: findGroup,
    addMember,
    removeMember: (group, email) => {
      const g = findGroup(group);
      const u = findUser(email);
      return !!g && g.members.delete((u?.primaryEmail ?? email).toLowerCase());
    },
    roleOf: (group, email) => {
      const g = findGroup(group);
      const u = findUser(email);
      return g?.members.get((u?.primaryEmail ?? email).toLowerCase())?.role;
    },
    fail: (op, failure) => {
      const list = failures.get(op) ?? [];
      list.push({ ...failure });
      failures.set(op, list);
    },
    clearFailures: () => failures.clear(),
    before: (op, fn) => {
      const list = hooks.get(op) ?? [];
      list.push(fn);
      hooks.set(op, list);
    },
    requests,
    count: (op) => requests.filter((r) => r.op === op).length,
    tokens,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}
