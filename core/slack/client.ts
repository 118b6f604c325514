/**
 * The Slack Web API client the app uses for every call (@slack/web-api), and how its failures are
 * classified, like connector errors: a 429 (with its Retry-After), a 5xx and a network failure are
 * transient (worth retrying later); any refusal by Slack (`invalid_auth`, `channel_not_found`, …)
 * is permanent.
 */
import { LogLevel, WebClient, WebAPIHTTPError, WebAPIPlatformError, WebAPIRateLimitedError, WebAPIRequestError, type Logger } from '@slack/web-api';
import { PermanentError, TransientError } from '@scim-gateway/connector-sdk';
import type { SlackConfig } from '../config.js';

/** Slack refusals that are about load, not about the call, so retrying later may succeed. */
const TRANSIENT_PLATFORM_ERRORS = new Set(['ratelimited', 'internal_error', 'fatal_error', 'service_unavailable', 'request_timeout']);

interface LogSink {
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

/** The library's logger over ours (or silent): it never sees the token, and it never writes to the console. */
function quietLogger(sink: LogSink | undefined): Logger {
  const join = (msg: unknown[]) => msg.map((m) => (typeof m === 'string' ? m : JSON.stringify(m))).join(' ');
  return {
    debug: (...m: unknown[]) => sink?.debug(join(m)),
    info: (...m: unknown[]) => sink?.info(join(m)),
    warn: (...m: unknown[]) => sink?.warn(join(m)),
    error: (...m: unknown[]) => sink?.error(join(m)),
    setLevel: () => {},
    getLevel: () => LogLevel.WARN,
    setName: () => {},
  };
}

/**
 * A client that never retries by itself and rejects rate-limited calls: the caller decides (an
 * activity lets Temporal retry after Retry-After; a callback answers the user at once).
 */
export function slackClient(cfg: Pick<SlackConfig, 'botToken' | 'apiUrl'>, log?: LogSink): WebClient {
  return new WebClient(cfg.botToken, {
    slackApiUrl: cfg.apiUrl,
    retryConfig: { retries: 0 },
    rejectRateLimitedCalls: true,
    timeout: 10_000,
    logger: quietLogger(log),
  });
}

/** The Slack error code of a refused call (`channel_not_found`, …), if that is what `err` is. */
export function slackErrorCode(err: unknown): string | undefined {
  return err instanceof WebAPIPlatformError ? err.data.error : undefined;
}

/** `err` as TransientError or PermanentError, with what was being done. */
export function classifySlackError(what: string, err: unknown): TransientError | PermanentError {
  if (err instanceof WebAPIRateLimitedError) return new TransientError(`${what}: Slack rate-limited the call (retry after ${err.retryAfter} s)`, err.retryAfter * 1000, { cause: err });
  if (err instanceof WebAPIHTTPError) {
    const status = err.statusCode;
    if (status === 408 || status === 425 || status === 429 || status >= 500) return new TransientError(`${what}: Slack answered HTTP ${status}`, undefined, { cause: err });
    return new PermanentError(`${what}: Slack answered HTTP ${status}`, 'rejected', { cause: err });
  }
  if (err instanceof WebAPIRequestError) return new TransientError(`${what}: Slack could not be reached: ${err.original.message}`, undefined, { cause: err });
  if (err instanceof WebAPIPlatformError) {
    const code = err.data.error;
    if (TRANSIENT_PLATFORM_ERRORS.has(code)) return new TransientError(`${what}: Slack answered ${code}`, undefined, { cause: err });
    return new PermanentError(`${what}: Slack answered ${code}`, code, { cause: err });
  }
  if (err instanceof TransientError || err instanceof PermanentError) return err;
  return new TransientError(`${what}: ${(err as Error)?.message ?? String(err)}`, undefined, { cause: err });
}
