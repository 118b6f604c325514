/**
 * A fake Slack for tests: a local HTTP server that the real @slack/web-api client talks to through
 * its `slackApiUrl`. It checks the bot token and each method's required arguments (answering
 * `invalid_auth`, `not_authed` or `invalid_arguments` like Slack), records every call, keeps state
 * (users, DM and public channels, messages with their `ts` and threads, ephemeral messages, opened
 * views and the trigger ids that may open them), and can answer 429 with Retry-After for a number
 * of calls. Also signs callback requests the way Slack does, with a test signing secret.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { WebSocketServer, type WebSocket } from 'ws';
import { slackSignature } from '../../core/slack/signature.js';

export const TEST_BOT_TOKEN = 'xoxb-test-bot-token';
export const TEST_SIGNING_SECRET = 'test-signing-secret-0123456789abcdef';
export const TEST_APP_TOKEN = 'xapp-test-app-token';

export interface FakeSlackUser {
  id: string;
  email: string;
  name?: string;
  confirmed?: boolean;
  deleted?: boolean;
}

export interface FakeMessage {
  channel: string;
  ts: string;
  text: string;
  blocks: unknown[];
  threadTs?: string;
  edits: number;
}

export interface FakeCall {
  method: string;
  args: Record<string, unknown>;
  /** What the fake answered: ok, the Slack error, or `429`. */
  outcome: string;
}

type Args = Record<string, unknown>;

/** Arguments each method needs (one of a group, for `a|b`). */
const REQUIRED: Record<string, string[]> = {
  'auth.test': [],
  'users.info': ['user'],
  'users.lookupByEmail': ['email'],
  'chat.postMessage': ['channel', 'text|blocks'],
  'chat.update': ['channel', 'ts'],
  'chat.postEphemeral': ['channel', 'user', 'text|blocks'],
  'views.open': ['trigger_id', 'view'],
  'views.update': ['view', 'view_id|external_id'],
  'conversations.open': ['users'],
  'apps.connections.open': [],
};

export class FakeSlack {
  readonly calls: FakeCall[] = [];
  readonly users = new Map<string, FakeSlackUser>();
  /** Public and private channels the bot may post to (ids like C0…). */
  readonly channels = new Set<string>();
  readonly messages: FakeMessage[] = [];
  readonly ephemerals: Array<{ channel: string; user: string; text: string; blocks: unknown[] }> = [];
  readonly views: Array<{ id: string; triggerId: string; view: Record<string, unknown>; user: string | undefined }> = [];
  private readonly triggers = new Map<string, { user: string; used: boolean }>();
  private readonly failures: Array<{ method: string; failure: { error: string } | { status: number } }> = [];
  private limited: { methods: string[]; remaining: number; retryAfter: number } | undefined;
  private clock = 1_700_000_000;
  private seq = 0;
  url = '';
  private server: Server | undefined;
  private wss: WebSocketServer | undefined;
  /** Socket Mode connections the app opened (apps.connections.open, then the WebSocket). */
  readonly sockets: WebSocket[] = [];
  private readonly acks = new Map<string, (payload: Record<string, unknown>) => void>();

  constructor(readonly token = TEST_BOT_TOKEN) {}

  addUser(u: FakeSlackUser): FakeSlackUser {
    const user = { confirmed: true, name: u.email.split('@')[0], ...u };
    this.users.set(u.id, user);
    return user;
  }

  /** A trigger id as Slack puts in an interaction payload: it opens one view, for that user. */
  trigger(user: string): string {
    const id = `${++this.seq}.${randomBytes(4).toString('hex')}`;
    this.triggers.set(id, { user, used: false });
    return id;
  }

  /** The next `count` calls of `method` fail: with a Slack error (`{ ok: false, error }`) or an HTTP status. */
  failNext(method: string, failure: { error: string } | { status: number }, count = 1): void {
    for (let i = 0; i < count; i++) this.failures.push({ method, failure });
  }

  /** Answers 429 (Retry-After: `retryAfter` s) to the next `calls` calls of the methods (`*`: any method). */
  rateLimit(calls: number, methods: string[] = ['*'], retryAfter = 1): void {
    this.limited = { methods, remaining: calls, retryAfter };
  }

  /** Messages in a user's DM with the bot. */
  dmOf(userId: string): FakeMessage[] {
    return this.messages.filter((m) => m.channel === dmChannel(userId));
  }

