/**
 * Auth0 Log Streams (custom webhook) as near-real-time changes of a source's users.
 *
 * Auth0 posts batches of log events ({log_id, data}) as a JSON array, one JSON object or JSON
 * lines. An event that names a user (signup, Management API change, deletion, login…) is applied by
 * reading that user's current state from the Management API: present → created or updated, absent
 * → deleted. Re-reading instead of trusting the event makes the order of events irrelevant.
 *
 * Every log id is recorded before it is applied, in `source_log_events`; an event whose id was
 * applied already is a duplicate and is not applied again (Auth0 delivers at least once). An event
 * whose application failed (the Management API did not answer) stays pending, the batch is answered
 * 503 so Auth0 sends it again, and the retry applies it.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Db } from '../db/pool.js';
import type { SecretResolver } from '../../connectors/index.js';
import { PermanentError } from '../../connectors/index.js';
import type { Auth0User } from '../../connectors/auth0/user.js';
import type { Auth0Source } from './auth0.js';
import { auth0UserToScim } from './auth0.js';
import { deleteSourceUser, upsertSourceUser } from './store.js';

export const LOG_STREAM_REASON = 'source log stream';

export interface LogEvent {
  logId: string;
  type: string | undefined;
  /** The Auth0 user the event is about, when it names one. */
  subject: string | undefined;
  connection: string | undefined;
}

/** Compares the Authorization header with the secret in constant time (`<secret>` or `Bearer <secret>`). */
export function logStreamAuthorized(header: string | undefined, secret: string): boolean {
  if (!header || !secret) return false;
  const digest = (v: string) => createHash('sha256').update(v).digest();
  const expected = digest(secret);
  const bare = header.replace(/^Bearer\s+/i, '');
  // Both forms are compared, always, so the time taken says nothing about which one was close.
  const a = timingSafeEqual(digest(header), expected);
  const b = timingSafeEqual(digest(bare), expected);
  return a || b;
}

/** The body as Auth0 sends it, in any of its three formats, as a list of raw events. */
export function parseLogBatch(body: unknown): unknown[] {
  if (Array.isArray(body)) return body;
  if (body && typeof body === 'object') return [body];
  if (typeof body !== 'string') throw new Error('expected log events as a JSON array, a JSON object or JSON lines');
  const text = body.trim();
  if (text === '') return [];
  try {
    const parsed = JSON.parse(text) as unknown;
    return Array.isArray(parsed) ? parsed : [parsed];
  } catch {
    return text.split(/\r?\n/).filter((l) => l.trim() !== '').map((line, i) => {
      try {
        return JSON.parse(line) as unknown;
      } catch {
        throw new Error(`line ${i + 1} of the log batch is not JSON`);
      }
    });
  }
}

const USER_PATH = /^\/api\/v2\/users\/([^/?]+)/;

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** Reads one raw event: its log id (required) and the user it names. */
export function readLogEvent(raw: unknown): LogEvent {
  const e = (raw && typeof raw === 'object' ? raw : {}) as { log_id?: unknown; data?: Record<string, unknown> };
  const data: Record<string, unknown> = e.data && typeof e.data === 'object' ? e.data : {};
  const logId = str(e.log_id) ?? str(data.log_id) ?? str(data._id);
  if (!logId) throw new Error('a log event without log_id');
  const details = (data.details && typeof data.details === 'object' ? data.details : {}) as Record<string, unknown>;
  const request = (details.request && typeof details.request === 'object' ? details.request : {}) as Record<string, unknown>;
  const response = (details.response && typeof details.response === 'object' ? details.response : {}) as Record<string, unknown>;
  const responseBody = (response.body && typeof response.body === 'object' ? response.body : {}) as Record<string, unknown>;
  const path = str(request.path);
  const fromPath = path ? USER_PATH.exec(path)?.[1] : undefined;
  let subject = str(data.user_id) ?? str(responseBody.user_id);
  if (!subject && fromPath) {
    try {
      subject = decodeURIComponent(fromPath);
    } catch {
      subject = undefined;
    }
  }
  return { logId, type: str(data.type), subject, connection: str(data.connection) };
}

export interface LogBatchResult {
  received: number;
  applied: number;
  duplicates: number;
  ignored: number;
  failed: number;
}

/** Records and applies a batch for the source; see the module comment. */
export async function applyLogBatch(db: Db, sourceId: string, source: Auth0Source, events: LogEvent[]): Promise<LogBatchResult> {
  const result: LogBatchResult = { received: events.length, applied: 0, duplicates: 0, ignored: 0, failed: 0 };
  for (const event of events) {
    // New, or recorded earlier but never applied (a failed attempt): this delivery applies it.
    const { rows } = await db.query(
      `INSERT INTO source_log_events (source_id, log_id, type, subject) VALUES ($1, $2, $3, $4)
       ON CONFLICT (source_id, log_id) DO UPDATE SET error = source_log_events.error WHERE source_log_events.applied_at IS NULL
       RETURNING log_id`,
      [sourceId, event.logId, event.type ?? null, event.subject ?? null],
    );
    if (rows.length === 0) {
      result.duplicates++;
      continue;
    }
    let outcome: string;
    try {
      outcome = await applyEvent(db, sourceId, source, event);
    } catch (err) {
      if (err instanceof PermanentError) {
        outcome = `failed: ${err.message}`;
      } else {
        result.failed++;
        await db.query('UPDATE source_log_events SET error = $3 WHERE source_id = $1 AND log_id = $2', [sourceId, event.logId, (err as Error).message]);
        continue;
      }
    }
    await db.query('UPDATE source_log_events SET applied_at = now(), outcome = $3, error = NULL WHERE source_id = $1 AND log_id = $2', [sourceId, event.logId, outcome]);
    if (outcome === 'ignored') result.ignored++;
    else result.applied++;
  }
  return result;
}

async function applyEvent(db: Db, sourceId: string, source: Auth0Source, event: LogEvent): Promise<string> {
  if (!event.subject) return 'ignored';
  if (event.connection !== undefined && event.connection !== source.config.connection) return 'ignored';
  const user = (await source.api.maybe('auth0 source: read user', (m) => m.users.get(event.subject!))) as (Auth0User & { user_id: string }) | undefined;
  if (!user) return (await deleteSourceUser(db, sourceId, event.subject, LOG_STREAM_REASON)) ? 'deleted' : 'ignored';
  const inConnection = (user.identities ?? []).some((i) => i.connection === source.config.connection);
  if (!inConnection) return 'ignored';
  return await upsertSourceUser(db, sourceId, auth0UserToScim(user), LOG_STREAM_REASON);
}

/** The secret Log Streams must send, resolved from the source's reference; undefined when none is configured. */
export async function logStreamSecret(source: Auth0Source, secret: SecretResolver): Promise<string | undefined> {
  const ref = source.config.logStreamSecret;
  return ref === undefined ? undefined : await secret(ref);
}
