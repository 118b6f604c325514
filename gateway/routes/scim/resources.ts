/**
 * /Users and /Groups (RFC 7644 §3.3–§3.6, §3.14): one set of handlers for both resource types.
 *
 * Reads need the `scim:read` scope, writes `scim:write`. Every single-resource answer carries an
 * ETag (the resource's version); If-Match on PUT/PATCH/DELETE answers 412 when it is stale, and
 * If-None-Match on GET answers 304 when it is current.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { etagMatches, etagOf, type ResourceType, type StoredResource } from '../../../core/directory/store.js';
import { ScimError } from '../../../core/scim/errors.js';
import { listResponse, parseListParams, searchRequestParams, type ListParams, type RawListParams } from '../../../core/scim/list.js';
import { parsePatchRequest } from '../../../core/scim/patch/index.js';
import { relaxPatch, relaxResource, warnIgnored } from '../../../core/scim/lenient.js';
import { parseAttributeList, project } from '../../../core/scim/projection.js';
import type { SchemaRegistry } from '../../../core/scim/schemas.js';
import { baseUrl } from './discovery.js';
import { NoContent, SCIM_ANSWERS, SCIM_BODIES, ScimListResponse, ScimResourceOf, scimAuthErrors } from '../schemas.js';

const ENDPOINT: Record<ResourceType, string> = { User: 'Users', Group: 'Groups' };

/** The SCIM representation a client sees: stored attributes plus id and meta (RFC 7643 §3.1). */
export function renderResource(r: StoredResource, base: string): Record<string, unknown> {
  // schemas, id and externalId first, then the stored attributes in their order (one pass, no rest copy).
  const res = r.resource;
  const out: Record<string, unknown> = { schemas: res.schemas, id: r.id };
  if (res.externalId !== undefined) out.externalId = res.externalId;
  for (const key in res) if (key !== 'schemas' && key !== 'externalId') out[key] = res[key];
  for (const key of ['members', 'groups'] as const) {
    const list = out[key];
    if (Array.isArray(list)) {
      out[key] = (list as Array<Record<string, unknown>>).map((m) => {
        const type = (key === 'groups' ? 'Group' : m.type) as ResourceType | undefined;
        return type ? { ...m, $ref: `${base}/${ENDPOINT[type]}/${String(m.value)}` } : m;
      });
    }
  }
  out.meta = {
    resourceType: r.type,
    created: r.created.toISOString(),
    lastModified: r.lastModified.toISOString(),
    location: `${base}/${ENDPOINT[r.type]}/${r.id}`,
    version: etagOf(r.version),
  };
  return out;
}

/** Whether a projection can show `attr` at all (so the store can skip computing it). */
export function mayReturn(attr: string, p: Pick<ListParams, 'attributes' | 'excludedAttributes'>): boolean {
  if (!p.attributes && !p.excludedAttributes) return true;
  const lower = attr.toLowerCase();
  // `members[value eq "…"]` names members too: the attribute is what precedes a value filter.
  const nameOf = (a: string) => (a.includes('[') ? a.slice(0, a.indexOf('[')) : a.split('.')[0]!).toLowerCase();
  if (p.attributes && !p.attributes.some((a) => nameOf(a) === lower)) return false;
  return !(p.excludedAttributes ?? []).some((a) => a.toLowerCase() === lower);
}

/** A resource in a request body: any JSON object, checked against the schemas by core/scim. */
const ResourceBody = Type.Object({}, { additionalProperties: true, description: 'a SCIM resource (RFC 7643), extensions included' });
/** A PatchOp or SearchRequest body: any JSON object, parsed by core/scim. */
const MessageBody = Type.Object({}, { additionalProperties: true });
const IdParams = Type.Object({ id: Type.String() });
const listQueryProperties = {
  filter: Type.Optional(Type.String({ description: 'RFC 7644 §3.4.2.2 filter, e.g. userName eq "bjensen"' })),
  startIndex: Type.Optional(Type.String({ description: '1-based index of the first result' })),
  count: Type.Optional(Type.String({ description: 'page size (capped at the advertised maximum)' })),
  sortBy: Type.Optional(Type.String()),
  sortOrder: Type.Optional(Type.String({ description: 'ascending or descending' })),
  attributes: Type.Optional(Type.String({ description: 'comma-separated attributes to return' })),
  excludedAttributes: Type.Optional(Type.String({ description: 'comma-separated attributes to leave out' })),
};
const ListQuery = Type.Object(listQueryProperties);
const ProjectionQuery = Type.Object({ attributes: listQueryProperties.attributes, excludedAttributes: listQueryProperties.excludedAttributes });

