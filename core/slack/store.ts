/**
 * What the Slack app keeps in PostgreSQL: callbacks already accepted (replay protection), the
 * mapping of Slack users to directory users (a cache with an expiry), and the messages posted
 * about each request (so nothing is posted twice and later changes update or answer them).
 *
 * The identity cache is in PostgreSQL rather than in memory because the gateway (which maps the
 * clicker) and the workers (which map approvers to DM) are separate processes, possibly several of
 * each: one shared cache means one users.info call per person per expiry, and it survives restarts.
 */
import type { Db, Tx } from '../db/pool.js';

type Queryable = Pick<Db | Tx, 'query'>;

let lastSweep = 0;

/**
 * Records a callback as seen until `expiresAt`; answers false when it was seen already (a replay).
 * Expired records are swept at most once a minute per process.
 */
export async function markSeen(db: Queryable, key: string, expiresAt: Date): Promise<boolean> {
  if (Date.now() - lastSweep > 60_000) {
    lastSweep = Date.now();
    await db.query('DELETE FROM slack_seen_requests WHERE expires_at < now()');
  }
  const res = await db.query('INSERT INTO slack_seen_requests (key, expires_at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING', [key, expiresAt]);
  return (res.rowCount ?? 0) > 0;
}

/** A remembered mapping: the directory user (or why there is none). */
export interface CachedIdentity {
  slackUserId: string;
  userId: string | null;
  email: string | null;
  unmappedReason: string | null;
}

export async function cachedIdentity(db: Queryable, slackUserId: string): Promise<CachedIdentity | undefined> {
  const { rows } = await db.query<{ user_id: string | null; email: string | null; unmapped_reason: string | null }>(
    'SELECT user_id, email, unmapped_reason FROM slack_identities WHERE slack_user_id = $1 AND expires_at > now()',
    [slackUserId],
  );
  const r = rows[0];
  return r ? { slackUserId, userId: r.user_id, email: r.email, unmappedReason: r.unmapped_reason } : undefined;
}

/** The Slack user remembered for a directory user, if the mapping has not expired. */
export async function cachedSlackUserOf(db: Queryable, userId: string): Promise<string | undefined> {
  const { rows } = await db.query<{ slack_user_id: string }>(
    'SELECT slack_user_id FROM slack_identities WHERE user_id = $1 AND expires_at > now() ORDER BY checked_at DESC LIMIT 1',
    [userId],
  );
  return rows[0]?.slack_user_id;
}

export async function rememberIdentity(db: Queryable, id: CachedIdentity, ttlSeconds: number): Promise<void> {
  await db.query(
    `INSERT INTO slack_identities (slack_user_id, user_id, email, unmapped_reason, checked_at, expires_at)
     VALUES ($1, $2, $3, $4, now(), now() + $5 * interval '1 second')
     ON CONFLICT (slack_user_id) DO UPDATE SET user_id = EXCLUDED.user_id, email = EXCLUDED.email, unmapped_reason = EXCLUDED.unmapped_reason,
       checked_at = EXCLUDED.checked_at, expires_at = EXCLUDED.expires_at`,
    [id.slackUserId, id.userId, id.email, id.unmappedReason, ttlSeconds],
  );
}

/** A message posted about a request. */
export interface PostedMessage {
  key: string;
  requestId: string | null;
  kind: string;
  recipientId: string | null;
  stage: number | null;
  channel: string;
  ts: string;
  shown: string;
}

type MessageRow = { key: string; request_id: string | null; kind: string; recipient_id: string | null; stage: number | null; channel: string; ts: string; shown: string };
const toMessage = (r: MessageRow): PostedMessage => ({ key: r.key, requestId: r.request_id, kind: r.kind, recipientId: r.recipient_id, stage: r.stage, channel: r.channel, ts: r.ts, shown: r.shown });

export async function postedMessage(db: Queryable, key: string): Promise<PostedMessage | undefined> {
  const { rows } = await db.query<MessageRow>('SELECT key, request_id, kind, recipient_id, stage, channel, ts, shown FROM slack_messages WHERE key = $1', [key]);
  return rows[0] ? toMessage(rows[0]) : undefined;
}

export async function postedMessagesOf(db: Queryable, requestId: string, kind: string): Promise<PostedMessage[]> {
  const { rows } = await db.query<MessageRow>(
    'SELECT key, request_id, kind, recipient_id, stage, channel, ts, shown FROM slack_messages WHERE request_id = $1 AND kind = $2 ORDER BY created_at, key',
    [requestId, kind],
  );
  return rows.map(toMessage);
}

export async function recordPosted(db: Queryable, m: Omit<PostedMessage, 'shown'> & { shown?: string }): Promise<void> {
  await db.query(
    `INSERT INTO slack_messages (key, request_id, kind, recipient_id, stage, channel, ts, shown) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (key) DO NOTHING`,
    [m.key, m.requestId, m.kind, m.recipientId, m.stage, m.channel, m.ts, m.shown ?? 'open'],
  );
}

export async function recordShown(db: Queryable, key: string, shown: string): Promise<void> {
  await db.query('UPDATE slack_messages SET shown = $2, updated_at = now() WHERE key = $1', [key, shown]);
}
