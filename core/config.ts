/**
 * Process configuration, read once from the environment and validated at start-up.
 *
 * Every variable is declared here with its default and description; `.env.example` and the README's
 * table list the same set. A missing or malformed value throws a {@link ConfigError} that names the
 * variable, and the boot files turn it into a one-line message and a non-zero exit.
 */

import { isIP } from 'node:net';

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

function str(env: Env, name: string, fallback?: string): string | undefined {
  const v = env[name];
  if (v === undefined || v.trim() === '') return fallback;
  return v.trim();
}

function int(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = str(env, name);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, `must be a whole number, got "${raw}"`);
  const n = Number(raw);
  if (n < min || n > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${n}`);
  return n;
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const raw = str(env, name);
  if (raw === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ConfigError(name, `must be one of ${allowed.join(', ')}, got "${raw}"`);
  }
  return raw as T;
}

function url(env: Env, name: string, protocols: string[]): string | undefined {
  const raw = str(env, name);
  if (raw === undefined) return undefined;
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(name, 'is not a valid URL');
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(name, `must use ${protocols.join(' or ')}, got ${parsed.protocol}`);
  }
  return raw;
}

function hostPort(env: Env, name: string): string | undefined {
  const raw = str(env, name);
  if (raw === undefined) return undefined;
  if (!/^[A-Za-z0-9.\-_[\]:]+:\d{1,5}$/.test(raw)) {
    throw new ConfigError(name, `must be host:port, got "${raw}"`);
  }
  return raw;
}

/**
 * Which proxies' X-Forwarded-* headers are believed (Fastify's `trustProxy`): none (false), every
 * hop (true), the nearest `n` hops, or the listed addresses and CIDR ranges.
 */
export type TrustProxy = boolean | number | string[];

function trustProxy(env: Env, name: string): TrustProxy {
  const raw = str(env, name);
  if (raw === undefined || raw === 'false') return false;
  if (raw === 'true') return true;
  if (/^\d+$/.test(raw)) {
    const hops = Number(raw);
    if (hops < 1 || hops > 100) throw new ConfigError(name, `a hop count must be between 1 and 100, got ${hops}`);
    return hops;
  }
  const entries = raw.split(',').map((e) => e.trim());
  for (const entry of entries) {
    const [address, prefix, ...rest] = entry.split('/');
    const family = isIP(address ?? '');
    const prefixOk = prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 6 ? 128 : 32));
    if (family === 0 || !prefixOk || rest.length > 0) {
      throw new ConfigError(name, `must be true, false, a hop count, or comma-separated IP addresses/CIDR ranges; "${entry}" is none of these`);
    }
  }
  return entries;
}

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Settings shared by every process (gateway, worker, the all-in-one `npm start`). */
export interface CommonConfig {
  /** PostgreSQL connection string; absent means "use the embedded database" (only `npm start` allows it). */
  databaseUrl: string | undefined;
  databasePoolSize: number;
  /** Temporal frontend host:port; absent means "start the dev server" (only `npm start` allows it). */
  temporalAddress: string | undefined;
  temporalNamespace: string;
  taskQueue: string;
  logLevel: LogLevel;
  /** Where `npm start` keeps the embedded database and the Temporal dev server's SQLite file. */
  dataDir: string;
  /** Ports of the dev server `npm start` runs when TEMPORAL_ADDRESS is unset. */
  devTemporalPort: number;
  devTemporalUiPort: number;
  /** How long a userSync workflow waits for further changes before it completes (ms). */
  userSyncIdleMs: number;
  /** How long userSync waits after a change to let a burst of changes settle (ms). */
  userSyncDebounceMs: number;
  /**
   * Approved access waiting to reach its target: the requester's userSync tells the request when a
   * round ran; besides, the request looks this long after approval, then at doubling intervals up to
   * `accessFulfilmentCheckMaxMs` (ms), and records a failure after `accessFulfilmentTimeoutMs`.
   */
  accessFulfilmentCheckMs: number;
  accessFulfilmentCheckMaxMs: number;
  accessFulfilmentTimeoutMs: number;
  /**
   * The gateway's external base URL: SCIM `meta.location` (default: from the request) and the base
   * of one-time download links (deliveries are off without it).
   */
  publicUrl: string | undefined;
  /** Where the worker POSTs signed notices of new download links; deliveries are off without it. */
  deliveryWebhookUrl: string | undefined;
  /** HMAC key signing those notices (a secret: never logged, read only from the environment). */
  deliveryWebhookSecret: string | undefined;
  /** Lifetime of a download link whose connector names none (ms). */
  deliveryTtlMs: number;
  /** Longest lifetime of a download link, whatever the connector asks for (ms). */
  deliveryMaxTtlMs: number;
  /** The Slack app (docs/slack.md); absent when SLACK_BOT_TOKEN is unset. */
  slack: SlackConfig | undefined;
}

/** The Slack app's settings. The tokens and the signing secret are secrets: never logged or returned. */
export interface SlackConfig {
  /** Bot token (xoxb-…) for every Web API call. */
  botToken: string;
  /** Verifies the signature of Slack's HTTP callbacks; required by the gateway unless Socket Mode is used. */
  signingSecret: string | undefined;
  /** App-level token (xapp-…) with `connections:write`: the gateway takes callbacks over Socket Mode instead of HTTP. */
  appToken: string | undefined;
  /** The Web API base URL (tests point it at a local fake). */
  apiUrl: string;
  /** How long a Slack user's mapping to a directory user is trusted before users.info is asked again (s). */
  identityTtlSeconds: number;
  /** Channel of each fulfilment group's tasks, by group displayName or id; `*`: any other group. */
  taskChannels: Record<string, string>;
}

export interface GatewayConfig extends CommonConfig {
  host: string;
  port: number;
  /** Bootstrap bearer token for SCIM clients; stored hashed under the name "bootstrap". */
  scimToken: string | undefined;
  /** Bootstrap admin token (scope `admin`) for the admin API; stored hashed under "admin-bootstrap". */
  adminToken: string | undefined;
  /** Temporal Web UI base URL, used for links to workflows. */
  temporalUiUrl: string | undefined;
  outboxPollMs: number;
  outboxBatchSize: number;
  /** A claimed outbox row not marked delivered within this time may be claimed again (ms). */
  outboxLeaseMs: number;
  /** Upper bound of the redelivery backoff while Temporal is unreachable (ms). */
  outboxRetryMaxMs: number;
  /** Failed delivery tries after which an outbox row is dead-lettered (parked until re-driven). */
  outboxMaxAttempts: number;
  bodyLimitBytes: number;
  /** Most operations one SCIM /Bulk request may carry (advertised in /ServiceProviderConfig). */
  scimBulkMaxOperations: number;
  /** Largest /Bulk request body in bytes (advertised; larger gets 413). */
  scimBulkMaxPayloadBytes: number;
  /** JSON file declaring custom SCIM extension schemas (see docs/scim-compatibility.md). */
  scimExtensionsFile: string | undefined;
  /**
   * Refuse SCIM writes naming attributes the schemas do not have (400) instead of ignoring them
   * with a logged warning (docs/scim-compatibility.md, "Leniencies").
   */
  scimStrict: boolean;
  /** YAML or JSON file of connectors, entitlements and rules applied at start-up (docs/provisioning.md). */
  provisioningFile: string | undefined;
  /** How often the gateway wipes expired download links and deletes old ones (ms). */
  deliverySweepMs: number;
  /** Proxies whose X-Forwarded-For/-Host/-Proto are believed; default none. */
  trustProxy: TrustProxy;
  /** Failed authentications one client address may make per window before it gets 429. */
  authFailureLimit: number;
  /** The window of {@link authFailureLimit} (ms). */
  authFailureWindowMs: number;
  /** The web console at /console (docs/console.md). */
  console: ConsoleConfig;
}

/**
 * The web console's sign-in. The client secret and the session secret are secrets: never logged or
 * returned. Without an issuer there is no OpenID Connect sign-in (only `npm start`'s local sign-in).
 */
export interface ConsoleConfig {
  /** OpenID Connect sign-in; absent when CONSOLE_OIDC_ISSUER is unset. */
  oidc: { issuer: string; clientId: string; clientSecret: string | undefined } | undefined;
  /** HMAC key of the session and sign-in cookies; required with an issuer. */
  sessionSecret: string | undefined;
  /** Which ID token claim names the directory user: `email` (userName or an emails value) or `sub` (externalId). */
  userClaim: 'email' | 'sub';
  /** How long a console session lasts (s). */
  sessionTtlSeconds: number;
  /** The directory group (displayName or id) whose direct members may use the administrators' pages; none when unset. */
  adminGroup: string | undefined;
}

export interface WorkerConfig extends CommonConfig {
  /** host:port where the worker serves its own Prometheus metrics at /metrics; off when absent. */
  workerMetricsAddress: string | undefined;
  /** host:port where the Temporal SDK runtime exports its worker metrics for Prometheus; off when absent. */
  temporalMetricsAddress: string | undefined;
}

export function loadCommonConfig(env: Env = process.env): CommonConfig {
  return {
    databaseUrl: url(env, 'DATABASE_URL', ['postgres:', 'postgresql:']),
    databasePoolSize: int(env, 'DATABASE_POOL_SIZE', 10, 1, 500),
    temporalAddress: hostPort(env, 'TEMPORAL_ADDRESS'),
    temporalNamespace: str(env, 'TEMPORAL_NAMESPACE', 'default')!,
    taskQueue: str(env, 'TEMPORAL_TASK_QUEUE', 'scim-gateway')!,
    logLevel: oneOf(env, 'LOG_LEVEL', LOG_LEVELS, 'info'),
    dataDir: str(env, 'DATA_DIR', '.data')!,
    devTemporalPort: int(env, 'TEMPORAL_DEV_PORT', 7233, 1, 65535),
    devTemporalUiPort: int(env, 'TEMPORAL_DEV_UI_PORT', 8233, 1, 65535),
    userSyncIdleMs: int(env, 'USER_SYNC_IDLE_MS', 60_000, 0, 86_400_000),
    userSyncDebounceMs: int(env, 'USER_SYNC_DEBOUNCE_MS', 250, 0, 600_000),
    accessFulfilmentCheckMs: int(env, 'ACCESS_FULFILMENT_CHECK_MS', 5_000, 10, 86_400_000),
    accessFulfilmentCheckMaxMs: int(env, 'ACCESS_FULFILMENT_CHECK_MAX_MS', 60_000, 10, 86_400_000),
    accessFulfilmentTimeoutMs: int(env, 'ACCESS_FULFILMENT_TIMEOUT_MS', 15 * 60_000, 1_000, 30 * 86_400_000),
    publicUrl: url(env, 'PUBLIC_URL', ['http:', 'https:']),
    ...deliveryConfig(env),
    slack: slackConfig(env),
  };
}

/** SLACK_TASK_CHANNELS: `Group name=C0123,Other group=C0456,*=C0789`. */
function taskChannels(env: Env, name: string): Record<string, string> {
  const raw = str(env, name);
  if (raw === undefined) return {};
  const out: Record<string, string> = {};
  for (const entry of raw.split(',')) {
    const eq = entry.lastIndexOf('=');
    const group = entry.slice(0, eq).trim();
    const channel = entry.slice(eq + 1).trim();
    if (eq <= 0 || !/^[CGD][A-Z0-9]{2,}$/.test(channel) || group === '') {
      throw new ConfigError(name, `expected "group=channel id" pairs separated by commas (channel ids like C0123ABC), got "${entry.trim()}"`);
    }
    out[group] = channel;
  }
  return out;
}

function slackConfig(env: Env): SlackConfig | undefined {
  // Token values never appear in a message, not even in part.
  const botToken = str(env, 'SLACK_BOT_TOKEN');
  const signingSecret = str(env, 'SLACK_SIGNING_SECRET');
  const appToken = str(env, 'SLACK_APP_TOKEN');
  if (!botToken) {
    if (signingSecret || appToken) throw new ConfigError('SLACK_BOT_TOKEN', 'is required when SLACK_SIGNING_SECRET or SLACK_APP_TOKEN is set');
    return undefined;
  }
  if (!/^xox[bp]-/.test(botToken)) throw new ConfigError('SLACK_BOT_TOKEN', 'must be a bot token (xoxb-…)');
  if (appToken && !appToken.startsWith('xapp-')) throw new ConfigError('SLACK_APP_TOKEN', 'must be an app-level token (xapp-…)');
  const apiUrl = url(env, 'SLACK_API_URL', ['http:', 'https:']) ?? 'https://slack.com/api/';
  return {
    botToken,
    signingSecret,
    appToken,
    apiUrl: apiUrl.endsWith('/') ? apiUrl : `${apiUrl}/`,
    identityTtlSeconds: int(env, 'SLACK_IDENTITY_TTL_SECONDS', 3600, 0, 7 * 86_400),
    taskChannels: taskChannels(env, 'SLACK_TASK_CHANNELS'),
  };
}

const DAY_MS = 86_400_000;

function deliveryConfig(env: Env): Pick<CommonConfig, 'deliveryWebhookUrl' | 'deliveryWebhookSecret' | 'deliveryTtlMs' | 'deliveryMaxTtlMs'> {
  const webhookUrl = url(env, 'DELIVERY_WEBHOOK_URL', ['http:', 'https:']);
  // The secret's value never appears in a message, not even in part.
  const secret = str(env, 'DELIVERY_WEBHOOK_SECRET');
  if (webhookUrl && !secret) throw new ConfigError('DELIVERY_WEBHOOK_SECRET', 'is required when DELIVERY_WEBHOOK_URL is set (notices are signed with it)');
  if (secret && !webhookUrl) throw new ConfigError('DELIVERY_WEBHOOK_URL', 'is required when DELIVERY_WEBHOOK_SECRET is set');
  if (secret && secret.length < 16) throw new ConfigError('DELIVERY_WEBHOOK_SECRET', 'must be at least 16 characters (32 random bytes recommended)');
  const maxTtlMs = int(env, 'DELIVERY_MAX_TTL_MS', 7 * DAY_MS, 1000, 30 * DAY_MS);
  const ttlMs = int(env, 'DELIVERY_TTL_MS', Math.min(DAY_MS, maxTtlMs), 1000, 30 * DAY_MS);
  if (ttlMs > maxTtlMs) throw new ConfigError('DELIVERY_TTL_MS', `must not exceed DELIVERY_MAX_TTL_MS (${maxTtlMs}), got ${ttlMs}`);
  return { deliveryWebhookUrl: webhookUrl, deliveryWebhookSecret: secret, deliveryTtlMs: ttlMs, deliveryMaxTtlMs: maxTtlMs };
}

export function loadGatewayConfig(env: Env = process.env): GatewayConfig {
  const common = loadCommonConfig(env);
  if (common.slack && !common.slack.signingSecret && !common.slack.appToken) {
    throw new ConfigError('SLACK_SIGNING_SECRET', "is required with SLACK_BOT_TOKEN (it verifies Slack's callbacks), unless SLACK_APP_TOKEN selects Socket Mode");
  }
  return {
    ...common,
    host: str(env, 'HOST', '0.0.0.0')!,
    port: int(env, 'PORT', 8080, 0, 65535),
    scimToken: str(env, 'SCIM_TOKEN'),
    adminToken: str(env, 'ADMIN_TOKEN'),
    temporalUiUrl: url(env, 'TEMPORAL_UI_URL', ['http:', 'https:']),
    outboxPollMs: int(env, 'OUTBOX_POLL_MS', 500, 10, 600_000),
    outboxBatchSize: int(env, 'OUTBOX_BATCH_SIZE', 100, 1, 10_000),
    outboxLeaseMs: int(env, 'OUTBOX_LEASE_MS', 30_000, 100, 3_600_000),
    outboxRetryMaxMs: int(env, 'OUTBOX_RETRY_MAX_MS', 30_000, 10, 3_600_000),
    outboxMaxAttempts: int(env, 'OUTBOX_MAX_ATTEMPTS', 20, 1, 1_000_000),
    bodyLimitBytes: int(env, 'BODY_LIMIT_BYTES', 1_048_576, 1024, 100 * 1_048_576),
    scimBulkMaxOperations: int(env, 'SCIM_BULK_MAX_OPERATIONS', 1000, 1, 100_000),
    scimBulkMaxPayloadBytes: int(env, 'SCIM_BULK_MAX_PAYLOAD_BYTES', 1_048_576, 1024, 100 * 1_048_576),
    scimExtensionsFile: str(env, 'SCIM_EXTENSIONS_FILE'),
    scimStrict: oneOf(env, 'SCIM_STRICT', ['true', 'false'], 'false') === 'true',
    provisioningFile: str(env, 'PROVISIONING_FILE'),
    deliverySweepMs: int(env, 'DELIVERY_SWEEP_MS', 60_000, 100, DAY_MS),
    trustProxy: trustProxy(env, 'TRUST_PROXY'),
    authFailureLimit: int(env, 'AUTH_FAILURE_LIMIT', 20, 1, 1_000_000),
    authFailureWindowMs: int(env, 'AUTH_FAILURE_WINDOW_MS', 60_000, 1000, DAY_MS),
    console: consoleConfig(env),
  };
}

function consoleConfig(env: Env): ConsoleConfig {
  // Secret values never appear in a message, not even in part.
  const issuer = url(env, 'CONSOLE_OIDC_ISSUER', ['https:', 'http:']);
  const clientId = str(env, 'CONSOLE_OIDC_CLIENT_ID');
  const clientSecret = str(env, 'CONSOLE_OIDC_CLIENT_SECRET');
  const sessionSecret = str(env, 'CONSOLE_SESSION_SECRET');
  if (issuer && !clientId) throw new ConfigError('CONSOLE_OIDC_CLIENT_ID', 'is required when CONSOLE_OIDC_ISSUER is set');
  if (!issuer && (clientId || clientSecret)) throw new ConfigError('CONSOLE_OIDC_ISSUER', 'is required when CONSOLE_OIDC_CLIENT_ID or CONSOLE_OIDC_CLIENT_SECRET is set');
  if (issuer && !sessionSecret) throw new ConfigError('CONSOLE_SESSION_SECRET', 'is required when CONSOLE_OIDC_ISSUER is set (it signs the console cookies)');
  if (sessionSecret && sessionSecret.length < 32) throw new ConfigError('CONSOLE_SESSION_SECRET', 'must be at least 32 characters (32 random bytes recommended)');
  if (issuer && new URL(issuer).protocol === 'http:' && !['localhost', '127.0.0.1', '[::1]'].includes(new URL(issuer).hostname)) {
    throw new ConfigError('CONSOLE_OIDC_ISSUER', 'must use https: (http: only on localhost)');
  }
  return {
    oidc: issuer && clientId ? { issuer, clientId, clientSecret } : undefined,
    sessionSecret,
    userClaim: oneOf(env, 'CONSOLE_USER_CLAIM', ['email', 'sub'] as const, 'email'),
    sessionTtlSeconds: int(env, 'CONSOLE_SESSION_TTL_SECONDS', 8 * 3600, 60, 30 * 86_400),
    adminGroup: str(env, 'CONSOLE_ADMIN_GROUP'),
  };
}

export function loadWorkerConfig(env: Env = process.env): WorkerConfig {
  return {
    ...loadCommonConfig(env),
    workerMetricsAddress: hostPort(env, 'WORKER_METRICS_ADDRESS'),
    temporalMetricsAddress: hostPort(env, 'TEMPORAL_METRICS_ADDRESS'),
  };
}

/** Insists on the variables a production process (gateway or worker alone) cannot run without. */
export function requireExternalServices(cfg: CommonConfig): asserts cfg is CommonConfig & {
  databaseUrl: string;
  temporalAddress: string;
} {
  if (!cfg.databaseUrl) {
    throw new ConfigError('DATABASE_URL', 'is required (use `npm start` for the embedded database)');
  }
  if (!cfg.temporalAddress) {
    throw new ConfigError('TEMPORAL_ADDRESS', 'is required (use `npm start` for the embedded dev server)');
  }
}

/** Prints a configuration error as one line and exits non-zero; other errors are rethrown. */
export function exitOnConfigError(err: unknown): never {
  if (err instanceof ConfigError) {
    process.stderr.write(`configuration error: ${err.message}\n`);
    process.exit(78); // EX_CONFIG
  }
  throw err;
}
