/**
 * The scim connector's HTTP side: one SCIM 2.0 request per call over fetch, with the bearer token
 * from a secret reference, and every failure classified for the engine.
 *
 * - Exactly one request per call; nothing here retries. A TransientError (network, timeout, 429,
 *   5xx) asks the engine to retry, with the wait the target asked for in Retry-After.
 * - The token is resolved on every request (a rotated `file:` secret takes effect without a
 *   restart), sent only in the Authorization header, and scrubbed from any text the target sends
 *   back before that text reaches an error message.
 * - Redirects are not followed: the bearer token is for the configured base URL only.
 */
import { PermanentError, TransientError, httpError } from '@scim-gateway/connector-sdk';

export const SCIM_CONTENT_TYPE = 'application/scim+json';
export const DEFAULT_TIMEOUT_MS = 30_000;
const ERROR_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:Error';
export const PATCH_OP_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
export const LIST_RESPONSE_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:ListResponse';

/** A SCIM resource as JSON: every resource the target returns has an id. */
export type ScimResource = Record<string, unknown> & { id: string };

export interface ListResponse {
  totalResults: number;
  startIndex: number;
  itemsPerPage: number;
  Resources: ScimResource[];
}

export interface PatchOperation {
  op: 'add' | 'remove' | 'replace';
  path?: string;
  value?: unknown;
}

export interface ScimClientOptions {
  /** The SCIM base URL without a trailing slash (already validated). */
  baseUrl: string;
  /** Answers the bearer token; called once per request. */
  token: () => Promise<string>;
  timeoutMs?: number | undefined;
}

export interface ScimResponse {
  status: number;
  /** The parsed JSON body, or undefined for an empty body (e.g. 204). */
  body: unknown;
}

/** Quotes a value for a SCIM filter string literal (RFC 7644 §3.4.2.2: JSON string syntax). */
export function filterString(value: string): string {
  return JSON.stringify(value);
}

/** Replaces every occurrence of `secret` in `text`, so nothing a target echoes can leak it. */
function scrub(text: string, secret: string): string {
  return secret.length > 0 ? text.split(secret).join('[redacted]') : text;
}

/** The `detail` (and `scimType`) of a SCIM error body, or the raw text when it is not one. */
function errorDetail(text: string): string {
  try {
    const body = JSON.parse(text) as { schemas?: unknown; detail?: unknown; scimType?: unknown };
    const isScimError = Array.isArray(body.schemas) && body.schemas.includes(ERROR_SCHEMA);
    if (isScimError || typeof body.detail === 'string') {
      const detail = typeof body.detail === 'string' ? body.detail : '';
      const scimType = typeof body.scimType === 'string' ? body.scimType : '';
      return scimType && detail ? `${scimType}: ${detail}` : detail || scimType || text;
    }
  } catch {
    // Not JSON: a proxy's or load balancer's page; the raw text (cut by httpError) is all we have.
  }
  return text;
}

/** Names the network failure without anything that could carry a credential. */
function describeNetworkError(err: unknown, timeoutMs: number): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } } | undefined;
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return `no answer within ${timeoutMs} ms`;
  const code = e?.cause?.code;
  const reason = e?.cause?.message ?? e?.message ?? String(err);
  if (!code) return reason;
  return reason.includes(code) ? reason : `${code} (${reason})`;
}

/** What the target says it supports in its ServiceProviderConfig, as far as this connector cares. */
export interface ServiceProviderFeatures {
  patch: boolean;
}

export class ScimClient {
  readonly baseUrl: string;
  private readonly timeoutMs: number;
  private features: Promise<ServiceProviderFeatures> | undefined;

