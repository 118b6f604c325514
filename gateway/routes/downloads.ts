/**
 * One-time download links (core/delivery/): `GET /downloads/:token` serves a delivery once, with
 * no bearer token (the link is the credential), and `GET /api/users/:id/deliveries` lists a user's
 * deliveries for administrators, never with a link. The plugin also runs the periodic sweep that
 * wipes expired links.
 *
 * Every answer of the download route is uncacheable and sends no Referer onwards. A used,
 * superseded, withdrawn or expired link answers 410 and an unknown or malformed one 404, with a
 * fixed message and nothing else. HEAD is not offered: a link checker must not spend the link.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { DeliverySweeper, listDeliveries, redeemDelivery } from '../../core/delivery/index.js';
import { redactUrl } from '../../core/log-redaction.js';
import { sendApiError } from './api/errors.js';
import { apiErrors, DateTime, Nullable, StringEnum } from './schemas.js';

const DeliverySummary = Type.Object({
  id: Type.String({ format: 'uuid' }),
  connectorId: Type.String(),
  filename: Type.String(),
  contentType: Type.String(),
  size: Type.Integer({ description: 'bytes' }),
  createdAt: DateTime(),
  expiresAt: DateTime(),
  downloadedAt: Nullable(DateTime()),
  state: StringEnum(['pending', 'downloaded', 'expired', 'superseded', 'undelivered'], {
    description: 'pending: the link works; superseded: a newer link for the same file replaced it; undelivered: withdrawn because the user could not be notified',
  }),
});

/** The request as logged for this route: Fastify's usual fields, with the token replaced. */
function serializeRequest(req: FastifyRequest): Record<string, unknown> {
  return { method: req.method, url: redactUrl(req.url), host: req.host, remoteAddress: req.ip, remotePort: req.socket?.remotePort };
}

function privateAnswer(reply: FastifyReply): FastifyReply {
  return reply
    .header('cache-control', 'no-store')
    .header('pragma', 'no-cache')
    .header('referrer-policy', 'no-referrer')
    .header('x-content-type-options', 'nosniff')
    .header('content-security-policy', "default-src 'none'; sandbox");
}

const downloads: FastifyPluginAsyncTypebox = async (app) => {
  const sweeper = new DeliverySweeper(app.db, app.config.deliverySweepMs, app.log.child({ component: 'deliveries' }));
  app.addHook('onReady', async () => sweeper.start());
  app.addHook('onClose', async () => await sweeper.stop());

  app.get(
    '/downloads/:token',
    {
      exposeHeadRoute: false,
      // The app's logger redacts too (gateway/app.ts); this holds even under a caller-supplied logger.
      logSerializers: { req: serializeRequest },
      schema: {
        tags: ['downloads'],
        summary: 'Download a file delivered to you, once',
        description:
          'The link itself is the credential: it works once, until it expires. The answer is the file as an attachment; afterwards the gateway no longer holds it.',
        params: Type.Object({ token: Type.String({ description: 'the secret part of the link' }) }),
        response: {
          200: Type.Unsafe<Buffer>({ type: 'string', format: 'binary', description: 'the file, as an attachment' }),
          ...apiErrors([404, 410], { 404: 'no such link', 410: 'the link was used, replaced or has expired' }, false),
        },
      },
    },
    async (request, reply) => {
      privateAnswer(reply);
      const result = await redeemDelivery(app.db, request.params.token, { remoteAddress: request.ip });
      if (result.status === 'notFound') return sendApiError(reply, 404, 'no such download link');
      if (result.status === 'gone') return sendApiError(reply, 410, 'this download link has been used or has expired; ask for a new one');
      request.log.info({ deliveryId: result.id }, 'delivery downloaded');
      return reply
        .code(200)
        .header('content-type', result.contentType)
        .header('content-disposition', `attachment; filename="${result.filename}"`)
        .header('content-length', result.content.length)
        .send(result.content);
    },
  );

  // Anything else under /downloads/ is an unknown link too. Answered here rather than by the
  // default not-found handler, whose log line would carry the path.
  app.get(
    '/downloads/*',
    { exposeHeadRoute: false, logSerializers: { req: serializeRequest }, schema: { hide: true, response: apiErrors([404], { 404: 'no such link' }, false) } },
    async (_request, reply) => sendApiError(privateAnswer(reply), 404, 'no such download link'),
  );

  app.get(
    '/api/users/:id/deliveries',
    {
      onRequest: app.requireScope('admin'),
      schema: {
        tags: ['admin'],
        security: [{ bearer: [] }],
        summary: "A user's deliveries (newest 100): state and times, never the link",
        params: Type.Object({ id: Type.String({ format: 'uuid' }) }),
        response: { 200: Type.Array(DeliverySummary), ...apiErrors([400, 404], { 400: 'the id is not a UUID', 404: 'no such user' }) },
      },
    },
    async (request, reply) => {
      const { rows } = await app.db.query('SELECT 1 FROM users WHERE id = $1', [request.params.id]);
      if (!rows[0]) return sendApiError(reply, 404, `no user ${request.params.id}`);
      return await listDeliveries(app.db, request.params.id);
    },
  );
};

export default downloads;
