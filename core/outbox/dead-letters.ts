/**
 * Reading the outbox's state and re-driving dead letters (rows the dispatcher parked after
 * OUTBOX_MAX_ATTEMPTS failed tries, see ./dispatcher.ts). Used by /readyz, the metrics and the
 * admin API.
 */
import type { Db } from '../db/pool.js';

/** The outbox at a glance. */
export interface OutboxStats {
  /** Rows waiting for delivery (dead letters not included). */
  pending: number;
  /** Age of the oldest pending row in seconds; 0 when none is pending. */
  oldestPendingAgeSeconds: number;
  /** Rows parked after their tries ran out, waiting for a re-drive. */
  deadLetters: number;
}

export async function outboxStats(db: Pick<Db, 'query'>): Promise<OutboxStats> {
  const { rows } = await db.query<{ pending: number; oldest: number | null; dead: number }>(
    `SELECT (SELECT count(*)::int FROM outbox WHERE delivered_at IS NULL AND dead_lettered_at IS NULL) AS pending,
            (SELECT extract(epoch FROM now() - min(created_at))::float8 FROM outbox WHERE delivered_at IS NULL AND dead_lettered_at IS NULL) AS oldest,
            (SELECT count(*)::int FROM outbox WHERE dead_lettered_at IS NOT NULL) AS dead`,
  );
  const r = rows[0]!;
  return { pending: r.pending, oldestPendingAgeSeconds: Math.max(0, r.oldest ?? 0), deadLetters: r.dead };
}

/** One dead-lettered outbox row, as the admin API shows it. */
export interface DeadLetter {
  id: number;
  topic: string;
  aggregateId: string;
  attempts: number;
  reason: string;
  createdAt: string;
  deadLetteredAt: string;
}

/** Dead letters in id order, `limit` at a time after `afterId`. */
export async function listDeadLetters(db: Pick<Db, 'query'>, limit: number, afterId = 0): Promise<DeadLetter[]> {
  const { rows } = await db.query<{ id: string; topic: string; aggregate_id: string; attempts: number; dead_letter_reason: string; created_at: Date; dead_lettered_at: Date }>(
    `SELECT id, topic, aggregate_id, attempts, dead_letter_reason, created_at, dead_lettered_at
       FROM outbox WHERE dead_lettered_at IS NOT NULL AND id > $1 ORDER BY id LIMIT $2`,
    [afterId, limit],
  );
  return rows.map((r) => ({
    id: Number(r.id),
    topic: r.topic,
    aggregateId: r.aggregate_id,
    attempts: r.attempts,
    reason: r.dead_letter_reason,
    createdAt: r.created_at.toISOString(),
    deadLetteredAt: r.dead_lettered_at.toISOString(),
  }));
}

/**
 * Puts dead letters back in the queue with a fresh set of tries: the one with id `id`, or all of
 * them when `id` is undefined. Each re-drive is an audit event attributed to `actor`, written in
 * the same statement. Answers the ids re-driven.
 */
export async function redriveDeadLetters(db: Pick<Db, 'query'>, actor: string, id?: number): Promise<number[]> {
  const { rows } = await db.query<{ id: string }>(
    `WITH redriven AS (
       UPDATE outbox SET dead_lettered_at = NULL, dead_letter_reason = NULL, attempts = 0, refusals = 0, claimed_by = NULL, claimed_until = NULL
        WHERE dead_lettered_at IS NOT NULL AND ($1::bigint IS NULL OR id = $1)
       RETURNING id, topic, aggregate_id, last_error),
     audited AS (
       INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after)
       SELECT $2, 'outbox.redriven', 'OutboxMessage', id::text, 'admin API',
              jsonb_build_object('topic', topic, 'aggregateId', aggregate_id, 'lastError', last_error)
         FROM redriven ORDER BY id)
     SELECT id FROM redriven ORDER BY id`,
    [id ?? null, actor],
  );
  return rows.map((r) => Number(r.id));
}
