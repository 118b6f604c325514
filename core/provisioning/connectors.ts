/**
 * Connectors as configured (the `connectors` table), for the views that list them: the admin API
 * and the console. Configuration holds secrets only as references (checks.ts refuses anything else).
 */
import type { Tx } from '../db/pool.js';

export interface ConnectorView {
  id: string;
  type: string;
  /** As saved: secrets appear only as references (env:NAME, file:/path). */
  config: Record<string, unknown>;
  mode: string;
  deprovision: string;
  enabled: boolean;
  reconcileEveryMinutes: number | null;
  created_at: Date;
  updated_at: Date;
}

/** Every connector, by id. */
export async function listConnectors(db: Pick<Tx, 'query'>): Promise<ConnectorView[]> {
  const { rows } = await db.query<ConnectorView>(
    'SELECT id, type, config, mode, deprovision, enabled, reconcile_every_minutes AS "reconcileEveryMinutes", created_at, updated_at FROM connectors ORDER BY id',
  );
  return rows;
}
