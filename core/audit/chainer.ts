/**
 * The loop that links committed audit events into the hash chain (see core/audit/chain.ts). The
 * gateway and the worker each run one, so every deployment chains without extra setup; the chain
 * lock lets one of them work at a time, and the others skip their turn.
 *
 * It polls: one short statement every `intervalMs` (default 200 ms) that finds nothing to do when
 * nothing was written, and again at once while full batches keep coming. Writers do not signal it
 * (LISTEN/NOTIFY): a transaction that notifies takes a database-wide lock while it commits, which
 * would put back a part of the serialization this design removes.
 *
 * Stopping waits for the batch in progress. A process killed in the middle of a batch loses
 * nothing: the batch is one statement, so its transaction is rolled back and the next pass, by
 * this or another process, links the same events.
 */
import type { Db } from '../db/pool.js';
import { chainPendingAuditEvents } from './chain.js';

export interface AuditChainerOptions {
  db: Pick<Db, 'query'>;
  /** Milliseconds between passes that found the log chained (default 200). */
  intervalMs?: number;
  /** Events linked per statement (default 1000). */
  batchSize?: number;
  /** Where failures go (they are retried on the next pass). */
  log?: { warn: (obj: object, msg: string) => void };
}

export class AuditChainer {
  private readonly db: Pick<Db, 'query'>;
  private readonly intervalMs: number;
  private readonly batchSize: number;
  private readonly log: AuditChainerOptions['log'];
  private running = false;
  private loop: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;

  constructor(opts: AuditChainerOptions) {
    this.db = opts.db;
    this.intervalMs = opts.intervalMs ?? 200;
    this.batchSize = opts.batchSize ?? 1000;
    this.log = opts.log;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** Stops after the batch in progress, if any. */
  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.wake?.();
    await this.loop;
    this.loop = undefined;
  }

  /** One pass: the events linked (0 when none were pending, or another chainer was at work). */
  async pass(): Promise<number> {
    return (await chainPendingAuditEvents(this.db, { maxEvents: this.batchSize })) ?? 0;
  }

  private async run(): Promise<void> {
    while (this.running) {
      let linked = 0;
      try {
        linked = await this.pass();
      } catch (err) {
        this.log?.warn({ err }, 'linking audit events into the hash chain failed; retrying');
      }
      if (linked >= this.batchSize || !this.running) continue;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        this.timer = setTimeout(resolve, this.intervalMs);
        // The pool and the servers keep a process alive, not this timer.
        this.timer.unref();
      });
      this.wake = undefined;
      this.timer = undefined;
    }
  }
}
