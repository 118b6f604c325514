/**
 * Delivers outbox rows to Temporal. Any number of dispatchers (one per gateway) may run against
 * the same database:
 *
 * - A dispatcher claims a batch with `FOR UPDATE SKIP LOCKED` and a lease (`claimed_until`), so two
 *   dispatchers never hold the same row; a row whose dispatcher died is claimed again once its lease
 *   runs out.
 * - Delivery is signal-with-start on the user's workflow id, and the workflow ignores sequences it
 *   has already seen, so even a re-delivery after an expired lease does no work twice.
 * - While Temporal is unreachable (no connection, UNAVAILABLE, a deadline passed), rows stay
 *   pending and are retried with capped exponential backoff for as long as the outage lasts; such
 *   tries do not count towards dead-lettering, so an outage of any length needs no re-drive
 *   afterwards. The backlog and its oldest age show in /readyz and the metrics meanwhile.
 * - A row that Temporal answers and refuses (or that no delivery exists for) `maxAttempts` times
 *   is dead-lettered: parked with its reason (and an audit event) instead of being retried
 *   forever, so it never hides behind endless retries. Dead letters show in /readyz, the metrics
 *   and the admin API, which re-drives them (./dead-letters.ts).
 *
 * It polls (no LISTEN/NOTIFY, which the embedded database does not offer) and is also kicked by
 * the local process right after a write, so delivery normally starts within milliseconds.
 */
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import { isGrpcServiceError, type Client } from '@temporalio/client';
import type { Logger } from 'pino';
import type { FastifyBaseLogger } from 'fastify';
import type { Db } from '../../core/db/pool.js';
import { ensureReconcileSchedule, notifyUserChanged, startAccessRequest, startCertification, type AccessRequestTiming, type UserSyncTiming } from '../../workflows/client.js';

