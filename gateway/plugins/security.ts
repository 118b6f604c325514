/**
 * Security headers on every answer (@fastify/helmet). The gateway serves JSON to machines, so the
 * default Content-Security-Policy allows nothing at all and no framing; Swagger UI under /docs
 * sets its own, looser policy for its HTML, scripts and styles (./swagger.ts), and download links
 * set a sandboxing one (../routes/downloads.ts).
 */
import fp from 'fastify-plugin';
import helmet from '@fastify/helmet';
import type { FastifyPluginAsync } from 'fastify';

const security: FastifyPluginAsync = async (app) => {
  await app.register(helmet, {
    contentSecurityPolicy: {
      useDefaults: false,
      directives: { defaultSrc: ["'none'"], baseUri: ["'none'"], formAction: ["'none'"], frameAncestors: ["'none'"] },
    },
    frameguard: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
  });
};

export default fp(security, { name: 'security', fastify: '5.x' });
