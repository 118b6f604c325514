/**
 * The auth0 connector's side of the wire: the `auth0` package's ManagementClient (v7) with
 * client-credentials tokens, and every failure classified for the engine.
 *
 * - The client secret is resolved through the secret reference on every call; a new value (a
 *   rotated `file:` secret) builds a new ManagementClient, and so a new token. The client caches
 *   its token until shortly before it expires.
 * - The package retries 408, 429 and 5xx by itself (twice by default, sleeping up to a minute,
 *   honouring Retry-After and x-ratelimit-reset). That is turned off (`maxRetries: 0`): the engine
 *   owns retries, so one call here is at most one request (plus a token request when needed).
 * - Its logging stays silent, so neither request URLs nor bodies (a password-change ticket's URL)
 *   reach a log through it.
 * - Auth0 answers errors as `{statusCode, error, message, errorCode}`; the message a human needs is
 *   kept, anything that could hold the client secret is scrubbed.
 */
import { ManagementClient, ManagementError, ManagementTimeoutError } from 'auth0';
import { PermanentError, TransientError, retryAfterMs } from '@scim-gateway/connector-sdk';

export const DEFAULT_TIMEOUT_MS = 30_000;

export interface Auth0ApiOptions {
  /** Tenant domain, e.g. "acme.eu.auth0.com" (host and optional port, no scheme). */
  domain: string;
  clientId: string;
  /** Answers the client secret; called once per operation. */
  clientSecret: () => Promise<string>;
  /** Token audience; the package's default is https://<domain>/api/v2/. */
  audience?: string | undefined;
  timeoutMs?: number | undefined;
}

/** TLS failures: a trust decision fixed by configuration, not by waiting. */
const TLS_CODES = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

function scrub(text: string, secret: string): string {
  return secret.length > 0 ? text.split(secret).join('[redacted]') : text;
}

/** The innermost error code and message of a network failure (fetch wraps them in `cause`). */
function networkCause(err: unknown): { code?: string | undefined; message: string } {
  let e = err as { code?: unknown; message?: unknown; cause?: unknown } | undefined;
  let code: string | undefined;
  let message = String((e?.message as string | undefined) ?? err);
  for (let depth = 0; e && depth < 5; depth++) {
    if (typeof e.code === 'string') code = e.code;
    if (typeof e.message === 'string' && e.message) message = e.message;
    e = e.cause as typeof e;
  }
  return { code, message };
}

interface ErrorEnvelope {
  error?: unknown;
  message?: unknown;
  errorCode?: unknown;
  error_description?: unknown;
}

function envelope(body: unknown): ErrorEnvelope {
  if (body && typeof body === 'object' && !Array.isArray(body)) return body;
  if (typeof body === 'string') {
    try {
      const parsed = JSON.parse(body) as unknown;
      if (parsed && typeof parsed === 'object') return parsed;
    } catch {
      // a proxy's page, not Auth0's envelope
    }
    return { message: body.length > 300 ? `${body.slice(0, 300)}…` : body };
  }
  return {};
}

/** "insufficient_scope: Insufficient scope, expected any of: create:users" from Auth0's envelope. */
function describe(body: unknown): string {
  const e = envelope(body);
  const code = typeof e.errorCode === 'string' ? e.errorCode : typeof e.error === 'string' ? e.error : '';
  const text = typeof e.message === 'string' ? e.message : typeof e.error_description === 'string' ? e.error_description : '';
  return code && text ? `${code}: ${text}` : code || text;
}

/** Milliseconds to wait from Retry-After, else from Auth0's x-ratelimit-reset (epoch seconds). */
export function rateLimitWait(headers: { get(name: string): string | null } | undefined, now = Date.now()): number | undefined {
  const after = retryAfterMs(headers?.get('retry-after'), now);
  if (after !== undefined) return after;
  const reset = headers?.get('x-ratelimit-reset');
  if (reset && /^\d+$/.test(reset.trim())) return Math.max(0, Number(reset.trim()) * 1000 - now);
  return undefined;
}

