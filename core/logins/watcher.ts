/**
 * Tells subscribers when a user's provisioning state may have changed, for the first-login status
 * stream. With PostgreSQL, one connection of the pool LISTENs on `user_provisioning` (the triggers of
 * migration …222 NOTIFY it with the user's id from whichever process wrote), so every gateway
 * instance hears every change. The embedded database runs on a single connection, which cannot be
 * parked in a LISTEN; there, and whenever the LISTEN connection is lost, subscribers are polled
 * instead. A slow poll also runs beside LISTEN, so nothing waits forever on a lost notification.
 */
import type pg from 'pg';
import type { Db } from '../db/pool.js';

export const CHANNEL = 'user_provisioning';

export interface WatcherOptions {
  /** Use LISTEN (false: poll only, as for the embedded database). */
  listen: boolean;
  /** Poll interval without LISTEN (default 1 s). */
  pollMs?: number;
  /** Poll interval beside LISTEN (default 10 s). */
  safetyPollMs?: number;
  onError?: (err: Error) => void;
}

export class ProvisioningWatcher {
  private readonly subscribers = new Map<string, Set<() => void>>();
  private client: pg.PoolClient | undefined;
  private connecting: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private listening = false;
  private closed = false;

  constructor(
    private readonly db: Db,
    private readonly opts: WatcherOptions,
  ) {}

  /** Whether changes arrive by LISTEN right now (otherwise by polling). */
  get live(): boolean {
    return this.listening;
  }

  /** Calls `fn` whenever the user's provisioning may have changed; answers the unsubscribe. */
  async subscribe(userId: string, fn: () => void): Promise<() => void> {
    let set = this.subscribers.get(userId);
    if (!set) this.subscribers.set(userId, (set = new Set()));
    set.add(fn);
    await this.start();
    return () => {
      set.delete(fn);
      if (set.size === 0) this.subscribers.delete(userId);
      if (this.subscribers.size === 0) void this.stop();
    };
  }

  private fire(userId?: string): void {
    const targets = userId === undefined ? [...this.subscribers.values()] : [this.subscribers.get(userId) ?? new Set<() => void>()];
    for (const set of targets) for (const fn of [...set]) fn();
  }

  private schedulePoll(): void {
    if (this.timer) clearInterval(this.timer);
    const every = this.listening ? (this.opts.safetyPollMs ?? 10_000) : (this.opts.pollMs ?? 1000);
    this.timer = setInterval(() => this.fire(), every);
    this.timer.unref();
  }

  private async start(): Promise<void> {
    if (this.closed) return;
    if (!this.timer) this.schedulePoll();
    if (!this.opts.listen || this.client) return;
    this.connecting ??= this.listen().finally(() => (this.connecting = undefined));
    await this.connecting;
  }

  private async listen(): Promise<void> {
    let client: pg.PoolClient | undefined;
    try {
      client = await this.db.connect();
      client.on('notification', (msg) => {
        if (msg.channel === CHANNEL && msg.payload) this.fire(msg.payload);
      });
      client.on('error', (err) => this.lost(err));
      await client.query(`LISTEN ${CHANNEL}`);
      this.client = client;
      this.listening = true;
      this.schedulePoll();
    } catch (err) {
      client?.release(true);
      this.opts.onError?.(err as Error);
    }
  }

  private lost(err: Error): void {
    this.opts.onError?.(err);
    this.client?.release(true);
    this.client = undefined;
    this.listening = false;
    if (this.subscribers.size > 0) {
      this.schedulePoll();
      // Try again shortly; meanwhile subscribers are polled.
      setTimeout(() => void this.start(), 1000).unref();
    }
  }

  private async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.connecting;
    const client = this.client;
    this.client = undefined;
    this.listening = false;
    if (client) {
      await client.query(`UNLISTEN ${CHANNEL}`).catch(() => {});
      client.release();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.subscribers.clear();
    await this.stop();
  }
}
