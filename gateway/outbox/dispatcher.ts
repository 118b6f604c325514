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
import { ensureReconcileSchedule, notifyUserChanged, type UserSyncTiming } from '../../workflows/client.js';

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
  payload: { userName?: string; reconcileEveryMinutes?: number | null };
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
           WHERE delivered_at IS NULL AND (claimed_until IS NULL OR claimed_until < now())
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
      await this.release(rows, err);
      return 0;
    }

    const delivered: number[] = [];
    const failed: ClaimedRow[] = [];
    let lastError: unknown;
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
            lastError = err;
            failed.push(...list.slice(i));
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
    if (failed.length > 0) await this.release(failed, lastError);
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
      default:
        throw new Error(`outbox: no delivery for topic "${row.topic}"`);
    }
  }

  /** Gives rows back with a backoff before they can be claimed again. */
  private async release(rows: ClaimedRow[], err: unknown): Promise<void> {
    const maxRetryMs = this.opts.maxRetryMs ?? 30_000;
    const attempts = Math.max(...rows.map((r) => r.attempts));
    const backoff = Math.min(maxRetryMs, this.opts.pollMs * 2 ** Math.min(attempts - 1, 16));
    const message = err instanceof Error ? err.message : String(err);
    this.opts.log.warn({ rows: rows.length, retryInMs: backoff, error: message }, 'outbox delivery failed; will retry');
    await this.opts.db.query(
      `UPDATE outbox SET claimed_by = NULL, claimed_until = now() + $3 * interval '1 millisecond', last_error = $2
        WHERE id = ANY($1) AND claimed_by = $4`,
      [rows.map((r) => r.id), message.slice(0, 1000), backoff, this.id],
    );
  }
}
