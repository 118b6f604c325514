/**
 * Delivers outbox rows to Temporal. Any number of dispatchers (one per gateway) may run against
 * the same database:
 *
 * - A dispatcher claims a batch with `FOR UPDATE SKIP LOCKED` and a lease (`claimed_until`), so two
 *   dispatchers never hold the same row; a row whose dispatcher died is claimed again once its lease
 *   runs out.
 * - Delivery is signal-with-start on the user's workflow id, and the workflow ignores sequences it
 *   has already seen, so even a re-delivery after an expired lease does no work twice.
 * - While Temporal is unreachable, rows stay pending and are retried with capped exponential
 *   backoff; nothing accepted is lost.
 * - A row still undelivered after `maxAttempts` tries is dead-lettered: parked with its reason
 *   (and an audit event) instead of being retried forever, so a row Temporal keeps refusing never
 *   hides behind endless retries. Dead letters show in /readyz, the metrics and the admin API,
 *   which re-drives them (./dead-letters.ts).
 *
 * It polls (no LISTEN/NOTIFY, which the embedded database does not offer) and is also kicked by
 * the local process right after a write, so delivery normally starts within milliseconds.
 */
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import type { Logger } from 'pino';
import type { FastifyBaseLogger } from 'fastify';
import type { Db } from '../db/pool.js';
import { ensureReconcileSchedule, notifyUserChanged, startAccessRequest, type UserSyncTiming } from '../../workflows/client.js';

export interface DispatcherOptions {
  db: Db;
  /** Returns a connected Temporal client or rejects while Temporal is unreachable. */
  temporal: () => Promise<Client>;
  taskQueue: string;
  timing: UserSyncTiming;
  pollMs: number;
  batchSize: number;
  leaseMs: number;
  /** Upper bound of the retry backoff while Temporal is unreachable. */
  maxRetryMs?: number;
  /** Tries after which an undelivered row is dead-lettered (default 100). */
  maxAttempts?: number;
  /** Deadline of one delivery call to Temporal. */
  deliveryTimeoutMs?: number;
  log: Logger | FastifyBaseLogger;
  /** Identifies this dispatcher in `outbox.claimed_by`. */
  id?: string;
}

interface ClaimedRow {
  id: number;
  topic: string;
  aggregate_id: string;
  payload: { userName?: string; reconcileEveryMinutes?: number | null; requester?: string; resource?: string };
  attempts: number;
}

export class OutboxDispatcher {
  readonly id: string;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = true;

