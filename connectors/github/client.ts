/**
 * The github connector's HTTP side: one @octokit/rest client per instance, authenticated with a
 * personal access token or as a GitHub App installation, and every failure classified for the engine.
 *
 * - Nothing here retries. @octokit/rest bundles no retry or throttling plugin, and the App's
 *   installation token is obtained through @octokit/auth-app's `auth()` (which creates, caches and
 *   refreshes it) rather than as Octokit's authStrategy, whose request hook waits and repeats a
 *   request answered 401 within five seconds of a token's creation. Rate limits become a
 *   TransientError carrying the wait GitHub asked for; the engine does the waiting.
 * - Secrets (the token, the App's private key) are resolved when a request needs them, sent only as
 *   intended, and scrubbed from any text that reaches an error.
 * - Redirects are not followed: credentials are for the configured base URL only.
 */
import { createAppAuth } from '@octokit/auth-app';
import { Octokit } from '@octokit/rest';
import { PermanentError, TransientError, retryAfterMs } from '@scim-gateway/connector-sdk';

export const DEFAULT_BASE_URL = 'https://api.github.com';
export const DEFAULT_TIMEOUT_MS = 30_000;
/** GitHub's documented advice when a secondary rate limit names no wait: at least a minute. */
export const SECONDARY_RATE_LIMIT_WAIT_MS = 60_000;
/** An installation token with less than this left is replaced before use. */
const TOKEN_REFRESH_MARGIN_MS = 60_000;

export type GitHubAuth =
  | { kind: 'token'; token: () => Promise<string> }
  | { kind: 'app'; appId: string; installationId: number; privateKey: () => Promise<string> };

export interface GitHubClientOptions {
  baseUrl: string;
  auth: GitHubAuth;
  timeoutMs?: number | undefined;
  pageSize: number;
}

export interface GitHubResponse<T> {
  status: number;
  data: T;
  headers: Record<string, string | number | undefined>;
}

/** One page of a listing and the number of the next page (from the Link header), if any. */
export interface ListPage<T> {
  items: T[];
  nextPage?: number | undefined;
}

interface OctokitFailure {
  status?: number;
  message?: string;
  response?: { status: number; headers: Record<string, string | number | undefined>; data: unknown };
  cause?: unknown;
}

const quietLog = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

function scrub(text: string, secrets: string[]): string {
  let out = text;
  for (const s of secrets) if (s.length >= 4) out = out.split(s).join('[redacted]');
  return out;
}

/** GitHub's explanation in an error body: `message`, plus the field errors of a 422. */
function githubMessage(data: unknown): string {
  if (typeof data === 'string') return data;
  const body = data as { message?: unknown; errors?: unknown; title?: unknown } | undefined;
  // A proxy in front of GitHub may answer RFC 9457 problem details instead.
  let msg = typeof body?.message === 'string' ? body.message : typeof body?.title === 'string' ? body.title : '';
  if (Array.isArray(body?.errors)) {
    const details = body.errors
      .map((e: unknown) => (typeof e === 'string' ? e : typeof (e as { message?: unknown }).message === 'string' ? (e as { message: string }).message : (e as { code?: string }).code))
      .filter(Boolean);
    if (details.length > 0) msg = `${msg} (${details.join('; ')})`;
  }
  return msg.length > 300 ? `${msg.slice(0, 300)}…` : msg;
}

/** The page number of the Link header's `rel="next"` target, if there is one. */
export function nextPageFromLink(link: string | number | undefined): number | undefined {
  if (typeof link !== 'string') return undefined;
  for (const part of link.split(',')) {
    const m = /<([^>]+)>\s*;\s*rel="?next"?/.exec(part);
    if (!m) continue;
    const page = Number(new URL(m[1]!, 'https://api.github.com').searchParams.get('page'));
    return Number.isInteger(page) && page > 0 ? page : undefined;
  }
  return undefined;
}

