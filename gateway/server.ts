/**
 * Boot file of a production gateway process (`npm run gateway`): validates configuration, applies
 * migrations, ensures the bootstrap token, serves HTTP, and shuts down gracefully on SIGINT/SIGTERM.
 * Run as many as you like behind a load balancer; they share PostgreSQL and Temporal.
 */
import { pathToFileURL } from 'node:url';
import type { FastifyInstance } from 'fastify';
import type { DestinationStream } from 'pino';
import { buildApp, loggerOptions } from './app.js';
import { logDestination } from '../core/log-output.js';
import { ensureNamedToken } from '../core/auth/tokens.js';
import { exitOnConfigError, loadGatewayConfig, requireExternalServices, type GatewayConfig } from '../core/config.js';
import { migrate } from '../core/db/migrate.js';
import { connectPool, DatabaseUnreachableError, type Db } from '../core/db/pool.js';
import { TemporalAccess } from './temporal.js';
import { applyProvisioningFile, ProvisioningFileError } from '../core/provisioning/declarative.js';

/** The name under which SCIM_TOKEN is stored. */
export const BOOTSTRAP_TOKEN_NAME = 'bootstrap';
/** The name under which ADMIN_TOKEN is stored. */
export const ADMIN_BOOTSTRAP_TOKEN_NAME = 'admin-bootstrap';

/**
 * Prepares the database and starts listening. `opts.db` supplies the pool (the app closes it);
 * `opts.logStream` where logs go (default: JSON on stdout, readable lines on a terminal). Temporal may be down: the gateway still accepts
 * writes and the outbox delivers them once Temporal answers.
 */
export async function startGateway(
  config: GatewayConfig & { databaseUrl: string; temporalAddress: string },
  opts: { db?: Db; logStream?: DestinationStream; consoleLocalSignIn?: boolean } = {},
): Promise<FastifyInstance> {
  await migrate(config.databaseUrl);
  const db = opts.db ?? (await connectPool(config.databaseUrl, config.databasePoolSize));
  if (config.scimToken) await ensureNamedToken(db, BOOTSTRAP_TOKEN_NAME, ['scim:read', 'scim:write'], config.scimToken);
  if (config.adminToken) await ensureNamedToken(db, ADMIN_BOOTSTRAP_TOKEN_NAME, ['admin'], config.adminToken);
  const temporal = new TemporalAccess(config.temporalAddress, config.temporalNamespace);
  // JSON lines unless a person reads them on a terminal (see log-output.ts).
  const stream = opts.logStream ?? logDestination();
  const app = await buildApp({ config, db, temporal, consoleLocalSignIn: opts.consoleLocalSignIn === true, logger: { ...(loggerOptions(config.logLevel) as object), stream } });
  if (config.provisioningFile) {
    // Applied before serving, so a bad file stops this gateway instead of running half-configured.
    const report = await applyProvisioningFile(db, config.provisioningFile).catch(async (err: unknown) => {
      await app.close();
      throw err;
    });
    app.log.info({ report, file: config.provisioningFile }, 'provisioning file applied');
    app.outbox.kick();
  }
  await app.listen({ host: config.host, port: config.port });
  return app;
}

/** Closes the app on the first SIGINT/SIGTERM; a second signal exits at once. */
export function closeOnSignals(close: () => Promise<void>): void {
  let closing = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (closing) process.exit(130);
    closing = true;
    close().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`shutdown after ${signal} failed: ${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

async function main(): Promise<void> {
  let config;
  try {
    config = loadGatewayConfig();
    requireExternalServices(config);
  } catch (err) {
    exitOnConfigError(err);
  }
  let app: FastifyInstance;
  try {
    app = await startGateway(config);
  } catch (err) {
    if (err instanceof DatabaseUnreachableError || err instanceof ProvisioningFileError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  closeOnSignals(() => app.close());
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await main();
}
