/**
 * The SCIM 2.0 service provider, mounted at /scim/v2 (RFC 7644). Accepts application/scim+json and
 * application/json, always answers application/scim+json, and renders every error in the SCIM
 * format through one error handler.
 */
import type { FastifyPluginAsync } from 'fastify';
import { SCIM_CONTENT_TYPE, ScimError } from '../../scim/errors.js';
import { scimErrorHandler } from '../../scim/error-handler.js';
import discovery from './discovery.js';
import { resourceRoutes } from './resources.js';
import search from './search.js';
import bulk from './bulk.js';

const scim: FastifyPluginAsync = async (app) => {
  app.addContentTypeParser('application/scim+json', { parseAs: 'string' }, app.getDefaultJsonParser('error', 'error'));
  app.setErrorHandler(scimErrorHandler);
  app.setNotFoundHandler(async (request) => {
    throw ScimError.notFound(`no SCIM endpoint ${request.method} ${request.url.split('?')[0]}`);
  });
  app.addHook('onSend', (_request, reply, payload, done) => {
    reply.header('content-type', SCIM_CONTENT_TYPE);
    done(null, payload);
  });

  await app.register(discovery);
  await app.register(resourceRoutes, { type: 'User' });
  await app.register(resourceRoutes, { type: 'Group' });
  await app.register(search);
  await app.register(bulk);
};

export default scim;
