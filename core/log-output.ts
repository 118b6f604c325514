/**
 * Where log lines go: JSON lines (pino's own format, one event per line) unless standard output is
 * a terminal, where a person reads them, in which case they are printed by pino-pretty: a time, a
 * level, the message and its fields on the following lines. Collectors never see a terminal, so
 * production keeps JSON without configuration.
 */
import pino, { type DestinationStream } from 'pino';
import pinoPretty from 'pino-pretty';

/**
 * A pretty-printing destination when `isTTY`; otherwise JSON lines on `fd` (standard output),
 * written asynchronously: a line is handed to the kernel at once when no write is in flight, and
 * the lines logged while one is in flight go out together in the next write. Under load that turns
 * one write system call per line (pino's default, synchronous destination, which the request path
 * waits for) into one per burst, with nothing held back on a quiet process. The buffer is flushed
 * synchronously when the process exits, also through `process.exit()` after a fatal error; only a
 * process killed with SIGKILL can lose the lines of the write in flight.
 */
export function logDestination(isTTY: boolean = process.stdout.isTTY === true, out: NodeJS.WritableStream = process.stdout, fd = 1): DestinationStream {
  if (!isTTY) return pino.destination({ dest: fd, sync: false });
  // Synchronous, so the last lines before a crash or exit are not lost in a buffer.
  return pinoPretty({ colorize: out === process.stdout && process.stdout.hasColors?.() === true, sync: true, destination: out, ignore: 'pid,hostname', translateTime: 'SYS:HH:MM:ss.l' });
}

/**
 * Temporal's own log fields, made readable: the activity task token (a long opaque credential that
 * lets its holder complete the activity) is dropped, and an error becomes its message, which JSON
 * would otherwise lose (an Error's message is not an enumerable property).
 */
export function temporalLogFields(meta: Record<string, unknown> | undefined): Record<string, unknown> {
  if (!meta) return {};
  const { taskToken: _taskToken, ...rest } = meta;
  for (const [key, value] of Object.entries(rest)) {
    if (value instanceof Error) rest[key] = value.message;
  }
  return rest;
}
