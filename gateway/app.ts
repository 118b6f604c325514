/**
 * The gateway application: shared services, authentication, OpenAPI, and the route areas. Built by
 * `buildApp` so the boot file, `npm start` and tests (through `app.inject`) all run the same app.
 */
import type { Logger as PinoLogger } from 'pino';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import type { GatewayConfig, TrustProxy } from '../core/config.js';
import type { Db } from '../core/db/pool.js';
import type { TemporalAccess } from './temporal.js';
import type { SchemaRegistry } from '../core/scim/schemas.js';
import { loadSchemaRegistry } from '../core/scim/extensions.js';
import services from './plugins/services.js';
import auth from './plugins/auth.js';
import swagger from './plugins/swagger.js';
import health from './routes/health.js';
import scim, { canonicalScimUrl } from './routes/scim/index.js';
import { clientErrorHandler, frameworkErrorHandler } from './plugins/scim-errors.js';
import tokens from './routes/api/tokens.js';
import provisioning from './routes/api/provisioning.js';
import audit from './routes/api/audit.js';
import outbox from './routes/api/outbox.js';
import accessRequests from './routes/api/access-requests.js';
import accessReviews from './routes/api/access-reviews.js';
import downloads from './routes/downloads.js';
import slack from './routes/slack/index.js';
import sources from './routes/api/sources.js';
import invitations from './routes/api/invitations.js';
import auth0Routes from './routes/auth0.js';
import loginStatusRoutes from './routes/login-status.js';
import { pathOnly, redactUrl } from '../core/log-redaction.js';
import security from './plugins/security.js';
import { RequestLog } from './request-log.js';
import { SHARED_SCHEMAS } from './routes/schemas.js';
import metrics from './plugins/metrics.js';
import webConsole from './console/index.js';

export interface AppOptions {
  config: GatewayConfig;
  db: Db;
  temporal: TemporalAccess;
  /** Run the outbox dispatcher in this process (default true). */
  dispatchOutbox?: boolean;
  /** Link audit events into the hash chain from this process (default true). */
  chainAudit?: boolean;
  /** SCIM schemas with custom extensions (default: loaded from config.scimExtensionsFile). */
  registry?: SchemaRegistry;
  /** Fastify logger options; defaults to JSON logs at config.logLevel. */
  logger?: FastifyServerOptions['logger'];
  /** Offer the web console's local sign-in as any directory user (only `npm start` on its embedded database; never with an IdP). */
  consoleLocalSignIn?: boolean;
}

export function loggerOptions(level: string): FastifyServerOptions['logger'] {
  return {
    level,
    // Credentials never reach the logs, whatever a serializer is later changed to print.
    redact: {
      paths: ['req.headers.authorization', 'req.headers.cookie', 'headers.authorization', '*.password', 'password', '*.deliveryWebhookSecret', 'deliveryWebhookSecret', '*.botToken', '*.appToken', '*.signingSecret', '*.clientSecret', '*.sessionSecret', 'config.console', 'req.headers["x-slack-signature"]'],
      censor: '[redacted]',
    },
    serializers: {
      // Fastify's usual request fields, with the token of a download link (/downloads/<token>) and
      // credential-like query parameters (?access_token=…) replaced.
      req: (req: FastifyRequest) => ({
        method: req.method,
        url: redactUrl(req.url),
        host: req.host,
        remoteAddress: req.ip,
        remotePort: req.socket?.remotePort,
      }),
    },
  };
}

/**
 * One access-log line per request instead of Fastify's two ("incoming request", then "request
 * completed"): the completed line carries the request's fields too, so a reader loses nothing and
 * every request costs half the serialization and writes. Errors are logged as Fastify logs them.
 *
 * The line is written by a child of the app's logger without pino's redaction, which costs most of
 * a line's time (the wildcard paths that keep secrets out of every other log line). Nothing in
 * this line can hold a secret: its fields are fixed, and come from the request serializer
 * ({@link loggerOptions}: method, URL with credentials replaced, host, client address and port),
 * Fastify's response serializer (the status code) and the response time. Every other line,
 * including an errored request's, goes through the redacting logger.
 */
class AccessLog extends LogController {
  private lines: FastifyBaseLogger | undefined;

  override incomingRequest(): void {}

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if (this.isLogDisabled(request)) return;
    if (error) {
      reply.log.error({ req: request, res: reply, err: error, responseTime: reply.elapsedTime }, 'request errored');
      return;
    }
    // A route or plugin that lowers its log level keeps its access lines out too.
    if (!(reply.log as unknown as PinoLogger).isLevelEnabled('info')) return;
    this.lines ??= request.server.log.child({}, { redact: { paths: [] } });
    this.lines.info({ reqId: request.id, req: request, res: reply, responseTime: reply.elapsedTime }, 'request completed');
  }
}

/** TRUST_PROXY in the form Fastify's types take (a hop count becomes the function Fastify would make of it). */
function fastifyTrustProxy(setting: TrustProxy): boolean | string[] | ((address: string, hop: number) => boolean) {
  return typeof setting === 'number' ? (_address, hop) => hop < setting : setting;
}

export async function buildApp(opts: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    logger: opts.logger ?? loggerOptions(opts.config.logLevel),
    // Each request gets a logger carrying its id, made a pino child only when the request logs a
    // line of its own (./request-log.ts); with logging off it would be pure cost.
    childLoggerFactory: (logger, bindings, childOpts) => (logger.level === 'silent' ? logger : new RequestLog(logger, bindings, childOpts)),
    logController: new AccessLog(),
    bodyLimit: opts.config.bodyLimitBytes,
    // X-Forwarded-* is believed only from the proxies TRUST_PROXY names (default: none), so a
    // client cannot choose its logged address or the host of meta.location.
    trustProxy: fastifyTrustProxy(opts.config.trustProxy),
    // SCIM resource ids and attribute names are case-sensitive; paths are not rewritten (SCIM endpoint names aside, below).
    routerOptions: { ignoreTrailingSlash: true },
    // SCIM endpoint names in any case (IdPs send /scim/v2/users); router and HTTP parser errors as SCIM errors there.
    rewriteUrl: (req) => canonicalScimUrl(req.url ?? '/'),
    frameworkErrors: frameworkErrorHandler,
    clientErrorHandler,
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false } },
  });

  // The error shapes every route's response schemas refer to (gateway/routes/schemas.ts).
  for (const schema of SHARED_SCHEMAS) app.addSchema(schema);
  await app.register(services, {
    config: opts.config,
    db: opts.db,
    temporal: opts.temporal,
    dispatchOutbox: opts.dispatchOutbox ?? true,
    chainAudit: opts.chainAudit ?? true,
    registry: opts.registry ?? loadSchemaRegistry(opts.config.scimExtensionsFile),
  });
  await app.register(security);
  // Fastify's own 404 echoes the URL (query string included) into the answer and the log.
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `Route ${request.method}:${pathOnly(request.url)} not found` }),
  );
  await app.register(auth);
  await app.register(metrics);
  await app.register(swagger);
  await app.register(health);
  await app.register(scim, { prefix: '/scim/v2' });
  await app.register(tokens);
  await app.register(provisioning);
  await app.register(audit);
  await app.register(outbox);
  await app.register(accessRequests);
  await app.register(accessReviews);
  await app.register(downloads);
  await app.register(slack);
  await app.register(sources);
  await app.register(invitations);
  await app.register(auth0Routes);
  await app.register(loginStatusRoutes);
  await app.register(webConsole, { prefix: '/console', localSignIn: opts.consoleLocalSignIn === true });
  return app;
}
