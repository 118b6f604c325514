/**
 * The connector contract: what a plugin implements to provision one kind of target system.
 *
 * A connector knows nothing about SCIM, PostgreSQL or Temporal. It receives plain inputs, talks to
 * one target, and answers in these terms:
 *
 * - Reads are paginated and separate from writes (`listAccounts`, `listGrants`), so reconciliation
 *   streams a target of any size in bounded memory.
 * - Writes are idempotent: doing what is already so answers `alreadyApplied`, not an error.
 * - Failures are classified at the boundary: {@link TransientError} (network, 429, 5xx; with the wait
 *   the target asked for) is retried by the engine with backoff; {@link PermanentError} (400, 401,
 *   403, 404, 422, bad configuration) is not, and carries a reason a human can act on. Connectors
 *   never retry on their own, so there is one retry policy, visible in the Temporal UI.
 * - Capabilities are declared; the engine never calls a method the connector does not declare.
 *
 * Write one with {@link defineConnector}; docs/writing-a-connector.md walks through a complete example.
 */
import type { Static, TSchema } from '@sinclair/typebox';

/** What a connector can do; the engine refuses to call anything not declared. */
export type Capability =
  | 'createAccount'
  | 'updateAccount'
  | 'disableAccount'
  | 'deleteAccount'
  | 'grant'
  | 'revoke'
  | 'listAccounts'
  | 'listGrants';

/** The user as the engine hands it to a connector: the directory's view, nothing target-specific. */
export interface AccountInput {
  /** The gateway's id of the user (stable; use it to correlate). */
  userId: string;
  userName: string;
  externalId?: string | undefined;
  active: boolean;
  displayName?: string | undefined;
  givenName?: string | undefined;
  familyName?: string | undefined;
  /** Primary (or first) email address. */
  email?: string | undefined;
  /** The full SCIM resource, for connectors that map more attributes. */
  attributes: Record<string, unknown>;
}

/** An account as it exists in the target. */
export interface RemoteAccount {
  /** The target's identifier of the account (what later calls pass back). */
  remoteId: string;
  userName?: string | undefined;
  email?: string | undefined;
  active?: boolean | undefined;
  /** Anything else the connector wants reconciliation to see. */
  attributes?: Record<string, unknown> | undefined;
}

/** Something grantable in the target: a group, a team with a role, an organization membership. */
export interface EntitlementRef {
  /** The gateway's id of the entitlement. */
  id: string;
  /** Connector-specific description of what to grant, validated by the connector. */
  target: Record<string, unknown>;
}

export interface Page<T> {
  items: T[];
  /** Opaque cursor for the next page; absent on the last page. */
  next?: string | undefined;
}

export type WriteStatus = 'applied' | 'alreadyApplied';

export interface WriteResult {
  status: WriteStatus;
  /**
   * The account's remote id, when the write created or found it. From updateAccount, a different
   * one than it was given moves the account: the engine records it for every later call.
   */
  remoteId?: string | undefined;
}

/** Resolves secret references (`env:NAME`, `file:/path`) to their values; never logs them. */
export type SecretResolver = (reference: string) => Promise<string>;

export interface ConnectorLogger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

/** A file for the user that must reach them privately, e.g. a VPN profile with its private key. */
export interface Artifact {
  /** The gateway's id of the user it is for. */
  userId: string;
  /** File name offered to the browser, e.g. "alice.ovpn". */
  filename: string;
  contentType: string;
  content: Uint8Array | string;
  /** How long the link works; the gateway caps it (DELIVERY_MAX_TTL_MS). */
  ttlMs?: number | undefined;
}

/** A one-time download link. Treat `url` as a secret: never log it, never put it in an error. */
export interface DeliveryLink {
  url: string;
  expiresAt: string;
}

/**
 * Hands an artifact to its user through a one-time, expiring download link: the gateway keeps it
 * only encrypted under a key that exists nowhere but in the link, tells the user through the
 * configured delivery channel, and forgets it once downloaded or expired.
 */
export type Deliver = (artifact: Artifact) => Promise<DeliveryLink>;

export interface ConnectorContext<C> {
  /** The instance's configuration, already validated against the connector's configSchema. */
  config: C;
  secret: SecretResolver;
  log: ConnectorLogger;
  /**
   * Present when the worker is configured to deliver artifacts (PUBLIC_URL, DELIVERY_WEBHOOK_URL and
   * DELIVERY_WEBHOOK_SECRET; see docs/operations.md, "Deliveries"). A connector that needs it and
   * finds it absent fails with a PermanentError (kind "invalidConfig") naming those variables. Each
   * call makes a new link and supersedes the previous live link for the same user and file name;
   * it throws TransientError when the user could not be notified (the engine retries the step).
   */
  deliver?: Deliver | undefined;
}

