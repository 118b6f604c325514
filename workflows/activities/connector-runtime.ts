/**
 * Connector instances for activities, built from the `connectors` table and cached per connector
 * until its row changes (the row's updated_at is the cache key), so each activity does not re-load
 * plugins or re-create HTTP clients.
 *
 * Each instance gets its own `ctx.deliver`, bound to its connector id (so a connector can only
 * deliver in its own name), when the worker is configured for deliveries.
 */
import type { Db } from '../../core/db/pool.js';
import { instantiate, loadConnector, PermanentError, type ConnectorDefinition, type ConnectorInstance, type Deliver, type SecretResolver } from '../../connectors/index.js';

export interface ConnectorRow {
  id: string;
  type: string;
  config: Record<string, unknown>;
  mode: 'enforce' | 'monitor';
  deprovision: 'disable' | 'delete';
  enabled: boolean;
  updated_at: Date;
}

export interface LoadedConnector {
  row: ConnectorRow;
  definition: ConnectorDefinition;
  instance: ConnectorInstance;
}

export class ConnectorRuntime {
  private readonly cache = new Map<string, { stamp: number; loaded: Promise<LoadedConnector> }>();

  constructor(
    private readonly db: Db,
    private readonly secret?: SecretResolver,
    /** Builds the `deliver` of a connector; absent: connectors get no `ctx.deliver`. */
    private readonly deliverFor?: (connectorId: string) => Deliver,
  ) {}

  async get(connectorId: string): Promise<LoadedConnector> {
    const { rows } = await this.db.query<ConnectorRow>(
      'SELECT id, type, config, mode, deprovision, enabled, updated_at FROM connectors WHERE id = $1',
      [connectorId],
    );
    const row = rows[0];
    if (!row) throw new PermanentError(`connector "${connectorId}" does not exist`, 'unknownConnector');
    const stamp = row.updated_at.getTime();
    const hit = this.cache.get(connectorId);
    if (hit && hit.stamp === stamp) return await hit.loaded;
    if (hit) void hit.loaded.then((l) => l.instance.close?.()).catch(() => {});
    const loaded = (async () => {
      const definition = await loadConnector(row.type);
      const instance = instantiate(definition, row.config, {
        ...(this.secret ? { secret: this.secret } : {}),
        ...(this.deliverFor ? { deliver: this.deliverFor(row.id) } : {}),
      });
      return { row, definition, instance };
    })();
    this.cache.set(connectorId, { stamp, loaded });
    loaded.catch(() => this.cache.delete(connectorId));
    return await loaded;
  }

  async close(): Promise<void> {
    for (const { loaded } of this.cache.values()) await loaded.then((l) => l.instance.close?.()).catch(() => {});
    this.cache.clear();
  }
}
