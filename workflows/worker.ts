/**
 * The Temporal worker: runs workflow code (bundled into Temporal's deterministic sandbox) and the
 * activities that do the I/O. Run as many workers as you like; they share the task queue.
 *
 * `npm run worker` runs this file as a standalone process (production). `npm start` embeds a
 * worker through {@link createWorker}.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { NativeConnection, Runtime, Worker, DefaultLogger, type LogLevel as TemporalLogLevel } from '@temporalio/worker';
import { Connection } from '@temporalio/client';
import pino from 'pino';
import { exitOnConfigError, loadWorkerConfig, requireExternalServices, type LogLevel, type SlackConfig } from '../core/config.js';
import { AuditChainer } from '../core/audit/chainer.js';
import { migrate } from '../core/db/migrate.js';
import { connectPool, DatabaseUnreachableError, type Db } from '../core/db/pool.js';
import { createActivities } from './activities/index.js';
import { ConnectorRuntime } from './activities/connector-runtime.js';
import { ensureSearchAttributes } from './client.js';
import { deliveriesOffReason, deliveryFactory, type DeliverFactory } from '../core/delivery/index.js';
import { instrumentActivities, serveMetrics, WorkerMetrics } from './activities/metrics.js';
import { logDestination, temporalLogFields } from '../core/log-output.js';
import { accessNotifierFor, type AccessNotifier } from '../core/access/notifier.js';
import { invitationNotifierFor, type InvitationNotify } from '../core/invitations/invitations.js';

const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
/** The module that lists every workflow; the worker bundles it for the sandbox. */
export const WORKFLOWS_PATH = fileURLToPath(new URL(`./workflows${ext}`, import.meta.url));
/**
 * The workflow bundle the production build writes beside the compiled worker
 * (scripts/build-dist.ts). When it exists the worker loads it instead of bundling at start-up.
 */
export const WORKFLOW_BUNDLE_FILE = 'workflow-bundle.js';
const PREBUILT_BUNDLE = fileURLToPath(new URL(`./${WORKFLOW_BUNDLE_FILE}`, import.meta.url));

export interface WorkerDeps {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  db: Db;
  /**
   * A prebuilt workflow bundle (tests reuse one); otherwise the build's bundle beside this file, or
   * the worker bundles WORKFLOWS_PATH itself.
   */
  workflowBundle?: { code: string };
  identity?: string;
  /**
   * Gives each connector its `ctx.deliver` (one-time download links; see core/delivery/).
   * Absent: connectors get none. Build it with `deliveryFactory(config, db)`.
   */
  deliverFor?: DeliverFactory | undefined;
  /** Records provisioning and connector metrics of the activities (./activities/metrics.ts); absent: none. */
  metrics?: WorkerMetrics | undefined;
  /** Tells people about access requests; absent: no notices. Build it with `accessNotifierFor(config)`. */
  accessNotifier?: AccessNotifier | undefined;
  /** The Slack app (docs/slack.md); absent: nothing is sent to Slack. */
  slack?: SlackConfig | undefined;
  /** The gateway's external base URL (PUBLIC_URL), for links to the console in Slack messages. */
  publicUrl?: string | undefined;
  /** Sends the links of invitations that access requests make; absent: such requests fail. Build it with `invitationNotifierFor(config)`. */
  invitationNotify?: InvitationNotify | undefined;
}

export async function createWorker(deps: WorkerDeps): Promise<Worker> {
  return await Worker.create({
    connection: deps.connection,
    namespace: deps.namespace,
    taskQueue: deps.taskQueue,
    ...(deps.workflowBundle
      ? { workflowBundle: deps.workflowBundle }
      : existsSync(PREBUILT_BUNDLE)
        ? { workflowBundle: { codePath: PREBUILT_BUNDLE } }
        : { workflowsPath: WORKFLOWS_PATH }),
    activities: withMetrics(
      createActivities({
        db: deps.db,
        connectors: new ConnectorRuntime(deps.db, undefined, deps.deliverFor),
        accessNotifier: deps.accessNotifier,
        slack: deps.slack,
        publicUrl: deps.publicUrl,
        invitationNotify: deps.invitationNotify,
        observeStep: deps.metrics?.observeStep.bind(deps.metrics),
      }),
      deps.metrics,
    ),
    ...(deps.identity ? { identity: deps.identity } : {}),
  });
}

function withMetrics<A extends Parameters<typeof instrumentActivities>[0]>(activities: A, metrics: WorkerMetrics | undefined): A {
  return metrics ? instrumentActivities(activities, metrics) : activities;
}

