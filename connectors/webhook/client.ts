/**
 * The webhook connector's HTTP side: one signed HTTPS POST per operation, its answer checked and
 * every failure classified for the engine.
 *
 * - Exactly one request per call. Nothing here retries: the engine owns the retry policy and a
 *   TransientError is how we ask it to (with the wait the receiver asked for, if it said).
 * - TLS is always verified. `caFile` adds a CA to Node's bundled roots; nothing turns checking off.
 * - Redirects are not followed: a signed request is for the configured URL only.
 * - The HMAC secret is resolved on every delivery (so a rotated `file:` secret takes effect without
 *   a restart), used only to sign, and scrubbed from any text a receiver sends back before that text
 *   reaches an error message.
 */
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Agent, request as httpsRequest } from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import { rootCertificates } from 'node:tls';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import {
  PermanentError,
  TransientError,
  httpError,
  type AccountInput,
  type Capability,
  type EntitlementRef,
  type Page,
  type RemoteAccount,
  type WriteResult,
} from '@scim-gateway/connector-sdk';
import { SIGNATURE_HEADER, TIMESTAMP_HEADER, signPayload } from '@scim-gateway/connector-sdk/signature';

/** Every connector method, plus the credentials check. */
export type WebhookOperation = Capability | 'validate';

/** The JSON body of every delivery. */
export interface WebhookRequest {
  operation: WebhookOperation;
  /** Unique per delivery (a UUID), for the receiver's replay protection and logs. */
  id: string;
  account?: AccountInput;
  remoteId?: string;
  entitlement?: EntitlementRef;
  cursor?: string;
}

export const DEFAULT_TIMEOUT_MS = 10_000;
/** Answers larger than this are cut off: a listing page has no business being bigger. */
export const MAX_RESPONSE_BYTES = 8 * 1024 * 1024;
/** Secrets shorter than this are refused: an HMAC is only as strong as its key. */
export const MIN_SECRET_LENGTH = 16;

/** Headers the protocol sets itself; configuration may not override them. */
export const RESERVED_HEADERS = ['content-type', 'content-length', 'host', 'connection', 'transfer-encoding', 'user-agent', TIMESTAMP_HEADER, SIGNATURE_HEADER];
/** Headers that carry credentials; configuration holds no secrets, the signature authenticates us. */
export const CREDENTIAL_HEADERS = ['authorization', 'proxy-authorization', 'cookie'];

/** Certificate failures: a trust or configuration problem that waiting will not fix. */
const TLS_ERROR_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_UNTRUSTED',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_REVOKED',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

const WriteAnswer = Type.Object({
  status: Type.Union([Type.Literal('applied'), Type.Literal('alreadyApplied')]),
  remoteId: Type.Optional(Type.String({ minLength: 1 })),
});

const NextCursor = Type.Optional(Type.Union([Type.String({ minLength: 1 }), Type.Null()]));

const AccountsAnswer = Type.Object({
  items: Type.Array(
    Type.Object({
      remoteId: Type.String({ minLength: 1 }),
      userName: Type.Optional(Type.String()),
      email: Type.Optional(Type.String()),
      active: Type.Optional(Type.Boolean()),
      attributes: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    }),
  ),
  next: NextCursor,
});

const GrantsAnswer = Type.Object({ items: Type.Array(Type.String({ minLength: 1 })), next: NextCursor });

export interface WebhookClientOptions {
  /** The receiver's https URL (already validated). */
  url: string;
  /** Answers the HMAC secret; called once per delivery. */
  secret: () => Promise<string>;
  /** Extra CA certificates (PEM file) to trust besides Node's bundled roots. */
  caFile?: string | undefined;
  timeoutMs?: number | undefined;
  /** Extra, non-secret headers sent with every delivery. */
  headers?: Record<string, string> | undefined;
  /** The clock used for the timestamp header, in unix seconds. */
  now?: () => number;
}

interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  truncated: boolean;
}

class Timeout extends Error {}

export class WebhookClient {
  private readonly url: URL;
  private readonly timeoutMs: number;
  private readonly extraHeaders: Record<string, string>;
  private readonly now: () => number;
  private agent: Promise<Agent> | undefined;

  constructor(private readonly opts: WebhookClientOptions) {
    this.url = new URL(opts.url);
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.extraHeaders = opts.headers ?? {};
    this.now = opts.now ?? (() => Math.floor(Date.now() / 1000));
  }

