/**
 * Child process of `npm run bench:scim` (scripts/bench-scim.ts). It serves one HTTP server on a free
 * loopback port, sends `{"port":<n>}` to the parent over the IPC channel once it listens (stdout is
 * the gateway's log stream, as in production, so it cannot carry the handshake), and closes on
 * SIGTERM/SIGINT or when its stdin closes (the parent died). Serving from a separate process keeps
 * the load generator and the server from sharing one event loop.
 *
 *   bench-scim-server.ts gateway   the real gateway app over DATABASE_URL. Temporal is not part of
 *                                  the benchmark: it points at a closed port and the outbox dispatcher
 *                                  is off, so writes still insert their outbox rows in the same
 *                                  transaction (the cost a write really pays) but nothing delivers them.
 *                                  With BENCH_STACK=production or start, Temporal is TEMPORAL_ADDRESS
 *                                  (the parent's dev server) and the outbox is delivered to it, as
 *                                  deployed; with start, a worker also runs in this process, as under
 *                                  `npm start` (with production the parent runs the worker apart).
 *   bench-scim-server.ts ceiling   a bare Fastify instance (same version, logger off) with one route
 *                                  answering a fixed SCIM User: the most this HTTP stack serves on this
 *                                  machine, the yardstick the gateway's figures are compared with.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { SCIM_CONTENT_TYPE } from '../core/scim/errors.js';
import { ENTERPRISE_USER_SCHEMA, USER_SCHEMA } from '../core/scim/schemas.js';

/** Nothing listens on port 1; connecting fails at once instead of hanging. */
const UNREACHABLE_TEMPORAL = '127.0.0.1:1';

/**
 * What the gateway answers for one seeded user (same attributes, same shape and size), so the
 * ceiling serializes a comparable body on every request.
 */
function ceilingUser(port: number): Record<string, unknown> {
  const id = '3f1c9a52-8a0e-4d5b-9a51-6f2f2f1d8c41';
  return {
    schemas: [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
    id,
    userName: 'user4711@bench.example',
    name: { givenName: 'Grace', familyName: 'Hopper' },
    displayName: 'Grace Hopper',
    emails: [{ value: 'user4711@bench.example', type: 'work', primary: true }],
    active: true,
    [ENTERPRISE_USER_SCHEMA]: { department: 'Engineering' },
    meta: {
      resourceType: 'User',
      created: '2025-01-01T00:00:00.000Z',
      lastModified: '2025-01-01T00:00:00.000Z',
      location: `http://127.0.0.1:${port}/scim/v2/Users/${id}`,
      version: 'W/"1"',
    },
  };
}

async function startCeiling(): Promise<FastifyInstance> {
  const app = Fastify({ logger: false });
  let body: Record<string, unknown> = {};
  // Same path shape as GET /Users/:id, so routing costs the same.
  app.get('/scim/v2/Users/:id', async (_request, reply) => {
    reply.header('content-type', SCIM_CONTENT_TYPE).header('etag', 'W/"1"');
    return body;
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  body = ceilingUser(portOf(app));
  return app;
}

async function startGateway(): Promise<FastifyInstance> {
  // Loaded here rather than at the top: the ceiling process stays a bare Fastify without the app.
  const [{ buildApp, loggerOptions }, { loadGatewayConfig }, { connectPool }, { TemporalAccess }, { logDestination }] = await Promise.all([
    import('../gateway/app.js'),
    import('../core/config.js'),
    import('../core/db/pool.js'),
    import('../gateway/temporal.js'),
    import('../core/log-output.js'),
  ]);
  // LOG_LEVEL as the parent set it (the benchmark measures the production level, info, and silent).
  const config = loadGatewayConfig({ ...process.env, HOST: '127.0.0.1', PORT: '0' });
  if (!config.databaseUrl) throw new Error('DATABASE_URL is required');
  // The parent has migrated and seeded the database; this process only serves it.
  const db = await connectPool(config.databaseUrl, config.databasePoolSize);
  // The gateway's logger exactly as the production boot file builds it (gateway/server.ts).
  const logger = { ...(loggerOptions(config.logLevel) as object), stream: logDestination() };
  const stack = process.env.BENCH_STACK ?? 'gateway';
  if (stack === 'gateway') {
    const temporal = new TemporalAccess(UNREACHABLE_TEMPORAL, config.temporalNamespace);
    const app = await buildApp({ config, db, temporal, logger, dispatchOutbox: false });
    await app.listen({ host: config.host, port: config.port });
    return app;
  }
  // The whole stack: TEMPORAL_ADDRESS is the parent's dev server and the outbox is delivered to it.
  if (!config.temporalAddress) throw new Error('TEMPORAL_ADDRESS is required with BENCH_STACK=' + stack);
  const app = await buildApp({ config, db, logger, temporal: new TemporalAccess(config.temporalAddress, config.temporalNamespace) });
  if (stack === 'start') {
    // As `npm start` runs it: a worker in the gateway's own process, on its own pool.
    const [{ NativeConnection }, { createWorker, installTemporalRuntimeLogger }] = await Promise.all([import('@temporalio/worker'), import('../workflows/worker.js')]);
    installTemporalRuntimeLogger(app.log as Parameters<typeof installTemporalRuntimeLogger>[0], config.logLevel);
    const connection = await NativeConnection.connect({ address: config.temporalAddress });
    const worker = await createWorker({ connection, namespace: config.temporalNamespace, taskQueue: config.taskQueue, db: await connectPool(config.databaseUrl, config.databasePoolSize) });
    const running = worker.run();
    app.addHook('onClose', async () => {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
      await connection.close();
    });
  }
  await app.listen({ host: config.host, port: config.port });
  return app;
}

function portOf(app: FastifyInstance): number {
  const addr = app.server.address();
  if (!addr || typeof addr === 'string') throw new Error('server is not listening on TCP');
  return addr.port;
}

async function main(mode: string | undefined): Promise<void> {
  let app: FastifyInstance;
  if (mode === 'gateway') app = await startGateway();
  else if (mode === 'ceiling') app = await startCeiling();
  else {
    process.stderr.write('usage: bench-scim-server.ts gateway|ceiling\n');
    process.exit(2);
  }

  let closing = false;
  const close = () => {
    if (closing) return;
    closing = true;
    app.close().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`bench ${mode} server: close failed: ${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', close);
  process.on('SIGINT', close);
  // An orphan must not keep serving (and holding database connections) after the parent is gone.
  process.stdin.on('end', close);
  process.stdin.on('error', close);
  process.stdin.resume();

  if (!process.send) throw new Error('no IPC channel: start this as a child of scripts/bench-scim.ts');
  process.send({ port: portOf(app) });
  // The channel would keep the process alive on its own; stdin and the signals decide when it ends.
  process.channel?.unref();
}

try {
  await main(process.argv[2]);
} catch (err) {
  process.stderr.write(`bench ${process.argv[2] ?? ''} server failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
}
