/**
 * Discovery endpoints (RFC 7644 §4): /ServiceProviderConfig (RFC 7643 §5), /ResourceTypes
 * (RFC 7643 §6) and /Schemas (RFC 7643 §7). They describe what this server really supports, read
 * from the same schema registry that validates and projects resources, and need no token so
 * clients can read them before they are configured.
 *
 * RFC 7644 §4: list query parameters (sorting, paging, attribute selection) are ignored here, and a
 * `filter` is answered with 403 so a client never takes an unfiltered answer for a filtered one.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { ScimError } from '../../../core/scim/errors.js';
import { listResponse as listOf, MAX_RESULTS, type ListResponseBody } from '../../../core/scim/list.js';
import { Open, SCIM_ANSWERS, ScimListResponse, scimErrors } from '../schemas.js';
import { SchemaRegistry, type AttributeDef, type ResourceTypeDef, type SchemaDef } from '../../../core/scim/schemas.js';

export const SERVICE_PROVIDER_CONFIG_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig';
export const RESOURCE_TYPE_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:ResourceType';
export const SCHEMA_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:Schema';

/** /Bulk limits advertised when the configuration does not set them. */
export const DEFAULT_BULK_MAX_OPERATIONS = 1000;
export const DEFAULT_BULK_MAX_PAYLOAD_BYTES = 1_048_576;

/** Scheme, host and port clients reach the gateway at: PUBLIC_URL, or what the request says. */
function publicRoot(request: FastifyRequest, publicUrl: string | undefined): string {
  return publicUrl ? publicUrl.replace(/\/+$/, '') : `${request.protocol}://${request.host}`;
}

/** The SCIM base URL (…/scim/v2) used in `meta.location` and `$ref`. */
export function baseUrl(request: FastifyRequest, publicUrl: string | undefined): string {
  return `${publicRoot(request, publicUrl)}/scim/v2`;
}

/** A discovery document: a ServiceProviderConfig, ResourceType or Schema. */
export interface DiscoveryDocument {
  schemas: string[];
  id?: string;
  meta: { resourceType: string; location: string };
  [attribute: string]: unknown;
}

/** An attribute definition as RFC 7643 §7 publishes it: every characteristic, sub-attributes recursively. */
export function renderAttribute(def: AttributeDef): Record<string, unknown> {
  return {
    name: def.name,
    type: def.type,
    multiValued: def.multiValued,
    description: def.description,
    required: def.required,
    caseExact: def.caseExact,
    mutability: def.mutability,
    returned: def.returned,
    uniqueness: def.uniqueness,
    ...(def.canonicalValues ? { canonicalValues: def.canonicalValues } : {}),
    ...(def.referenceTypes ? { referenceTypes: def.referenceTypes } : {}),
    ...(def.subAttributes ? { subAttributes: def.subAttributes.map(renderAttribute) } : {}),
  };
}

export function renderSchema(schema: SchemaDef, base: string): DiscoveryDocument {
  return {
    schemas: [SCHEMA_SCHEMA],
    id: schema.id,
    name: schema.name,
    description: schema.description,
    attributes: schema.attributes.map(renderAttribute),
    meta: { resourceType: 'Schema', location: `${base}/Schemas/${schema.id}` },
  };
}

export function renderResourceType(rt: ResourceTypeDef, base: string): DiscoveryDocument {
  return {
    schemas: [RESOURCE_TYPE_SCHEMA],
    id: rt.id,
    name: rt.name,
    endpoint: rt.endpoint,
    description: rt.description,
    schema: rt.schema,
    // Left out when empty, as in RFC 7643 §8.6's Group.
    ...(rt.schemaExtensions.length > 0 ? { schemaExtensions: rt.schemaExtensions.map((e) => ({ schema: e.schema, required: e.required })) } : {}),
    meta: { resourceType: 'ResourceType', location: `${base}/ResourceTypes/${rt.id}` },
  };
}

/** A whole collection in one ListResponse: RFC 7644 §4 says paging is ignored on these endpoints. */
function listResponse(resources: DiscoveryDocument[]): ListResponseBody {
  return listOf(resources.length, 1, resources);
}

/** A positive number from the configuration if it has that field, else the default. */
function configNumber(config: object, key: string, fallback: number): number {
  const value = (config as Record<string, unknown>)[key];
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : fallback;
}

export function serviceProviderConfig(config: { publicUrl: string | undefined }, request: FastifyRequest): DiscoveryDocument {
  const root = publicRoot(request, config.publicUrl);
  return {
    schemas: [SERVICE_PROVIDER_CONFIG_SCHEMA],
    // Swagger UI of this gateway (plugins/swagger.ts).
    documentationUri: `${root}/docs`,
    patch: { supported: true },
    bulk: {
      supported: true,
      maxOperations: configNumber(config, 'scimBulkMaxOperations', DEFAULT_BULK_MAX_OPERATIONS),
      maxPayloadSize: configNumber(config, 'scimBulkMaxPayloadBytes', DEFAULT_BULK_MAX_PAYLOAD_BYTES),
    },
    filter: { supported: true, maxResults: MAX_RESULTS },
    // Passwords are accepted on write but never stored, so there is nothing to change.
    changePassword: { supported: false },
    sort: { supported: true },
    etag: { supported: true },
    authenticationSchemes: [
      {
        type: 'oauthbearertoken',
        name: 'OAuth Bearer Token',
        description: 'Send Authorization: Bearer <token>; tokens are issued by the gateway administrator.',
        specUri: 'https://www.rfc-editor.org/info/rfc6750',
        primary: true,
      },
    ],
    meta: { resourceType: 'ServiceProviderConfig', location: `${root}/scim/v2/ServiceProviderConfig` },
  };
}

