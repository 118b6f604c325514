/**
 * Serializes every operation on one easy-rsa PKI. easy-rsa keeps its state in plain files (index.txt,
 * serial, issued/, revoked/) and two runs at once can hand out the same serial or lose an index line,
 * so one PKI directory must see one easyrsa run at a time: an in-process queue per directory for the
 * callers of this worker, and an exclusive lock file for other workers sharing the directory.
 */
import { open, readFile, rm, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { TransientError } from '@scim-gateway/connector-sdk';

/** The tail of each directory's in-process queue. */
const queues = new Map<string, Promise<unknown>>();

export interface LockOptions {
  /** The lock file; created exclusively, removed when done. */
  path: string;
  /** How long to wait for another worker's lock before giving up with a TransientError. */
  waitMs: number;
  /** A lock file older than this is taken to be left behind by a crashed worker. */
  staleMs: number;
  /** What the error says is busy, e.g. the PKI directory. */
  what: string;
}

interface Holder {
  pid: number;
  host: string;
  at: number;
}

function processIsGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** Whether the lock file was left by a process that no longer runs (on this host) or is too old. */
async function isStale(path: string, staleMs: number): Promise<boolean> {
  try {
    const [text, info] = await Promise.all([readFile(path, 'utf8'), stat(path)]);
    if (Date.now() - info.mtimeMs > staleMs) return true;
    const holder = JSON.parse(text) as Partial<Holder>;
    return holder.host === hostname() && typeof holder.pid === 'number' && processIsGone(holder.pid);
  } catch {
    // Vanished meanwhile: not stale, simply free; half-written: its writer is alive and finishing.
    return false;
  }
}

async function acquireFile(opts: LockOptions): Promise<() => Promise<void>> {
  const deadline = Date.now() + opts.waitMs;
  for (let pause = 10; ; pause = Math.min(pause * 2, 200)) {
    try {
      const handle = await open(opts.path, 'wx', 0o600);
      const holder: Holder = { pid: process.pid, host: hostname(), at: Date.now() };
      await handle.writeFile(JSON.stringify(holder));
      await handle.close();
      return () => rm(opts.path, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    if (await isStale(opts.path, opts.staleMs)) {
      await rm(opts.path, { force: true });
      continue;
    }
    if (Date.now() >= deadline) {
      throw new TransientError(`${opts.what} is locked by another worker (lock file ${opts.path}); try again later`);
    }
    await sleep(pause);
  }
}

/**
 * Runs `fn` while holding the directory's lock: after every earlier call of this process for the same
 * lock file, and while no other process holds the file.
 */
export async function withLock<T>(opts: LockOptions, fn: () => Promise<T>): Promise<T> {
  const previous = queues.get(opts.path) ?? Promise.resolve();
  const run = previous.catch(() => undefined).then(async () => {
    const release = await acquireFile(opts);
    try {
      return await fn();
    } finally {
      await release();
    }
  });
  const tail = run.catch(() => undefined);
  queues.set(opts.path, tail);
  void tail.then(() => {
    if (queues.get(opts.path) === tail) queues.delete(opts.path);
  });
  return await run;
}
