/**
 * A request's logger, made a pino child only when the request logs a line of its own.
 *
 * Fastify gives every request a child logger carrying the request id, and authentication adds the
 * name of the token that made the request. A pino child serializes its bindings through the
 * redaction paths when it is made, a few microseconds each; most requests log nothing but their
 * access line (written by the app's access logger, see ./app.ts), so they would pay
 * that twice for nothing. This logger keeps the bindings and makes the child on the first line
 * (or the first `child()`), with every binding it has been given by then.
 */
import type { FastifyBaseLogger, FastifyRequest } from 'fastify';
import type { Bindings, ChildLoggerOptions, Logger as PinoLogger } from 'pino';

type LogArgs = Parameters<FastifyBaseLogger['info']>;

export class RequestLog implements FastifyBaseLogger {
  private made: FastifyBaseLogger | undefined;
  private readonly bindings: Bindings;

  constructor(
    private readonly parent: FastifyBaseLogger,
    bindings: Bindings,
    private readonly options: ChildLoggerOptions = {},
  ) {
    this.bindings = { ...bindings };
    // A route's own level or serializers: the child is needed to know what to write.
    if (Object.keys(options).length > 0) this.logger();
  }

  /** The pino child, made on first use with the bindings given so far. */
  private logger(): FastifyBaseLogger {
    return (this.made ??= this.parent.child(this.bindings, this.options));
  }

  /** Adds `more` to the bindings of every line this request logs. */
  bind(more: Bindings): void {
    if (this.made) this.made = this.made.child(more);
    else Object.assign(this.bindings, more);
  }

  get level(): string {
    return (this.made ?? this.parent).level;
  }

  set level(level: string) {
    this.logger().level = level;
  }

  /** Whether a line at `level` would be written (asked of the logger, when it can tell: pino can). */
  isLevelEnabled(level: string): boolean {
    const logger = (this.made ?? this.parent) as Partial<PinoLogger>;
    return typeof logger.isLevelEnabled === 'function' ? logger.isLevelEnabled(level) : true;
  }

  child(bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger {
    return this.logger().child(bindings, options);
  }

  fatal(...args: LogArgs): void {
    this.write('fatal', args);
  }
  error(...args: LogArgs): void {
    this.write('error', args);
  }
  warn(...args: LogArgs): void {
    this.write('warn', args);
  }
  info(...args: LogArgs): void {
    this.write('info', args);
  }
  debug(...args: LogArgs): void {
    this.write('debug', args);
  }
  trace(...args: LogArgs): void {
    this.write('trace', args);
  }
  silent(): void {}

  /** A line at `level`; a level that is off makes no child. */
  private write(level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace', args: LogArgs): void {
    if (this.made === undefined && !this.isLevelEnabled(level)) return;
    this.logger()[level](...args);
  }
}

/** Adds `bindings` to every later line `request` logs. */
export function bindRequestLog(request: FastifyRequest, bindings: Bindings): void {
  if (request.log instanceof RequestLog) request.log.bind(bindings);
  else request.log = request.log.child(bindings);
}
