/**
 * Bearer-token authentication. `app.requireScope(scope)` returns an onRequest hook that accepts a request
 * only with an active token holding that scope, and attaches the token's identity as
 * `request.identity` (used to attribute every change in the audit log).
 *
 * Failed authentications (401) are counted per client address (@fastify/rate-limit's store); past
 * AUTH_FAILURE_LIMIT in AUTH_FAILURE_WINDOW_MS a failure answers 429 with Retry-After instead.
 * Only failures count and only failures are refused: a valid token is admitted whatever the
 * address did before, so clients behind one NAT address are not locked out by a misconfigured
 * neighbour. (Tokens are 256-bit random values, so the limit is about load and noise, not about
 * guessing.) The client address is the socket's unless TRUST_PROXY names the proxy in front.
 */
import { timingSafeEqual } from 'node:crypto';
import fp from 'fastify-plugin';
import rateLimit from '@fastify/rate-limit';
import type { FastifyPluginAsync, FastifyRequest, onRequestHookHandler } from 'fastify';
import type { TokenIdentity, TokenScope } from '../../core/auth/tokens.js';
import { bindRequestLog } from '../request-log.js';

declare module 'fastify' {
  interface FastifyInstance {
    requireScope(scope: TokenScope): onRequestHookHandler;
  }
  interface FastifyRequest {
    identity: TokenIdentity | null;
  }
}

/** Thrown by the auth preHandler; each API area renders it in its own error format. */
export class AuthError extends Error {
  constructor(
    readonly statusCode: 401 | 403 | 429,
    message: string,
  ) {
    super(message);
    this.name = 'AuthError';
  }
}

function bearer(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (!header) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1];
}

/** Attaches the identity when it may use `scope`; answers the error otherwise. */
function admit(request: FastifyRequest, identity: TokenIdentity | null, scope: TokenScope): AuthError | undefined {
  if (!identity) return new AuthError(401, 'the bearer token is not valid');
  if (!identity.scopes.includes(scope) && !identity.scopes.includes('admin')) {
    return new AuthError(403, `the token "${identity.name}" lacks the ${scope} scope`);
  }
  request.identity = identity;
  // Every later log line of this request names the token that made it (nothing to do when
  // logging is off; otherwise free until the request logs a line, see ../request-log.ts).
  if (request.log.level !== 'silent') bindRequestLog(request, { token: identity.name });
  return undefined;
}

/**
 * The last verified Authorization header of each keep-alive connection, valid as long as the
 * verifier's cache entry it came from: an identity provider sends the same header on every request
 * of a connection, so it is digested once per connection and cache period instead of per request.
 * Only an identical header from the same connection matches (compared in constant time: a proxy may
 * carry several clients' requests over one connection), and revocation takes effect as it does
 * through the verifier's cache.
 */
const lastOnSocket = new WeakMap<object, { header: Buffer; identity: TokenIdentity | null; expires: number }>();

function sameHeader(known: Buffer, header: string | undefined): boolean {
  if (header === undefined || Buffer.byteLength(header) !== known.length) return false;
  return timingSafeEqual(known, Buffer.from(header));
}

const auth: FastifyPluginAsync = async (app) => {
  app.decorateRequest('identity', null);
  // Only the limiter function is used (global: false): no route is limited as a whole.
  await app.register(rateLimit, { global: false });
  const failures = app.createRateLimit({
    max: app.config.authFailureLimit,
    timeWindow: app.config.authFailureWindowMs,
    keyGenerator: (request) => request.ip,
  });

  app.decorate('requireScope', (scope: TokenScope): onRequestHookHandler => {
    // A callback hook, so a token verified in the last few seconds costs no promise at all.
    return (request, reply, done) => {
      const finish = (err: AuthError | undefined) => {
        if (err?.statusCode !== 401) return done(err);
        failures(request).then(
          (limit) => {
            if (limit.isAllowed || !limit.isExceeded) return done(err);
            reply.header('retry-after', String(Math.max(1, limit.ttlInSeconds)));
            done(new AuthError(429, `too many failed authentications from this address; retry in ${Math.max(1, limit.ttlInSeconds)} s`));
          },
          (limiterErr: unknown) => done(limiterErr as Error),
        );
      };
      const header = request.headers.authorization;
      const socket = request.raw.socket;
      const last = lastOnSocket.get(socket);
      if (last && last.expires > Date.now() && sameHeader(last.header, header)) return finish(admit(request, last.identity, scope));
      const token = bearer(request);
      if (!token) return finish(new AuthError(401, 'Authorization: Bearer <token> is required'));
      const cached = app.tokens.cached(token);
      if (cached) {
        lastOnSocket.set(socket, { header: Buffer.from(header!), identity: cached.identity, expires: cached.expires });
        return finish(admit(request, cached.identity, scope));
      }
      app.tokens.verify(token).then(
        (identity) => finish(admit(request, identity, scope)),
        (err: unknown) => done(err as Error),
      );
    };
  });
};

export default fp(auth, { name: 'auth', dependencies: ['services'], fastify: '5.x' });
