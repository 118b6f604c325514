/**
 * The AWS side of the aws-identity-center connector: one Identity Store client and one SSO Admin
 * client per instance, configured so that the SDK does nothing behind the engine's back, and every
 * failure classified for the engine.
 *
 * - Credentials are explicit (from secret references), so the SDK's default provider chain never
 *   runs: no environment variables, no ~/.aws files, no instance metadata (IMDS) lookups.
 * - Every setting the SDK would otherwise load from the environment or ~/.aws/config (region, retry
 *   mode, attempts, FIPS/dual-stack, defaults mode, app id) is given, so a worker's machine cannot
 *   change the connector's behaviour.
 * - `maxAttempts: 1`: the SDK's own retry strategy would retry throttling and 5xx answers inside one
 *   activity, invisibly, multiplying calls against a throttled API and eating the activity's
 *   deadline. The engine's retry policy (Temporal, with the wait AWS asked for) is the only one.
 */
import { IdentitystoreClient } from '@aws-sdk/client-identitystore';
import { SSOAdminClient } from '@aws-sdk/client-sso-admin';
import { PermanentError, TransientError, retryAfterMs } from '@scim-gateway/connector-sdk';

export const DEFAULT_TIMEOUT_MS = 30_000;

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string | undefined;
}

export interface AwsClientOptions {
  region: string;
  /** Resolves the credentials from their secret references; called before every request. */
  credentials: () => Promise<AwsCredentials>;
  identityStoreEndpoint?: string | undefined;
  ssoAdminEndpoint?: string | undefined;
  timeoutMs?: number | undefined;
}

/** AWS error names that mean the credentials or the signature were not accepted. */
const AUTH_ERRORS = new Set([
  'UnrecognizedClientException',
  'InvalidSignatureException',
  'InvalidClientTokenId',
  'IncompleteSignature',
  'IncompleteSignatureException',
  'MissingAuthenticationToken',
  'MissingAuthenticationTokenException',
  'ExpiredToken',
  'ExpiredTokenException',
  'SignatureDoesNotMatch',
]);

/** AWS error names that are worth retrying whatever their status code. */
const TRANSIENT_ERRORS = new Set(['ThrottlingException', 'TooManyRequestsException', 'InternalServerException', 'ServiceUnavailableException', 'RequestTimeout', 'RequestTimeoutException']);

interface AwsServiceError {
  name?: string;
  message?: string;
  Message?: string;
  Reason?: string;
  RetryAfterSeconds?: number;
  $fault?: 'client' | 'server';
  $metadata?: { httpStatusCode?: number };
  $response?: { headers?: Record<string, string | undefined> };
  code?: string;
}

/** Replaces every occurrence of the given secrets in `text`, so nothing AWS echoes can leak one. */
function scrub(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) if (s.length > 0) out = out.split(s).join('[redacted]');
  return out;
}

/**
 * Classifies a failed SDK call. `what` names the connector operation and the AWS operation
 * ("aws-identity-center: grant: CreateGroupMembership").
 */
export function classifyAwsError(what: string, err: unknown, secrets: readonly string[] = []): Error {
  if (err instanceof PermanentError || err instanceof TransientError) return err;
  const e = (err ?? {}) as AwsServiceError;
  const status = e.$metadata?.httpStatusCode;
  const name = e.name ?? 'Error';
  const text = e.message || e.Message || '';
  if (status === undefined) {
    // No HTTP answer at all: connection refused or reset, DNS, the request deadline.
    const reason = e.code && !text.includes(e.code) ? `${e.code} (${text})` : text || name;
    const timedOut = name === 'TimeoutError' || e.code === 'ETIMEDOUT' || /timed? ?out/i.test(text);
    return new TransientError(scrub(`${what} failed: ${timedOut ? `no answer in time: ${reason}` : reason}`, secrets), undefined, { cause: err });
  }
  const message = scrub(`${what} failed: HTTP ${status} ${name}${text ? `: ${text}` : ''}`, secrets);
  if (TRANSIENT_ERRORS.has(name) || status === 429 || status >= 500) {
    const header = e.$response?.headers?.['retry-after'] ?? e.$response?.headers?.['Retry-After'];
    const wait = typeof e.RetryAfterSeconds === 'number' && e.RetryAfterSeconds >= 0 ? e.RetryAfterSeconds * 1000 : retryAfterMs(header);
    return new TransientError(message, wait, { cause: err });
  }
  // Identity Store's ConflictException is either a uniqueness violation (permanent) or a concurrent
  // modification of the same resource, which the next attempt does not meet.
  if (name === 'ConflictException' && e.Reason === 'CONCURRENT_MODIFICATION') return new TransientError(message, undefined, { cause: err });
  if (AUTH_ERRORS.has(name)) return new PermanentError(message, 'unauthorized', { cause: err });
  if (name === 'AccessDeniedException' || status === 403) return new PermanentError(message, 'forbidden', { cause: err });
  if (name === 'ResourceNotFoundException' || status === 404) return new PermanentError(message, 'notFound', { cause: err });
  if (name === 'ConflictException' || status === 409) return new PermanentError(message, 'conflict', { cause: err });
  if (name === 'ServiceQuotaExceededException') return new PermanentError(message, 'quotaExceeded', { cause: err });
  return new PermanentError(message, 'rejected', { cause: err });
}