  async validate(): Promise<void> {
    await this.call('validate', {});
  }

  async write(operation: Exclude<WebhookOperation, 'listAccounts' | 'listGrants' | 'validate'>, fields: Omit<WebhookRequest, 'operation' | 'id'>): Promise<WriteResult> {
    const answer = this.json(operation, await this.call(operation, fields));
    if (!Value.Check(WriteAnswer, answer)) throw invalidResponse(operation, 'expected {"status": "applied"|"alreadyApplied", "remoteId"?: string}');
    if (operation === 'createAccount' && !answer.remoteId) throw invalidResponse(operation, 'createAccount must answer the remoteId');
    return answer.remoteId ? { status: answer.status, remoteId: answer.remoteId } : { status: answer.status };
  }

  async listAccounts(cursor?: string): Promise<Page<RemoteAccount>> {
    const answer = this.json('listAccounts', await this.call('listAccounts', cursor === undefined ? {} : { cursor }));
    if (!Value.Check(AccountsAnswer, answer)) throw invalidResponse('listAccounts', 'expected {"items": [{"remoteId": string, …}], "next"?: string}');
    const items = answer.items.map((a: Static<typeof AccountsAnswer>['items'][number]): RemoteAccount => ({
      remoteId: a.remoteId,
      ...(a.userName !== undefined && { userName: a.userName }),
      ...(a.email !== undefined && { email: a.email }),
      ...(a.active !== undefined && { active: a.active }),
      ...(a.attributes !== undefined && { attributes: a.attributes }),
    }));
    return page(items, answer.next, cursor, 'listAccounts');
  }

  async listGrants(entitlement: EntitlementRef, cursor?: string): Promise<Page<string>> {
    const answer = this.json('listGrants', await this.call('listGrants', cursor === undefined ? { entitlement } : { entitlement, cursor }));
    if (!Value.Check(GrantsAnswer, answer)) throw invalidResponse('listGrants', 'expected {"items": [remoteId, …], "next"?: string}');
    return page(answer.items, answer.next, cursor, 'listGrants');
  }

  async close(): Promise<void> {
    const agent = this.agent;
    this.agent = undefined;
    if (agent) (await agent.catch(() => undefined))?.destroy();
  }

  /** Sends one signed delivery and answers its 2xx response; anything else becomes a classified error. */
  private async call(operation: WebhookOperation, fields: Omit<WebhookRequest, 'operation' | 'id'>): Promise<RawResponse> {
    const what = `webhook: ${operation}`;
    const secret = await this.resolveSecret(what);
    const agent = await this.getAgent();
    const request: WebhookRequest = { operation, id: randomUUID(), ...fields };
    const body = JSON.stringify(request);
    const timestamp = this.now();

    let res: RawResponse;
    try {
      res = await this.post(agent, body, {
        ...this.extraHeaders,
        'content-type': 'application/json',
        'user-agent': 'scim-gateway-webhook/1',
        [TIMESTAMP_HEADER]: String(timestamp),
        [SIGNATURE_HEADER]: signPayload(secret, timestamp, body),
      });
    } catch (err) {
      throw networkError(what, err, secret);
    }

    if (res.status >= 200 && res.status < 300) {
      if (res.truncated) throw invalidResponse(operation, `the answer is larger than ${MAX_RESPONSE_BYTES} bytes`);
      return res;
    }
    const message = scrub(receiverMessage(res.body), secret);
    if (res.status >= 300 && res.status < 400) {
      throw new PermanentError(`${what} failed: HTTP ${res.status}: redirects are not followed; configure the final URL`, 'rejected');
    }
    throw httpError(what, res.status, message, { get: (name) => headerValue(res.headers, name) });
  }

  private json(operation: WebhookOperation, res: RawResponse): unknown {
    try {
      return JSON.parse(res.body) as unknown;
    } catch {
      throw invalidResponse(operation, `the answer (HTTP ${res.status}) is not JSON`);
    }
  }

  private async resolveSecret(what: string): Promise<string> {
    let secret: string;
    try {
      secret = await this.opts.secret();
    } catch (err) {
      if (err instanceof PermanentError) throw err;
      // The resolver's own message could in principle quote what it read; say only that it failed.
      throw new PermanentError(`${what}: the webhook secret cannot be resolved`, 'invalidConfig');
    }
    if (secret.length < MIN_SECRET_LENGTH) {
      throw new PermanentError(`${what}: the webhook secret is shorter than ${MIN_SECRET_LENGTH} characters; use at least 32 random bytes`, 'invalidConfig');
    }
    return secret;
  }