/** One configured connection to a target. Methods exist exactly for the declared capabilities. */
export interface ConnectorInstance {
  /** One cheap authenticated call proving the configuration and credentials work. */
  validate(): Promise<void>;
  listAccounts?(cursor?: string): Promise<Page<RemoteAccount>>;
  /** Remote ids of the accounts holding `entitlement`. */
  listGrants?(entitlement: EntitlementRef, cursor?: string): Promise<Page<string>>;
  /** Finds the user's account by its natural key or creates it; answers its remoteId. */
  createAccount?(input: AccountInput): Promise<WriteResult>;
  /**
   * Brings the account in line with the user. When the account's identity in the target changed
   * (say, the username it is known by), it may answer a new `remoteId`; the engine then grants the
   * entitlements it recorded as applied to the account again, to the new remote id, and records
   * the new id only once they all succeeded (if one fails, the step fails and is retried with the
   * old id, so the answer for the old id must stay the new one). What the old remote id still holds
   * in the target is the connector's to keep or remove, and its documentation's to say.
   */
  updateAccount?(remoteId: string, input: AccountInput): Promise<WriteResult>;
  disableAccount?(remoteId: string): Promise<WriteResult>;
  deleteAccount?(remoteId: string): Promise<WriteResult>;
  grant?(remoteId: string, entitlement: EntitlementRef): Promise<WriteResult>;
  revoke?(remoteId: string, entitlement: EntitlementRef): Promise<WriteResult>;
  /** Releases sockets and timers. */
  close?(): Promise<void>;
}

export interface ConnectorDefinition<S extends TSchema = TSchema> {
  /** The type name configuration refers to, e.g. "webhook". */
  type: string;
  description: string;
  /** TypeBox schema of the configuration, with a description on every property. */
  configSchema: S;
  /** TypeBox schema of an entitlement's `target` for this connector. */
  entitlementSchema: TSchema;
  capabilities: readonly Capability[];
  create(ctx: ConnectorContext<Static<S>>): ConnectorInstance;
}

/** Declares a connector; the identity function gives the config type to `create`. */
export function defineConnector<S extends TSchema>(def: ConnectorDefinition<S>): ConnectorDefinition<S> {
  return def;
}

/**
 * Error classes are recognised by a brand, not by identity: a plugin may bring its own copy of this
 * package (another version, or compiled where the host runs the source), and its errors must still
 * be classified. `instanceof` on the class itself checks the brand; on a subclass it is the usual
 * prototype check.
 */
function branded(brand: symbol, base: abstract new (...args: never[]) => Error) {
  Object.defineProperty(base.prototype, brand, { value: true });
  Object.defineProperty(base, Symbol.hasInstance, {
    value(this: unknown, x: unknown): boolean {
      if (this !== base) return Function.prototype[Symbol.hasInstance].call(this, x);
      return typeof x === 'object' && x !== null && (x as Record<symbol, unknown>)[brand] === true;
    },
  });
}

/** A failure worth retrying later: network errors, 429, 5xx. */
export class TransientError extends Error {
  constructor(
    message: string,
    /** How long the target asked us to wait (Retry-After, rate-limit reset), if it said. */
    readonly retryAfterMs?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'TransientError';
  }
}

/** A failure that retrying will not fix: bad request, no permission, not found, invalid config. */
export class PermanentError extends Error {
  constructor(
    message: string,
    /** A short machine-readable kind, e.g. "forbidden", "notFound", "invalidConfig". */
    readonly kind: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'PermanentError';
  }
}

branded(Symbol.for('@scim-gateway/connector-sdk:TransientError'), TransientError);
branded(Symbol.for('@scim-gateway/connector-sdk:PermanentError'), PermanentError);

/** Parses Retry-After (seconds or an HTTP date) into milliseconds from now. */
export function retryAfterMs(header: string | null | undefined, now = Date.now()): number | undefined {
  if (!header) return undefined;
  const trimmed = header.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/**
 * Classifies an HTTP failure the usual way: 408, 425, 429 and 5xx are transient (honouring
 * Retry-After), everything else permanent. `what` prefixes the message ("webhook: createAccount").
 */
export function httpError(what: string, status: number, body: string, headers?: { get(name: string): string | null }): Error {
  const detail = body.length > 300 ? `${body.slice(0, 300)}…` : body;
  const message = `${what} failed: HTTP ${status}${detail ? `: ${detail}` : ''}`;
  if (status === 408 || status === 425 || status === 429 || status >= 500) {
    return new TransientError(message, retryAfterMs(headers?.get('retry-after')));
  }
  const kind = status === 401 ? 'unauthorized' : status === 403 ? 'forbidden' : status === 404 ? 'notFound' : status === 409 ? 'conflict' : 'rejected';
  return new PermanentError(message, kind);
}
