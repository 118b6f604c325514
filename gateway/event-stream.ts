/**
 * A Server-Sent Events answer that follows something in the database: the console's live
 * provisioning status and the first-login status page. The stream sends named events, keeps the
 * connection alive with comment lines, and runs its evaluation one at a time (a wake-up that comes
 * during an evaluation runs one more after it, so no change is missed and none is evaluated twice
 * at once). It ends when the client goes away, when an evaluation fails, or when asked.
 */
import type { FastifyReply } from 'fastify';

const HEARTBEAT_MS = 15_000;

export interface EventStream {
  /** Whether the stream has ended (no more events are written). */
  readonly ended: boolean;
  /** Writes one event with `data` as JSON (already serialized when a string is passed with `raw`). */
  send: (event: string, data: unknown, raw?: boolean) => void;
  /** Ends the stream once; runs every `onEnd` callback. */
  end: () => void;
  /** Runs `fn` when the stream ends (at once when it has ended already). */
  onEnd: (fn: () => void) => void;
  /**
   * Answers a function that runs `step` one at a time, again after a run for every wake-up that came
   * during it, never after the stream ended; a step that throws is reported to `onError` and ends it.
   */
  evaluator: (step: () => Promise<void>, onError: (err: Error) => void) => () => Promise<void>;
}

/** Takes over `reply` (hijacked) as a text/event-stream answer. */
export function openEventStream(reply: FastifyReply, heartbeatMs = HEARTBEAT_MS): EventStream {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
  const cleanups: Array<() => void> = [];
  let ended = false;
  const heartbeat = setInterval(() => res.write(': ping\n\n'), heartbeatMs);
  const stream: EventStream = {
    get ended() {
      return ended;
    },
    send: (event, data, raw = false) => {
      if (!ended) res.write(`event: ${event}\ndata: ${raw ? String(data) : JSON.stringify(data)}\n\n`);
    },
    end: () => {
      if (ended) return;
      ended = true;
      clearInterval(heartbeat);
      for (const fn of cleanups.splice(0)) fn();
      res.end();
    },
    onEnd: (fn) => {
      if (ended) fn();
      else cleanups.push(fn);
    },
    evaluator: (step, onError) => {
      let running = false;
      let again = false;
      return async () => {
        if (running) {
          again = true;
          return;
        }
        running = true;
        try {
          do {
            again = false;
            if (ended) return;
            await step();
          } while (again && !ended);
        } catch (err) {
          onError(err as Error);
          stream.end();
        } finally {
          running = false;
        }
      };
    },
  };
  res.on('close', () => stream.end());
  return stream;
}
