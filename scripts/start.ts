/**
 * `npm start`: the whole gateway in one command, on embedded defaults where nothing is configured.
 *
 * - DATABASE_URL unset → embedded PostgreSQL (PGlite) persisted in $DATA_DIR/pglite;
 * - TEMPORAL_ADDRESS unset → the Temporal dev server with its Web UI, persisted in
 *   $DATA_DIR/temporal.sqlite;
 * - then a worker and the gateway in this process. Ctrl-C stops everything, child processes included.
 *
 * Production runs `npm run gateway` and `npm run worker` as separate processes instead.
 */
import { join, resolve } from 'node:path';
import { NativeConnection, type Worker } from '@temporalio/worker';
import pino from 'pino';
import { exitOnConfigError, loadGatewayConfig, loadWorkerConfig } from '../core/config.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../core/db/embedded.js';
import { DatabaseUnreachableError, connectPool, type Db } from '../core/db/pool.js';
import { closeOnSignals, startGateway } from '../gateway/server.js';
import { ProvisioningFileError } from '../core/provisioning/declarative.js';
import { deliveryFactory } from '../core/delivery/index.js';
import { createWorker, installTemporalRuntimeLogger } from '../workflows/worker.js';
import { accessNotifierFor } from '../core/access/notifier.js';
import { invitationNotifierFor } from '../core/invitations/invitations.js';
import { serveMetrics, WorkerMetrics } from '../workflows/activities/metrics.js';
import { logDestination } from '../core/log-output.js';
import { startTemporalDevServer, type DevServer } from './dev-server.js';

async function main(): Promise<void> {
  let config;
  let workerConfig;
  try {
    config = loadGatewayConfig();
    workerConfig = loadWorkerConfig();
  } catch (err) {
    exitOnConfigError(err);
  }
  // On a terminal every component logs readable lines through one pretty printer; otherwise JSON.
  const destination = logDestination();
  const log = pino({ level: config.logLevel, base: { component: 'start' } }, destination);
  installTemporalRuntimeLogger(log, config.logLevel, workerConfig.temporalMetricsAddress);
  const dataDir = resolve(config.dataDir);
  const cleanups: Array<() => Promise<void>> = [];
  const cleanup = async () => {
    for (const fn of cleanups.reverse()) await fn().catch((err: unknown) => log.error({ err }, 'shutdown step failed'));
    cleanups.length = 0;
  };
  closeOnSignals(cleanup);

  try {
    let databaseUrl = config.databaseUrl;
    // Against the embedded database the gateway and the worker share one connection (see embedded.ts).
    let sharedDb: Db | undefined;
    if (!databaseUrl) {
      log.info(`DATABASE_URL not set: starting embedded PostgreSQL (PGlite) in ${join(dataDir, 'pglite')}`);
      const pg: EmbeddedPostgres = await startEmbeddedPostgres({ dataDir: join(dataDir, 'pglite') });
      cleanups.push(() => pg.stop());
      databaseUrl = pg.url;
      sharedDb = await pg.connect();
    }

    let temporalAddress = config.temporalAddress;
    let temporalUi = config.temporalUiUrl;
    if (!temporalAddress) {
      log.info(`TEMPORAL_ADDRESS not set: starting the Temporal dev server (${join(dataDir, 'temporal.sqlite')})`);
      const dev: DevServer = await startTemporalDevServer({
        port: config.devTemporalPort,
        uiPort: config.devTemporalUiPort,
        dbFilename: join(dataDir, 'temporal.sqlite'),
        namespace: config.temporalNamespace,
        log: (line) => log.info(line),
      });
      cleanups.push(() => dev.stop());
      temporalAddress = dev.address;
      temporalUi = dev.uiUrl;
    }

    const full = { ...config, databaseUrl, temporalAddress, temporalUiUrl: temporalUi };
    const app = await startGateway(full, { ...(sharedDb ? { db: sharedDb, consoleLocalSignIn: true } : {}), logStream: destination });
    cleanups.push(() => app.close());

    const connection = await NativeConnection.connect({ address: temporalAddress });
    const workerDb = sharedDb ?? (await connectPool(databaseUrl, config.databasePoolSize));
    const metrics = workerConfig.workerMetricsAddress ? new WorkerMetrics() : undefined;
    if (metrics && workerConfig.workerMetricsAddress) {
      const server = await serveMetrics(metrics.registry, workerConfig.workerMetricsAddress);
      cleanups.push(() => new Promise((done) => server.close(() => done())));
    }
    const worker: Worker = await createWorker({
      metrics,
      connection,
      namespace: config.temporalNamespace,
      taskQueue: config.taskQueue,
      db: workerDb,
      deliverFor: deliveryFactory(config, workerDb),
      accessNotifier: accessNotifierFor(config),
      slack: config.slack,
      publicUrl: config.publicUrl,
      invitationNotify: invitationNotifierFor(config),
    });
    const running = worker.run();
    // Stop the worker before the servers it talks to (cleanups run in reverse).
    cleanups.push(async () => {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
      await connection.close();
      if (workerDb !== sharedDb) await workerDb.end(); // a shared pool is closed by the app
    });

    const host = config.host === '0.0.0.0' || config.host === '::' ? 'localhost' : config.host;
    const gatewayUrl = config.publicUrl ?? `http://${host}:${app.server.address() && typeof app.server.address() === 'object' ? (app.server.address() as { port: number }).port : config.port}`;
    const lines = [
      '',
      `  Gateway       ${gatewayUrl}`,
      `  SCIM base URL ${gatewayUrl}/scim/v2`,
      `  Swagger UI    ${gatewayUrl}/docs`,
      `  Console       ${gatewayUrl}/console${config.console.oidc ? '' : sharedDb ? ' (local sign-in: no CONSOLE_OIDC_ISSUER set)' : ' (set CONSOLE_OIDC_ISSUER to sign in)'}`,
      `  Temporal UI   ${temporalUi ?? '(set TEMPORAL_UI_URL to show it here)'}`,
      config.scimToken
        ? '  Auth          Authorization: Bearer $SCIM_TOKEN (the token you set)'
        : '  Auth          no token configured: set SCIM_TOKEN=<secret> and restart (or, against an external DATABASE_URL, `npm run token -- create <name>`)',
      '  Stop          Ctrl-C',
      '',
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } catch (err) {
    if (err instanceof DatabaseUnreachableError || err instanceof ProvisioningFileError) log.fatal(err.message);
    else log.fatal({ err }, 'start-up failed');
    await cleanup();
    process.exit(1);
  }
}

await main();