  constructor(private readonly opts: DispatcherOptions) {
    this.id = opts.id ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  }

  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  /** Asks for a pass as soon as possible (called after a local write). */
  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running = this.loop().finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.schedule(0);
        } else {
          this.schedule(this.opts.pollMs);
        }
      });
    }, ms);
    this.timer.unref?.();
  }

  private async loop(): Promise<void> {
    try {
      // Keep going while full batches come back, so a backlog drains without waiting for polls.
      while (!this.stopped && (await this.dispatchOnce()) === this.opts.batchSize);
    } catch (err) {
      this.opts.log.warn({ err }, 'outbox pass failed');
    }
  }

  /** Claims and delivers one batch; returns how many rows it claimed. */
  async dispatchOnce(): Promise<number> {
    const { db, leaseMs, batchSize } = this.opts;
    const { rows } = await db.query<ClaimedRow>(
      `UPDATE outbox o
          SET claimed_by = $1, claimed_until = now() + $2 * interval '1 millisecond', attempts = o.attempts + 1
        WHERE o.id IN (
          SELECT id FROM outbox
           WHERE delivered_at IS NULL AND dead_lettered_at IS NULL AND (claimed_until IS NULL OR claimed_until < now())
           ORDER BY id
           LIMIT $3
           FOR UPDATE SKIP LOCKED)
        RETURNING o.id, o.topic, o.aggregate_id, o.payload, o.attempts`,
      [this.id, leaseMs, batchSize],
    );
    if (rows.length === 0) return 0;
    rows.sort((a, b) => a.id - b.id);

    let client: Client;
    try {
      client = await this.opts.temporal();
    } catch (err) {
      await this.release(rows.map((row) => ({ row, err, tried: true })));
      return 0;
    }

    const delivered: number[] = [];
    const failed: Failure[] = [];
    // One user's changes go out in order; different users' in parallel.
    const byUser = new Map<string, ClaimedRow[]>();
    for (const row of rows) {
      const list = byUser.get(row.aggregate_id) ?? [];
      list.push(row);
      byUser.set(row.aggregate_id, list);
    }
    await Promise.all(
      [...byUser.values()].map(async (list) => {
        for (const [i, row] of list.entries()) {
          try {
            await this.deliver(client, row);
            delivered.push(row.id);
          } catch (err) {
            // The user's later rows wait for this one; they were not tried, so the try is not theirs.
            failed.push({ row, err, tried: true }, ...list.slice(i + 1).map((later) => ({ row: later, err, tried: false })));
            return;
          }
        }
      }),
    );
    if (delivered.length > 0) {
      await db.query(
        'UPDATE outbox SET delivered_at = now(), claimed_by = NULL, claimed_until = NULL, last_error = NULL WHERE id = ANY($1) AND claimed_by = $2',
        [delivered, this.id],
      );
    }
    if (failed.length > 0) await this.release(failed);
    return failed.length > 0 ? 0 : rows.length;
  }

  private async deliver(client: Client, row: ClaimedRow): Promise<void> {
    const timeout = this.opts.deliveryTimeoutMs ?? 5000;
    switch (row.topic) {
      case 'user.changed':
        await client.withDeadline(Date.now() + timeout, () =>
          notifyUserChanged(client, this.opts.taskQueue, this.opts.timing, {
            userId: row.aggregate_id,
            userName: row.payload.userName ?? '',
            seq: row.id,
          }),
        );
        return;
      case 'connector.changed':
        await client.withDeadline(Date.now() + timeout, () =>
          ensureReconcileSchedule(client, this.opts.taskQueue, row.aggregate_id, row.payload.reconcileEveryMinutes ?? null),
        );
        return;
      case 'access-request.created':
        await client.withDeadline(Date.now() + timeout, () =>
          startAccessRequest(client, this.opts.taskQueue, { requestId: row.aggregate_id, requester: row.payload.requester ?? '', resource: row.payload.resource ?? '' }),
        );
        return;
      default:
        throw new Error(`outbox: no delivery for topic "${row.topic}"`);
    }
  }

  /**
   * Gives failed rows back with a backoff before they can be claimed again, and dead-letters those
   * that have used up their tries (with an audit event, in the same statement).
   */
  private async release(failures: Failure[]): Promise<void> {
    const maxRetryMs = this.opts.maxRetryMs ?? 30_000;
    const maxAttempts = this.opts.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
    const dead = failures.filter((f) => f.tried && f.row.attempts >= maxAttempts);
    const retry = failures.filter((f) => !dead.includes(f));
    if (retry.length > 0) {
      const attempts = Math.max(...retry.map((f) => f.row.attempts));
      const backoff = Math.min(maxRetryMs, this.opts.pollMs * 2 ** Math.min(Math.max(attempts - 1, 0), 16));
      const message = errorMessage(retry[0]!.err);
      this.opts.log.warn({ rows: retry.length, retryInMs: backoff, error: message }, 'outbox delivery failed; will retry');
      const untried = retry.filter((f) => !f.tried).map((f) => f.row.id);
      await this.opts.db.query(
        `UPDATE outbox SET claimed_by = NULL, claimed_until = now() + $3 * interval '1 millisecond', last_error = $2,
                attempts = attempts - CASE WHEN id = ANY($5) THEN 1 ELSE 0 END
          WHERE id = ANY($1) AND claimed_by = $4`,
        [retry.map((f) => f.row.id), message, backoff, this.id, untried],
      );
    }
    for (const { row, err } of dead) {
      const reason = errorMessage(err);
      this.opts.log.error({ outboxId: row.id, topic: row.topic, aggregateId: row.aggregate_id, attempts: row.attempts, error: reason }, 'outbox row dead-lettered');
      await this.opts.db.query(
        `WITH parked AS (
           UPDATE outbox SET claimed_by = NULL, claimed_until = NULL, last_error = $2, dead_lettered_at = now(), dead_letter_reason = $2
            WHERE id = $1 AND claimed_by = $3
           RETURNING id, topic, aggregate_id, attempts)
         INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after)
         SELECT 'outbox', 'outbox.dead_lettered', 'OutboxMessage', id::text, $2,
                jsonb_build_object('topic', topic, 'aggregateId', aggregate_id, 'attempts', attempts)
           FROM parked`,
        [row.id, reason, this.id],
      );
    }
  }
}

/** Tries before a row is dead-lettered when the dispatcher is given no `maxAttempts`. */
export const DEFAULT_MAX_ATTEMPTS = 100;

interface Failure {
  row: ClaimedRow;
  err: unknown;
  /** False for a row not tried because an earlier row of the same user failed. */
  tried: boolean;
}

function errorMessage(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).slice(0, 1000);
}
