/**
 * Bearer-token authentication. `app.requireScope(scope)` returns an onRequest hook that accepts a request
 * only with an active token holding that scope, and attaches the token's identity as
 * `request.identity` (used to attribute every change in the audit log).
 */
import { timingSafeEqual } from 'node:crypto';
import fp from 'fastify-plugin';
import type { FastifyPluginAsync, FastifyRequest, onRequestHookHandler } from 'fastify';
import type { TokenIdentity, TokenScope } from '../auth/tokens.js';

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
    readonly statusCode: 401 | 403,
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
  // Every later log line of this request names the token that made it (a child logger costs
  // a few per cent of a fast request, so none is made when logging is off).
  if (request.log.level !== 'silent') request.log = request.log.child({ token: identity.name });
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
  app.decorate('requireScope', (scope: TokenScope): onRequestHookHandler => {
    // A callback hook, so a token verified in the last few seconds costs no promise at all.
    return (request, _reply, done) => {
      const header = request.headers.authorization;
      const socket = request.raw.socket;
      const last = lastOnSocket.get(socket);
      if (last && last.expires > Date.now() && sameHeader(last.header, header)) return done(admit(request, last.identity, scope));
      const token = bearer(request);
      if (!token) return done(new AuthError(401, 'Authorization: Bearer <token> is required'));
      const cached = app.tokens.cached(token);
      if (cached) {
        lastOnSocket.set(socket, { header: Buffer.from(header!), identity: cached.identity, expires: cached.expires });
        return done(admit(request, cached.identity, scope));
      }
      app.tokens.verify(token).then(
        (identity) => done(admit(request, identity, scope)),
        (err: unknown) => done(err as Error),
      );
    };
  });
};

export default fp(auth, { name: 'auth', dependencies: ['services'], fastify: '5.x' });
