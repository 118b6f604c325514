/**
 * The audit log (`audit_events`) as a hash chain, and reading it back.
 *
 * Each chained event has a link in `audit_chain`: its position `seq`, `prev_hash`, the hash of the
 * event before it in the chain (NULL for the first), and `hash = sha256(prev_hash || canonical
 * bytes of the event)`. Writers do not chain: they insert plain rows, with no lock, each of which
 * also puts the event on the chainer's work list (`audit_unchained`); a chainer links the
 * committed events after the head, a batch at a time (`audit_events_chain_pending`, migrations
 * 1732170000020_audit-chain-async and 1732170000022_audit-chain-links; {@link chainPendingAuditEvents}).
 * The gateway and the worker each run a chainer loop (core/audit/chainer.ts); one at a time does
 * the work. `audit_chain_head` holds the position, id and hash of the last chained event. Events
 * and links are both append-only.
 *
 * Between its commit and the next chainer pass (normally well under a second) an event is recorded
 * but not yet chained: it is in the log and visible to every reader, but not yet protected by the
 * chain. {@link verifyAuditChain} first chains what is pending (when the database lets it write),
 * then verifies the chain, and reports events still unchained: as pending when they are recent,
 * as a failure when they are older than a threshold (the chainer has stopped, or an event was
 * tampered with so that it cannot be chained).
 *
 * {@link verifyAuditChain} recomputes every hash in SQL, so the canonical bytes are built by the
 * same PostgreSQL functions that built them when the event was chained, but from the expression
 * below rather than from the database's own `audit_events_canonical` function: a verifier that
 * trusted a function stored in the database under check could be fooled by replacing that function.
 *
 * What the chain proves: anyone who changes, removes or reorders chained events without also
 * rewriting every later hash is detected. Someone with the rights to rewrite the table can
 * recompute the chain too, so keep a copy of the last hash (`lastHash`) outside the database from
 * time to time; a chain that still verifies but no longer contains a recorded hash has been rewritten.
 */
import type { Db, Tx } from '../db/pool.js';
import { eventConcernsUser } from './event-users.js';

type Queryable = Pick<Db | Tx, 'query'>;

/** The canonical bytes of event `e`; identical to `audit_events_canonical` in the migration. */
const CANONICAL = `convert_to(
    'audit_events:v1'
    || '|' || e.id::text
    || '|' || to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    || '|' || COALESCE(length(e.actor)::text || ':' || e.actor, '~')
    || '|' || COALESCE(length(e.action)::text || ':' || e.action, '~')
    || '|' || COALESCE(length(e.resource_type)::text || ':' || e.resource_type, '~')
    || '|' || COALESCE(length(e.resource_id)::text || ':' || e.resource_id, '~')
    || '|' || COALESCE(length(e.reason)::text || ':' || e.reason, '~')
    || '|' || COALESCE(length(e.before::text)::text || ':' || e.before::text, '~')
    || '|' || COALESCE(length(e.after::text)::text || ':' || e.after::text, '~'),
    'UTF8')`;

export interface AuditChainResult {
  /**
   * True when every chained event links to its predecessor and matches its hash, the head agrees,
   * and no event has stayed unchained for longer than the threshold.
   */
  ok: boolean;
  /** Chained events verified intact (when not ok: those before the first bad one). */
  checked: number;
  /** The first event found bad (for events missing at the end: the id the head says is last). */
  firstBadId?: number;
  /** What is wrong with it. */
  reason?: string;
  /** When ok: the id and hash (hex) of the last chained event, to record outside the database. */
  lastId?: number;
  lastHash?: string;
  /**
   * Events recorded but not chained yet, when there are any: committed after the last chainer
   * pass (or while the verifier ran). Not a failure until they are older than the threshold.
   */
  pending?: number;
}

export interface VerifyOptions {
  /** Events read per query (default 1000). */
  batchSize?: number;
  /**
   * Chain the pending events before verifying (default true). Skipped without error when the
   * database refuses the write (a role that may only read the log, a read-only replica).
   */
  chainFirst?: boolean;
  /**
   * An event still unchained this many seconds after its `at` makes the result a failure
   * (default 600). `at` is the writing transaction's start, so a transaction open longer than
   * this whose event the chainer has not reached yet would be reported too.
   */
  unchainedLimitSeconds?: number;
}

