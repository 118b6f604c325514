/**
 * POST /.search at the service provider root (RFC 7644 §3.4.3): searches Users and Groups together.
 * Results are Users first, then Groups, each in creation order; a filter naming an attribute that
 * only one resource type has simply matches nothing of the other type.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { Filter } from 'scim2-parse-filter';
import type { ResourceType } from '../../../core/directory/store.js';
import type { SchemaRegistry } from '../../../core/scim/schemas.js';
import { ScimError } from '../../../core/scim/errors.js';
import { listResponse, parseListParams, searchRequestParams } from '../../../core/scim/list.js';
import { parseAttributeList, project } from '../../../core/scim/projection.js';
import { baseUrl } from './discovery.js';
import { mayReturn, renderResource } from './resources.js';
import { SCIM_BODIES, ScimListResponse, scimAuthErrors } from '../schemas.js';

/**
 * The part of a filter one resource type can answer: a comparison on an attribute the type does not
 * have is false, and and/or/not fold around it. Returns true or false when the whole filter is constant.
 */
export function scopeFilter(filter: Filter, registry: SchemaRegistry, type: ResourceType): Filter | boolean {
  switch (filter.op) {
    case 'and':
    case 'or': {
      const parts = filter.filters.map((f) => scopeFilter(f, registry, type));
      const absorbing = filter.op === 'and' ? false : true;
      if (parts.some((p) => p === absorbing)) return absorbing;
      const rest = parts.filter((p): p is Filter => typeof p !== 'boolean');
      if (rest.length === 0) return !absorbing;
      return rest.length === 1 ? rest[0]! : { op: filter.op, filters: rest };
    }
    case 'not': {
      const inner = scopeFilter(filter.filter, registry, type);
      return typeof inner === 'boolean' ? !inner : { op: 'not', filter: inner };
    }
    default:
      return registry.resolve(type, filter.attrPath) ? filter : false;
  }
}

const search: FastifyPluginAsyncTypebox = async (app) => {
  app.post(
    '/.search',
    {
      onRequest: app.requireScope('scim:read'),
      schema: {
        tags: ['scim'],
        ...SCIM_BODIES,
        security: [{ bearer: [] }],
        summary: 'Search every resource type (RFC 7644 §3.4.3)',
        body: Type.Object({}, { additionalProperties: true, description: 'a SearchRequest' }),
        response: { 200: ScimListResponse('a page of Users, then Groups'), ...scimAuthErrors([400, 413, 415]) },
      },
    },
    async (request) => {
      const raw = searchRequestParams(request.body);
      const params = parseListParams(raw, app.scimRegistry, undefined);
      const base = baseUrl(request, app.config.publicUrl);
      const types: ResourceType[] = ['User', 'Group'];
      // How many of each type match, so the page can span both.
      // Each type gets the filter with comparisons on attributes it lacks folded to false.
      const scoped = types.map((type) => (params.filter ? scopeFilter(params.filter, app.scimRegistry, type) : true));
      if (scoped.every((f) => f === false)) {
        throw ScimError.badRequest('invalidFilter', `no resource type has every attribute the filter names: ${params.filterText ?? ''}`);
      }
      const totals: number[] = [];
      for (const [i, type] of types.entries()) {
        const f = scoped[i]!;
        totals.push(f === false ? 0 : (await app.directory.list(type, { filter: f === true ? undefined : f, startIndex: 1, count: 0 })).totalResults);
      }
      const resources: Array<Record<string, unknown>> = [];
      let offset = params.startIndex - 1;
      let remaining = params.count;
      for (const [i, type] of types.entries()) {
        const total = totals[i]!;
        if (remaining === 0 || offset >= total) {
          offset = Math.max(0, offset - total);
          continue;
        }
        const projection = {
          attributes: parseAttributeList(raw.attributes as string | string[] | undefined, app.scimRegistry, type),
          excludedAttributes: parseAttributeList(raw.excludedAttributes as string | string[] | undefined, app.scimRegistry, type, 'excludedAttributes'),
        };
        const f = scoped[i]!;
        const page = await app.directory.list(type, {
          filter: f === true || f === false ? undefined : f,
          startIndex: offset + 1,
          count: remaining,
          sortBy: params.sortBy,
          sortOrder: params.sortOrder,
          withGroups: mayReturn('groups', projection),
          withMembers: mayReturn('members', projection),
        });
        for (const r of page.resources) resources.push(project(renderResource(r, base), projection, app.scimRegistry, type));
        remaining -= page.resources.length;
        offset = 0;
      }
      return listResponse(totals.reduce((a, b) => a + b, 0), params.startIndex, resources);
    },
  );

};

export default search;
