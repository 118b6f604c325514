/**
 * Who a call acts as, for the people-facing API (access requests, access reviews). A personal
 * token (bound to a user when issued) acts as that user only. A token of a trusted front end (with
 * `requests:act-as`) or an admin token names the user per call in `X-Act-As` (userName or id).
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Db } from '../core/db/pool.js';
import { sendApiError as fail } from './routes/api/errors.js';

export const ACT_AS = 'x-act-as';

export interface Actor {
  userId: string;
  userName: string;
}

/** The directory user the call acts as; answers the error and undefined when there is none. */
export async function actingUser(db: Db, request: FastifyRequest, reply: FastifyReply): Promise<Actor | undefined> {
  const identity = request.identity!;
  const named = request.headers[ACT_AS];
  const mayActAs = identity.scopes.includes('admin') || identity.scopes.includes('requests:act-as');
  let key: string;
  if (typeof named === 'string' && named !== '') {
    key = named;
  } else if (identity.userId) {
    key = identity.userId;
  } else {
    fail(reply, 400, `this token is no person's; name the acting user in the X-Act-As header`);
    return undefined;
  }
  const { rows } = await db.query<{ id: string; user_name: string }>(
    'SELECT id, user_name FROM users WHERE deleted_at IS NULL AND active AND (id::text = $1 OR lower(user_name) = lower($1))',
    [key],
  );
  const user = rows[0];
  if (user && key !== identity.userId && user.id !== identity.userId && !mayActAs) {
    fail(reply, 403, `the token "${identity.name}" acts as its own user only`);
    return undefined;
  }
  if (!user) {
    if (key === identity.userId) fail(reply, 403, `the user of the token "${identity.name}" is not active`);
    else if (!mayActAs) fail(reply, 403, `the token "${identity.name}" acts as its own user only`);
    else fail(reply, 400, `no active user ${key}`);
    return undefined;
  }
  return { userId: user.id, userName: user.user_name };
}