const TEMPORAL_LOG_LEVELS: Record<LogLevel, TemporalLogLevel> = {
  fatal: 'ERROR',
  error: 'ERROR',
  warn: 'WARN',
  info: 'INFO',
  debug: 'DEBUG',
  trace: 'TRACE',
  silent: 'ERROR',
};

/** One Temporal SDK log entry, written to pino without the activity task token. */
export function logTemporalEntry(logger: pino.Logger, entry: { level: TemporalLogLevel; message: string; meta?: Record<string, unknown> | undefined }): void {
  const fn = entry.level === 'ERROR' ? 'error' : entry.level === 'WARN' ? 'warn' : entry.level === 'INFO' ? 'info' : 'debug';
  logger[fn]({ ...temporalLogFields(entry.meta), component: 'temporal' }, entry.message);
}

/**
 * Routes the Temporal SDK's own logs through pino (JSON lines, or readable lines on a terminal)
 * and, given `metricsAddress` (host:port), has the SDK runtime export its worker metrics there for
 * Prometheus.
 */
export function installTemporalRuntimeLogger(logger: pino.Logger, level: LogLevel, metricsAddress?: string): void {
  Runtime.install({
    ...(metricsAddress ? { telemetryOptions: { metrics: { prometheus: { bindAddress: metricsAddress } } } } : {}),
    logger: new DefaultLogger(TEMPORAL_LOG_LEVELS[level], (entry) => logTemporalEntry(logger, entry)),
  });
}

async function main(): Promise<void> {
  let cfg;
  try {
    cfg = loadWorkerConfig();
    requireExternalServices(cfg);
  } catch (err) {
    exitOnConfigError(err);
  }
  const logger = pino({ level: cfg.logLevel, base: { component: 'worker' } }, logDestination());
  installTemporalRuntimeLogger(logger, cfg.logLevel, cfg.temporalMetricsAddress);

  let db: Db;
  try {
    await migrate(cfg.databaseUrl);
    db = await connectPool(cfg.databaseUrl, cfg.databasePoolSize);
  } catch (err) {
    if (err instanceof DatabaseUnreachableError) {
      logger.fatal(err.message);
      process.exit(1);
    }
    throw err;
  }

  let connection: NativeConnection;
  try {
    connection = await NativeConnection.connect({ address: cfg.temporalAddress });
    const client = await Connection.connect({ address: cfg.temporalAddress });
    await ensureSearchAttributes(client, cfg.temporalNamespace);
    await client.close();
  } catch (err) {
    logger.fatal(`cannot reach Temporal at ${cfg.temporalAddress}: ${(err as Error).message}`);
    process.exit(1);
  }

  const deliverFor = deliveryFactory(cfg, db);
  const metrics = cfg.workerMetricsAddress ? new WorkerMetrics() : undefined;
  const metricsServer = metrics && cfg.workerMetricsAddress ? await serveMetrics(metrics.registry, cfg.workerMetricsAddress) : undefined;
  const accessNotifier = accessNotifierFor(cfg);
  const invitationNotify = invitationNotifierFor(cfg);
  const worker = await createWorker({ connection, namespace: cfg.temporalNamespace, taskQueue: cfg.taskQueue, db, deliverFor, metrics, accessNotifier, slack: cfg.slack, publicUrl: cfg.publicUrl, invitationNotify });
  logger.info(
    {
      taskQueue: cfg.taskQueue,
      namespace: cfg.temporalNamespace,
      deliveries: deliverFor ? 'on' : `off: ${deliveriesOffReason(cfg)}`,
      metrics: cfg.workerMetricsAddress ?? 'off',
      temporalMetrics: cfg.temporalMetricsAddress ?? 'off',
      slack: cfg.slack ? 'on' : 'off',
    },
    'worker started',
  );
  // The worker links audit events into the hash chain too, so that a deployment chains whichever
  // of its processes are running (core/audit/chainer.ts).
  const chainer = new AuditChainer({ db, log: { warn: (obj, msg) => logger.warn(obj, msg) } });
  chainer.start();
  // Worker.run() installs SIGINT/SIGTERM handlers that drain in-flight tasks before resolving.
  await worker.run();
  await chainer.stop();
  await new Promise((resolve) => (metricsServer ? metricsServer.close(resolve) : resolve(undefined)));
  await connection.close();
  await db.end();
  logger.info('worker stopped');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await main();
}