const INSUFFICIENT_PRIVILEGE = '42501';
const READ_ONLY_TRANSACTION = '25006';

/**
 * Links up to `maxEvents` committed, unchained events after the chain head, in one statement (an
 * interrupted call changes nothing). Returns how many it linked, or null when another chainer holds
 * the chain lock and `wait` is false (that chainer takes these events too); with `wait` it waits
 * for that chainer to finish, then links what is left.
 */
export async function chainPendingAuditEvents(db: Queryable, opts: { maxEvents?: number; wait?: boolean } = {}): Promise<number | null> {
  const { rows } = await db.query<{ n: number | null }>('SELECT audit_events_chain_pending($1, $2) AS n', [opts.maxEvents ?? 1000, opts.wait ?? false]);
  return rows[0]?.n ?? null;
}

/**
 * Chains every event committed before the call, waiting for a chainer at work. Returns the number
 * of events it linked itself.
 */
export async function chainAllPendingAuditEvents(db: Queryable, batchSize = 1000): Promise<number> {
  let total = 0;
  for (;;) {
    const n = (await chainPendingAuditEvents(db, { maxEvents: batchSize, wait: true })) ?? 0;
    total += n;
    if (n < batchSize) return total;
  }
}

function refusedWrite(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === INSUFFICIENT_PRIVILEGE || code === READ_ONLY_TRANSACTION;
}

/**
 * Walks the whole chain in chain order (`audit_chain.seq`), in keyset batches that are separate
 * statements (no long transaction, so it can run beside live traffic, and on the embedded
 * database's single connection). Events chained while it runs are verified too. Then counts the
 * events not chained yet.
 */
export async function verifyAuditChain(db: Queryable, opts: VerifyOptions = {}): Promise<AuditChainResult> {
  const batchSize = opts.batchSize ?? 1000;
  const limitSeconds = opts.unchainedLimitSeconds ?? 600;
  if (opts.chainFirst ?? true) {
    try {
      await chainAllPendingAuditEvents(db, batchSize);
    } catch (err) {
      if (!refusedWrite(err)) throw err;
    }
  }

  let checked = 0;
  let lastSeq = 0;
  let lastId = 0;
  let last: Buffer | null = null;
  let headCheckedAt: number | undefined;
  const bad = (firstBadId: number, reason: string): AuditChainResult => ({ ok: false, checked, firstBadId, reason });

  for (;;) {
    const { rows } = await db.query<{ id: number | string; seq: number | string; prev_hash: Buffer | null; hash: Buffer | null; present: boolean; intact: boolean | null }>(
      `SELECT c.event_id AS id, c.seq, c.prev_hash, c.hash, e.id IS NOT NULL AS present,
              c.hash = sha256(COALESCE(c.prev_hash, ''::bytea) || ${CANONICAL}) AS intact
         FROM audit_chain c
         LEFT JOIN audit_events e ON e.id = c.event_id
        WHERE c.seq > $1
        ORDER BY c.seq
        LIMIT $2`,
      [lastSeq, batchSize],
    );
    for (const row of rows) {
      const id = Number(row.id);
      if (!row.present) return bad(id, 'the event was removed: its link in the chain remains');
      if (last === null) {
        if (row.prev_hash !== null) return bad(id, 'the first event links to a predecessor: events before it are missing');
      } else if (row.prev_hash === null || !row.prev_hash.equals(last)) {
        return bad(id, `the event does not link to the event before it in the chain (id ${lastId}): an event between them was removed, or one of them was altered or moved`);
      }
      if (row.intact !== true || row.hash === null) return bad(id, 'the event does not match its hash: its content was altered');
      last = row.hash;
      lastId = id;
      lastSeq = Number(row.seq);
      checked++;
    }
    if (rows.length === batchSize) continue;

    const head = await db.query<{ last_seq: number | string | null; last_id: number | string | null; last_hash: Buffer | null }>(
      'SELECT last_seq, last_id, last_hash FROM audit_chain_head',
    );
    if (!head.rows[0]) return { ok: false, checked, reason: 'audit_chain_head is missing' };
    const headSeq = head.rows[0].last_seq === null ? null : Number(head.rows[0].last_seq);
    const headId = head.rows[0].last_id === null ? null : Number(head.rows[0].last_id);
    const headHash = head.rows[0].last_hash;
    if (headSeq === (last === null ? null : lastSeq)) {
      if (last === null) return await withPending(db, { ok: true, checked }, limitSeconds);
      if (headId !== lastId || !headHash || !headHash.equals(last)) return bad(lastId, 'the last event does not match the id and hash recorded in audit_chain_head');
      return await withPending(db, { ok: true, checked, lastId, lastHash: last.toString('hex') }, limitSeconds);
    }
    if (headSeq !== null && headSeq > lastSeq) {
      // A chainer committed a batch since the last read: read on. The head moves in the same
      // transaction as the batch it links, so a read after this one sees those events; if it
      // brings nothing new, the events the head points past are gone.
      if (headCheckedAt !== lastSeq) {
        headCheckedAt = lastSeq;
        continue;
      }
      return bad(
        headId ?? 0,
        `the chain ends at ${last === null ? 'no event' : `id ${lastId}`} but the chain head records ${headSeq} events, the last with id ${headId}: events at the end were removed`,
      );
    }
    return bad(lastId, `audit_chain_head records ${headSeq === null ? 'no event' : `${headSeq} events`} as the chain, but it holds ${checked} ending with id ${lastId}`);
  }
}

