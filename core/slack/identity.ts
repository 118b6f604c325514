/**
 * Who is who between Slack and the directory: a Slack user is the directory user whose email
 * (an `emails` value, or a userName that is an email) equals the Slack user's email, and only when
 * Slack says that email is confirmed. Answers are remembered (./store.ts) until they expire, both
 * ways: Slack user → directory user for callbacks, directory user → Slack user for DMs.
 */
import type { WebClient } from '@slack/web-api';
import type { Db } from '../db/pool.js';
import { cachedIdentity, cachedSlackUserOf, rememberIdentity, type CachedIdentity } from './store.js';
import { slackErrorCode } from './client.js';

/** A Slack user mapped to an active directory user. */
export interface MappedUser {
  slackUserId: string;
  userId: string;
  userName: string;
}

interface SlackUser {
  id?: string;
  deleted?: boolean;
  is_bot?: boolean;
  is_email_confirmed?: boolean;
  profile?: { email?: string };
}

/** The active directory user with this email (case-insensitive), if exactly one. */
async function userByEmail(db: Db, email: string): Promise<{ id: string; user_name: string } | undefined> {
  const { rows } = await db.query<{ id: string; user_name: string }>(
    `SELECT id, user_name FROM users
      WHERE deleted_at IS NULL AND active
        AND (lower(user_name) = lower($1)
             OR EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof(resource->'emails') = 'array' THEN resource->'emails' ELSE '[]'::jsonb END) e
                         WHERE lower(e->>'value') = lower($1)))
      LIMIT 2`,
    [email],
  );
  return rows.length === 1 ? rows[0] : undefined;
}

/** Why a Slack user object cannot be trusted for a mapping, or undefined. */
function untrusted(user: SlackUser | undefined): string | undefined {
  if (!user) return 'Slack does not know this user';
  if (user.deleted) return 'the Slack account is deactivated';
  if (user.is_bot) return 'bots have no directory account';
  if (!user.profile?.email) return 'your Slack profile shows no email (the app needs the users:read.email scope)';
  if (user.is_email_confirmed !== true) return 'your Slack email is not confirmed';
  return undefined;
}

export class SlackIdentities {
  constructor(
    private readonly db: Db,
    private readonly slack: WebClient,
    private readonly ttlSeconds: number,
  ) {}

  /**
   * The directory user behind a Slack user, or why there is none (an explanation for that user).
   * Slack failures propagate (the caller classifies them).
   */
  async resolve(slackUserId: string): Promise<MappedUser | { unmapped: string }> {
    let known: CachedIdentity | undefined = await cachedIdentity(this.db, slackUserId);
    if (!known) {
      let user: SlackUser | undefined;
      try {
        user = (await this.slack.users.info({ user: slackUserId })).user;
      } catch (err) {
        if (slackErrorCode(err) !== 'user_not_found') throw err;
      }
      const why = untrusted(user);
      const email = user?.profile?.email ?? null;
      const found = why || !email ? undefined : await userByEmail(this.db, email);
      known = { slackUserId, userId: found?.id ?? null, email, unmappedReason: why ?? (found ? null : `no active directory user has the email ${email}`) };
      await rememberIdentity(this.db, known, this.ttlSeconds);
    }
    if (!known.userId) return { unmapped: known.unmappedReason ?? 'no directory user' };
    const { rows } = await this.db.query<{ user_name: string }>('SELECT user_name FROM users WHERE id = $1 AND deleted_at IS NULL AND active', [known.userId]);
    if (!rows[0]) return { unmapped: 'your directory account is not active' };
    return { slackUserId, userId: known.userId, userName: rows[0].user_name };
  }

  /** The Slack user of a directory user (users.lookupByEmail on the primary email), or undefined when there is none. */
  async slackUserOf(userId: string): Promise<string | undefined> {
    const cached = await cachedSlackUserOf(this.db, userId);
    if (cached) return cached;
    const { rows } = await this.db.query<{ email: string | null }>(
      `SELECT COALESCE(
         (SELECT e->>'value' FROM jsonb_array_elements(CASE WHEN jsonb_typeof(resource->'emails') = 'array' THEN resource->'emails' ELSE '[]'::jsonb END) e
           ORDER BY (e->>'primary')::boolean IS TRUE DESC LIMIT 1),
         CASE WHEN user_name LIKE '%@%' THEN user_name END) AS email
         FROM users WHERE id = $1`,
      [userId],
    );
    const email = rows[0]?.email;
    if (!email) return undefined;
    let user: SlackUser | undefined;
    try {
      user = (await this.slack.users.lookupByEmail({ email })).user;
    } catch (err) {
      if (slackErrorCode(err) === 'users_not_found') return undefined;
      throw err;
    }
    if (!user?.id || untrusted(user)) return undefined;
    await rememberIdentity(this.db, { slackUserId: user.id, userId, email, unmappedReason: null }, this.ttlSeconds);
    return user.id;
  }
}