/**
 * Classifies a failed GitHub call. Rate limits (primary: 403/429 with x-ratelimit-remaining 0;
 * secondary: 403/429 with Retry-After or a message naming it) are transient with GitHub's wait;
 * other 401/403/404/422 are permanent with GitHub's reason; 5xx and network failures transient.
 */
export function classify(what: string, err: unknown, secrets: string[] = [], now = Date.now()): Error {
  if (err instanceof TransientError || err instanceof PermanentError) return err;
  const e = (err ?? {}) as OctokitFailure;
  const clean = (s: string) => scrub(s, secrets);
  if (!e.response) {
    const cause = e.cause as { name?: string; code?: string; message?: string } | undefined;
    const reason = cause?.name === 'TimeoutError' || cause?.name === 'AbortError' || /abort|timeout/i.test(e.message ?? '') ? 'no answer in time' : cause?.code ?? cause?.message ?? e.message ?? String(err);
    return new TransientError(clean(`${what} failed: ${reason}`), undefined, { cause: err });
  }
  const { status, headers } = e.response;
  const header = (name: string) => {
    const v = headers[name];
    return v === undefined ? undefined : String(v);
  };
  const detail = clean(githubMessage(e.response.data));
  const message = `${what} failed: HTTP ${status}${detail ? `: ${detail}` : ''}`;
  if (status === 403 || status === 429) {
    const reset = Number(header('x-ratelimit-reset'));
    if (header('x-ratelimit-remaining') === '0' && Number.isFinite(reset) && reset > 0) {
      return new TransientError(`${message} (primary rate limit; resets at ${new Date(reset * 1000).toISOString()})`, Math.max(0, reset * 1000 - now));
    }
    const wait = retryAfterMs(header('retry-after'), now);
    if (wait !== undefined) return new TransientError(`${message} (rate limited; retry after ${Math.round(wait / 1000)} s)`, wait);
    if (/secondary rate limit|abuse detection/i.test(detail)) return new TransientError(`${message} (secondary rate limit)`, SECONDARY_RATE_LIMIT_WAIT_MS);
    if (status === 429) return new TransientError(message);
  }
  if (status === 408 || status >= 500) return new TransientError(message, retryAfterMs(header('retry-after'), now));
  if (status >= 300 && status < 400) {
    return new PermanentError(`${message}; redirects are not followed, so configure the final baseUrl and organization name`, 'invalidConfig');
  }
  switch (status) {
    case 401:
      return new PermanentError(`${message}; the credentials were refused (token revoked or expired, or the App's id or private key is wrong)`, 'unauthorized');
    case 403:
      return new PermanentError(`${message}; the credentials may not do this: they need organization owner rights (a token with admin:org, or an App with Members and Administration read and write)`, 'forbidden');
    case 404:
      return new PermanentError(message, 'notFound');
    case 409:
      return new PermanentError(message, 'conflict');
    default:
      return new PermanentError(message, 'rejected');
  }
}

export class GitHubClient {
  readonly octokit: Octokit;
  readonly pageSize: number;
  /** Secret values seen so far, scrubbed from every error. */
  private readonly secrets: string[] = [];
  private appAuth: ReturnType<typeof createAppAuth> | undefined;
  private readonly makeAppAuth: (() => Promise<ReturnType<typeof createAppAuth>>) | undefined;