/** `result`, with the events not chained yet: a failure when one is older than the limit. */
async function withPending(db: Queryable, result: AuditChainResult, limitSeconds: number): Promise<AuditChainResult> {
  const { rows } = await db.query<{ n: number; stale: number; oldest: number | string | null; oldest_at: string | null }>(
    `SELECT count(*)::int AS n,
            count(*) FILTER (WHERE e.at < now() - make_interval(secs => $1))::int AS stale,
            min(e.id) FILTER (WHERE e.at < now() - make_interval(secs => $1)) AS oldest,
            to_char(min(e.at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS oldest_at
       FROM audit_events e
      WHERE NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.event_id = e.id)`,
    [limitSeconds],
  );
  const { n, stale, oldest, oldest_at: oldestAt } = rows[0]!;
  if (n === 0) return result;
  if (stale === 0) return { ...result, pending: n };
  return {
    ok: false,
    checked: result.checked,
    firstBadId: Number(oldest),
    reason:
      `${stale} event${stale === 1 ? ' was' : 's were'} recorded more than ${limitSeconds} s ago but never chained (the oldest from ${oldestAt ?? 'unknown'}): ` +
      'no chainer is running (the gateway and the worker run one), or the event was tampered with so that it cannot be chained',
    pending: n,
  };
}

// ------------------------------------------------------------------ reading the log

export interface AuditFilter {
  actor?: string;
  action?: string;
  resourceType?: string;
  resourceId?: string;
  /**
   * Events concerning this user: the user's own, their accounts', their grants', and group events
   * that add or remove them (see ./event-users.ts).
   */
  userId?: string;
  /** Events at or after this instant (a value accepted by {@link parseInstant}). */
  since?: string;
  /** Events strictly before this instant. */
  until?: string;
  /** Events with an id greater than this (keyset paging). */
  afterId?: number;
  /**
   * Chained events with a chain position greater than this, in chain order: following the log.
   * Positions become visible in increasing order, so a reader that pages on with the position of
   * the last event it read never skips one (an event shows up once chained).
   */
  afterChainSeq?: number;
  /** Events with an id smaller than this (keyset paging, newest first). */
  beforeId?: number;
}

