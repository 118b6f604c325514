/**
 * Admin API for bearer tokens (`admin` scope): list, create, rotate, revoke. A token's secret is in
 * the response that creates or rotates it and nowhere else, ever.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { issueToken, listActiveTokens, revokeNamedToken, rotateToken, TOKEN_NAME_MAX, TOKEN_NAME_PATTERN, TOKEN_SCOPES, TokenNameTaken, tokenUserId, type TokenAdmin, type TokenIdentity } from '../../../core/auth/tokens.js';
import { sendApiError } from './errors.js';
import { apiErrors, DateTime, NoContent, Nullable, StringEnum } from '../schemas.js';

const Scope = StringEnum(TOKEN_SCOPES);
const tokenInfo = {
  id: Type.String(),
  name: Type.String(),
  scopes: Type.Array(Type.String()),
  userId: Type.Optional(Type.String({ description: 'the directory user a personal token acts as' })),
  createdAt: DateTime(),
  lastUsedAt: Nullable(DateTime()),
};
const TokenInfo = Type.Object(tokenInfo);
const IssuedToken = Type.Object({ ...tokenInfo, token: Type.String({ description: 'shown once; store it now' }) });
const NameParams = Type.Object({ name: Type.String() });

const tokens: FastifyPluginAsyncTypebox = async (app) => {
  const admin = app.requireScope('admin');
  const tags = ['admin'];
  const security = [{ bearer: [] }];
  const by = (request: { identity: TokenIdentity | null }): TokenAdmin => ({ actor: request.identity!.name, reason: 'admin API' });
  const issued = (t: { identity: TokenIdentity; token: string; createdAt: Date }) => ({ ...t.identity, createdAt: t.createdAt.toISOString(), lastUsedAt: null, token: t.token });

  app.get('/api/tokens', { onRequest: admin, schema: { tags, security, summary: 'List active tokens (never their secrets)', response: { 200: Type.Array(TokenInfo), ...apiErrors([]) } } }, async () => {
    return (await listActiveTokens(app.db)).map((r) => ({ ...r, createdAt: r.createdAt.toISOString(), lastUsedAt: r.lastUsedAt?.toISOString() ?? null }));
  });

  app.post(
    '/api/tokens',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: 'Issue a token',
        body: Type.Object(
          {
            name: Type.String({ minLength: 1, maxLength: TOKEN_NAME_MAX, pattern: TOKEN_NAME_PATTERN }),
            scopes: Type.Array(Scope, { minItems: 1, uniqueItems: true }),
            user: Type.Optional(Type.String({ minLength: 1, description: 'userName or id of the directory user a personal token acts as (and only them)' })),
          },
          { additionalProperties: false },
        ),
        response: { 201: IssuedToken, ...apiErrors([400, 409], { 400: 'invalid body, or no such user', 409: 'an active token has that name' }) },
      },
    },
    async (request, reply) => {
      const { name, scopes, user } = request.body;
      let userId: string | undefined;
      if (user !== undefined) {
        userId = await tokenUserId(app.db, user);
        if (!userId) return sendApiError(reply, 400, `no user ${user}`);
      }
      try {
        return reply.code(201).send(issued(await issueToken(app.db, by(request), { name, scopes, userId })));
      } catch (err) {
        if (err instanceof TokenNameTaken) return sendApiError(reply, 409, err.message);
        throw err;
      }
    },
  );

  app.post(
    '/api/tokens/:name/rotate',
    {
      onRequest: admin,
      schema: {
        tags,
        security,
        summary: 'Revoke a token and issue a new one with the same name, scopes and user',
        params: NameParams,
        response: { 200: IssuedToken, ...apiErrors([404], { 404: 'no active token has that name' }) },
      },
    },
    async (request, reply) => {
      const rotated = await rotateToken(app.db, by(request), request.params.name);
      if (!rotated) return sendApiError(reply, 404, `no active token named "${request.params.name}"`);
      app.tokens.forget(rotated.revokedDigest);
      return issued(rotated);
    },
  );

  app.delete(
    '/api/tokens/:name',
    {
      onRequest: admin,
      schema: { tags, security, summary: 'Revoke a token', params: NameParams, response: { 204: NoContent('revoked'), ...apiErrors([404], { 404: 'no active token has that name' }) } },
    },
    async (request, reply) => {
      const digest = await revokeNamedToken(app.db, by(request), request.params.name);
      if (!digest) return sendApiError(reply, 404, `no active token named "${request.params.name}"`);
      app.tokens.forget(digest);
      return reply.code(204).send();
    },
  );
};

export default tokens;
