/**
 * POST /Bulk (RFC 7644 §3.7). The body limit of this route is SCIM_BULK_MAX_PAYLOAD_BYTES (413
 * beyond it), and at most SCIM_BULK_MAX_OPERATIONS operations are accepted; both are advertised in
 * /ServiceProviderConfig.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { etagOf, type ResourceType } from '../../../core/directory/store.js';
import { parseBulkRequest, runBulk, type BulkOperation, type ExecutedOperation } from '../../../core/scim/bulk.js';
import { ScimError } from '../../../core/scim/errors.js';
import { PATCH_OP_SCHEMA } from '../../../core/scim/schemas.js';
import { parsePatchRequest, type PatchOperation } from '../../../core/scim/patch/index.js';
import { relaxPatch, relaxResource, warnIgnored } from '../../../core/scim/lenient.js';
import { baseUrl } from './discovery.js';
import { renderResource } from './resources.js';
import { Open, SCIM_BODIES, scimAuthErrors, StringEnum } from '../schemas.js';

const BulkResponse = Open(
  {
    schemas: Type.Array(Type.String(), { description: 'urn:ietf:params:scim:api:messages:2.0:BulkResponse' }),
    Operations: Type.Array(
      Open({
        method: StringEnum(['POST', 'PUT', 'PATCH', 'DELETE']),
        bulkId: Type.Optional(Type.String()),
        version: Type.Optional(Type.String()),
        location: Type.Optional(Type.String()),
        status: Type.String({ description: 'the HTTP status of the operation, as a string' }),
        response: Type.Optional(Type.Unknown({ description: 'for a failed operation: its SCIM error' })),
      }),
    ),
  },
  { description: 'the result of each operation run, in request order; after failOnErrors errors the rest are not run' },
);


const TYPES: Record<string, ResourceType> = { users: 'User', groups: 'Group' };

/** RFC 7644 §3.7.3's own example sends a bare array of operations as PATCH data; accept it too. */
function patchEnvelope(data: unknown): unknown {
  return Array.isArray(data) ? { schemas: [PATCH_OP_SCHEMA], Operations: data } : data;
}

const bulk: FastifyPluginAsyncTypebox = async (app) => {
  app.post(
    '/Bulk',
    {
      onRequest: app.requireScope('scim:write'),
      bodyLimit: app.config.scimBulkMaxPayloadBytes,
      schema: {
        tags: ['scim'],
        ...SCIM_BODIES,
        security: [{ bearer: [] }],
        summary: 'Apply many operations in one request (RFC 7644 §3.7)',
        body: Type.Object({}, { additionalProperties: true, description: 'a BulkRequest' }),
        response: { 200: BulkResponse, ...scimAuthErrors([400, 413, 415]) },
      },
    },
    async (request) => {
      const req = parseBulkRequest(request.body, app.config.scimBulkMaxOperations);
      const base = baseUrl(request, app.config.publicUrl);
      const actor = { name: request.identity?.name ?? 'unknown' };

      const execute = async (op: BulkOperation): Promise<ExecutedOperation> => {
        const match = /^\/(Users|Groups)(?:\/([^/?#]+))?\/?$/i.exec(op.path);
        if (!match) throw ScimError.badRequest('invalidPath', `bulk path ${op.path} is not /Users, /Groups or one of their resources`);
        const type = TYPES[match[1]!.toLowerCase()]!;
        const id = match[2];
        const strict = app.config.scimStrict;
        const patchOps = (ops: PatchOperation[]) => {
          const { value, ignored } = relaxPatch(ops, app.scimRegistry, type, strict);
          warnIgnored(request.log, type, ignored);
          return value;
        };
        const data = () => {
          const { value, ignored } = relaxResource(op.data, app.scimRegistry, type, strict);
          warnIgnored(request.log, type, ignored);
          return value;
        };
        if (op.method === 'POST') {
          if (id) throw ScimError.badRequest('invalidPath', `POST goes to /${match[1]}, not to a resource`);
          const created = await app.directory.create(type, actor, data());
          const rendered = renderResource(created, base);
          return { status: 201, id: created.id, location: (rendered.meta as { location: string }).location, version: etagOf(created.version) };
        }
        if (!id) throw ScimError.badRequest('invalidPath', `${op.method} needs a resource id: /${match[1]}/{id}`);
        if (op.method === 'DELETE') {
          await app.directory.delete(type, actor, id, op.version);
          return { status: 204, location: `${base}/${type === 'User' ? 'Users' : 'Groups'}/${id}` };
        }
        const r =
          op.method === 'PUT'
            ? await app.directory.replace(type, actor, id, data(), op.version)
            : (await app.directory.patch(type, actor, id, patchOps(parsePatchRequest(patchEnvelope(op.data))), op.version)).resource;
        const rendered = renderResource(r, base);
        return { status: 200, id: r.id, location: (rendered.meta as { location: string }).location, version: etagOf(r.version) };
      };

      const response = await runBulk(req, execute, (err) => request.log.error({ err }, 'bulk operation failed'));
      app.outbox.kick();
      return response;
    },
  );
};

export default bulk;