/** An event as the API returns it; `before`/`after` are the stored JSON. */
export interface AuditEvent {
  id: number;
  /** The event's position in the hash chain; null until it is chained. */
  chainSeq: number | null;
  /** UTC, with the microseconds the database keeps. */
  at: string;
  actor: string;
  action: string;
  resourceType: string;
  resourceId: string | null;
  reason: string | null;
  before: unknown;
  after: unknown;
  /** Null until the event is chained, like `hash`. */
  prevHash: string | null;
  hash: string | null;
}

/** An event with `before`/`after` as PostgreSQL prints them, for exports that keep them exact. */
export interface RawAuditEvent extends Omit<AuditEvent, 'before' | 'after'> {
  before: string | null;
  after: string | null;
}

const ISO_INSTANT = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,6})?)?(?:[Zz]|[+-](\d{2})(?::?(\d{2}))?))?$/;

/**
 * An ISO 8601 date (`2024-05-01`, midnight UTC) or date-time with a zone (`2024-05-01T12:00:00Z`,
 * `…+02:00`) as a string PostgreSQL reads as the same instant; undefined for anything else,
 * impossible dates and zone-less date-times (whose meaning would depend on the server's time
 * zone) included.
 */
export function parseInstant(value: string): string | undefined {
  const m = ISO_INSTANT.exec(value);
  if (!m) return undefined;
  const n = (group: number) => Number(m[group] ?? 0);
  const [year, month, day] = [n(1), n(2), n(3)];
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > new Date(Date.UTC(year, month, 0)).getUTCDate()) return undefined;
  if (n(4) > 23 || n(5) > 59 || n(6) > 59 || n(7) > 15 || n(8) > 59) return undefined;
  return m[4] === undefined ? `${value}T00:00:00Z` : value;
}

/** The filter's text fields, as a query string gives them. */
export interface AuditFilterQuery {
  actor?: string | undefined;
  action?: string | undefined;
  resourceType?: string | undefined;
  resourceId?: string | undefined;
  userId?: string | undefined;
  since?: string | undefined;
  until?: string | undefined;
  afterId?: string | undefined;
  beforeId?: string | undefined;
  afterChainSeq?: string | undefined;
}

/** The filter a query string asks for, or the message explaining what is wrong with it. */
export function auditFilterOf(q: AuditFilterQuery): AuditFilter | string {
  const filter: AuditFilter = {};
  if (q.actor !== undefined) filter.actor = q.actor;
  if (q.action !== undefined) filter.action = q.action;
  if (q.resourceType !== undefined) filter.resourceType = q.resourceType;
  if (q.resourceId !== undefined) filter.resourceId = q.resourceId;
  if (q.userId !== undefined) filter.userId = q.userId;
  for (const key of ['since', 'until'] as const) {
    const value = q[key];
    if (value === undefined) continue;
    const instant = parseInstant(value);
    if (!instant) return `${key}: expected an ISO 8601 date or date-time with a zone (2024-05-01, 2024-05-01T12:00:00Z), got "${value}"`;
    filter[key] = instant;
  }
  for (const key of ['afterId', 'beforeId'] as const) {
    const value = q[key];
    if (value === undefined) continue;
    if (!/^[0-9]{1,15}$/.test(value)) return `${key}: expected an event id, got "${value}"`;
    filter[key] = Number(value);
  }
  if (q.afterChainSeq !== undefined) {
    if (!/^[0-9]{1,15}$/.test(q.afterChainSeq)) return `afterChainSeq: expected a chain position, got "${q.afterChainSeq}"`;
    if (filter.afterId !== undefined || filter.beforeId !== undefined) return 'afterChainSeq: pages in chain order; it cannot be combined with afterId or beforeId';
    filter.afterChainSeq = Number(q.afterChainSeq);
  }
  return filter;
}

const SELECT_EVENT = `SELECT e.id, c.seq AS chain_seq, to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at, e.actor, e.action,
       e.resource_type, e.resource_id, e.reason, e.before::text AS before, e.after::text AS after,
       encode(c.prev_hash, 'hex') AS prev_hash, encode(c.hash, 'hex') AS hash
  FROM audit_events e
  LEFT JOIN audit_chain c ON c.event_id = e.id`;

