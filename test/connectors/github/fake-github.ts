/**
 * A stateful fake of the parts of GitHub's REST API the github connector uses, on 127.0.0.1: an
 * organization with members and roles, pending memberships and email invitations, teams with
 * members and roles, Link-header pagination (small pages), authentication (personal access tokens;
 * App JWTs verified with the App's public key and exchanged for expiring installation tokens), and
 * injected failures (rate limits, permission errors). Answers follow the official OpenAPI
 * description (checked by running the tests through ./prism.ts). Reusable from any test file.
 */
import { createPublicKey, createVerify, randomBytes, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';

export type OrgRole = 'admin' | 'member';
export type TeamRole = 'member' | 'maintainer';

export interface FakeInvitation {
  id: number;
  /** Set for a person invited by username (a pending membership). */
  login: string | null;
  email: string | null;
  role: 'admin' | 'direct_member';
  createdAt: string;
  /** Team slug → the role they will have once they accept. */
  teams: Map<string, TeamRole>;
}

export interface FakeTeam {
  id: number;
  slug: string;
  name: string;
  members: Map<string, TeamRole>;
}

export interface Fault {
  /** Matched against "METHOD /path" (no query); every request when absent. */
  match?: RegExp;
  status: number;
  headers?: Record<string, string>;
  body?: unknown;
  /** How many matching requests get this answer (default 1). */
  times?: number;
}

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  body: unknown;
  authorization: string | undefined;
}

export interface FakeGitHubOptions {
  org?: string;
  /** Largest page served whatever per_page asks (default 2, so paging is exercised). */
  maxPageSize?: number;
  /** Accepted personal access tokens. */
  tokens?: string[];
  /** A GitHub App allowed to act on the organization. */
  app?: { appId: number; publicKeyPem: string; installationId: number };
  /** Lifetime of installation tokens (default one hour, as on GitHub). */
  installationTokenTtlMs?: number;
}

export interface FakeGitHub {
  url: string;
  org: string;
  /** GitHub accounts that exist (lowercased login → login as spelt). */
  users: Map<string, { login: string; id: number }>;
  /** Active organization members (lowercased login → role). */
  members: Map<string, OrgRole>;
  invitations: Map<number, FakeInvitation>;
  teams: Map<string, FakeTeam>;
  faults: Fault[];
  requests: RecordedRequest[];
  /** Installation tokens issued so far. */
  installationTokens: Array<{ token: string; expiresAt: number }>;
  options: Required<Pick<FakeGitHubOptions, 'maxPageSize' | 'installationTokenTtlMs'>>;
  /** A GitHub account exists (needed before it can be added by username). */
  addUser(login: string): void;
  /** Puts an existing user straight into the organization (and optionally teams), as drift or seed. */
  addMember(login: string, role?: OrgRole, teams?: Record<string, TeamRole>): void;
  addTeam(slug: string, name?: string): FakeTeam;
  /** The pending invitation for `login` is accepted: they become an active member of the org and its teams. */
  accept(login: string): void;
  /** Removes a member directly (drift): from the org and every team. */
  removeMember(login: string): void;
  /** The next matching requests get this answer instead. */
  inject(fault: Fault): void;
  close(): Promise<void>;
}

const ISO = () => new Date().toISOString();

function userObject(base: string, login: string, id: number): Record<string, unknown> {
  const u = `${base}/users/${login}`;
  return {
    login,
    id,
    node_id: `U_${id}`,
    avatar_url: `https://avatars.example.test/u/${id}`,
    gravatar_id: '',
    url: u,
    html_url: `https://github.example.test/${login}`,
    followers_url: `${u}/followers`,
    following_url: `${u}/following{/other_user}`,
    gists_url: `${u}/gists{/gist_id}`,
    starred_url: `${u}/starred{/owner}{/repo}`,
    subscriptions_url: `${u}/subscriptions`,
    organizations_url: `${u}/orgs`,
    repos_url: `${u}/repos`,
    events_url: `${u}/events{/privacy}`,
    received_events_url: `${u}/received_events`,
    type: 'User',
    site_admin: false,
  };
}

