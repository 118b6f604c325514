/**
 * A fake webhook receiver for tests: a real HTTPS server on 127.0.0.1 that speaks the webhook
 * protocol the way a careful production receiver would.
 *
 * - TLS with a throwaway self-signed certificate made by the openssl CLI in a temp dir, so the
 *   connector is tested with certificate verification on (trusting it through `caFile`).
 * - Every delivery's signature and timestamp are verified with ./signature.ts, and a delivery id
 *   seen before is refused, so the tests prove signing and replay protection end to end.
 * - Accounts and grants live in memory with the same idempotency rules the contract asks for.
 * - Failures can be programmed per operation (status, Retry-After, message, malformed bodies, delays)
 *   to exercise the connector's error classification.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { AccountInput, EntitlementRef } from '@scim-gateway/connector-sdk';
import type { WebhookOperation, WebhookRequest } from '../../../connectors/webhook/client.js';
import { SIGNATURE_HEADER, TIMESTAMP_HEADER, verifySignature, type VerifyFailure } from '@scim-gateway/connector-sdk/signature';

const run = promisify(execFile);

export interface FakeAccount {
  remoteId: string;
  userId: string;
  userName: string;
  externalId?: string | undefined;
  email?: string | undefined;
  displayName?: string | undefined;
  givenName?: string | undefined;
  familyName?: string | undefined;
  active: boolean;
}

/** A programmed failure for the next delivery(s) of one operation. */
export interface Failure {
  status: number;
  /** The human-readable reason in the JSON error body. */
  message?: string;
  headers?: Record<string, string>;
  /** A raw body instead of the JSON error body (for malformed answers). */
  body?: string;
  /** How many deliveries fail this way; default 1. */
  times?: number;
  /** Wait this long before answering (for timeouts). */
  delayMs?: number;
}

export interface Delivery {
  operation: string;
  id: string;
  timestamp: number;
  headers: IncomingMessage['headers'];
  rawBody: string;
}

export interface FakeReceiverOptions {
  /** The HMAC secret(s) accepted. */
  secret: string | string[];
  toleranceSeconds?: number;
  /** Items per listing page; small by default so pagination is exercised. */
  pageSize?: number;
  /** The path deliveries must go to. */
  path?: string;
}

export interface FakeReceiver {
  url: string;
  /** The PEM file of the self-signed certificate, to pass as the connector's caFile. */
  caFile: string;
  port: number;
  accounts: Map<string, FakeAccount>;
  /** Entitlement name → remote ids holding it. */
  grants: Map<string, Set<string>>;
  /** Deliveries that passed authentication, in order. */
  deliveries: Delivery[];
  /** Why deliveries were refused at authentication, in order. */
  rejections: (VerifyFailure | 'replayed')[];
  /** Every HTTP request received, authenticated or not. */
  requestCount(): number;
  fail(operation: WebhookOperation, failure: Failure): void;
  close(): Promise<void>;
}

const STATUS_CODES: Record<number, string> = {
  400: 'badRequest',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'notFound',
  408: 'timeout',
  409: 'conflict',
  413: 'tooLarge',
  415: 'unsupportedMediaType',
  422: 'unprocessable',
  425: 'tooEarly',
  429: 'rateLimited',
};

class HttpProblem extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Makes a key and a self-signed certificate for 127.0.0.1 and localhost in a fresh temp dir. */
async function makeCertificate(): Promise<{ dir: string; key: string; cert: string; certFile: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'webhook-fake-'));
  const keyFile = join(dir, 'key.pem');
  const certFile = join(dir, 'cert.pem');
  await run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=webhook fake receiver',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ]);
  return { dir, key: await readFile(keyFile, 'utf8'), cert: await readFile(certFile, 'utf8'), certFile };
}

function pageOf<T>(all: T[], cursor: string | undefined, size: number): { items: T[]; next?: string } {
  let offset = 0;
  if (cursor !== undefined) {
    const decoded = /^o(\d+)$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (!decoded) throw new HttpProblem(400, `cursor ${JSON.stringify(cursor)} is not one this service issued`);
    offset = Number(decoded[1]);
  }
  const items = all.slice(offset, offset + size);
  const end = offset + items.length;
  return end < all.length ? { items, next: Buffer.from(`o${end}`).toString('base64url') } : { items };
}

function profile(a: AccountInput): Omit<FakeAccount, 'remoteId'> {
  return {
    userId: a.userId,
    userName: a.userName,
    externalId: a.externalId,
    email: a.email,
    displayName: a.displayName,
    givenName: a.givenName,
    familyName: a.familyName,
    active: a.active,
  };
}

