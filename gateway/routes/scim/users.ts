/**
 * /Users (RFC 7644 §3.3, §3.4.1).
 */
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { createUser, getUser, USER_SCHEMA, type StoredUser } from '../../directory/users.js';
import { ScimError } from '../../scim/errors.js';
import { baseUrl } from './discovery.js';

/** Attributes the server assigns; a client's values for them are ignored (RFC 7643 §3.1). */
const SERVER_ASSIGNED = new Set(['id', 'meta']);
/** Write-only attributes that are never stored or returned (RFC 7643 §4.1.1 `password`). */
const NEVER_STORED = new Set(['password']);

function etag(user: StoredUser): string {
  return `W/"${user.version}"`;
}

export function renderUser(user: StoredUser, base: string): Record<string, unknown> {
  return {
    ...user.resource,
    id: user.id,
    meta: {
      resourceType: 'User',
      created: user.created.toISOString(),
      lastModified: user.lastModified.toISOString(),
      location: `${base}/Users/${user.id}`,
      version: etag(user),
    },
  };
}

/** Checks the parts of a User the server depends on and drops what it must not keep. */
export function parseUserBody(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw ScimError.badRequest('invalidSyntax', 'the request body must be a JSON object');
  }
  const input = body as Record<string, unknown>;
  const schemas = input.schemas;
  if (!Array.isArray(schemas) || !schemas.every((s) => typeof s === 'string')) {
    throw ScimError.badRequest('invalidSyntax', '"schemas" must be an array of schema URIs');
  }
  if (!schemas.includes(USER_SCHEMA)) {
    throw ScimError.badRequest('invalidSyntax', `"schemas" must include ${USER_SCHEMA}`);
  }
  if (typeof input.userName !== 'string' || input.userName.trim() === '') {
    throw ScimError.badRequest('invalidValue', '"userName" is required and must be a non-empty string');
  }
  if (input.active !== undefined && typeof input.active !== 'boolean') {
    throw ScimError.badRequest('invalidValue', '"active" must be a boolean');
  }
  for (const key of ['externalId', 'displayName'] as const) {
    if (input[key] !== undefined && input[key] !== null && typeof input[key] !== 'string') {
      throw ScimError.badRequest('invalidValue', `"${key}" must be a string`);
    }
  }
  return Object.fromEntries(
    Object.entries(input).filter(([k]) => !SERVER_ASSIGNED.has(k) && !NEVER_STORED.has(k)),
  );
}

const ResourceSchema = { type: 'object', additionalProperties: true } as const;
const IdParams = {
  type: 'object',
  properties: { id: { type: 'string' } },
  required: ['id'],
} as const;

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const users: FastifyPluginAsync = async (app) => {
  const base = (request: FastifyRequest) => baseUrl(request, app.config.publicUrl);

  app.post(
    '/Users',
    {
      onRequest: app.requireScope('scim:write'),
      schema: {
        tags: ['scim'],
        summary: 'Create a user (RFC 7644 §3.3)',
        security: [{ bearer: [] }],
        body: ResourceSchema,
        response: { 201: ResourceSchema },
      },
    },
    async (request, reply) => {
      const resource = parseUserBody(request.body);
      const { user } = await createUser(app.db, { name: request.identity!.name }, resource);
      app.outbox.kick();
      const rendered = renderUser(user, base(request));
      return reply
        .code(201)
        .header('location', (rendered.meta as { location: string }).location)
        .header('etag', etag(user))
        .send(rendered);
    },
  );

  app.get<{ Params: { id: string } }>(
    '/Users/:id',
    {
      onRequest: app.requireScope('scim:read'),
      schema: {
        tags: ['scim'],
        summary: 'Get a user by id (RFC 7644 §3.4.1)',
        security: [{ bearer: [] }],
        params: IdParams,
        response: { 200: ResourceSchema },
      },
    },
    async (request, reply) => {
      const user = UUID_RE.test(request.params.id) ? await getUser(app.db, request.params.id) : undefined;
      if (!user) throw ScimError.notFound(`User ${request.params.id} not found`);
      return reply.header('etag', etag(user)).send(renderUser(user, base(request)));
    },
  );
};

export default users;
