/**
 * Discovery endpoints (RFC 7644 §4). They describe what this server really supports and need no
 * token, so clients can read them before they are configured.
 */
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';

export function baseUrl(request: FastifyRequest, publicUrl: string | undefined): string {
  const root = publicUrl ? publicUrl.replace(/\/+$/, '') : `${request.protocol}://${request.host}`;
  return `${root}/scim/v2`;
}

const discovery: FastifyPluginAsync = async (app) => {
  app.get(
    '/ServiceProviderConfig',
    { schema: { tags: ['scim'], summary: 'SCIM service provider configuration (RFC 7643 §5)' } },
    async (request) => ({
      schemas: ['urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig'],
      documentationUri: 'https://www.rfc-editor.org/rfc/rfc7644',
      patch: { supported: false },
      bulk: { supported: false, maxOperations: 0, maxPayloadSize: 0 },
      filter: { supported: false, maxResults: 0 },
      changePassword: { supported: false },
      sort: { supported: false },
      etag: { supported: false },
      authenticationSchemes: [
        {
          type: 'oauthbearertoken',
          name: 'Bearer token',
          description: 'Send Authorization: Bearer <token>; tokens are issued by the gateway administrator.',
          primary: true,
        },
      ],
      meta: {
        resourceType: 'ServiceProviderConfig',
        location: `${baseUrl(request, app.config.publicUrl)}/ServiceProviderConfig`,
      },
    }),
  );
};

export default discovery;