function sameProfile(x: Omit<FakeAccount, 'remoteId'>, y: Omit<FakeAccount, 'remoteId'>): boolean {
  const keys: (keyof Omit<FakeAccount, 'remoteId'>)[] = ['userId', 'userName', 'externalId', 'email', 'displayName', 'givenName', 'familyName', 'active'];
  return keys.every((k) => x[k] === y[k]);
}

export async function startFakeReceiver(opts: FakeReceiverOptions): Promise<FakeReceiver> {
  const tls = await makeCertificate();
  const secrets = typeof opts.secret === 'string' ? [opts.secret] : opts.secret;
  const tolerance = opts.toleranceSeconds ?? 300;
  const pageSize = opts.pageSize ?? 2;
  const path = opts.path ?? '/hooks/scim';

  const accounts = new Map<string, FakeAccount>();
  const grants = new Map<string, Set<string>>();
  const deliveries: Delivery[] = [];
  const rejections: (VerifyFailure | 'replayed')[] = [];
  const seenIds = new Map<string, number>();
  const failures = new Map<string, Failure[]>();
  const timers = new Set<NodeJS.Timeout>();
  let requests = 0;
  let nextId = 1;

  const send = (res: ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}) => {
    if (body === undefined) {
      res.writeHead(status, headers).end();
      return;
    }
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    res.writeHead(status, { 'content-type': typeof body === 'string' ? 'text/plain' : 'application/json', ...headers }).end(text);
  };
  const problem = (res: ServerResponse, status: number, message: string, headers?: Record<string, string>) =>
    send(res, status, { error: STATUS_CODES[status] ?? (status >= 500 ? 'serverError' : 'error'), message }, headers);

  const byUserName = (userName: string) => [...accounts.values()].find((a) => a.userName.toLowerCase() === userName.toLowerCase());
  const entitlementName = (e: EntitlementRef | undefined): string => {
    const name = e?.target?.name;
    if (typeof name !== 'string' || !name) throw new HttpProblem(400, 'entitlement.target.name is required');
    return name;
  };
  const requireRemoteId = (r: WebhookRequest): string => {
    if (typeof r.remoteId !== 'string' || !r.remoteId) throw new HttpProblem(400, 'remoteId is required');
    return r.remoteId;
  };
  const requireAccount = (r: WebhookRequest): AccountInput => {
    const a = r.account;
    if (!a || typeof a.userName !== 'string' || !a.userName || typeof a.userId !== 'string' || typeof a.active !== 'boolean') {
      throw new HttpProblem(422, 'account.userId, account.userName and account.active are required');
    }
    return a;
  };

  /** Applies one authenticated operation; answers [status, body]. */
  const apply = (r: WebhookRequest): [number, unknown?] => {
    switch (r.operation) {
      case 'validate':
        return [204];
      case 'createAccount': {
        const input = requireAccount(r);
        const existing = byUserName(input.userName);
        if (existing) {
          if (existing.userId !== input.userId) throw new HttpProblem(409, `userName ${input.userName} belongs to another user`);
          return [200, { status: 'alreadyApplied', remoteId: existing.remoteId }];
        }
        const remoteId = `acct-${nextId++}`;
        accounts.set(remoteId, { remoteId, ...profile(input) });
        return [200, { status: 'applied', remoteId }];
      }
      case 'updateAccount': {
        const remoteId = requireRemoteId(r);
        const input = requireAccount(r);
        const current = accounts.get(remoteId);
        if (!current) throw new HttpProblem(404, `account ${remoteId} does not exist`);
        const clash = byUserName(input.userName);
        if (clash && clash.remoteId !== remoteId) throw new HttpProblem(409, `userName ${input.userName} belongs to another account`);
        const next = profile(input);
        if (sameProfile(current, next)) return [200, { status: 'alreadyApplied', remoteId }];
        accounts.set(remoteId, { remoteId, ...next });
        return [200, { status: 'applied', remoteId }];
      }
      case 'disableAccount': {
        const remoteId = requireRemoteId(r);
        const current = accounts.get(remoteId);
        if (!current) throw new HttpProblem(404, `account ${remoteId} does not exist`);
        if (!current.active) return [200, { status: 'alreadyApplied', remoteId }];
        current.active = false;
        return [200, { status: 'applied', remoteId }];
      }
      case 'deleteAccount': {
        const remoteId = requireRemoteId(r);
        if (!accounts.delete(remoteId)) return [200, { status: 'alreadyApplied' }];
        for (const holders of grants.values()) holders.delete(remoteId);
        return [200, { status: 'applied' }];
      }
      case 'grant': {
        const remoteId = requireRemoteId(r);
        const name = entitlementName(r.entitlement);
        if (!accounts.has(remoteId)) throw new HttpProblem(404, `account ${remoteId} does not exist`);
        const holders = grants.get(name) ?? new Set<string>();
        grants.set(name, holders);
        if (holders.has(remoteId)) return [200, { status: 'alreadyApplied', remoteId }];
        holders.add(remoteId);
        return [200, { status: 'applied', remoteId }];
      }
      case 'revoke': {
        const remoteId = requireRemoteId(r);
        const name = entitlementName(r.entitlement);
        // An account that is gone holds nothing: revoking from it is already done.
        return [200, { status: grants.get(name)?.delete(remoteId) ? 'applied' : 'alreadyApplied', remoteId }];
      }
      case 'listAccounts': {
        const all = [...accounts.values()].map((a) => ({
          remoteId: a.remoteId,
          userName: a.userName,
          email: a.email,
          active: a.active,
          attributes: { userId: a.userId, externalId: a.externalId, displayName: a.displayName, givenName: a.givenName, familyName: a.familyName },
        }));
        return [200, pageOf(all, r.cursor, pageSize)];
      }
      case 'listGrants': {
        const holders = [...(grants.get(entitlementName(r.entitlement)) ?? [])].sort();
        return [200, pageOf(holders, r.cursor, pageSize)];
      }
      default:
        throw new HttpProblem(400, `unknown operation ${JSON.stringify((r as { operation?: unknown }).operation)}`);
    }
  };

  const handle = (req: IncomingMessage, res: ServerResponse, raw: Buffer) => {
    if (req.method !== 'POST') return problem(res, 405, 'only POST is accepted', { allow: 'POST' });
    if (req.url !== path) return problem(res, 404, `no endpoint at ${req.url}`);
    if (!String(req.headers['content-type']).startsWith('application/json')) return problem(res, 415, 'deliveries are application/json');

    const verdict = verifySignature(secrets, raw, req.headers[TIMESTAMP_HEADER] as string | undefined, req.headers[SIGNATURE_HEADER] as string | undefined, {
      toleranceSeconds: tolerance,
    });
    if (!verdict.ok) {
      rejections.push(verdict.reason);
      return problem(res, 401, verdict.reason === 'timestampOutOfTolerance' ? 'timestamp outside the accepted window' : `signature check failed: ${verdict.reason}`);
    }

    let delivery: WebhookRequest;
    try {
      delivery = JSON.parse(raw.toString('utf8')) as WebhookRequest;
    } catch {
      return problem(res, 400, 'body is not JSON');
    }
    if (!delivery || typeof delivery.id !== 'string' || !delivery.id) return problem(res, 400, 'delivery id is required');

    // Ids only need remembering while their timestamp could still pass the window check.
    const now = Math.floor(Date.now() / 1000);
    for (const [id, ts] of seenIds) if (now - ts > tolerance) seenIds.delete(id);
    if (seenIds.has(delivery.id)) {
      rejections.push('replayed');
      return problem(res, 401, `delivery ${delivery.id} was already received`);
    }
    seenIds.set(delivery.id, verdict.timestamp);
    deliveries.push({ operation: delivery.operation, id: delivery.id, timestamp: verdict.timestamp, headers: req.headers, rawBody: raw.toString('utf8') });

    const queue = failures.get(delivery.operation);
    const failure = queue?.[0];
    if (queue && failure) {
      failure.times = (failure.times ?? 1) - 1;
      if (failure.times <= 0) queue.shift();
      const answer = () => {
        if (res.destroyed) return;
        if (failure.body !== undefined) send(res, failure.status, failure.body, { 'content-type': 'application/json', ...failure.headers });
        else problem(res, failure.status, failure.message ?? `injected ${failure.status}`, failure.headers);
      };
      if (failure.delayMs) {
        const timer = setTimeout(() => {
          timers.delete(timer);
          answer();
        }, failure.delayMs);
        timers.add(timer);
      } else answer();
      return;
    }

    try {
      const [status, body] = apply(delivery);
      send(res, status, body);
    } catch (err) {
      if (err instanceof HttpProblem) return problem(res, err.status, err.message);
      return problem(res, 500, 'internal error');
    }
  };

  const server: Server = createServer({ key: tls.key, cert: tls.cert }, (req, res) => {
    requests++;
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= 1024 * 1024) chunks.push(chunk);
    });
    req.on('end', () => {
      if (size > 1024 * 1024) return problem(res, 413, 'delivery larger than 1 MiB');
      handle(req, res, Buffer.concat(chunks));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `https://127.0.0.1:${port}${path}`,
    caFile: tls.certFile,
    port,
    accounts,
    grants,
    deliveries,
    rejections,
    requestCount: () => requests,
    fail(operation, failure) {
      const queue = failures.get(operation) ?? [];
      queue.push({ ...failure });
      failures.set(operation, queue);
    },
    async close() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
      await rm(tls.dir, { recursive: true, force: true });
    },
  };
}