export interface ResourceRoutesOptions {
  type: ResourceType;
}

export async function resourceRoutes(instance: FastifyInstance, opts: ResourceRoutesOptions): Promise<void> {
  const app = instance.withTypeProvider<TypeBoxTypeProvider>();
  const { type } = opts;
  const path = `/${ENDPOINT[type]}`;
  const registry: SchemaRegistry = app.scimRegistry;
  const base = (request: FastifyRequest) => baseUrl(request, app.config.publicUrl);
  const actor = (request: FastifyRequest) => ({ name: request.identity?.name ?? 'unknown' });
  const read = app.requireScope('scim:read');
  const write = app.requireScope('scim:write');
  const tags = ['scim'];
  const security = [{ bearer: [] }];

  const projection = (request: FastifyRequest) => {
    const q = (request.query ?? {}) as { attributes?: string; excludedAttributes?: string };
    return {
      attributes: parseAttributeList(q.attributes, registry, type),
      excludedAttributes: parseAttributeList(q.excludedAttributes, registry, type, 'excludedAttributes'),
    };
  };

  /**
   * What the answer will show of `groups` and `members`: with `excludedAttributes=members` (how
   * identity providers read and change large groups) the members are not read at all.
   */
  const readOptions = (request: FastifyRequest) => {
    const p = projection(request);
    return { withGroups: mayReturn('groups', p), withMembers: mayReturn('members', p) };
  };

  /** The body of a write with the IdP leniencies applied (core/scim/lenient.ts). */
  const relaxed = (request: FastifyRequest): unknown => {
    const { value, ignored } = relaxResource(request.body, registry, type, app.config.scimStrict);
    warnIgnored(request.log, type, ignored);
    return value;
  };

  const sendOne = (request: FastifyRequest, reply: FastifyReply, r: StoredResource, status = 200) => {
    const rendered = renderResource(r, base(request));
    reply.code(status).header('etag', etagOf(r.version));
    if (status === 201) reply.header('location', (rendered.meta as { location: string }).location);
    return reply.send(project(rendered, projection(request), registry, type));
  };

  const list = async (request: FastifyRequest, params: ListParams) => {
    const result = await app.directory.list(type, {
      filter: params.filter,
      startIndex: params.startIndex,
      count: params.count,
      sortBy: params.sortBy,
      sortOrder: params.sortOrder,
      withGroups: mayReturn('groups', params),
      withMembers: mayReturn('members', params),
    });
    const b = base(request);
    const resources = result.resources.map((r) => project(renderResource(r, b), params, registry, type));
    return listResponse(result.totalResults, params.startIndex, resources);
  };

  const one = ScimResourceOf(`the ${type}`);
  const many = ScimListResponse(`a page of ${ENDPOINT[type]}`);

  app.get(
    path,
    {
      onRequest: read,
      schema: {
        tags,
        ...SCIM_ANSWERS,
        security,
        summary: `List or filter ${ENDPOINT[type]} (RFC 7644 §3.4.2)`,
        querystring: ListQuery,
        response: { 200: many, ...scimAuthErrors([400]) },
      },
    },
    async (request) => list(request, parseListParams(request.query satisfies RawListParams, registry, type)),
  );

  app.post(
    `${path}/.search`,
    {
      onRequest: read,
      schema: {
        tags,
        ...SCIM_BODIES,
        security,
        summary: `Search ${ENDPOINT[type]} with a SearchRequest (RFC 7644 §3.4.3)`,
        body: MessageBody,
        response: { 200: many, ...scimAuthErrors([400, 413, 415]) },
      },
    },
    async (request) => list(request, parseListParams(searchRequestParams(request.body), registry, type)),
  );

  app.get(
    `${path}/:id`,
    {
      onRequest: read,
      schema: {
        tags,
        ...SCIM_ANSWERS,
        security,
        summary: `Get one ${type} (RFC 7644 §3.4.1)`,
        params: IdParams,
        querystring: ProjectionQuery,
        response: { 200: one, 304: NoContent('If-None-Match names the current version'), ...scimAuthErrors([400, 404]) },
      },
    },
    async (request, reply) => {
      const r = await app.directory.get(type, request.params.id, readOptions(request));
      if (etagMatches(request.headers['if-none-match'], r.version)) return reply.code(304).header('etag', etagOf(r.version)).send();
      return sendOne(request, reply, r);
    },
  );

  app.post(
    path,
    {
      onRequest: write,
      schema: {
        tags,
        ...SCIM_BODIES,
        security,
        summary: `Create a ${type} (RFC 7644 §3.3)`,
        body: ResourceBody,
        response: { 201: ScimResourceOf(`the ${type} created`), ...scimAuthErrors([400, 409, 413, 415]) },
      },
    },
    async (request, reply) => {
      const created = await app.directory.create(type, actor(request), relaxed(request));
      app.outbox.kick();
      return sendOne(request, reply, created, 201);
    },
  );

  app.put(
    `${path}/:id`,
    {
      onRequest: write,
      schema: {
        tags,
        ...SCIM_BODIES,
        security,
        summary: `Replace a ${type} (RFC 7644 §3.5.1)`,
        params: IdParams,
        body: ResourceBody,
        response: { 200: one, ...scimAuthErrors([400, 404, 409, 412, 413, 415]) },
      },
    },
    async (request, reply) => {
      const replaced = await app.directory.replace(type, actor(request), request.params.id, relaxed(request), request.headers['if-match'], readOptions(request));
      app.outbox.kick();
      return sendOne(request, reply, replaced);
    },
  );

  app.patch(
    `${path}/:id`,
    {
      onRequest: write,
      schema: {
        tags,
        ...SCIM_BODIES,
        security,
        summary: `Modify a ${type} (RFC 7644 §3.5.2)`,
        params: IdParams,
        body: MessageBody,
        response: { 200: one, ...scimAuthErrors([400, 404, 409, 412, 413, 415]) },
      },
    },
    async (request, reply) => {
      const { value: ops, ignored } = relaxPatch(parsePatchRequest(request.body), registry, type, app.config.scimStrict);
      warnIgnored(request.log, type, ignored);
      const { resource, changed } = await app.directory.patch(type, actor(request), request.params.id, ops, request.headers['if-match'], readOptions(request));
      if (changed) app.outbox.kick();
      return sendOne(request, reply, resource);
    },
  );

  app.delete(
    `${path}/:id`,
    {
      onRequest: write,
      schema: { tags, ...SCIM_ANSWERS, security, summary: `Delete a ${type} (RFC 7644 §3.6)`, params: IdParams, response: { 204: NoContent('deleted'), ...scimAuthErrors([404, 412]) } },
    },
    async (request, reply) => {
      await app.directory.delete(type, actor(request), request.params.id, request.headers['if-match']);
      app.outbox.kick();
      return reply.code(204).send();
    },
  );

  if (type === 'User') {
    // Some clients send PATCH/PUT/DELETE to the collection by mistake; say so clearly.
    for (const method of ['PUT', 'PATCH', 'DELETE'] as const) {
      app.route({
        method,
        url: path,
        onRequest: write,
        schema: { hide: true, ...SCIM_ANSWERS, response: scimAuthErrors([405]) },
        handler: async () => {
          throw new ScimError(405, `${method} needs a resource id: ${path}/{id}`);
        },
      });
    }
  }
}
