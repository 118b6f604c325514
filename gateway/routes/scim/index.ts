/**
 * The SCIM 2.0 service provider, mounted at /scim/v2 (RFC 7644). Accepts application/scim+json and
 * application/json, always answers application/scim+json, and renders every error in the SCIM
 * format through one error handler.
 */
import type { FastifyPluginAsync } from 'fastify';
import { SCIM_CONTENT_TYPE, ScimError } from '../../../core/scim/errors.js';
import { scimErrorHandler } from '../../plugins/scim-errors.js';
import discovery from './discovery.js';
import { resourceRoutes } from './resources.js';
import search from './search.js';
import bulk from './bulk.js';

/**
 * Deepest JSON nesting a SCIM request body may have. The deepest real request (a PATCH inside a
 * Bulk operation with a value filter's element) is about ten levels; a bound keeps every walk over
 * a body (validation, bulkId references, audit copies) away from the call-stack limit.
 */
export const MAX_JSON_DEPTH = 64;

/** Whether `value` nests objects and arrays deeper than `max` levels (walked without recursion). */
export function nestedDeeperThan(value: unknown, max: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (depth > max) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
  }
  return false;
}

const SCIM_ENDPOINTS = new Map(['Users', 'Groups', 'Bulk', 'Schemas', 'ResourceTypes', 'ServiceProviderConfig'].map((e) => [e.toLowerCase(), e]));

/**
 * The URL with the SCIM endpoint name in its canonical case (`/scim/v2/users/…` → `/scim/v2/Users/…`),
 * for the router's `rewriteUrl`: identity providers send lowercase paths although RFC 7644 spells
 * them capitalised. Ids, `.search` and query strings are left as they are; anything else is
 * returned unchanged.
 */
export function canonicalScimUrl(url: string): string {
  const m = /^\/scim\/v2\/([^/?#]+)/i.exec(url);
  if (!m) return url;
  const endpoint = SCIM_ENDPOINTS.get(m[1]!.toLowerCase()) ?? m[1]!;
  const canonical = `/scim/v2/${endpoint}`;
  return m[0] === canonical ? url : canonical + url.slice(m[0].length);
}

const scim: FastifyPluginAsync = async (app) => {
  // One JSON parser for both media types, which also bounds nesting; text/plain is not a SCIM body (415).
  const json = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser(['application/json', 'text/plain']);
  app.addContentTypeParser(['application/json', 'application/scim+json'], { parseAs: 'string' }, (request, body, done) => {
    void json(request, body as string, (err, value) => {
      if (err) return done(err, undefined);
      if (nestedDeeperThan(value, MAX_JSON_DEPTH)) {
        return done(ScimError.badRequest('invalidSyntax', `the request body nests objects and arrays deeper than ${MAX_JSON_DEPTH} levels`), undefined);
      }
      done(null, value);
    });
  });
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
