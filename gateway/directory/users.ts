/**
 * The user directory in PostgreSQL. Every write runs in one transaction that also records the
 * audit event and the outbox message announcing the change, so an accepted write always reaches
 * provisioning and never without its audit trail.
 */
import { randomUUID } from 'node:crypto';
import type { Db } from '../db/pool.js';
import { withTransaction } from '../db/pool.js';
import { enqueue } from '../outbox/outbox.js';
import { ScimError } from '../scim/errors.js';

export const USER_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:User';

export interface StoredUser {
  id: string;
  userName: string;
  externalId: string | null;
  active: boolean;
  resource: Record<string, unknown>;
  version: number;
  created: Date;
  lastModified: Date;
}

interface UserRow {
  id: string;
  user_name: string;
  external_id: string | null;
  active: boolean;
  resource: Record<string, unknown>;
  version: number;
  created_at: Date;
  updated_at: Date;
}

function fromRow(row: UserRow): StoredUser {
  return {
    id: row.id,
    userName: row.user_name,
    externalId: row.external_id,
    active: row.active,
    resource: row.resource,
    version: row.version,
    created: row.created_at,
    lastModified: row.updated_at,
  };
}

const UNIQUE_VIOLATION = '23505';

export interface Actor {
  /** Token name or workflow id, as it should read in the audit log. */
  name: string;
}

export interface CreatedUser {
  user: StoredUser;
  /** Outbox sequence of the change. */
  seq: number;
}

/** Stores a new user, its audit event and its outbox message atomically. */
export async function createUser(db: Db, actor: Actor, resource: Record<string, unknown>): Promise<CreatedUser> {
  const userName = resource.userName as string;
  const id = randomUUID();
  try {
    return await withTransaction(db, async (tx) => {
      const { rows } = await tx.query<UserRow>(
        `INSERT INTO users (id, user_name, external_id, display_name, active, resource)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, user_name, external_id, active, resource, version, created_at, updated_at`,
        [
          id,
          userName,
          typeof resource.externalId === 'string' ? resource.externalId : null,
          typeof resource.displayName === 'string' ? resource.displayName : null,
          resource.active !== false,
          resource,
        ],
      );
      const user = fromRow(rows[0]!);
      await tx.query(
        `INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after)
         VALUES ($1, 'user.created', 'User', $2, 'SCIM POST /Users', $3)`,
        [actor.name, id, resource],
      );
      const seq = await enqueue(tx, { topic: 'user.changed', aggregateId: id, payload: { userName } });
      return { user, seq };
    });
  } catch (err) {
    if ((err as { code?: string }).code === UNIQUE_VIOLATION) {
      throw ScimError.conflict(`a user with userName "${userName}" already exists`);
    }
    throw err;
  }
}

export async function getUser(db: Db, id: string): Promise<StoredUser | undefined> {
  const { rows } = await db.query<UserRow>(
    `SELECT id, user_name, external_id, active, resource, version, created_at, updated_at
       FROM users WHERE id = $1 AND deleted_at IS NULL`,
    [id],
  );
  return rows[0] ? fromRow(rows[0]) : undefined;
}