/** True when `err` is the named AWS exception (before classification). */
export function isAwsError(err: unknown, name: string): boolean {
  return (err as { name?: unknown } | undefined)?.name === name && (err as AwsServiceError).$metadata !== undefined;
}

/** The two SDK clients of one connector instance, and the single way to call them. */
export class AwsClients {
  readonly identityStore: IdentitystoreClient;
  readonly ssoAdmin: SSOAdminClient;
  /** The last resolved secret values, for scrubbing them out of error messages. */
  private secrets: string[] = [];

  constructor(private readonly opts: AwsClientOptions) {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const common = {
      region: opts.region,
      credentials: async () => {
        const c = await this.resolveCredentials();
        // The SDK asks again for identities that expire within five minutes; this one always does, so
        // the references are read for every request and a rotated `file:` secret is used at once.
        return { ...c, expiration: new Date(Date.now() + 290_000) };
      },
      maxAttempts: 1,
      retryMode: 'standard',
      defaultsMode: 'standard' as const,
      useFipsEndpoint: false,
      useDualstackEndpoint: false,
      userAgentAppId: 'scim-gateway',
      authSchemePreference: [] as string[],
      // requestTimeout only warns unless told to throw; a request past its deadline must fail (transient).
      requestHandler: { requestTimeout: timeoutMs, connectionTimeout: Math.min(timeoutMs, 10_000), throwOnRequestTimeout: true },
    };
    this.identityStore = new IdentitystoreClient({ ...common, ...(opts.identityStoreEndpoint ? { endpoint: opts.identityStoreEndpoint } : {}) });
    this.ssoAdmin = new SSOAdminClient({ ...common, ...(opts.ssoAdminEndpoint ? { endpoint: opts.ssoAdminEndpoint } : {}) });
  }

  private async resolveCredentials(): Promise<AwsCredentials> {
    const c = await this.opts.credentials();
    this.secrets = [c.secretAccessKey, c.accessKeyId, ...(c.sessionToken ? [c.sessionToken] : [])];
    return c;
  }

  /**
   * Sends one command (`call` sends it with one of the clients), exactly once, and answers its output; any failure comes back classified.
   * Credentials are resolved first, so an unset or unreadable secret is the SDK's own
   * `invalidConfig` error rather than something the SDK wrapped.
   */
  async send<O>(what: string, call: () => Promise<O>): Promise<O> {
    await this.resolveCredentials();
    try {
      return await call();
    } catch (err) {
      throw classifyAwsError(what, err, this.secrets);
    }
  }

  /** Sends one command; the named AWS exceptions come back raw (for idempotency checks), anything else classified. */
  async sendExpecting<O>(what: string, call: () => Promise<O>, expected: readonly string[]): Promise<{ ok: O } | { error: string; err: unknown }> {
    await this.resolveCredentials();
    try {
      return { ok: await call() };
    } catch (err) {
      const name = expected.find((n) => isAwsError(err, n));
      if (name) return { error: name, err };
      throw classifyAwsError(what, err, this.secrets);
    }
  }

  /** Classifies an error the caller decided not to treat as success. */
  classify(what: string, err: unknown): Error {
    return classifyAwsError(what, err, this.secrets);
  }

  async close(): Promise<void> {
    this.identityStore.destroy();
    this.ssoAdmin.destroy();
  }
}
