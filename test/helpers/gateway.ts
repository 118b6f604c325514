/**
 * A gateway app for tests, built by the same `buildApp` as production, over a test database and a
 * real Temporal address, with a freshly issued token.
 */
import { isDeepStrictEqual } from 'node:util';
import type { FastifyInstance, FastifyServerOptions, InjectOptions, LightMyRequestResponse } from 'fastify';
import { buildApp } from '../../gateway/app.js';
import { createToken, type TokenScope } from '../../core/auth/tokens.js';
import { loadGatewayConfig, type GatewayConfig } from '../../core/config.js';
import { TemporalAccess } from '../../gateway/temporal.js';
import type { TestDatabase } from './db.js';

interface Teardown {
  teardown(fn: () => void | Promise<void>): void;
}

export interface TestGateway {
  app: FastifyInstance;
  config: GatewayConfig;
  token: string;
  /** `app.inject` with the test token and a SCIM content type. */
  scim(opts: InjectOptions & { token?: string | null }): Promise<LightMyRequestResponse>;
  /** Calls the API with a JSON body, throws unless the status is `expect`, and answers the JSON (undefined for 204). */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests inspect the JSON freely
  call: (method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', url: string, payload?: unknown, expect?: number) => Promise<any>;
}

export async function startTestGateway(
  t: Teardown,
  opts: {
    database: TestDatabase;
    temporalAddress: string;
    taskQueue: string;
    env?: Record<string, string>;
    dispatchOutbox?: boolean;
    /** Run the app's audit chainer (default true). */
    chainAudit?: boolean;
    scopes?: TokenScope[];
    /** Fastify logger options, for tests that look at what is logged (default: no logging). */
    logger?: FastifyServerOptions['logger'];
    /** Offer the console's local sign-in (as `npm start` does), so tests sign people in over HTTP. */
    consoleLocalSignIn?: boolean;
  },
): Promise<TestGateway> {
  const config = {
    ...loadGatewayConfig({
      LOG_LEVEL: 'silent',
      OUTBOX_POLL_MS: '50',
      OUTBOX_RETRY_MAX_MS: '500',
      USER_SYNC_IDLE_MS: '2000',
      USER_SYNC_DEBOUNCE_MS: '0',
      ...opts.env,
    }),
    databaseUrl: opts.database.url,
    temporalAddress: opts.temporalAddress,
    taskQueue: opts.taskQueue,
  };
  const db = opts.database.newPool(10);
  const temporal = new TemporalAccess(opts.temporalAddress, config.temporalNamespace, 1000);
  const app = await buildApp({ config, db, temporal, dispatchOutbox: opts.dispatchOutbox ?? true, chainAudit: opts.chainAudit ?? true, logger: opts.logger ?? false, consoleLocalSignIn: opts.consoleLocalSignIn === true });
  checkSerialization(app);
  await app.ready();
  t.teardown(() => app.close());
  const { token } = await createToken(db, `test-${Math.random().toString(36).slice(2, 8)}`, opts.scopes ?? ['scim:read', 'scim:write']);
  const gw: TestGateway = {
    app,
    config,
    token,
    call: async (method, url, payload, expect = 200) => {
      const res = await gw.scim({ method, url, ...(payload !== undefined ? { payload: payload as object, headers: { 'content-type': 'application/json' } } : {}) });
      if (res.statusCode !== expect) throw new Error(`${method} ${url}: expected ${expect}, got ${res.statusCode} ${res.body}`);
      return res.statusCode === 204 ? undefined : res.json();
    },
    async scim(req) {
      const { token: tok, headers, ...rest } = req;
      const useToken = tok === undefined ? token : tok;
      return await app.inject({
        ...rest,
        headers: {
          ...(rest.payload !== undefined ? { 'content-type': 'application/scim+json' } : {}),
          ...(useToken ? { authorization: `Bearer ${useToken}` } : {}),
          ...headers,
        },
      });
    },
  };
  return gw;
}

/**
 * Makes every answer whose body a route schema serialized prove it lost nothing: the JSON sent must
 * equal the handler's value as JSON.stringify writes it (fast-json-stringify drops properties a
 * schema does not name and coerces values to the declared type). A difference turns the answer into
 * a 500 whose body shows both sides, so any route test exercising the route fails.
 */
export function checkSerialization(app: FastifyInstance): void {
  const given = new WeakMap<object, unknown>();
  app.addHook('preSerialization', async (_request, reply, payload) => {
    given.set(reply, JSON.parse(JSON.stringify(payload)) as unknown);
    return payload;
  });
  app.addHook('onSend', async (_request, reply, payload) => {
    if (!given.has(reply) || typeof payload !== 'string') return payload;
    const expected = given.get(reply);
    given.delete(reply);
    const sent: unknown = JSON.parse(payload);
    if (isDeepStrictEqual(sent, expected)) return payload;
    reply.code(500);
    return JSON.stringify({ serializationLoss: { route: reply.request.routeOptions.url, given: expected, sent } });
  });
}

export const CORE_USER = 'urn:ietf:params:scim:schemas:core:2.0:User';

export function userBody(userName: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { schemas: [CORE_USER], userName, ...extra };
}