  /** One keep-alive agent per instance, trusting `caFile` in addition to the bundled roots. */
  private getAgent(): Promise<Agent> {
    this.agent ??= (async () => {
      const caFile = this.opts.caFile;
      if (!caFile) return new Agent({ keepAlive: true });
      let pem: string;
      try {
        pem = await readFile(caFile, 'utf8');
      } catch (err) {
        throw new PermanentError(`webhook: caFile ${caFile} cannot be read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, 'invalidConfig', { cause: err });
      }
      if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new PermanentError(`webhook: caFile ${caFile} holds no PEM certificate`, 'invalidConfig');
      // `ca` replaces the default trust store, so the bundled roots are passed along explicitly.
      return new Agent({ keepAlive: true, ca: [...rootCertificates, pem] });
    })();
    const pending = this.agent;
    pending.catch(() => {
      if (this.agent === pending) this.agent = undefined;
    });
    return pending;
  }

  private post(agent: Agent, body: string, headers: Record<string, string>): Promise<RawResponse> {
    return new Promise<RawResponse>((resolve, reject) => {
      let settled = false;
      const finish = (fn: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        fn();
      };
      const req = httpsRequest(this.url, {
        method: 'POST',
        agent,
        headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
      });
      // One deadline for the whole exchange (connect, TLS, send, receiver's work, reading the answer).
      const timer = setTimeout(() => {
        finish(() => reject(new Timeout(`no complete answer within ${this.timeoutMs} ms`)));
        req.destroy();
      }, this.timeoutMs);

      req.on('error', (err) => finish(() => reject(err)));
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        let truncated = false;
        const done = () => finish(() => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), truncated }));
        res.on('data', (chunk: Buffer) => {
          if (truncated) return;
          if (size + chunk.length > MAX_RESPONSE_BYTES) {
            chunks.push(chunk.subarray(0, MAX_RESPONSE_BYTES - size));
            truncated = true;
            done();
            res.destroy();
            return;
          }
          size += chunk.length;
          chunks.push(chunk);
        });
        res.on('end', done);
        res.on('error', (err) => finish(() => reject(err)));
        res.on('close', () => {
          if (!res.complete) finish(() => reject(new Error('the receiver closed the connection before the answer was complete')));
        });
      });
      req.end(body);
    });
  }
}

function page<T>(items: T[], next: string | null | undefined, cursor: string | undefined, operation: WebhookOperation): Page<T> {
  if (next && next === cursor) throw invalidResponse(operation, 'the answer repeats the cursor it was given');
  return next ? { items, next } : { items };
}

function invalidResponse(operation: WebhookOperation, why: string): PermanentError {
  return new PermanentError(`webhook: ${operation}: invalid response from the receiver: ${why}`, 'invalidResponse');
}

function networkError(what: string, err: unknown, secret: string): Error {
  if (err instanceof Timeout) return new TransientError(`${what} failed: ${err.message}`);
  const e = err as NodeJS.ErrnoException;
  const detail = scrub(e.message || String(err), secret);
  if (e.code && TLS_ERROR_CODES.has(e.code)) {
    return new PermanentError(`${what} failed: the receiver's certificate is not trusted (${e.code}): ${detail}; check the URL, or set caFile to the CA that issued it`, 'tlsError');
  }
  return new TransientError(`${what} failed: ${detail}`, undefined, { cause: err });
}

/** The receiver's explanation: `message` (or `error`) of a JSON body, else the body's text. */
function receiverMessage(body: string): string {
  const text = body.trim();
  try {
    const parsed = JSON.parse(text) as unknown;
    if (parsed && typeof parsed === 'object') {
      const { message, error } = parsed as { message?: unknown; error?: unknown };
      if (typeof message === 'string' && message) return message;
      if (typeof error === 'string' && error) return error;
    }
  } catch {
    // Not JSON: the text itself is the message.
  }
  return text;
}

function scrub(text: string, secret: string): string {
  return secret ? text.split(secret).join('[redacted]') : text;
}

function headerValue(headers: IncomingHttpHeaders, name: string): string | null {
  const v = headers[name.toLowerCase()];
  return Array.isArray(v) ? (v[0] ?? null) : (v ?? null);
}
