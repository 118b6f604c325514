/**
 * The google-groups connector's API side: the Admin SDK Directory API (`@googleapis/admin`,
 * directory_v1) authorised by a service account with domain-wide delegation (google-auth-library's
 * JWT client impersonating an administrator), and every failure classified for the engine.
 *
 * - Nothing here retries. googleapis turns gaxios retries on for every call, and the token request
 *   asks gaxios to retry its POST; the JWT client's transporter is created with `retryConfig.retry`
 *   0 (merged into every request it sends, API and token alike), so each call reaches Google once
 *   and a TransientError hands the wait to the engine.
 * - The key is resolved from its secret reference on every call and the JWT client rebuilt when it
 *   changed, so a rotated `file:` key is used without a restart; tokens are cached by the JWT client
 *   until they expire.
 * - Neither the private key nor an access token ever reaches an error message: messages are built
 *   from Google's error envelope (code, reasons, message) or the OAuth error, never from request
 *   options.
 */
import { admin, type admin_directory_v1 } from '@googleapis/admin';
import { JWT } from 'google-auth-library';
import { PermanentError, TransientError, retryAfterMs } from '@scim-gateway/connector-sdk';

export const GOOGLE_TOKEN_URL = 'https://oauth2.googleapis.com/token';
export const GOOGLE_ROOT_URL = 'https://admin.googleapis.com/';
export const DEFAULT_TIMEOUT_MS = 30_000;

export const SCOPE_GROUP_MEMBER = 'https://www.googleapis.com/auth/admin.directory.group.member';
export const SCOPE_USER_READONLY = 'https://www.googleapis.com/auth/admin.directory.user.readonly';
export const SCOPE_USER = 'https://www.googleapis.com/auth/admin.directory.user';

/** The service account's credentials, as resolved from configuration. */
export interface ServiceAccountCredentials {
  clientEmail: string;
  privateKey: string;
  /** The OAuth client id domain-wide delegation is granted to (known only from a JSON key). */
  clientId?: string | undefined;
}

export interface GoogleClientOptions {
  /** Resolves the credentials; called once per operation. */
  credentials: () => Promise<ServiceAccountCredentials>;
  /** The administrator the service account acts as. */
  subject: string;
  scopes: string[];
  rootUrl: string;
  tokenUrl: string;
  timeoutMs: number;
}

/** The parts of a GaxiosError this module reads (the class is not imported: gaxios ships two builds). */
interface HttpFailure {
  code?: string | number;
  message?: string;
  status?: number;
  response?: { status?: number; data?: unknown; headers?: unknown };
  config?: { url?: unknown };
}

interface GoogleErrorEnvelope {
  error?: { code?: number; message?: string; status?: string; errors?: Array<{ reason?: string; message?: string; domain?: string }> };
}

interface OAuthErrorBody {
  error?: string;
  error_description?: string;
}

/** Reasons Google gives with a 403 for quota and rate limits (and backend trouble): worth waiting for. */
const RETRYABLE_403_REASONS = new Set(['rateLimitExceeded', 'userRateLimitExceeded', 'quotaExceeded', 'dailyLimitExceeded', 'backendError']);

export function parseServiceAccountKey(json: string): ServiceAccountCredentials {
  let key: { type?: unknown; client_email?: unknown; private_key?: unknown; client_id?: unknown };
  try {
    key = JSON.parse(json) as typeof key;
  } catch {
    throw new PermanentError('google-groups: serviceAccountKey is not JSON; give the contents of the service account\'s JSON key file', 'invalidConfig');
  }
  if (!key || typeof key !== 'object' || typeof key.client_email !== 'string' || typeof key.private_key !== 'string') {
    throw new PermanentError('google-groups: serviceAccountKey has no client_email and private_key; is it a service account JSON key?', 'invalidConfig');
  }
  if (key.type !== undefined && key.type !== 'service_account') {
    throw new PermanentError(`google-groups: serviceAccountKey is of type ${JSON.stringify(key.type)}, expected a service_account key`, 'invalidConfig');
  }
  return { clientEmail: key.client_email, privateKey: key.private_key, clientId: typeof key.client_id === 'string' ? key.client_id : undefined };
}

