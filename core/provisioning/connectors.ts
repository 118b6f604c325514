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

/** How many accounts each connector holds, by state (active, disabled, deleted, …): connector id → state → count. */
export async function accountCounts(db: Pick<Tx, 'query'>): Promise<Map<string, Map<string, number>>> {
  const { rows } = await db.query<{ connector_id: string; state: string; n: number }>('SELECT connector_id, state, count(*)::int AS n FROM accounts GROUP BY connector_id, state ORDER BY connector_id, state');
  const out = new Map<string, Map<string, number>>();
  for (const r of rows) {
    const byState = out.get(r.connector_id) ?? new Map<string, number>();
    byState.set(r.state, r.n);
    out.set(r.connector_id, byState);
  }
  return out;
}
