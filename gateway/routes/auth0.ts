/**
 * Endpoints Auth0 calls (no bearer token of ours: each checks the source's own shared secret, in
 * constant time):
 *
 * - POST /auth0/:source/log-stream: Auth0 Log Streams (custom webhook; the Authorization header
 *   carries the source's logStreamSecret), see core/sources/log-stream.ts.
 * - POST /auth0/:source/invitations/redeem: the post-login Action redeems an invitation at the
 *   invitee's first login (Authorization: Bearer <the source's actionSecret>), see
 *   core/invitations/invitations.ts. A refusal is 403 with the message the login page shows.
 * - POST /auth0/:source/logins: the post-login Action asks whether the user's accounts are ready
 *   (core/logins/status.ts). Answers {ready: true}, or {ready: false, path, session}: the status page
 *   (./login-status.ts) to send the user to, with a signed short-lived session token.
 */
import type { FastifyReply } from 'fastify';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { createSecretResolver, type SecretResolver } from '../../connectors/index.js';
import { getSource } from '../../core/sources/import.js';
import { auth0Source, parseAuth0SourceConfig, type Auth0Source } from '../../core/sources/auth0.js';
import { applyLogBatch, logStreamAuthorized, logStreamSecret, parseLogBatch, readLogEvent, type LogEvent } from '../../core/sources/log-stream.js';
import { sendApiError as fail } from './api/errors.js';
import { redeemInvitation, REFUSAL_MESSAGES, type RedeemRefusal } from '../../core/invitations/invitations.js';
import { loginStatus, loginUser } from '../../core/logins/status.js';
import { SESSION_TTL_SECONDS, sessionKey, signToken } from '../../core/logins/tokens.js';
import { ApiError, apiErrors, Open, StringEnum } from './schemas.js';
import { tellInvitationRequest } from '../invitation-requests.js';

const RedeemBody = Type.Object(
  {
    token: Type.String({ minLength: 1, maxLength: 200 }),
    email: Type.String({ minLength: 3, maxLength: 320 }),
    userId: Type.String({ minLength: 1, maxLength: 512, description: 'the Auth0 user_id logging in' }),
    name: Type.Optional(Type.String({ maxLength: 500 })),
  },
  { additionalProperties: false },
);

const LoginBody = Type.Object(
  {
    userId: Type.String({ minLength: 1, maxLength: 512, description: 'the Auth0 user_id logging in' }),
    email: Type.String({ minLength: 3, maxLength: 320 }),
    name: Type.Optional(Type.String({ maxLength: 500 })),
    hostname: Type.String({ pattern: '^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$', maxLength: 253, description: 'the Auth0 host of the login (event.request.hostname), where /continue is' }),
  },
  { additionalProperties: false },
);

