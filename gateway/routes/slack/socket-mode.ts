/**
 * Socket Mode: the gateway opens a WebSocket to Slack (with the app-level token, SLACK_APP_TOKEN)
 * and receives commands, interactions and events over it, so Slack needs no public URL. Slack
 * authenticates the connection, so no signature is checked; each envelope is acknowledged at once
 * with the same answer the HTTP callback would give.
 */
import { SocketModeClient } from '@slack/socket-mode';
import { LogLevel, type Logger } from '@slack/web-api';
import type { FastifyBaseLogger } from 'fastify';
import type { SlackConfig } from '../../../core/config.js';
import type { SlackInteractions } from './interactions.js';

function libraryLogger(log: FastifyBaseLogger): Logger {
  // The library's debug output includes whole payloads: only its warnings and errors are kept.
  const text = (m: unknown[]) => m.map((x) => (typeof x === 'string' ? x : String(x))).join(' ');
  return {
    debug: () => {},
    info: () => {},
    warn: (...m: unknown[]) => log.warn(text(m)),
    error: (...m: unknown[]) => log.error(text(m)),
    setLevel: () => {},
    getLevel: () => LogLevel.WARN,
    setName: () => {},
  };
}

export async function startSocketMode(cfg: SlackConfig, handlers: SlackInteractions, log: FastifyBaseLogger): Promise<{ stop(): Promise<void> }> {
  const client = new SocketModeClient({ appToken: cfg.appToken!, logger: libraryLogger(log), clientOptions: { slackApiUrl: cfg.apiUrl } });
  client.on('slack_event', ({ ack, type, body }: { ack: (response?: Record<string, unknown>) => Promise<void>; type: string; body: Record<string, unknown> }) => {
    const answer = async (): Promise<unknown> => {
      if (type === 'slash_commands') return handlers.command(body as Record<string, string>);
      if (type === 'interactive') return await handlers.interaction(body);
      if (type === 'events_api') return handlers.event(body);
      return undefined;
    };
    answer().then(
      (response) => ack(response && typeof response === 'object' ? (response as Record<string, unknown>) : undefined),
      (err: unknown) => {
        log.error({ err: { message: (err as Error).message } }, `Slack ${type} over Socket Mode failed`);
        return ack();
      },
    ).catch((err: unknown) => log.warn({ err: { message: (err as Error).message } }, 'Socket Mode acknowledgement failed'));
  });
  await client.start();
  log.info('Slack Socket Mode connected');
  return {
    async stop() {
      await client.disconnect();
    },
  };
}
