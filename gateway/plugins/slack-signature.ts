/**
 * Believes a Slack callback only once it is verified, before its body is parsed: the body is kept
 * raw (form or JSON), Slack's v0 signature over it is checked with the signing secret in constant
 * time, the timestamp must be within five minutes, and a request whose signature was already
 * accepted is a replay (recorded in PostgreSQL until it would be too old anyway). Anything else is
 * 401 and nothing is done. Only then is the body parsed into `request.slack`.
 *
 * Registered inside the Slack routes' own context, so the raw-body parsers apply to them only.
 */
import fp from 'fastify-plugin';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { checkSlackSignature, SLACK_SIGNATURE_WINDOW_SECONDS } from '../../core/slack/signature.js';
import { markSeen } from '../../core/slack/store.js';
import { sendApiError } from '../routes/api/errors.js';

/** A verified callback's body: form fields (slash commands), an interaction payload, or JSON (Events API). */
export type SlackCallbackBody = { kind: 'form'; fields: Record<string, string> } | { kind: 'interaction'; payload: Record<string, unknown> } | { kind: 'json'; json: Record<string, unknown> };

declare module 'fastify' {
  interface FastifyRequest {
    slack?: SlackCallbackBody;
  }
}

export interface SlackSignatureOptions {
  signingSecret: string;
}

function parse(raw: Buffer, contentType: string): SlackCallbackBody | undefined {
  const text = raw.toString('utf8');
  try {
    if (contentType.startsWith('application/json')) {
      const json: unknown = JSON.parse(text);
      return json && typeof json === 'object' && !Array.isArray(json) ? { kind: 'json', json: json as Record<string, unknown> } : undefined;
    }
    const fields = Object.fromEntries(new URLSearchParams(text));
    if (typeof fields.payload === 'string') {
      const payload: unknown = JSON.parse(fields.payload);
      return payload && typeof payload === 'object' ? { kind: 'interaction', payload: payload as Record<string, unknown> } : undefined;
    }
    return { kind: 'form', fields };
  } catch {
    return undefined;
  }
}

const slackSignature: FastifyPluginAsync<SlackSignatureOptions> = async (app, opts) => {
  app.addContentTypeParser(['application/x-www-form-urlencoded', 'application/json'], { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  app.addHook('preValidation', async (request: FastifyRequest, reply: FastifyReply) => {
    const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
    const header = (name: string) => {
      const v = request.headers[name];
      return typeof v === 'string' ? v : undefined;
    };
    const timestamp = header('x-slack-request-timestamp');
    const signature = header('x-slack-signature');
    const refusal = checkSlackSignature(opts.signingSecret, { timestamp, signature }, raw);
    if (refusal) {
      request.log.warn({ reason: refusal }, 'Slack callback refused');
      return sendApiError(reply, 401, `not a verified Slack request: ${refusal}`);
    }
    const expires = new Date((Number(timestamp) + SLACK_SIGNATURE_WINDOW_SECONDS + 60) * 1000);
    if (!(await markSeen(app.db, `sig:${signature}`, expires))) {
      request.log.warn('Slack callback refused: replayed');
      return sendApiError(reply, 401, 'not a verified Slack request: this request was already received (replay)');
    }
    const parsed = parse(raw, request.headers['content-type'] ?? '');
    if (!parsed) return sendApiError(reply, 400, 'the body is not a Slack callback (form fields, an interaction payload, or a JSON event)');
    request.slack = parsed;
  });
};

// Not encapsulated itself: it applies to the context that registers it (the Slack routes' own).
export default fp(slackSignature, { name: 'slack-signature', fastify: '5.x' });
