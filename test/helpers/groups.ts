/**
 * A directory to build large groups in: users seeded in one statement, groups made over SCIM, and
 * what a write left behind (members stored, users announced to provisioning, the audit event).
 */
import type { TestDatabase } from './db.js';
import type { TestGateway } from './gateway.js';

export const GROUP_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:Group';
export const PATCH_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';

export interface AuditRow {
  action: string;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
}

export const sorted = (xs: string[]): string[] => [...xs].sort();
/** The sorted `value`s of a member list. */
export const values = (list: unknown): string[] => sorted(((list ?? []) as Array<{ value: string }>).map((m) => m.value));
export const minus = (xs: string[], ys: string[]): string[] => {
  const drop = new Set(ys);
  return xs.filter((x) => !drop.has(x));
};

export function groupFixture(database: TestDatabase, gw: TestGateway) {
  return {
    /** Users seeded in one statement (the SCIM path for users is tested elsewhere); answers their ids. */
    seedUsers: async (prefix: string, n: number): Promise<string[]> => {
      const { rows } = await database.db.query<{ id: string }>(
        `INSERT INTO users (id, user_name, display_name, active, resource)
         SELECT gen_random_uuid(), $1 || i || '@example.com', 'User ' || i, true,
                jsonb_build_object('schemas', jsonb_build_array('urn:ietf:params:scim:schemas:core:2.0:User'), 'userName', $1 || i || '@example.com', 'active', true)
           FROM generate_series(1, $2::int) AS i
         RETURNING id::text`,
        [prefix, n],
      );
      return rows.map((r) => r.id);
    },

    createGroup: async (displayName: string, members: string[]): Promise<string> => {
      const res = await gw.scim({
        method: 'POST',
        url: '/scim/v2/Groups?excludedAttributes=members',
        payload: { schemas: [GROUP_SCHEMA], displayName, members: members.map((value) => ({ value })) },
      });
      if (res.statusCode !== 201) throw new Error(`create group: ${res.statusCode} ${res.body}`);
      return res.json<{ id: string }>().id;
    },

    /** The group's member ids as stored, sorted. */
    memberIds: async (groupId: string): Promise<string[]> => {
      const { rows } = await database.db.query<{ id: string }>('SELECT member_id::text AS id FROM group_members WHERE group_id = $1 ORDER BY 1', [groupId]);
      return rows.map((r) => r.id);
    },

    outboxHead: async (): Promise<number> => {
      const { rows } = await database.db.query<{ id: string | null }>('SELECT max(id)::text AS id FROM outbox');
      return Number(rows[0]!.id ?? 0);
    },

    /** The users announced to provisioning (outbox `user.changed`) after `since`, sorted. */
    announcedSince: async (since: number): Promise<string[]> => {
      const { rows } = await database.db.query<{ id: string }>("SELECT aggregate_id::text AS id FROM outbox WHERE id > $1 AND topic = 'user.changed' ORDER BY 1", [since]);
      return rows.map((r) => r.id);
    },

    lastAudit: async (groupId: string): Promise<AuditRow> => {
      const { rows } = await database.db.query<AuditRow>(
        "SELECT action, before, after FROM audit_events WHERE resource_type = 'Group' AND resource_id = $1 ORDER BY id DESC LIMIT 1",
        [groupId],
      );
      return rows[0]!;
    },
  };
}
