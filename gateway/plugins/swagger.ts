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

/** Content-Security-Policy of Swagger UI's pages and assets. */
export const DOCS_CSP =
  "default-src 'self'; base-uri 'self'; connect-src 'self'; font-src 'self' data:; form-action 'self'; frame-ancestors 'none'; " +
  "img-src 'self' data:; object-src 'none'; script-src 'self'; script-src-attr 'none'; style-src 'self' 'unsafe-inline'";

const docs: FastifyPluginAsync = async (app) => {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: OPENAPI_INFO,
      tags: [
        { name: 'scim', description: 'SCIM 2.0 (RFC 7643, RFC 7644)' },
        { name: 'admin', description: 'Administration: API tokens, connectors, entitlements, rules, grants' },
        { name: 'operations', description: 'Health and readiness' },
        { name: 'access requests', description: 'Access policies (the catalogue), requests, decisions and the approvals inbox, made as a directory user' },
      ],
      components: {
        securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'API token' } },
      },
    },
    // Shared schemas (the error shapes) keep their $id as their name under components.schemas.
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
  });
  // Swagger UI loads its scripts, styles and the document from this origin only (no inline script),
  // so its policy allows 'self' and nothing from elsewhere; it replaces the API's deny-all policy
  // (./security.ts) on /docs answers.
  await app.register(swaggerUi, { routePrefix: '/docs', staticCSP: DOCS_CSP });
};

export default fp(docs, { name: 'swagger', fastify: '5.x' });