function headerValue(headers: unknown, name: string): string | null {
  if (!headers) return null;
  if (typeof (headers as Headers).get === 'function') return (headers as Headers).get(name);
  const value = (headers as Record<string, unknown>)[name];
  return typeof value === 'string' ? value : null;
}

function isTokenRequest(err: HttpFailure, tokenUrl: string): boolean {
  const url = err.config?.url;
  const href = url instanceof URL ? url.href : typeof url === 'string' ? url : '';
  if (href === tokenUrl || href === GOOGLE_TOKEN_URL) return true;
  const data = err.response?.data as OAuthErrorBody | undefined;
  return typeof data?.error === 'string';
}

/**
 * A Directory API client for one credential set. Build one per key; it keeps the JWT client's
 * token cache.
 */
class Session {
  readonly directory: admin_directory_v1.Admin;
  readonly jwt: JWT;

  constructor(
    readonly credentials: ServiceAccountCredentials,
    opts: GoogleClientOptions,
  ) {
    this.jwt = new JWT({
      email: credentials.clientEmail,
      key: credentials.privateKey,
      subject: opts.subject,
      scopes: opts.scopes,
      // Merged into every request of this transporter: the token POST and every API call.
      transporterOptions: { timeout: opts.timeoutMs, retryConfig: { retry: 0, noResponseRetries: 0 } },
    });
    if (opts.tokenUrl !== GOOGLE_TOKEN_URL) {
      // google-auth-library posts the assertion to a fixed URL; send it to the configured endpoint.
      // The assertion's audience stays Google's token URL, which is what an endpoint fronting
      // Google's token service expects.
      const tokenUrl = new URL(opts.tokenUrl);
      this.jwt.transporter.interceptors.request.add({
        resolved: async (request) => {
          if (request.url.toString() === GOOGLE_TOKEN_URL) request.url = new URL(tokenUrl);
          return request;
        },
      });
    }
    this.directory = admin({ version: 'directory_v1', auth: this.jwt, rootUrl: opts.rootUrl, retry: false, timeout: opts.timeoutMs });
  }
}

export class GoogleDirectoryClient {
  private session: Session | undefined;

  constructor(private readonly opts: GoogleClientOptions) {}

  get subject(): string {
    return this.opts.subject;
  }

  /** The client for the current credentials (rebuilt when a rotated key differs). */
  private async current(): Promise<Session> {
    const credentials = await this.opts.credentials();
    const s = this.session;
    if (s && s.credentials.clientEmail === credentials.clientEmail && s.credentials.privateKey === credentials.privateKey) return s;
    this.session = new Session(credentials, this.opts);
    return this.session;
  }

  /** Obtains an access token for the subject (proves the key and the delegation). */
  async authorize(what: string): Promise<void> {
    const session = await this.current();
    try {
      await session.jwt.authorize();
    } catch (err) {
      throw this.classify(what, err, session.credentials);
    }
  }

  /**
   * Runs one Directory API call and answers its data; any failure is classified. `call` gets the
   * directory client and must make exactly one request.
   */
  async call<T>(what: string, call: (directory: admin_directory_v1.Admin) => Promise<{ data: T }>): Promise<T> {
    const session = await this.current();
    try {
      return (await call(session.directory)).data;
    } catch (err) {
      throw this.classify(what, err, session.credentials);
    }
  }