  callsOf(method: string): FakeCall[] {
    return this.calls.filter((c) => c.method === method);
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      void this.handle(req).then(
        ({ status, body, headers }) => {
          res.writeHead(status, { 'content-type': 'application/json', ...headers });
          res.end(JSON.stringify(body));
        },
        (err: unknown) => {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(String(err));
        },
      );
    });
    this.wss = new WebSocketServer({ server: this.server, path: '/link' });
    this.wss.on('connection', (socket) => {
      this.sockets.push(socket);
      socket.on('message', (data: Buffer) => {
        const msg = JSON.parse(data.toString('utf8')) as { envelope_id?: string; payload?: Record<string, unknown> };
        if (msg.envelope_id) this.acks.get(msg.envelope_id)?.(msg.payload ?? {});
      });
      socket.send(JSON.stringify({ type: 'hello', num_connections: 1 }));
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/api/`;
    return this;
  }

  /**
   * Sends a Socket Mode envelope (`events_api`, `interactive`, `slash_commands`) over the app's
   * connection and answers the payload of its acknowledgement.
   */
  async envelope(type: string, payload: Record<string, unknown>): Promise<Record<string, unknown>> {
    const socket = this.sockets.at(-1);
    if (!socket) throw new Error('the app has no Socket Mode connection');
    const id = `env-${++this.seq}`;
    const acked = new Promise<Record<string, unknown>>((resolve) => this.acks.set(id, resolve));
    socket.send(JSON.stringify({ envelope_id: id, type, payload, accepts_response_payload: type !== 'events_api' }));
    return await acked;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.terminate();
    this.wss?.close();
    this.server?.closeAllConnections();
    await new Promise((r) => this.server?.close(r));
  }

  private async handle(req: IncomingMessage): Promise<{ status: number; body: unknown; headers?: Record<string, string> }> {
    const method = (req.url ?? '').replace(/^\/api\//, '').split('?')[0]!;
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const args: Args = {};
    const type = req.headers['content-type'] ?? '';
    if (type.startsWith('application/json')) Object.assign(args, JSON.parse(raw || '{}'));
    else for (const [k, v] of new URLSearchParams(raw)) args[k] = /^[[{]/.test(v) ? JSON.parse(v) : v;
    const record = (outcome: string) => this.calls.push({ method, args, outcome });
    if (this.limited && this.limited.remaining > 0 && (this.limited.methods.includes('*') || this.limited.methods.includes(method))) {
      this.limited.remaining--;
      record('429');
      return { status: 429, body: { ok: false, error: 'ratelimited' }, headers: { 'retry-after': String(this.limited.retryAfter) } };
    }
    const injected = this.failures.findIndex((f) => f.method === method);
    if (injected !== -1) {
      const { failure } = this.failures.splice(injected, 1)[0]!;
      if ('status' in failure) {
        record(String(failure.status));
        return { status: failure.status, body: { ok: false } };
      }
      record(failure.error);
      return { status: 200, body: { ok: false, error: failure.error } };
    }
    const auth = req.headers.authorization;
    const fail = (error: string, extra: Args = {}) => {
      record(error);
      return { status: 200, body: { ok: false, error, ...extra } };
    };
    if (!auth) return fail('not_authed');
    if (method === 'apps.connections.open') {
      // Socket Mode is opened with the app-level token, never the bot token.
      if (auth !== `Bearer ${TEST_APP_TOKEN}`) return fail('invalid_auth');
      record('ok');
      return { status: 200, body: { ok: true, url: `${this.url.replace(/^http/, 'ws').replace(/\/api\/$/, '')}/link` } };
    }
    if (auth !== `Bearer ${this.token}`) return fail('invalid_auth');
    const required = REQUIRED[method];
    if (!required) return fail('unknown_method');
    const missing = required.filter((r) => !r.split('|').some((k) => args[k] !== undefined && args[k] !== ''));
    if (missing.length) return fail('invalid_arguments', { response_metadata: { messages: missing.map((m) => `[ERROR] missing required field: ${m}`) } });
    const answer = this.answer(method, args);
    record(answer.ok ? 'ok' : String(answer.error));
    return { status: 200, body: answer };
  }

  private nextTs(): string {
    return `${++this.clock}.${String(++this.seq).padStart(6, '0')}`;
  }

  /** The channel a post to `channel` lands in, or undefined when the bot cannot post there. */
  private channelFor(channel: string): string | undefined {
    if (this.users.has(channel)) return dmChannel(channel);
    if (channel.startsWith('D') && this.users.has(channel.slice(1))) return channel;
    return this.channels.has(channel) ? channel : undefined;
  }

  private answer(method: string, a: Args): Args {
    const blocks = (a.blocks as unknown[] | undefined) ?? [];
    switch (method) {
      case 'auth.test':
        return { ok: true, user_id: 'UBOT', team_id: 'T1' };
      case 'users.info': {
        const u = this.users.get(String(a.user));
        return u ? { ok: true, user: slackUser(u) } : { ok: false, error: 'user_not_found' };
      }
      case 'users.lookupByEmail': {
        const u = [...this.users.values()].find((x) => x.email.toLowerCase() === String(a.email).toLowerCase() && !x.deleted);
        return u ? { ok: true, user: slackUser(u) } : { ok: false, error: 'users_not_found' };
      }
      case 'conversations.open': {
        const user = String(a.users);
        return this.users.has(user) ? { ok: true, channel: { id: dmChannel(user) } } : { ok: false, error: 'user_not_found' };
      }
      case 'chat.postMessage': {
        const channel = this.channelFor(String(a.channel));
        if (!channel) return { ok: false, error: 'channel_not_found' };
        const threadTs = a.thread_ts as string | undefined;
        if (threadTs && !this.messages.some((m) => m.channel === channel && m.ts === threadTs)) return { ok: false, error: 'thread_not_found' };
        const m: FakeMessage = { channel, ts: this.nextTs(), text: text(a.text), blocks, edits: 0, ...(threadTs ? { threadTs } : {}) };
        this.messages.push(m);
        return { ok: true, channel, ts: m.ts, message: { text: m.text, ts: m.ts } };
      }
      case 'chat.update': {
        const m = this.messages.find((x) => x.channel === a.channel && x.ts === a.ts);
        if (!m) return { ok: false, error: this.channelFor(String(a.channel)) ? 'message_not_found' : 'channel_not_found' };
        if (a.text !== undefined) m.text = text(a.text);
        if (a.blocks !== undefined) m.blocks = blocks;
        m.edits++;
        return { ok: true, channel: m.channel, ts: m.ts };
      }
      case 'chat.postEphemeral': {
        const channel = this.channelFor(String(a.channel));
        if (!channel) return { ok: false, error: 'channel_not_found' };
        if (!this.users.has(String(a.user))) return { ok: false, error: 'user_not_in_channel' };
        this.ephemerals.push({ channel, user: String(a.user), text: text(a.text), blocks });
        return { ok: true, message_ts: this.nextTs() };
      }
      case 'views.open': {
        const t = this.triggers.get(String(a.trigger_id));
        if (!t) return { ok: false, error: 'invalid_trigger_id' };
        if (t.used) return { ok: false, error: 'expired_trigger_id' };
        const view = a.view as Record<string, unknown>;
        if (view.type !== 'modal' || !view.title || !Array.isArray(view.blocks)) return { ok: false, error: 'invalid_arguments' };
        t.used = true;
        const id = `V${++this.seq}`;
        this.views.push({ id, triggerId: String(a.trigger_id), view, user: t.user });
        return { ok: true, view: { id, ...view } };
      }
      case 'views.update': {
        const v = this.views.find((x) => x.id === a.view_id);
        if (!v) return { ok: false, error: 'not_found' };
        v.view = a.view as Record<string, unknown>;
        return { ok: true, view: { id: v.id, ...v.view } };
      }
      default:
        return { ok: false, error: 'unknown_method' };
    }
  }
}

const text = (v: unknown): string => (typeof v === 'string' ? v : '');

export function dmChannel(userId: string): string {
  return `D${userId}`;
}

function slackUser(u: FakeSlackUser) {
  return { id: u.id, name: u.name, deleted: u.deleted ?? false, is_bot: false, is_email_confirmed: u.confirmed ?? true, profile: { email: u.email, real_name: u.name } };
}

export async function startFakeSlack(t: { teardown(fn: () => unknown): void }): Promise<FakeSlack> {
  const fake = await new FakeSlack().start();
  t.teardown(() => fake.close());
  return fake;
}

/** Headers Slack sends with a callback: its timestamp and v0 signature over the raw body. */
export function signedHeaders(body: string, opts: { secret?: string; timestamp?: number; contentType?: string } = {}): Record<string, string> {
  const ts = String(opts.timestamp ?? Math.floor(Date.now() / 1000));
  return {
    'content-type': opts.contentType ?? 'application/x-www-form-urlencoded',
    'x-slack-request-timestamp': ts,
    'x-slack-signature': slackSignature(opts.secret ?? TEST_SIGNING_SECRET, ts, body),
  };
}

/** An interactivity callback body (`payload=<json>`). */
export function interactionBody(payload: object): string {
  return new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
}

/** A slash command callback body. */
export function commandBody(fields: { user_id: string; text: string; trigger_id: string; channel_id?: string; command?: string }): string {
  return new URLSearchParams({ command: '/access', channel_id: dmChannel(fields.user_id), team_id: 'T1', response_url: 'https://hooks.slack.invalid/commands/1', ...fields }).toString();
}