/** Turns what the package threw into the SDK's error classes. `secret` is scrubbed from messages. */
export function classify(what: string, err: unknown, secret: string, timeoutMs: number): Error {
  if (err instanceof PermanentError || err instanceof TransientError) return err;
  const fail = (text: string) => scrub(`${what} failed: ${text}`, secret);

  if (err instanceof ManagementTimeoutError) return new TransientError(fail(`no answer within ${timeoutMs} ms`), undefined, { cause: err });

  if (err instanceof ManagementError) {
    const status = err.statusCode;
    const isTokenRequest = err.message.startsWith('ManagementClient: token request');
    if (status === undefined) {
      const { code, message } = networkCause(err.cause ?? err);
      if (code && TLS_CODES.has(code)) return new PermanentError(fail(`the tenant's TLS certificate is not trusted (${code})`), 'tlsError', { cause: err });
      return new TransientError(fail(`network error: ${code ? `${code} (${message})` : message}`), undefined, { cause: err });
    }
    const detail = describe(err.body);
    if (isTokenRequest) {
      const text = `token request (client credentials) answered HTTP ${status}${detail ? `: ${detail}` : ''}`;
      if (status === 408 || status === 429 || status >= 500) return new TransientError(fail(text), undefined, { cause: err });
      if (status === 401) return new PermanentError(fail(`${text}; check clientId and clientSecret (a Machine to Machine application of this tenant)`), 'unauthorized', { cause: err });
      if (status === 403) {
        return new PermanentError(fail(`${text}; authorize the application for the audience (Applications → APIs → Auth0 Management API → Machine to Machine Applications) and check audience`), 'forbidden', { cause: err });
      }
      return new PermanentError(fail(text), 'rejected', { cause: err });
    }
    const text = `HTTP ${status}${detail ? `: ${detail}` : ''}`;
    const headers = err.rawResponse?.headers;
    if (status === 429) return new TransientError(fail(text), rateLimitWait(headers), { cause: err });
    if (status === 408 || status === 425 || status >= 500) return new TransientError(fail(text), retryAfterMs(headers?.get('retry-after')), { cause: err });
    if (status === 401) return new PermanentError(fail(`${text}; the access token was refused`), 'unauthorized', { cause: err });
    if (status === 403) {
      const scope = /insufficient.scope/i.test(detail) ? '; grant the missing scope to the application (Applications → APIs → Auth0 Management API → Machine to Machine Applications)' : '';
      return new PermanentError(fail(`${text}${scope}`), 'forbidden', { cause: err });
    }
    const kind = status === 404 ? 'notFound' : status === 409 ? 'conflict' : 'rejected';
    return new PermanentError(fail(text), kind, { cause: err });
  }

  // The token request's own network failure reaches us as fetch's TypeError.
  if (err instanceof TypeError && err.cause !== undefined) {
    const { code, message } = networkCause(err);
    if (code && TLS_CODES.has(code)) return new PermanentError(fail(`the tenant's TLS certificate is not trusted (${code})`), 'tlsError', { cause: err });
    return new TransientError(fail(`network error: ${code ? `${code} (${message})` : message}`), undefined, { cause: err });
  }
  return err instanceof Error ? err : new Error(fail(String(err)));
}

/** One ManagementClient per client secret value, and the error classification around each call. */
export class Auth0Api {
  private current: { secret: string; client: ManagementClient } | undefined;
  readonly timeoutMs: number;

  constructor(private readonly opts: Auth0ApiOptions) {
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  private async management(): Promise<{ secret: string; client: ManagementClient }> {
    const secret = await this.opts.clientSecret();
    if (!this.current || this.current.secret !== secret) {
      const client = new ManagementClient({
        domain: this.opts.domain,
        clientId: this.opts.clientId,
        clientSecret: secret,
        ...(this.opts.audience !== undefined && { audience: this.opts.audience }),
        maxRetries: 0,
        timeoutInSeconds: this.timeoutMs / 1000,
        logging: { silent: true },
      });
      this.current = { secret, client };
    }
    return this.current;
  }

  /**
   * Runs `fn` with the client and answers its result; what it throws is classified. `what` names
   * the operation in messages ("auth0: createAccount").
   */
  async call<T>(what: string, fn: (client: ManagementClient) => Promise<T>): Promise<T> {
    const current = await this.management();
    try {
      return await fn(current.client);
    } catch (err) {
      const classified = classify(what, err, current.secret, this.timeoutMs);
      // A refused token is dropped, so the next call asks for a new one.
      if (classified instanceof PermanentError && classified.kind === 'unauthorized' && this.current === current) this.current = undefined;
      throw classified;
    }
  }

  /** Like {@link call}, but a 404 answers `undefined` instead of failing. */
  async maybe<T>(what: string, fn: (client: ManagementClient) => Promise<T>): Promise<T | undefined> {
    try {
      return await this.call(what, fn);
    } catch (err) {
      if (err instanceof PermanentError && err.kind === 'notFound') return undefined;
      throw err;
    }
  }
}
