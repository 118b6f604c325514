/**
 * The periodic clean-up of deliveries, run by every gateway (the statements are idempotent, so
 * several gateways sweeping at once only repeat each other's work).
 */
import type { BaseLogger } from 'pino';
import type { Db } from '../db/pool.js';
import { purgeDeliveries } from './store.js';

export class DeliverySweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly db: Db,
    private readonly everyMs: number,
    private readonly log: Pick<BaseLogger, 'info' | 'warn'>,
    private readonly retentionMs?: number,
  ) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.sweep(), this.everyMs);
    // A sweep alone never keeps the process alive.
    this.timer.unref();
  }

  /** One sweep now (a sweep already running is joined, not doubled). */
  async sweep(): Promise<void> {
    this.running ??= (async () => {
      try {
        const { wiped, deleted } = await purgeDeliveries(this.db, this.retentionMs === undefined ? {} : { retentionMs: this.retentionMs });
        if (wiped || deleted) this.log.info({ wiped, deleted }, 'expired deliveries purged');
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'delivery sweep failed; the next one retries');
      } finally {
        this.running = undefined;
      }
    })();
    await this.running;
  }

  /** Stops the timer and waits for a sweep in progress. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
