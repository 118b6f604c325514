/**
 * Security headers on every answer (helmet). The gateway serves JSON to machines, so the default
 * Content-Security-Policy allows nothing at all and no framing; Swagger UI under /docs sets its
 * own, looser policy for its HTML, scripts and styles (./swagger.ts), download links set a
 * sandboxing one (../routes/downloads.ts), and console pages give their routes a policy of their
 * own with per-answer nonces (../console/kit.ts, through @fastify/helmet's route option `helmet`).
 *
 * The API's headers never change, so helmet computes them once at start-up ({@link apiSecurityHeaders})
 * and each answer only copies them. @fastify/helmet builds a fresh helmet middleware, parsing the
 * policy again, for every request it handles (and adds hooks of its own to each); on the SCIM hot
 * path that cost about a tenth of the gateway's time. It is registered only inside the plugins
 * whose routes set the `helmet` option (the console's pages, {@link routeOwnPolicies}), where the
 * policy carries a new nonce on every answer.
 */
import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import fp from 'fastify-plugin';
import fastifyHelmet from '@fastify/helmet';
import helmet from 'helmet';
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';

/** The API's policy: nothing may be loaded, framed, posted or used as a base. */
export const API_HELMET = {
  contentSecurityPolicy: {
    useDefaults: false,
    directives: { defaultSrc: ["'none'"], baseUri: ["'none'"], formAction: ["'none'"], frameAncestors: ["'none'"] },
  },
  frameguard: { action: 'deny' },
  referrerPolicy: { policy: 'no-referrer' },
} as const;

/**
 * The headers helmet sets for the API's policy, read off a response it is applied to once, in the order
 * it sets them. (Helmet also removes `X-Powered-By`, which Fastify never sends.)
 */
export function apiSecurityHeaders(): Array<[string, string]> {
  const req = new IncomingMessage(new Socket());
  const res = new ServerResponse(req);
  // Helmet throws on options it refuses; its callback gets no error since v8.1.
  helmet(API_HELMET)(req, res, () => {});
  return Object.entries(res.getHeaders()).map(([name, value]) => [name, String(value)]);
}

const security: FastifyPluginAsync = async (app) => {
  const headers = apiSecurityHeaders();
  // Routes with a `helmet` option of their own (console pages) are left to @fastify/helmet.
  app.addHook('onRequest', (request, reply, done) => {
    if ((request.routeOptions.config as { helmet?: unknown }).helmet === undefined) {
      const res = reply.raw;
      for (const [name, value] of headers) res.setHeader(name, value);
    }
    done();
  });
};

/**
 * Gives the routes of `app` (an encapsulated plugin, registered before its routes) the `helmet`
 * route option: @fastify/helmet applies the route's policy over the API's, with new nonces on
 * every answer when the route asks for them. Its hooks stay inside `app`.
 */
export async function routeOwnPolicies(app: FastifyInstance): Promise<void> {
  await app.register(fastifyHelmet, { ...API_HELMET, global: false });
}

export default fp(security, { name: 'security', fastify: '5.x' });
