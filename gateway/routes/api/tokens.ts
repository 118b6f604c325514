/**
 * Admin API for bearer tokens (`admin` scope): list, create, rotate, revoke. A token's secret is in
 * the response that creates or rotates it and nowhere else, ever.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { createToken, revokeToken, TOKEN_SCOPES, type TokenScope } from '../../../core/auth/tokens.js';
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

  const audit = (actor: string, action: string, name: string, scopes?: string[]) =>
    app.db.query(
      `INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after) VALUES ($1, $2, 'ApiToken', $3, 'admin API', $4)`,
      [actor, action, name, scopes ? JSON.stringify({ scopes }) : null],
    );

  app.get('/api/tokens', { onRequest: admin, schema: { tags, security, summary: 'List active tokens (never their secrets)', response: { 200: Type.Array(TokenInfo), ...apiErrors([]) } } }, async () => {
    const { rows } = await app.db.query<{ id: string; name: string; scopes: string[]; user_id: string | null; created_at: Date; last_used_at: Date | null }>(
      'SELECT id, name, scopes, user_id, created_at, last_used_at FROM api_tokens WHERE revoked_at IS NULL ORDER BY name',
    );
    return rows.map((r) => ({ id: r.id, name: r.name, scopes: r.scopes, ...(r.user_id ? { userId: r.user_id } : {}), createdAt: r.created_at.toISOString(), lastUsedAt: r.last_used_at?.toISOString() ?? null }));
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
            name: Type.String({ minLength: 1, maxLength: 200, pattern: '^[A-Za-z0-9._:-]+$' }),
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
        const { rows } = await app.db.query<{ id: string }>(
          'SELECT id FROM users WHERE deleted_at IS NULL AND (id::text = $1 OR lower(user_name) = lower($1))',
          [user],
        );
        if (!rows[0]) return sendApiError(reply, 400, `no user ${user}`);
        userId = rows[0].id;
      }
      try {
        const { identity, token } = await createToken(app.db, name, scopes, undefined, userId);
        await audit(request.identity!.name, 'token.created', name, scopes);
        return reply.code(201).send({ ...identity, createdAt: new Date().toISOString(), lastUsedAt: null, token });
      } catch (err) {
        if ((err as { code?: string }).code === '23505') return sendApiError(reply, 409, `an active token named "${name}" exists`);
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
        summary: 'Revoke a token and issue a new one with the same name and scopes',
        params: NameParams,
        response: { 200: IssuedToken, ...apiErrors([404], { 404: 'no active token has that name' }) },
      },
    },
    async (request, reply) => {
      const { rows } = await app.db.query<{ scopes: TokenScope[] }>('SELECT scopes FROM api_tokens WHERE name = $1 AND revoked_at IS NULL', [request.params.name]);
      if (!rows[0]) return sendApiError(reply, 404, `no active token named "${request.params.name}"`);
      await revokeToken(app.db, request.params.name);
      const { identity, token } = await createToken(app.db, request.params.name, rows[0].scopes);
      await audit(request.identity!.name, 'token.rotated', request.params.name, rows[0].scopes);
      return { ...identity, createdAt: new Date().toISOString(), lastUsedAt: null, token };
    },
  );

  app.delete(
    '/api/tokens/:name',
    {
      onRequest: admin,
      schema: { tags, security, summary: 'Revoke a token', params: NameParams, response: { 204: NoContent('revoked'), ...apiErrors([404], { 404: 'no active token has that name' }) } },
    },
    async (request, reply) => {
      if (!(await revokeToken(app.db, request.params.name))) {
        return sendApiError(reply, 404, `no active token named "${request.params.name}"`);
      }
      await audit(request.identity!.name, 'token.revoked', request.params.name);
      return reply.code(204).send();
    },
  );
};

export default tokens;