  /** Turns anything the Google libraries throw into a TransientError or a PermanentError. */
  classify(what: string, err: unknown, credentials: ServiceAccountCredentials): Error {
    if (err instanceof TransientError || err instanceof PermanentError) return err;
    const e = (err ?? {}) as HttpFailure;
    const status = e.response?.status ?? (typeof e.status === 'number' ? e.status : undefined);
    if (status === undefined) return this.withoutResponse(what, e);
    const retryAfter = retryAfterMs(headerValue(e.response?.headers, 'retry-after'));
    if (isTokenRequest(e, this.opts.tokenUrl)) return this.tokenError(what, status, e.response?.data as OAuthErrorBody | undefined, retryAfter, credentials);

    const envelope = (e.response?.data ?? {}) as GoogleErrorEnvelope;
    const reasons = (envelope.error?.errors ?? []).map((x) => x.reason).filter((r): r is string => typeof r === 'string');
    const message = envelope.error?.message ?? (typeof e.response?.data === 'string' ? e.response.data.slice(0, 300) : '');
    const detail = `HTTP ${status}${reasons.length > 0 ? ` (${reasons.join(', ')})` : ''}${message ? `: ${message}` : ''}`;
    if (status === 429 || status === 408 || status >= 500 || (status === 403 && reasons.some((r) => RETRYABLE_403_REASONS.has(r)))) {
      return new TransientError(`${what} failed: ${detail}`, retryAfter);
    }
    if (status === 401) {
      return new PermanentError(`${what} failed: ${detail}; the access token was refused, check the service account key and its domain-wide delegation`, 'unauthorized');
    }
    if (status === 403) {
      return new PermanentError(
        `${what} failed: ${detail}; ${this.opts.subject} (the administrator the connector acts as) lacks an admin privilege for this call, or the scope is not delegated`,
        'forbidden',
      );
    }
    const kind = status === 404 ? 'notFound' : status === 409 ? 'conflict' : 'rejected';
    return new PermanentError(`${what} failed: ${detail}`, kind);
  }

  private withoutResponse(what: string, e: HttpFailure): Error {
    const code = typeof e.code === 'string' ? e.code : undefined;
    const text = e.message ?? 'unknown error';
    // Signing the assertion happens before any request: a bad key never reaches the network.
    if (/DECODER|PEM|private key|asn1|secretOrPrivateKey/i.test(text)) {
      return new PermanentError(`${what} failed: the service account's private key cannot sign (is it the PEM private_key of a service account key?)`, 'invalidConfig');
    }
    if (code === 'TimeoutError' || /timeout|timed out|aborted/i.test(text)) {
      return new TransientError(`${what} failed: no answer within ${this.opts.timeoutMs} ms`, undefined, { cause: e });
    }
    return new TransientError(`${what} failed: ${code && !text.includes(code) ? `${code} (${text})` : text}`, undefined, { cause: e });
  }

  private tokenError(what: string, status: number, body: OAuthErrorBody | undefined, retryAfter: number | undefined, credentials: ServiceAccountCredentials): Error {
    const error = body?.error ?? '';
    const description = body?.error_description ?? '';
    const said = `${error || `HTTP ${status}`}${description ? `: ${description}` : ''}`;
    const where = `${what} failed: the token endpoint refused the service account ${credentials.clientEmail} acting as ${this.opts.subject}: ${said}`;
    if (status === 429 || status === 408 || status >= 500) return new TransientError(`${what} failed: the token endpoint answered ${said}`, retryAfter);
    if (error === 'unauthorized_client' || error === 'access_denied') {
      const client = credentials.clientId ? `client ID ${credentials.clientId}` : "the service account's client ID";
      return new PermanentError(
        `${where}. Domain-wide delegation is not granted: in the Admin console (Security → Access and data control → API controls → Domain-wide delegation) authorise ${client} for the scopes ${this.opts.scopes.join(',')}`,
        'unauthorized',
      );
    }
    if (error === 'invalid_grant') {
      return new PermanentError(
        `${where}. Check that ${this.opts.subject} is an existing user of the domain, that the key is not deleted or disabled, and that this machine's clock is right`,
        'unauthorized',
      );
    }
    return new PermanentError(where, status === 403 ? 'forbidden' : 'unauthorized');
  }
}