/** RFC 7644 §4: a filter on a discovery endpoint SHOULD get 403. */
async function refuseFilter(request: FastifyRequest): Promise<void> {
  const query = request.query;
  if (typeof query !== 'object' || query === null) return;
  for (const [name, value] of Object.entries(query as Record<string, unknown>)) {
    if (name.toLowerCase() === 'filter' && value !== undefined && value !== '') {
      throw new ScimError(403, 'discovery endpoints cannot be filtered (RFC 7644 §4); request them without "filter"');
    }
  }
}

const defaultRegistry = new SchemaRegistry();

/** The app's registry (custom extensions included) when the services plugin provides one. */
function registryOf(app: FastifyInstance): SchemaRegistry {
  if (app.hasDecorator('scimRegistry')) {
    const registry = (app as unknown as { scimRegistry?: unknown }).scimRegistry;
    if (registry instanceof SchemaRegistry) return registry;
  }
  return defaultRegistry;
}

const Resource = (description: string) =>
  Open(
    {
      schemas: Type.Array(Type.String()),
      id: Type.Optional(Type.String()),
      meta: Type.Optional(Open({ resourceType: Type.String(), location: Type.String({ format: 'uri' }) })),
    },
    { description },
  );
const IdParams = Type.Object({ id: Type.String() });
const tags = ['scim'];

const discovery: FastifyPluginAsyncTypebox = async (app) => {
  const base = (request: FastifyRequest) => baseUrl(request, app.config.publicUrl);

  app.get(
    '/ServiceProviderConfig',
    {
      onRequest: refuseFilter,
      schema: {
        tags,
        ...SCIM_ANSWERS,
        summary: 'SCIM service provider configuration (RFC 7643 §5)',
        description: 'Features this server supports. No token needed. A `filter` gets 403 (RFC 7644 §4).',
        response: { 200: Resource('the ServiceProviderConfig'), ...scimErrors([403]) },
      },
    },
    async (request) => serviceProviderConfig(app.config, request),
  );

  app.get(
    '/ResourceTypes',
    {
      onRequest: refuseFilter,
      schema: {
        tags,
        ...SCIM_ANSWERS,
        summary: 'SCIM resource types (RFC 7643 §6)',
        description: 'All resource types in one ListResponse; paging and sorting are ignored, a `filter` gets 403 (RFC 7644 §4).',
        response: { 200: ScimListResponse('every ResourceType'), ...scimErrors([403]) },
      },
    },
    async (request) => {
      const b = base(request);
      return listResponse(registryOf(app).allResourceTypes().map((rt) => renderResourceType(rt, b)));
    },
  );

  app.get(
    '/ResourceTypes/:id',
    {
      onRequest: refuseFilter,
      schema: {
        tags,
        ...SCIM_ANSWERS,
        summary: 'One SCIM resource type (RFC 7643 §6), e.g. User',
        params: IdParams,
        response: { 200: Resource('the ResourceType'), ...scimErrors([403, 404]) },
      },
    },
    async (request) => {
      const wanted = request.params.id.toLowerCase();
      const rt = registryOf(app)
        .allResourceTypes()
        .find((r) => r.id.toLowerCase() === wanted);
      if (!rt) throw ScimError.notFound(`no resource type "${request.params.id}"`);
      return renderResourceType(rt, base(request));
    },
  );

  app.get(
    '/Schemas',
    {
      onRequest: refuseFilter,
      schema: {
        tags,
        ...SCIM_ANSWERS,
        summary: 'SCIM schemas (RFC 7643 §7)',
        description:
          'User, Enterprise User, Group and any configured extension, each attribute with all its characteristics, in one ListResponse; a `filter` gets 403 (RFC 7644 §4).',
        response: { 200: ScimListResponse('every Schema'), ...scimErrors([403]) },
      },
    },
    async (request) => {
      const b = base(request);
      return listResponse(registryOf(app).allSchemas().map((s) => renderSchema(s, b)));
    },
  );

  app.get(
    '/Schemas/:id',
    {
      onRequest: refuseFilter,
      schema: {
        tags,
        ...SCIM_ANSWERS,
        summary: 'One SCIM schema by URN (RFC 7643 §7), e.g. urn:ietf:params:scim:schemas:core:2.0:User',
        params: IdParams,
        response: { 200: Resource('the Schema'), ...scimErrors([403, 404]) },
      },
    },
    async (request) => {
      const schema = registryOf(app).schema(request.params.id);
      if (!schema) throw ScimError.notFound(`no schema "${request.params.id}"`);
      return renderSchema(schema, base(request));
    },
  );
};

export default discovery;