  constructor(private readonly opts: GitHubClientOptions) {
    this.pageSize = opts.pageSize;
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const timedFetch: typeof fetch = (input, init) => {
      const deadline = AbortSignal.timeout(timeoutMs);
      const signal = init?.signal ? AbortSignal.any([init.signal, deadline]) : deadline;
      return fetch(input, { ...init, signal, redirect: 'manual' });
    };
    const requestDefaults = { fetch: timedFetch };
    this.octokit = new Octokit({ baseUrl: opts.baseUrl, userAgent: 'scim-gateway-github/1', log: quietLog, request: requestDefaults });
    this.octokit.hook.wrap('request', async (request, options) => {
      options.headers.authorization = await this.authorization();
      return await request(options);
    });
    if (opts.auth.kind === 'app') {
      const app = opts.auth;
      // A separate, hook-free client for App authentication (the JWT and the installation token calls).
      const bare = new Octokit({ baseUrl: opts.baseUrl, userAgent: 'scim-gateway-github/1', log: quietLog, request: requestDefaults });
      this.makeAppAuth = async () => {
        const privateKey = await app.privateKey();
        this.remember(privateKey);
        return createAppAuth({ appId: app.appId, privateKey, installationId: app.installationId, request: bare.request, log: quietLog });
      };
    }
  }

  private remember(secret: string): void {
    if (!this.secrets.includes(secret)) this.secrets.push(secret);
  }

  /** The Authorization header for one request: the token, or a current installation token. */
  private async authorization(): Promise<string> {
    const auth = this.opts.auth;
    if (auth.kind === 'token') {
      const token = await auth.token();
      this.remember(token);
      return `token ${token}`;
    }
    try {
      this.appAuth ??= await this.makeAppAuth!();
      let installation = await this.appAuth({ type: 'installation' });
      if (Date.parse(installation.expiresAt) - Date.now() < TOKEN_REFRESH_MARGIN_MS) {
        installation = await this.appAuth({ type: 'installation', refresh: true });
      }
      this.remember(installation.token);
      return `token ${installation.token}`;
    } catch (err) {
      const e = err as OctokitFailure;
      if (err instanceof PermanentError || e.response || typeof e.status === 'number') throw err;
      // No HTTP exchange happened: the private key could not sign the App's JWT.
      throw new PermanentError(
        `the GitHub App private key cannot be used to sign (${scrub(e.message ?? String(err), this.secrets).slice(0, 200)}); give the PEM file GitHub issued`,
        'invalidConfig',
        { cause: err },
      );
    }
  }

  /** Sends one request (`route` as "GET /orgs/{org}") and answers its 2xx response. */
  async request<T = unknown>(what: string, route: string, params: Record<string, unknown> = {}): Promise<GitHubResponse<T>> {
    try {
      const res = await this.octokit.request(route, params);
      return { status: res.status, data: res.data as T, headers: res.headers };
    } catch (err) {
      throw classify(what, err, this.secrets);
    }
  }

  /** Like request, but a 404 answers undefined (for "is it there?" reads). */
  async find<T = unknown>(what: string, route: string, params: Record<string, unknown>): Promise<T | undefined> {
    try {
      return (await this.request<T>(what, route, params)).data;
    } catch (err) {
      if (err instanceof PermanentError && err.kind === 'notFound') return undefined;
      throw err;
    }
  }

  /** One page (numbered from 1) of a list endpoint, with the next page taken from the Link header. */
  async listPage<T>(what: string, route: string, params: Record<string, unknown>, page: number): Promise<ListPage<T>> {
    const res = await this.request<unknown>(what, route, { ...params, per_page: this.pageSize, page });
    if (!Array.isArray(res.data)) throw new PermanentError(`${what} failed: GitHub answered something other than a list`, 'invalidResponse');
    return { items: res.data as T[], nextPage: nextPageFromLink(res.headers.link) };
  }

  /** Every item of a list endpoint, page by page (for bounded lists such as an invitation search). */
  async *listAll<T>(what: string, route: string, params: Record<string, unknown>): AsyncGenerator<T> {
    let page: number | undefined = 1;
    for (let guard = 0; page !== undefined && guard < 10_000; guard++) {
      const res: ListPage<T> = await this.listPage<T>(what, route, params, page);
      yield* res.items;
      if (res.nextPage !== undefined && res.nextPage <= page) throw new PermanentError(`${what} failed: pagination went backwards`, 'invalidResponse');
      page = res.nextPage;
    }
  }
}
