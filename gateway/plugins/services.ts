/**
 * Shared services every route may use, as typed decorators: configuration, the PostgreSQL pool,
 * Temporal access, the token verifier, the outbox dispatcher and the audit chainer. Closing the app
 * stops the dispatcher and the chainer first (so no delivery is cut off half-way), then closes
 * Temporal and the pool.
 */
import fp from 'fastify-plugin';
import type { FastifyPluginAsync } from 'fastify';
import type { GatewayConfig } from '../../core/config.js';
import type { Db } from '../../core/db/pool.js';
import type { TemporalAccess } from '../temporal.js';
import { TokenVerifier } from '../../core/auth/tokens.js';
import { OutboxDispatcher } from '../outbox/dispatcher.js';
import { AuditChainer } from '../../core/audit/chainer.js';
import { Directory } from '../../core/directory/store.js';
import { SchemaRegistry } from '../../core/scim/schemas.js';

declare module 'fastify' {
  interface FastifyInstance {
    config: GatewayConfig;
    db: Db;
    temporal: TemporalAccess;
    tokens: TokenVerifier;
    outbox: OutboxDispatcher;
    scimRegistry: SchemaRegistry;
    directory: Directory;
  }
}

export interface ServicesOptions {
  config: GatewayConfig;
  db: Db;
  temporal: TemporalAccess;
  /** Run the outbox dispatcher in this process (default true). */
  dispatchOutbox?: boolean;
  /** Link audit events into the hash chain from this process (default true; see core/audit/chainer.ts). */
  chainAudit?: boolean;
  /** SCIM schemas, with any custom extensions; default: the standard ones. */
  registry?: SchemaRegistry;
}

const services: FastifyPluginAsync<ServicesOptions> = async (app, opts) => {
  const { config, db, temporal } = opts;
  app.decorate('config', config);
  app.decorate('db', db);
  app.decorate('temporal', temporal);
  app.decorate('tokens', new TokenVerifier(db));
  const registry = opts.registry ?? new SchemaRegistry();
  app.decorate('scimRegistry', registry);
  app.decorate('directory', new Directory(db, registry));
  const outbox = new OutboxDispatcher({
    db,
    temporal: () => temporal.client(),
    taskQueue: config.taskQueue,
    timing: { idleMs: config.userSyncIdleMs, debounceMs: config.userSyncDebounceMs },
    accessTiming: {
      fulfilmentPollMs: config.accessFulfilmentCheckMs,
      fulfilmentPollMaxMs: config.accessFulfilmentCheckMaxMs,
      fulfilmentTimeoutMs: config.accessFulfilmentTimeoutMs,
    },
    pollMs: config.outboxPollMs,
    batchSize: config.outboxBatchSize,
    leaseMs: config.outboxLeaseMs,
    maxRetryMs: config.outboxRetryMaxMs,
    maxAttempts: config.outboxMaxAttempts,
    log: app.log.child({ component: 'outbox' }),
  });
  app.decorate('outbox', outbox);

  const chainer = new AuditChainer({ db, log: app.log.child({ component: 'audit-chain' }) });

  if (opts.dispatchOutbox !== false) app.addHook('onReady', async () => outbox.start());
  if (opts.chainAudit !== false) app.addHook('onReady', async () => chainer.start());
  app.addHook('onClose', async () => {
    await outbox.stop();
    await chainer.stop();
    await temporal.close();
    await db.end();
  });
};

export default fp(services, { name: 'services', fastify: '5.x' });
