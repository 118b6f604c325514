/**
 * Transactional outbox: a change that must reach Temporal is recorded with `enqueue` inside the
 * same transaction as the change itself, so it is delivered if and only if the change commits.
 * The dispatcher (./dispatcher.ts) delivers rows in order of id.
 */
import type { Tx } from '../db/pool.js';

/** Topics the dispatcher knows how to deliver. */
export type OutboxTopic = 'user.changed' | 'connector.changed' | 'access-request.created' | 'review-campaign.created';

export interface OutboxMessage {
  topic: OutboxTopic;
  aggregateId: string;
  payload: Record<string, unknown>;
}

/** Records a message in the caller's transaction; returns its sequence number. */
export async function enqueue(tx: Tx, msg: OutboxMessage): Promise<number> {
  const { rows } = await tx.query<{ id: number }>(
    'INSERT INTO outbox (topic, aggregate_id, payload) VALUES ($1, $2, $3) RETURNING id',
    [msg.topic, msg.aggregateId, msg.payload],
  );
  return rows[0]!.id;
}

/** Records one `user.changed` message per user (deleted users included), in one statement. */
export async function enqueueUserChanges(tx: Tx, userIds: string[]): Promise<void> {
  if (userIds.length === 0) return;
  await tx.query(
    `INSERT INTO outbox (topic, aggregate_id, payload)
     SELECT 'user.changed', u.id, jsonb_build_object('userName', u.user_name)
       FROM users u WHERE u.id = ANY($1::uuid[]) ORDER BY u.id`,
    [userIds],
  );
}
