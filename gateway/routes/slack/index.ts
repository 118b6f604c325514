/**
 * Slack's callbacks: POST /slack/commands (the /access slash command), /slack/interactivity
 * (buttons and modals) and /slack/events (the Events API: DMs to the bot). Each is verified by
 * ../../plugins/slack-signature.ts before its body is parsed, answered at once, and handled by
 * ./interactions.ts. With SLACK_APP_TOKEN the same handlers take the callbacks over Socket Mode
 * (./socket-mode.ts) instead, for workspaces that give the gateway no public URL.
 *
 * Absent without SLACK_BOT_TOKEN.
 */
import fp from 'fastify-plugin';
import type { FastifyPluginAsync } from 'fastify';
import { slackClient } from '../../../core/slack/client.js';
import slackSignature from '../../plugins/slack-signature.js';
import { sendApiError } from '../api/errors.js';
import { SlackInteractions } from './interactions.js';
import { startSocketMode } from './socket-mode.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The Slack app's handlers, when Slack is configured. */
    slackApp?: SlackInteractions;
  }
}

const slackRoutes: FastifyPluginAsync = async (app) => {
  const cfg = app.config.slack;
  if (!cfg) return;
  const log = app.log.child({ component: 'slack' });
  const handlers = new SlackInteractions({
    db: app.db,
    registry: app.scimRegistry,
    slack: slackClient(cfg, log),
    temporal: () => app.temporal.client(),
    kickOutbox: () => app.outbox.kick(),
    identityTtlSeconds: cfg.identityTtlSeconds,
    log,
  });
  app.decorate('slackApp', handlers);
  // Work begun before a shutdown finishes before the pool closes.
  app.addHook('preClose', async () => await handlers.idle());

  if (cfg.appToken) {
    const socket = await startSocketMode(cfg, handlers, log);
    app.addHook('preClose', async () => await socket.stop());
  }
  if (!cfg.signingSecret) return;
  const signingSecret = cfg.signingSecret;

  await app.register(async (scope) => {
    await scope.register(slackSignature, { signingSecret });
    const schema = { hide: true } as const;
    scope.post('/slack/commands', { schema }, async (request, reply) => {
      if (request.slack?.kind !== 'form') return sendApiError(reply, 400, 'a slash command is a form');
      return reply.code(200).send(handlers.command(request.slack.fields) ?? '');
    });
    scope.post('/slack/interactivity', { schema }, async (request, reply) => {
      if (request.slack?.kind !== 'interaction') return sendApiError(reply, 400, 'an interaction carries a payload');
      const answer = await handlers.interaction(request.slack.payload);
      return reply.code(200).send(answer ?? '');
    });
    scope.post('/slack/events', { schema }, async (request, reply) => {
      if (request.slack?.kind !== 'json') return sendApiError(reply, 400, 'an event is JSON');
      return reply.code(200).send(handlers.event(request.slack.json) ?? '');
    });
  });
};

export default fp(slackRoutes, { name: 'slack', fastify: '5.x', dependencies: ['services'] });