const SourceParams = Type.Object({ source: Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$' }) });

const Redeemed = Open({
  ok: Type.Boolean({ description: 'true' }),
  invitationId: Type.String(),
  userId: Type.String({ description: 'the directory user the invitation was redeemed for' }),
  entitlements: Type.Array(Type.String(), { description: 'the entitlements granted' }),
});
const RedeemRefused = Open(
  { ...ApiError().properties, reason: StringEnum(Object.keys(REFUSAL_MESSAGES) as RedeemRefusal[], { description: 'why' }) },
  { description: 'refused (the API error, with the reason); `message` is for the login page' },
);
const LoginAnswer = Open({
  ready: Type.Boolean({ description: "whether the user's accounts are ready; if not, send the user to `path` with `session`" }),
  path: Type.Optional(Type.String({ description: 'the status page (/login-status), when not ready' })),
  session: Type.Optional(Type.String({ description: 'signed, short-lived session token for the status page, when not ready' })),
});
const batchCounts = {
  received: Type.Integer(),
  applied: Type.Integer(),
  duplicates: Type.Integer({ description: 'applied by an earlier delivery' }),
  ignored: Type.Integer({ description: 'about no user of the source connection' }),
  failed: Type.Integer({ description: 'not applied yet (the Management API failed): they stay pending' }),
};
const LogBatchResult = Open(batchCounts, { description: 'what the batch did' });
const LogBatchFailure = Open(
  { ...ApiError().properties, ...batchCounts },
  { description: 'some events could not be applied yet and stay pending: Auth0 sends the batch again (the API error, with the counts)' },
);
/** Errors of the endpoints the post-login Action calls. */
const ACTION_ERRORS = { 400: 'the body is not the expected JSON', 401: "no Authorization: Bearer <the source's actionSecret>", 404: 'no such source' };

export interface Auth0RoutesOptions {
  /** Resolves the sources' secret references (default: this process's environment and files). */
  secret?: SecretResolver;
}

const auth0Routes: FastifyPluginAsyncTypebox<Auth0RoutesOptions> = async (app, opts) => {
  const secret = opts.secret ?? createSecretResolver();
  // Log Streams send JSON arrays, objects or JSON lines, all as application/json: the body is
  // parsed here (routes of this plugin only).
  app.addContentTypeParser(['application/json', 'application/x-ndjson', 'text/plain'], { parseAs: 'string' }, (_req, body, done) => done(null, body));

  /** The source, or undefined after answering 404. */
  async function source(id: string, reply: FastifyReply): Promise<Auth0Source | undefined> {
    const row = await getSource(app.db, id);
    if (!row) {
      await fail(reply, 404, `no source ${id}`);
      return undefined;
    }
    return auth0Source(parseAuth0SourceConfig(row.config), secret);
  }

  /** Whether the request carries the source's actionSecret; answers 401 otherwise. */
  async function actionAuthorized(src: Auth0Source, authorization: string | undefined, reply: FastifyReply): Promise<boolean> {
    const ref = src.config.actionSecret;
    const expected = ref === undefined ? undefined : await secret(ref);
    if (expected === undefined || !authorization || !/^Bearer\s/i.test(authorization) || !logStreamAuthorized(authorization.replace(/^Bearer\s+/i, ''), expected)) {
      await fail(reply, 401, 'Authorization: Bearer <the source\'s actionSecret> is required');
      return false;
    }
    return true;
  }

  /** Bodies of this plugin arrive as text (see the parser above). */
  function json(body: unknown): unknown {
    if (typeof body !== 'string') return body;
    try {
      return JSON.parse(body) as unknown;
    } catch {
      return undefined;
    }
  }

  app.post(
    '/auth0/:source/invitations/redeem',
    {
      schema: {
        tags: ['auth0'],
        summary: 'Redeem an invitation at first login (post-login Action)',
        params: SourceParams,
        response: {
          200: Redeemed,
          ...apiErrors([400, 401, 404], ACTION_ERRORS, false),
          403: RedeemRefused,
        },
      },
    },
    async (request, reply) => {
      const src = await source(request.params.source, reply);
      if (!src) return reply;
      if (!(await actionAuthorized(src, request.headers.authorization, reply))) return reply;
      const body = json(request.body);
      if (!Value.Check(RedeemBody, body)) return fail(reply, 400, 'expected {token, email, userId, name?}');
      const result = await redeemInvitation(app.db, { sourceId: request.params.source, token: body.token, email: body.email, auth0UserId: body.userId, name: body.name });
      if (!result.ok) return reply.code(403).send({ statusCode: 403, error: 'Forbidden', reason: result.reason, message: result.message });
      app.outbox.kick();
      // An access request that invited is fulfilled now: its workflow hears of it (without holding up the login).
      const { requestId, ...answer } = result;
      tellInvitationRequest(app.temporal, request.log, requestId);
      return answer;
    },
  );

  app.post(
    '/auth0/:source/logins',
    {
      schema: {
        tags: ['auth0'],
        summary: "Are the user's accounts ready? (post-login Action)",
        params: SourceParams,
        response: { 200: LoginAnswer, ...apiErrors([400, 401, 403, 404], { ...ACTION_ERRORS, 403: 'the user may not sign in (the message is for the login page)' }, false) },
      },
    },
    async (request, reply) => {
      const src = await source(request.params.source, reply);
      if (!src) return reply;
      if (!(await actionAuthorized(src, request.headers.authorization, reply))) return reply;
      const body = json(request.body);
      if (!Value.Check(LoginBody, body)) return fail(reply, 400, 'expected {userId, email, name?, hostname}');
      const user = await loginUser(app.db, request.params.source, { auth0UserId: body.userId, email: body.email, name: body.name });
      if (!user.ok) return fail(reply, 403, user.message);
      app.outbox.kick();
      const status = await loginStatus(app.db, user.userId);
      if (status.state === 'ready') return { ready: true };
      const actionSecret = await secret(src.config.actionSecret!);
      const now = Math.floor(Date.now() / 1000);
      const session = signToken(sessionKey(actionSecret), {
        typ: 'login-session',
        src: request.params.source,
        uid: user.userId,
        sub: body.userId,
        host: body.hostname,
        pol: src.config.onProvisioningFailure ?? 'deny',
        iat: now,
        exp: now + SESSION_TTL_SECONDS,
      });
      return { ready: false, path: '/login-status', session };
    },
  );

  app.post(
    '/auth0/:source/log-stream',
    {
      schema: {
        tags: ['auth0'],
        summary: 'Auth0 Log Streams (custom webhook): changes of the source connection\'s users, idempotent by log id',
        params: SourceParams,
        response: {
          200: LogBatchResult,
          ...apiErrors([400, 401, 404], { 400: 'the body is not a batch of log events', 401: 'the source has no logStreamSecret, or the Authorization header does not carry it', 404: 'no such source' }, false),
          503: LogBatchFailure,
        },
      },
    },
    async (request, reply) => {
      const src = await source(request.params.source, reply);
      if (!src) return reply;
      const expected = await logStreamSecret(src, secret);
      if (expected === undefined) return fail(reply, 401, `source ${request.params.source} has no logStreamSecret: log events are refused`);
      if (!logStreamAuthorized(request.headers.authorization, expected)) return fail(reply, 401, 'the Authorization header does not carry the log stream secret');
      let events: LogEvent[];
      try {
        events = parseLogBatch(request.body).map(readLogEvent);
      } catch (err) {
        return fail(reply, 400, (err as Error).message);
      }
      const result = await applyLogBatch(app.db, request.params.source, src, events);
      if (result.applied > 0) app.outbox.kick();
      // Events that could not be applied yet stay pending: Auth0 sends the batch again.
      if (result.failed === 0) return result;
      return reply
        .code(503)
        .send({ statusCode: 503, error: 'Service Unavailable', message: `${result.failed} of ${result.received} events could not be applied yet; send the batch again`, ...result });
    },
  );
};

export default auth0Routes;
