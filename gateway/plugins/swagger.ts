/**
 * OpenAPI document built from the route schemas (@fastify/swagger), and Swagger UI at /docs.
 * `npm run openapi` writes the same document to openapi/openapi.json.
 */
import fp from 'fastify-plugin';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyPluginAsync } from 'fastify';

export const OPENAPI_INFO = {
  title: 'SCIM provisioning gateway',
  description:
    'SCIM 2.0 service provider (/scim/v2) and admin API (/api) of the provisioning gateway. ' +
    'Authenticate with `Authorization: Bearer <token>`.',
  version: '0.1.0',
};

const docs: FastifyPluginAsync = async (app) => {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: OPENAPI_INFO,
      tags: [
        { name: 'scim', description: 'SCIM 2.0 (RFC 7643, RFC 7644)' },
        { name: 'admin', description: 'Administration: API tokens, connectors, entitlements, rules, grants' },
        { name: 'operations', description: 'Health and readiness' },
      ],
      components: {
        securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'API token' } },
      },
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
};

export default fp(docs, { name: 'swagger', fastify: '5.x' });