function orgSimple(base: string, org: string): Record<string, unknown> {
  const u = `${base}/orgs/${org}`;
  return {
    login: org,
    id: 1000,
    node_id: 'O_1000',
    url: u,
    repos_url: `${u}/repos`,
    events_url: `${u}/events`,
    hooks_url: `${u}/hooks`,
    issues_url: `${u}/issues`,
    members_url: `${u}/members{/member}`,
    public_members_url: `${u}/public_members{/member}`,
    avatar_url: 'https://avatars.example.test/o/1000',
    description: 'A fake organization',
  };
}

/** Verifies an RS256 JWT with `key`; answers its payload or why it is refused. */
function verifyJwt(jwt: string, key: KeyObject): { ok: true; payload: Record<string, unknown> } | { ok: false; reason: string } {
  const parts = jwt.split('.');
  if (parts.length !== 3) return { ok: false, reason: 'A JSON web token could not be decoded' };
  const [h, p, s] = parts as [string, string, string];
  let header: { alg?: string };
  let payload: Record<string, unknown>;
  try {
    header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as { alg?: string };
    payload = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch {
    return { ok: false, reason: 'A JSON web token could not be decoded' };
  }
  if (header.alg !== 'RS256') return { ok: false, reason: `'alg' must be RS256` };
  const verifier = createVerify('RSA-SHA256');
  verifier.update(`${h}.${p}`);
  if (!verifier.verify(key, Buffer.from(s, 'base64url'))) return { ok: false, reason: 'A JSON web token could not be decoded' };
  const now = Math.floor(Date.now() / 1000);
  if (typeof payload.exp !== 'number' || payload.exp < now) return { ok: false, reason: "'Expiration time' claim ('exp') must be a numeric value representing the future time" };
  if (typeof payload.iat !== 'number' || payload.iat > now + 60) return { ok: false, reason: "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued" };
  if (payload.exp - payload.iat > 600) return { ok: false, reason: "'Expiration time' claim ('exp') is too far in the future" };
  return { ok: true, payload };
}

export async function startFakeGitHub(opts: FakeGitHubOptions = {}): Promise<FakeGitHub> {
  const org = opts.org ?? 'acme';
  const tokens = new Set(opts.tokens ?? []);
  const appKey = opts.app ? createPublicKey(opts.app.publicKeyPem) : undefined;
  let nextId = 5000;
  let base = '';

  const state: Omit<FakeGitHub, 'url' | 'close'> = {
    org,
    users: new Map(),
    members: new Map(),
    invitations: new Map(),
    teams: new Map(),
    faults: [],
    requests: [],
    installationTokens: [],
    options: { maxPageSize: opts.maxPageSize ?? 2, installationTokenTtlMs: opts.installationTokenTtlMs ?? 3_600_000 },
    addUser(login) {
      if (!state.users.has(login.toLowerCase())) state.users.set(login.toLowerCase(), { login, id: nextId++ });
    },
    addMember(login, role = 'member', teams = {}) {
      state.addUser(login);
      const key = login.toLowerCase();
      state.members.set(key, role);
      for (const [slug, teamRole] of Object.entries(teams)) (state.teams.get(slug) ?? state.addTeam(slug)).members.set(key, teamRole);
    },
    addTeam(slug, name = slug) {
      const team = { id: nextId++, slug, name, members: new Map<string, TeamRole>() };
      state.teams.set(slug, team);
      return team;
    },
    accept(login) {
      const key = login.toLowerCase();
      const inv = [...state.invitations.values()].find((i) => i.login?.toLowerCase() === key);
      if (!inv) throw new Error(`no pending invitation for ${login}`);
      state.invitations.delete(inv.id);
      state.members.set(key, inv.role === 'admin' ? 'admin' : 'member');
      for (const [slug, role] of inv.teams) state.teams.get(slug)?.members.set(key, role);
    },
    removeMember(login) {
      const key = login.toLowerCase();
      state.members.delete(key);
      for (const team of state.teams.values()) team.members.delete(key);
    },
    inject(fault) {
      state.faults.push({ times: 1, ...fault });
    },
  };

  const pendingFor = (key: string) => [...state.invitations.values()].find((i) => i.login?.toLowerCase() === key);
  const login = (key: string) => state.users.get(key)?.login ?? key;

  const json = (res: ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}) => {
    const rateHeaders = { 'x-ratelimit-limit': '5000', 'x-ratelimit-remaining': '4999', 'x-ratelimit-reset': String(Math.floor(Date.now() / 1000) + 3600), 'x-github-api-version-selected': '2022-11-28' };
    if (body === undefined) {
      res.writeHead(status, { ...rateHeaders, ...headers }).end();
      return;
    }
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...rateHeaders, ...headers }).end(JSON.stringify(body));
  };
  const error = (res: ServerResponse, status: number, message: string) =>
    json(res, status, { message, documentation_url: 'https://docs.github.com/rest', status: String(status) });

  /** Serves `items` one page at a time with GitHub's Link header. */
  const paged = (res: ServerResponse, path: string, query: Record<string, string>, items: unknown[]) => {
    const perPage = Math.min(Number(query.per_page ?? 30) || 30, 100, state.options.maxPageSize);
    const page = Math.max(1, Number(query.page ?? 1) || 1);
    const last = Math.max(1, Math.ceil(items.length / perPage));
    const link = (p: number) => {
      const q = new URLSearchParams({ ...query, per_page: String(perPage), page: String(p) });
      return `<${base}${path}?${q.toString()}>`;
    };
    const rels: string[] = [];
    if (page < last) rels.push(`${link(page + 1)}; rel="next"`, `${link(last)}; rel="last"`);
    if (page > 1) rels.push(`${link(page - 1)}; rel="prev"`, `${link(1)}; rel="first"`);
    json(res, 200, items.slice((page - 1) * perPage, page * perPage), rels.length ? { link: rels.join(', ') } : {});
  };

  const invitationObject = (inv: FakeInvitation) => ({
    id: inv.id,
    node_id: `OI_${inv.id}`,
    login: inv.login,
    email: inv.email,
    role: inv.role,
    created_at: inv.createdAt,
    inviter: userObject(base, 'octo-admin', 1),
    team_count: inv.teams.size,
    invitation_teams_url: `${base}/organizations/1000/invitations/${inv.id}/teams`,
    invitation_source: 'member',
  });
  const membershipObject = (key: string, state_: 'active' | 'pending', role: string) => ({
    url: `${base}/orgs/${org}/memberships/${login(key)}`,
    state: state_,
    role,
    organization_url: `${base}/orgs/${org}`,
    organization: orgSimple(base, org),
    user: userObject(base, login(key), state.users.get(key)?.id ?? 0),
  });
  const teamObject = (t: FakeTeam) => ({
    id: t.id,
    node_id: `T_${t.id}`,
    url: `${base}/organizations/1000/team/${t.id}`,
    html_url: `https://github.example.test/orgs/${org}/teams/${t.slug}`,
    name: t.name,
    slug: t.slug,
    description: null,
    privacy: 'closed',
    notification_setting: 'notifications_enabled',
    permission: 'pull',
    members_url: `${base}/organizations/1000/team/${t.id}/members{/member}`,
    repositories_url: `${base}/organizations/1000/team/${t.id}/repos`,
    type: 'organization',
    parent: null,
  });

  const authenticate = (req: IncomingMessage, path: string): { ok: true } | { ok: false; status: number; message: string } => {
    const header = req.headers.authorization ?? '';
    const [scheme, credential] = header.split(' ', 2) as [string, string | undefined];
    if (path.startsWith('/app/')) {
      if (!appKey || scheme.toLowerCase() !== 'bearer' || !credential) return { ok: false, status: 401, message: 'A JSON web token could not be decoded' };
      const v = verifyJwt(credential, appKey);
      if (!v.ok) return { ok: false, status: 401, message: v.reason };
      if (String(v.payload.iss) !== String(opts.app!.appId)) return { ok: false, status: 401, message: "'Issuer' claim ('iss') must be an Integer" };
      return { ok: true };
    }
    if (!credential || !['token', 'bearer'].includes(scheme.toLowerCase())) return { ok: false, status: 401, message: 'Requires authentication' };
    if (tokens.has(credential)) return { ok: true };
    const issued = state.installationTokens.find((t) => t.token === credential);
    if (issued && issued.expiresAt > Date.now()) return { ok: true };
    return { ok: false, status: 401, message: 'Bad credentials' };
  };

  const handle = (req: IncomingMessage, res: ServerResponse, raw: string) => {
    const url = new URL(req.url ?? '/', 'http://fake');
    const path = url.pathname;
    const query = Object.fromEntries(url.searchParams.entries());
    let body: Record<string, unknown> = {};
    if (raw.trim() !== '') {
      try {
        body = JSON.parse(raw) as Record<string, unknown>;
      } catch {
        error(res, 400, 'Problems parsing JSON');
        return;
      }
    }
    const method = req.method ?? 'GET';
    state.requests.push({ method, path, query, body: raw ? body : undefined, authorization: req.headers.authorization });

    const faultIndex = state.faults.findIndex((f) => !f.match || f.match.test(`${method} ${path}`));
    if (faultIndex !== -1) {
      const fault = state.faults[faultIndex]!;
      fault.times = (fault.times ?? 1) - 1;
      if (fault.times <= 0) state.faults.splice(faultIndex, 1);
      json(res, fault.status, fault.body ?? { message: 'injected failure', documentation_url: 'https://docs.github.com/rest' }, fault.headers ?? {});
      return;
    }

    const auth = authenticate(req, path);
    if (!auth.ok) {
      error(res, auth.status, auth.message);
      return;
    }

    let m: RegExpExecArray | null;
    if (method === 'POST' && (m = /^\/app\/installations\/(\d+)\/access_tokens$/.exec(path))) {
      if (Number(m[1]) !== opts.app?.installationId) return error(res, 404, 'Not Found');
      const token = `ghs_${randomBytes(18).toString('hex')}`;
      const expiresAt = Date.now() + state.options.installationTokenTtlMs;
      state.installationTokens.push({ token, expiresAt });
      return json(res, 201, { token, expires_at: new Date(expiresAt).toISOString(), permissions: { members: 'write' }, repository_selection: 'all' });
    }

    const orgPath = /^\/orgs\/([^/]+)(\/.*)?$/.exec(path);
    if (!orgPath || orgPath[1]!.toLowerCase() !== org.toLowerCase()) return error(res, 404, 'Not Found');
    const rest = orgPath[2] ?? '';

    if (method === 'GET' && rest === '') {
      return json(res, 200, {
        ...orgSimple(base, org),
        name: 'Acme',
        is_verified: false,
        has_organization_projects: true,
        has_repository_projects: true,
        public_repos: 0,
        public_gists: 0,
        followers: 0,
        following: 0,
        html_url: `https://github.example.test/${org}`,
        created_at: '2020-01-01T00:00:00Z',
        updated_at: '2020-01-01T00:00:00Z',
        archived_at: null,
        type: 'Organization',
      });
    }

    if (method === 'GET' && rest === '/members') {
      const role = query.role ?? 'all';
      const keys = [...state.members.entries()].filter(([, r]) => role === 'all' || r === role).map(([k]) => k).sort();
      return paged(res, path, query, keys.map((k) => userObject(base, login(k), state.users.get(k)!.id)));
    }

    if ((m = /^\/memberships\/([^/]+)$/.exec(rest))) {
      const key = decodeURIComponent(m[1]!).toLowerCase();
      const active = state.members.get(key);
      const pending = pendingFor(key);
      if (method === 'GET') {
        if (active) return json(res, 200, membershipObject(key, 'active', active));
        if (pending) return json(res, 200, membershipObject(key, 'pending', pending.role === 'admin' ? 'admin' : 'member'));
        return error(res, 404, 'Not Found');
      }
      if (method === 'PUT') {
        const role = (body.role as OrgRole | undefined) ?? 'member';
        if (role !== 'admin' && role !== 'member') return json(res, 422, { message: 'Validation Failed', documentation_url: 'https://docs.github.com/rest' });
        if (active) {
          state.members.set(key, role);
          return json(res, 200, membershipObject(key, 'active', role));
        }
        if (!state.users.has(key)) return error(res, 404, 'Not Found');
        const inv = pending ?? { id: nextId++, login: login(key), email: null, role: 'direct_member' as const, createdAt: ISO(), teams: new Map<string, TeamRole>() };
        inv.role = role === 'admin' ? 'admin' : 'direct_member';
        state.invitations.set(inv.id, inv);
        return json(res, 200, membershipObject(key, 'pending', role));
      }
      if (method === 'DELETE') {
        if (active) {
          state.removeMember(key);
          return json(res, 204);
        }
        if (pending) {
          state.invitations.delete(pending.id);
          return json(res, 204);
        }
        return error(res, 404, 'Not Found');
      }
    }

    if (rest === '/invitations') {
      if (method === 'GET') return paged(res, path, query, [...state.invitations.values()].sort((a, b) => a.id - b.id).map(invitationObject));
      if (method === 'POST') {
        const email = typeof body.email === 'string' ? body.email : undefined;
        if (!email || !/^[^@\s]+@[^@\s]+$/.test(email)) return json(res, 422, { message: 'Validation Failed', errors: [{ resource: 'OrganizationInvitation', code: 'invalid', field: 'email' }], documentation_url: 'https://docs.github.com/rest' });
        if ([...state.invitations.values()].some((i) => i.email?.toLowerCase() === email.toLowerCase())) {
          return json(res, 422, { message: 'Validation Failed', errors: [{ resource: 'OrganizationInvitation', code: 'unprocessable', field: 'data', message: 'Invitee is already a part of this organization' }], documentation_url: 'https://docs.github.com/rest' });
        }
        const role = body.role === 'admin' ? 'admin' : 'direct_member';
        const inv: FakeInvitation = { id: nextId++, login: null, email, role, createdAt: ISO(), teams: new Map() };
        state.invitations.set(inv.id, inv);
        return json(res, 201, invitationObject(inv));
      }
    }

    if (method === 'DELETE' && (m = /^\/invitations\/(\d+)$/.exec(rest))) {
      if (!state.invitations.delete(Number(m[1]))) return error(res, 404, 'Not Found');
      return json(res, 204);
    }

    if (method === 'GET' && rest === '/teams') return paged(res, path, query, [...state.teams.values()].sort((a, b) => a.id - b.id).map(teamObject));

    if ((m = /^\/teams\/([^/]+)(\/.*)$/.exec(rest))) {
      const team = state.teams.get(decodeURIComponent(m[1]!));
      if (!team) return error(res, 404, 'Not Found');
      const sub = m[2]!;
      if (method === 'GET' && sub === '/members') {
        const role = query.role ?? 'all';
        const keys = [...team.members.entries()].filter(([, r]) => role === 'all' || r === role).map(([k]) => k).sort();
        return paged(res, path, query, keys.map((k) => userObject(base, login(k), state.users.get(k)!.id)));
      }
      if (method === 'GET' && sub === '/invitations') {
        return paged(res, path, query, [...state.invitations.values()].filter((i) => i.teams.has(team.slug)).sort((a, b) => a.id - b.id).map(invitationObject));
      }
      const tm = /^\/memberships\/([^/]+)$/.exec(sub);
      if (tm) {
        const key = decodeURIComponent(tm[1]!).toLowerCase();
        const activeRole = team.members.get(key);
        const pending = pendingFor(key);
        const object = (role: TeamRole, s: 'active' | 'pending') => ({ url: `${base}/organizations/1000/team/${team.id}/memberships/${login(key)}`, role, state: s });
        if (method === 'GET') {
          if (activeRole) return json(res, 200, object(activeRole, 'active'));
          const pendingRole = pending?.teams.get(team.slug);
          if (pendingRole) return json(res, 200, object(pendingRole, 'pending'));
          return error(res, 404, 'Not Found');
        }
        if (method === 'PUT') {
          const role = (body.role as TeamRole | undefined) ?? 'member';
          if (state.members.has(key)) {
            team.members.set(key, role);
            return json(res, 200, object(role, 'active'));
          }
          if (!state.users.has(key)) return error(res, 404, 'Not Found');
          // Not in the organization yet: GitHub invites them; the team membership waits for acceptance.
          const inv = pending ?? { id: nextId++, login: login(key), email: null, role: 'direct_member' as const, createdAt: ISO(), teams: new Map<string, TeamRole>() };
          inv.teams.set(team.slug, role);
          state.invitations.set(inv.id, inv);
          return json(res, 200, object(role, 'pending'));
        }
        if (method === 'DELETE') {
          if (team.members.delete(key) || pending?.teams.delete(team.slug)) return json(res, 204);
          return error(res, 404, 'Not Found');
        }
      }
    }
    error(res, 404, 'Not Found');
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      try {
        handle(req, res, Buffer.concat(chunks).toString('utf8'));
      } catch (err) {
        error(res, 500, `fake failure: ${(err as Error).message}`);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  // The maps and arrays are shared with `state`, which the methods close over.
  return {
    ...state,
    url: base,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