export interface DispatcherOptions {
  db: Db;
  /** Returns a connected Temporal client or rejects while Temporal is unreachable. */
  temporal: () => Promise<Client>;
  taskQueue: string;
  timing: UserSyncTiming;
  /** Timing of the access request workflows it starts (defaults: the workflow's). */
  accessTiming?: AccessRequestTiming;
  pollMs: number;
  batchSize: number;
  leaseMs: number;
  /** Upper bound of the retry backoff while Temporal is unreachable. */
  maxRetryMs?: number;
  /** Refusals by Temporal after which an undelivered row is dead-lettered (default 20). */
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
  payload: { userName?: string; reconcileEveryMinutes?: number | null; requester?: string; resource?: string; name?: string };
  attempts: number;
  refusals: number;
  /** When the row was written (epoch ms). */
  at: number;
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
        RETURNING o.id, o.topic, o.aggregate_id, o.payload, o.attempts, o.refusals, (extract(epoch FROM o.created_at) * 1000)::float8 AS at`,
      [this.id, leaseMs, batchSize],
    );
    if (rows.length === 0) return 0;
    rows.sort((a, b) => a.id - b.id);

    let client: Client;
    try {
      client = await this.opts.temporal();
    } catch (err) {
      // Connecting failed: a refusal only when Temporal answered (an unknown namespace, say).
      const outcome = grpcCode(err) !== undefined && !temporalUnreachable(err) ? 'refused' : 'unreached';
      await this.release(rows.map((row) => ({ row, err, outcome })));
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
        const sends = coalesced(list);
        for (const [i, send] of sends.entries()) {
          try {
            await this.deliver(client, send.row);
            delivered.push(...send.covers.map((row) => row.id));
          } catch (err) {
            // The user's later rows wait for this one; they were not tried, so the try is not theirs.
            const outcome: Failure['outcome'] = temporalUnreachable(err) ? 'unreached' : 'refused';
            failed.push(
              ...send.covers.map((row) => ({ row, err, outcome })),
              ...sends.slice(i + 1).flatMap((later) => later.covers.map((row) => ({ row, err, outcome: 'untried' as const }))),
            );
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
            at: row.at,
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
          startAccessRequest(client, this.opts.taskQueue, { requestId: row.aggregate_id, requester: row.payload.requester ?? '', resource: row.payload.resource ?? '' }, this.opts.accessTiming),
        );
        return;
      case 'review-campaign.created':
        await client.withDeadline(Date.now() + timeout, () => startCertification(client, this.opts.taskQueue, { campaignId: row.aggregate_id, name: row.payload.name ?? '' }));
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
    const dead = failures.filter((f) => f.outcome === 'refused' && f.row.refusals + 1 >= maxAttempts);
    const retry = failures.filter((f) => !dead.includes(f));
    if (retry.length > 0) {
      const attempts = Math.max(...retry.map((f) => f.row.attempts));
      const backoff = Math.min(maxRetryMs, this.opts.pollMs * 2 ** Math.min(Math.max(attempts - 1, 0), 16));
      const message = errorMessage(retry[0]!.err);
      this.opts.log.warn({ rows: retry.length, retryInMs: backoff, error: message }, 'outbox delivery failed; will retry');
      const ids = (outcome: Failure['outcome']) => retry.filter((f) => f.outcome === outcome).map((f) => f.row.id);
      await this.opts.db.query(
        `UPDATE outbox SET claimed_by = NULL, claimed_until = now() + $3 * interval '1 millisecond', last_error = $2,
                attempts = attempts - CASE WHEN id = ANY($5) THEN 1 ELSE 0 END,
                refusals = refusals + CASE WHEN id = ANY($6) THEN 1 ELSE 0 END
          WHERE id = ANY($1) AND claimed_by = $4`,
        [retry.map((f) => f.row.id), message, backoff, this.id, ids('untried'), ids('refused')],
      );
    }
    for (const { row, err } of dead) {
      const reason = errorMessage(err);
      this.opts.log.error({ outboxId: row.id, topic: row.topic, aggregateId: row.aggregate_id, attempts: row.attempts, error: reason }, 'outbox row dead-lettered');
      await this.opts.db.query(
        `WITH parked AS (
           UPDATE outbox SET claimed_by = NULL, claimed_until = NULL, last_error = $2, dead_lettered_at = now(), dead_letter_reason = $2,
                  refusals = refusals + 1
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

/**
 * One aggregate's claimed rows (in order) as the calls that deliver them: a run of `user.changed`
 * rows is one signal, the run's last, since the user's workflow reloads the user and applies
 * everything up to the highest sequence it is told (a create followed by an identity provider's
 * PATCH, or a backlog, costs Temporal one signal instead of several). `covers` are the rows that
 * count as delivered when `row` is.
 */
function coalesced(rows: ClaimedRow[]): Array<{ row: ClaimedRow; covers: ClaimedRow[] }> {
  const sends: Array<{ row: ClaimedRow; covers: ClaimedRow[] }> = [];
  for (const row of rows) {
    const last = sends.at(-1);
    if (last && last.row.topic === 'user.changed' && row.topic === 'user.changed') {
      last.row = row;
      last.covers.push(row);
    } else sends.push({ row, covers: [row] });
  }
  return sends;
}

/** Tries before a row is dead-lettered when the dispatcher is given no `maxAttempts`. */
export const DEFAULT_MAX_ATTEMPTS = 20;

interface Failure {
  row: ClaimedRow;
  err: unknown;
  /**
   * `refused`: Temporal answered with an error (or no delivery exists); counts towards
   * dead-lettering. `unreached`: Temporal did not answer (an outage); a try for the backoff only.
   * `untried`: an earlier row of the same user failed, so this one was not sent at all.
   */
  outcome: 'refused' | 'unreached' | 'untried';
}

/** gRPC status codes that mean "Temporal did not answer (in time)" or "too busy now", not "refused". */
const UNAVAILABLE = 14;
const DEADLINE_EXCEEDED = 4;
const RESOURCE_EXHAUSTED = 8;

/** The gRPC status code in `err` or an error it wraps, if Temporal answered with one. */
function grpcCode(err: unknown): number | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (isGrpcServiceError(e)) return e.code;
  }
  return undefined;
}

/** True when `err` says Temporal could not be reached in time, or is too busy for now. */
function temporalUnreachable(err: unknown): boolean {
  const code = grpcCode(err);
  return code !== undefined && [UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED].includes(code);
}

function errorMessage(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).slice(0, 1000);
}