interface EventRow {
  id: number | string;
  chain_seq: number | string | null;
  at: string;
  actor: string;
  action: string;
  resource_type: string;
  resource_id: string | null;
  reason: string | null;
  before: string | null;
  after: string | null;
  prev_hash: string | null;
  hash: string | null;
}

function toRaw(r: EventRow): RawAuditEvent {
  return {
    id: Number(r.id),
    chainSeq: r.chain_seq === null ? null : Number(r.chain_seq),
    at: r.at,
    actor: r.actor,
    action: r.action,
    resourceType: r.resource_type,
    resourceId: r.resource_id,
    reason: r.reason,
    before: r.before,
    after: r.after,
    prevHash: r.prev_hash,
    hash: r.hash,
  };
}

/** The WHERE clause for `filter` (plus `id <= upTo`), appending its values to `params`. */
function whereClause(filter: AuditFilter, params: unknown[], upTo?: number): string {
  const conds: string[] = [];
  const add = (sql: string, value: unknown) => {
    params.push(value);
    conds.push(sql.replace('?', `$${params.length}`));
  };
  if (filter.actor !== undefined) add('e.actor = ?', filter.actor);
  if (filter.action !== undefined) add('e.action = ?', filter.action);
  if (filter.resourceType !== undefined) add('e.resource_type = ?', filter.resourceType);
  if (filter.resourceId !== undefined) add('e.resource_id = ?', filter.resourceId);
  if (filter.userId !== undefined) {
    params.push(filter.userId);
    conds.push(eventConcernsUser(`$${params.length}`));
  }
  if (filter.since !== undefined) add('e.at >= ?::timestamptz', filter.since);
  if (filter.until !== undefined) add('e.at < ?::timestamptz', filter.until);
  if (filter.afterId !== undefined) add('e.id > ?', filter.afterId);
  if (filter.beforeId !== undefined) add('e.id < ?', filter.beforeId);
  if (filter.afterChainSeq !== undefined) add('c.seq > ?', filter.afterChainSeq);
  if (upTo !== undefined) add('e.id <= ?', upTo);
  return conds.length ? `WHERE ${conds.join(' AND ')}` : '';
}

async function readRaw(db: Queryable, filter: AuditFilter, limit: number, upTo?: number, newestFirst = false): Promise<RawAuditEvent[]> {
  const params: unknown[] = [];
  const where = whereClause(filter, params, upTo);
  params.push(limit);
  const order = filter.afterChainSeq !== undefined ? 'c.seq' : 'e.id';
  const { rows } = await db.query<EventRow>(`${SELECT_EVENT} ${where} ORDER BY ${order}${newestFirst ? ' DESC' : ''} LIMIT $${params.length}`, params);
  return rows.map(toRaw);
}

function parsed(r: RawAuditEvent): AuditEvent {
  return { ...r, before: r.before === null ? null : (JSON.parse(r.before) as unknown), after: r.after === null ? null : (JSON.parse(r.after) as unknown) };
}

/**
 * One page of events in id order, and the `afterId` of the next page (null on the last page).
 * Ids are taken when events are written and can commit out of order: a page read while a
 * transaction holding a smaller id is still open does not show that event, and paging on with
 * `afterId` skips it. With `afterChainSeq` the page holds chained events in chain order instead,
 * and `nextAfterChainSeq` replaces `nextAfterId`: following the log that way skips nothing.
 */
export async function listAuditEvents(
  db: Queryable,
  filter: AuditFilter,
  limit: number,
): Promise<{ events: AuditEvent[]; nextAfterId: number | null; nextAfterChainSeq?: number | null }> {
  const raw = await readRaw(db, filter, limit + 1);
  const more = raw.length > limit;
  const events = raw.slice(0, limit).map(parsed);
  const last = events[events.length - 1];
  if (filter.afterChainSeq !== undefined) return { events, nextAfterId: null, nextAfterChainSeq: more ? last!.chainSeq : null };
  return { events, nextAfterId: more ? last!.id : null };
}