  constructor(private readonly opts: ScimClientOptions) {
    this.baseUrl = opts.baseUrl;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /**
   * Sends one request and answers its 2xx response. `what` names the operation in error messages
   * ("scim: createAccount"); `path` is relative to the base URL and may carry a query string.
   */
  async request(what: string, method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', path: string, body?: unknown): Promise<ScimResponse> {
    const token = await this.opts.token();
    const where = `${what}: ${method} ${pathOnly(path)}`;
    const url = `${this.baseUrl}${path}`;
    const headers: Record<string, string> = {
      accept: `${SCIM_CONTENT_TYPE}, application/json`,
      authorization: `Bearer ${token}`,
      'user-agent': 'scim-gateway-scim/1',
    };
    if (body !== undefined) headers['content-type'] = SCIM_CONTENT_TYPE;

    let res: Response;
    let text: string;
    try {
      res = await fetch(url, {
        method,
        headers,
        body: body === undefined ? null : JSON.stringify(body),
        redirect: 'manual',
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      text = await res.text();
    } catch (err) {
      throw new TransientError(scrub(`${where} failed: ${describeNetworkError(err, this.timeoutMs)}`, token), undefined, { cause: err });
    }

    if (res.status >= 200 && res.status < 300) {
      if (text.trim() === '') return { status: res.status, body: undefined };
      try {
        return { status: res.status, body: JSON.parse(text) as unknown };
      } catch {
        throw new PermanentError(`${where} failed: HTTP ${res.status} with a body that is not JSON; is baseUrl the SCIM endpoint?`, 'invalidResponse');
      }
    }
    if (res.status >= 300 && res.status < 400) {
      throw new PermanentError(
        `${where} failed: HTTP ${res.status} redirects to ${res.headers.get('location') ?? 'nowhere'}; redirects are not followed, so set baseUrl to the final SCIM endpoint`,
        'invalidConfig',
      );
    }
    throw httpError(where, res.status, scrub(errorDetail(text), token), res.headers);
  }

  /** Reads /ServiceProviderConfig (remembering its features) and answers the raw document. */
  async serviceProviderConfig(what: string): Promise<Record<string, unknown>> {
    const body = await this.get(what, '/ServiceProviderConfig');
    this.features = Promise.resolve(featuresOf(body));
    return body;
  }

  /**
   * The target's features, read once from /ServiceProviderConfig and then kept for the client's
   * life (a failed read is not kept, so the next call asks again).
   */
  async serviceProviderFeatures(what: string): Promise<ServiceProviderFeatures> {
    if (!this.features) {
      const pending = this.get(what, '/ServiceProviderConfig').then(featuresOf);
      this.features = pending;
      pending.catch(() => {
        if (this.features === pending) this.features = undefined;
      });
    }
    return await this.features;
  }

  /** GET that expects a JSON object. */
  async get(what: string, path: string): Promise<Record<string, unknown>> {
    return asObject(what, (await this.request(what, 'GET', path)).body);
  }

  /** GET of a SCIM ListResponse, checked for shape. */
  async list(what: string, path: string): Promise<ListResponse> {
    const body = asObject(what, (await this.request(what, 'GET', path)).body);
    const resources = body.Resources ?? [];
    if (!Array.isArray(resources)) throw invalidResponse(what, 'ListResponse.Resources is not an array');
    for (const r of resources) {
      if (!r || typeof r !== 'object' || typeof (r as { id?: unknown }).id !== 'string') throw invalidResponse(what, 'a listed resource has no id');
    }
    const totalResults = typeof body.totalResults === 'number' ? body.totalResults : resources.length;
    const startIndex = typeof body.startIndex === 'number' ? body.startIndex : 1;
    const itemsPerPage = typeof body.itemsPerPage === 'number' ? body.itemsPerPage : resources.length;
    return { totalResults, startIndex, itemsPerPage, Resources: resources as ScimResource[] };
  }

}

/** PATCH counts as supported unless the target explicitly says `patch.supported: false`. */
function featuresOf(config: Record<string, unknown>): ServiceProviderFeatures {
  const patch = config.patch as { supported?: unknown } | undefined;
  return { patch: patch?.supported !== false };
}

/** The request path without its query, for messages (a filter may hold a user name). */
function pathOnly(path: string): string {
  const q = path.indexOf('?');
  return q === -1 ? path : path.slice(0, q);
}

export function invalidResponse(what: string, problem: string): PermanentError {
  return new PermanentError(`${what} failed: the target's answer is not valid SCIM: ${problem}`, 'invalidResponse');
}

function asObject(what: string, body: unknown): Record<string, unknown> {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw invalidResponse(what, 'expected a JSON object');
  return body as Record<string, unknown>;
}

/** Narrows a returned resource to one with an id. */
export function asResource(what: string, body: unknown): ScimResource {
  const obj = asObject(what, body);
  if (typeof obj.id !== 'string' || obj.id === '') throw invalidResponse(what, 'the resource has no id');
  return obj as ScimResource;
}