/** One page of events, newest first, and the `beforeId` of the next (older) page (null on the last page). */
export async function listAuditEventsNewestFirst(db: Queryable, filter: AuditFilter, limit: number): Promise<{ events: AuditEvent[]; nextBeforeId: number | null }> {
  const raw = await readRaw(db, filter, limit + 1, undefined, true);
  const more = raw.length > limit;
  const events = raw.slice(0, limit).map(parsed);
  return { events, nextBeforeId: more ? events[events.length - 1]!.id : null };
}

/**
 * Every matching event, in id order, as batches of one query each, never more than one batch in
 * memory. The export covers the events that existed when it started. The events pending then are
 * chained first (when the database lets it write), so that they carry their hashes; an event
 * committed meanwhile may still have none.
 */
export async function* auditEventBatches(db: Queryable, filter: AuditFilter, batchSize = 1000): AsyncGenerator<RawAuditEvent[]> {
  try {
    await chainAllPendingAuditEvents(db);
  } catch (err) {
    if (!refusedWrite(err)) throw err;
  }
  const { rows } = await db.query<{ max: number | string | null }>('SELECT max(id) AS max FROM audit_events');
  const upTo = Number(rows[0]?.max ?? 0);
  let afterId = filter.afterId;
  for (;;) {
    const batch = await readRaw(db, { ...filter, afterId }, batchSize, upTo);
    if (batch.length > 0) yield batch;
    if (batch.length < batchSize) return;
    afterId = batch[batch.length - 1]!.id;
  }
}

export type ExportFormat = 'csv' | 'json';

export const EXPORT_CONTENT_TYPES: Record<ExportFormat, string> = {
  csv: 'text/csv; charset=utf-8',
  json: 'application/json; charset=utf-8',
};

export const CSV_COLUMNS = ['id', 'at', 'actor', 'action', 'resourceType', 'resourceId', 'reason', 'before', 'after', 'prevHash', 'hash'] as const;

/**
 * One RFC 4180 field: quoted when it holds a comma, quote, CR or LF (quotes doubled), and also
 * when empty, so that an empty string ("") stays distinct from NULL (nothing).
 */
export function csvField(value: string | number | null): string {
  if (value === null) return '';
  const s = String(value);
  return s === '' || /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

function csvRecord(e: RawAuditEvent): string {
  return `${CSV_COLUMNS.map((c) => csvField(e[c])).join(',')}\r\n`;
}

/** One event as a JSON object, with `before`/`after` exactly as stored. */
function jsonRecord(e: RawAuditEvent): string {
  const s = (v: string | number | null) => JSON.stringify(v);
  return (
    `{"id":${e.id},"chainSeq":${e.chainSeq ?? 'null'},"at":${s(e.at)},"actor":${s(e.actor)},"action":${s(e.action)},"resourceType":${s(e.resourceType)},` +
    `"resourceId":${s(e.resourceId)},"reason":${s(e.reason)},"before":${e.before ?? 'null'},"after":${e.after ?? 'null'},` +
    `"prevHash":${s(e.prevHash)},"hash":${s(e.hash)}}`
  );
}

/**
 * The export as text chunks: CSV with a header row (CRLF line ends), or a JSON array. The first
 * chunk is produced only once the first query has succeeded, so a caller that awaits it can still
 * report a database error properly instead of sending a truncated document.
 */
export async function* exportAuditEvents(db: Queryable, filter: AuditFilter, format: ExportFormat, batchSize = 1000): AsyncGenerator<string> {
  let started = false;
  const open = format === 'csv' ? `${CSV_COLUMNS.join(',')}\r\n` : '[';
  for await (const batch of auditEventBatches(db, filter, batchSize)) {
    const body = format === 'csv' ? batch.map(csvRecord).join('') : batch.map(jsonRecord).join(',\n');
    yield started ? (format === 'csv' ? body : `,\n${body}`) : `${open}${format === 'json' ? '\n' : ''}${body}`;
    started = true;
  }
  if (format === 'json') yield started ? '\n]\n' : '[]\n';
  else if (!started) yield open;
}
