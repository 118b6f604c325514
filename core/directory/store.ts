/**
 * The directory: SCIM Users and Groups in PostgreSQL.
 *
 * Every write runs in one transaction that also appends the audit event and the outbox messages
 * announcing the change (one `user.changed` per user whose state or memberships changed), so an
 * accepted write always reaches provisioning, exactly once per change and in order per user.
 *
 * Rows carry a `version` that every real change increments; it is the weak ETag of RFC 7644 §3.14.
 * DELETE keeps a tombstone (`deleted_at`) so deprovisioning and the audit trail still see the user.
 */
import { randomUUID } from 'node:crypto';
import DataLoader from 'dataloader';
import type { Filter } from 'scim2-parse-filter';
import type { Db, Tx } from '../db/pool.js';
import { queryPrepared, withTransaction } from '../db/pool.js';
import { enqueueUserChanges } from '../outbox/outbox.js';
import { ScimError } from '../scim/errors.js';
import { filterToSql, sortExpression, type SqlTarget } from '../scim/filter/index.js';
import { applyPatch, type PatchOperation } from '../scim/patch/index.js';
import { checkImmutable, normalizeResource } from '../scim/resource.js';
import { membersNamed } from './member-patch.js';
import type { SchemaRegistry } from '../scim/schemas.js';

export type ResourceType = 'User' | 'Group';

export interface Actor {
  /** Token name or workflow id, as it should read in the audit log. */
  name: string;
}

/** A resource as stored, before it is rendered for a client. */
export interface StoredResource {
  type: ResourceType;
  id: string;
  /** Canonical SCIM attributes without id and meta (Groups: with `members`). */
  resource: Record<string, unknown>;
  version: number;
  created: Date;
  lastModified: Date;
}

export interface ListQuery {
  filter?: Filter | undefined;
  /** 1-based (RFC 7644 §3.4.2.4). */
  startIndex: number;
  count: number;
  sortBy?: string | undefined;
  sortOrder?: 'ascending' | 'descending' | undefined;
  /** Compute each user's `groups` attribute (skip when the client will not see it). */
  withGroups?: boolean;
  /** Load each group's `members` (skip when the client will not see it). */
  withMembers?: boolean;
}

export interface ListResult {
  totalResults: number;
  resources: StoredResource[];
}

const UNIQUE_VIOLATION = '23505';
/** Raised by the group_members triggers for a group or member that is not live (migration …009). */
const FOREIGN_KEY_VIOLATION = '23503';
/** Transactions that lock rows in different orders (two groups nesting each other) may deadlock; one is retried. */
const RETRYABLE = new Set(['40P01', '40001']);
const WRITE_ATTEMPTS = 5;

export function etagOf(version: number): string {
  return `W/"${version}"`;
}

/** Compares an If-Match / If-None-Match header with the current version (weak comparison). */
export function etagMatches(header: string | undefined, version: number): boolean {
  if (header === undefined) return false;
  return header
    .split(',')
    .map((s) => s.trim())
    .some((tag) => tag === '*' || tag.replace(/^W\//, '') === `"${version}"`);
}

/** How filters and sorting address users in SQL (the table is aliased `u`). */
export const USER_TARGET: SqlTarget = {
  resourceType: 'User',
  resource: 'u.resource',
  columns: {
    id: { sql: 'u.id::text', type: 'string' },
    userName: { sql: 'u.user_name', type: 'string' },
    externalId: { sql: 'u.external_id', type: 'string' },
    active: { sql: 'u.active', type: 'boolean' },
    'meta.created': { sql: 'u.created_at', type: 'dateTime' },
    'meta.lastModified': { sql: 'u.updated_at', type: 'dateTime' },
  },
  relations: {
    groups: {
      table: 'group_members',
      alias: 'ugm',
      join: 'ugm.member_id = u.id',
      subAttributes: { value: 'ugm.group_id::text', display: '(SELECT gg.display_name FROM groups gg WHERE gg.id = ugm.group_id)', type: "'direct'" },
    },
  },
};

/** How filters and sorting address groups in SQL (the table is aliased `u` too, so queries share a shape). */
export const GROUP_TARGET: SqlTarget = {
  resourceType: 'Group',
  resource: 'u.resource',
  columns: {
    id: { sql: 'u.id::text', type: 'string' },
    displayName: { sql: 'u.display_name', type: 'string' },
    externalId: { sql: 'u.external_id', type: 'string' },
    'meta.created': { sql: 'u.created_at', type: 'dateTime' },
    'meta.lastModified': { sql: 'u.updated_at', type: 'dateTime' },
  },
  relations: {
    members: {
      table: 'group_members',
      alias: 'm',
      join: 'm.group_id = u.id',
      subAttributes: { value: 'm.member_id::text', type: 'm.member_type', display: 'm.display' },
    },
  },
};

interface Kind {
  type: ResourceType;
  table: 'users' | 'groups';
  target: SqlTarget;
  /** The attribute that must be unique, for the 409 message. */
  unique: 'userName' | 'displayName';
}

const KINDS: Record<ResourceType, Kind> = {
  User: { type: 'User', table: 'users', target: USER_TARGET, unique: 'userName' },
  Group: { type: 'Group', table: 'groups', target: GROUP_TARGET, unique: 'displayName' },
};

interface Row {
  id: string;
  resource: Record<string, unknown>;
  version: number;
  created_at: Date;
  updated_at: Date;
  /** Users' memberships, when the query computed them. */
  groups?: Array<Record<string, unknown>>;
}

/** `userName eq "<string>"`, plain or URN-qualified, in any casing: the lookup identity providers make before every create. */
const USER_NAME_PATH = /^(?:urn:ietf:params:scim:schemas:core:2\.0:User:)?userName$/i;

function userNameEquality(filter: Filter | undefined): string | undefined {
  if (!filter || filter.op !== 'eq') return undefined;
  const f = filter as { attrPath?: unknown; compValue?: unknown };
  return typeof f.attrPath === 'string' && USER_NAME_PATH.test(f.attrPath) && typeof f.compValue === 'string' ? f.compValue : undefined;
}

/** Most userNames one coalesced lookup asks for. */
const MAX_LOOKUP_BATCH = 256;

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The `groups` attribute of the user row `u` as a JSON array, computed in the same query:
 * direct memberships, then groups reached through nested groups (RFC 7643 §4.1.2 "indirect").
 * A user in no group (most of a directory) costs one index probe instead of the recursive query.
 */
const USER_GROUPS_SQL = `CASE WHEN EXISTS (SELECT 1 FROM group_members m0 WHERE m0.member_type = 'User' AND m0.member_id = u.id) THEN (
  SELECT coalesce(jsonb_agg(jsonb_build_object('value', x.group_id, 'display', x.display_name,
           'type', CASE WHEN x.direct THEN 'direct' ELSE 'indirect' END) ORDER BY x.display_name, x.group_id), '[]'::jsonb)
    FROM (WITH RECURSIVE reach(group_id, direct, path) AS (
            SELECT m.group_id, true, ARRAY[m.group_id] FROM group_members m
             WHERE m.member_type = 'User' AND m.member_id = u.id
            UNION
            SELECT m.group_id, false, r.path || m.group_id FROM reach r
              JOIN group_members m ON m.member_type = 'Group' AND m.member_id = r.group_id
             WHERE NOT m.group_id = ANY(r.path))
          SELECT r.group_id, g.display_name, bool_or(r.direct) AS direct
            FROM reach r JOIN groups g ON g.id = r.group_id AND g.deleted_at IS NULL
           GROUP BY r.group_id, g.display_name) x) ELSE '[]'::jsonb END`;

/** Columns every read selects; `groups` only for users and only when asked. */
function selectColumns(type: ResourceType, withGroups: boolean | undefined): string {
  const groups = type === 'User' && withGroups !== false ? `, ${USER_GROUPS_SQL} AS groups` : '';
  return `u.id, u.resource, u.version, u.created_at, u.updated_at${groups}`;
}

/** The indexed columns kept beside a user's resource: user_name, external_id, display_name, active. */
function userColumns(resource: Record<string, unknown>): [unknown, string | null, string | null, boolean] {
  return [
    resource.userName,
    typeof resource.externalId === 'string' ? resource.externalId : null,
    typeof resource.displayName === 'string' ? resource.displayName : null,
    resource.active !== false,
  ];
}

function notFound(type: ResourceType, id: string): ScimError {
  return ScimError.notFound(`${type} ${id} not found`);
}

/** How a read renders: users with their `groups`, groups with their `members` (both by default). */
export interface ReadOptions {
  withGroups?: boolean;
  withMembers?: boolean;
}

/** A member as a request gives it (normalized by core/scim/resource.ts). */
interface RawMember {
  value: string;
  type?: string;
  display?: string;
}

interface Member {
  value: string;
  type: ResourceType;
  display?: string | undefined;
  /** The member's userName or displayName, when known (for the audit log). */
  name?: string | undefined;
}

/** A member as the audit log records it: id, type, and the userName or displayName it had. */
function auditMember(m: Member): { value: string; type: ResourceType; display?: string } {
  const display = m.name ?? m.display;
  return { value: m.value, type: m.type, ...(display ? { display } : {}) };
}

/** The member id a group_members trigger complained about, from its message. */
function memberInError(err: unknown): string {
  return /with id ([0-9a-f-]{36})/.exec((err as Error).message)?.[1] ?? '(deleted meanwhile)';
}

export class Directory {
  /**
   * `userName eq` lookups arriving in the same turn of the event loop are answered by one query
   * (DataLoader, scheduled with setImmediate so the requests read from all sockets in one poll
   * phase join the batch; no caching across requests). Under load that turns dozens of statement
   * round trips into one; an idle gateway sends a batch of one without waiting.
   */
  private readonly userNameLookups = {
    withGroups: this.userNameLoader(true),
    withoutGroups: this.userNameLoader(false),
  };

  constructor(
    private readonly db: Db,
    readonly registry: SchemaRegistry,
  ) {}

  private userNameLoader(withGroups: boolean): DataLoader<string, Row | undefined> {
    return new DataLoader<string, Row | undefined>(
      async (names) => {
        // One row per asked name that matches, tagged with the name's position; lower() on both
        // sides is exactly what the filter translation does for userName (caseExact false), and
        // each probe is a lookup in the unique index on lower(user_name).
        const { rows } = await queryPrepared<Row & { ord: number }>(
          this.db,
          `SELECT k.ord::int AS ord, ${selectColumns('User', withGroups)}
             FROM unnest($1::text[]) WITH ORDINALITY AS k(name, ord)
             JOIN users u ON lower(u.user_name) = lower(k.name) AND u.deleted_at IS NULL`,
          [names],
        );
        const out: Array<Row | undefined> = names.map(() => undefined);
        for (const r of rows) out[r.ord - 1] = r;
        return out;
      },
      { cache: false, maxBatchSize: MAX_LOOKUP_BATCH, batchScheduleFn: (run) => setImmediate(run) },
    );
  }

  // ---------------------------------------------------------------- reads

  async get(type: ResourceType, id: string, opts: { withGroups?: boolean; withMembers?: boolean } = {}): Promise<StoredResource> {
    return await this.load(this.db, type, id, opts);
  }

  private async load(db: Db | Tx, type: ResourceType, id: string, opts: { withGroups?: boolean; withMembers?: boolean }): Promise<StoredResource> {
    if (!UUID_RE.test(id)) throw notFound(type, id);
    const { rows } = await queryPrepared<Row>(
      db,
      `SELECT ${selectColumns(type, opts.withGroups)} FROM ${KINDS[type].table} u WHERE u.id = $1 AND u.deleted_at IS NULL`,
      [id],
    );
    if (!rows[0]) throw notFound(type, id);
    const [res] = await this.hydrate(db, type, rows, opts);
    return res!;
  }

  async list(type: ResourceType, q: ListQuery): Promise<ListResult> {
    const userName = type === 'User' && !q.sortBy && q.startIndex === 1 && q.count > 0 ? userNameEquality(q.filter) : undefined;
    if (userName !== undefined) {
      // userName is unique among live users, so the answer is that user or nobody.
      const row = await (q.withGroups === false ? this.userNameLookups.withoutGroups : this.userNameLookups.withGroups).load(userName);
      return row ? { totalResults: 1, resources: await this.hydrate(this.db, type, [row], q) } : { totalResults: 0, resources: [] };
    }
    const kind = KINDS[type];
    const params: unknown[] = [];
    const where = q.filter ? `AND (${filterToSql(q.filter, kind.target, this.registry, params)})` : '';
    let order = 'u.created_at, u.id';
    if (q.sortBy) {
      const dir = q.sortOrder === 'descending' ? 'DESC' : 'ASC';
      order = `${sortExpression(q.sortBy, kind.target, this.registry)} ${dir} NULLS LAST, u.id ${dir}`;
    }
    const countSql = `SELECT count(*)::int AS n FROM ${kind.table} u WHERE u.deleted_at IS NULL ${where}`;
    const filterParams = params.slice();
    const count = async () => (await queryPrepared<{ n: number }>(this.db, countSql, filterParams)).rows[0]!.n;
    if (q.count === 0) return { totalResults: await count(), resources: [] };
    params.push(q.count, q.startIndex - 1);
    // The page's ids are found first (an index-only scan where the order and filter allow it, which
    // keeps deep startIndex offsets cheap), then only those rows are read in full.
    const { rows } = await queryPrepared<Row>(
      this.db,
      `SELECT ${selectColumns(type, q.withGroups)}
         FROM unnest(ARRAY(
                SELECT u.id FROM ${kind.table} u
                 WHERE u.deleted_at IS NULL ${where}
                 ORDER BY ${order}
                 LIMIT $${params.length - 1} OFFSET $${params.length})) WITH ORDINALITY AS page(id, ord)
         JOIN ${kind.table} u ON u.id = page.id
        ORDER BY page.ord`,
      params,
    );
    // A page that is neither full nor empty ends the result set, so it tells the total by itself;
    // only otherwise is a count needed (exact totalResults, RFC 7644 §3.4.2).
    const offset = q.startIndex - 1;
    const total = rows.length > 0 && rows.length < q.count ? offset + rows.length : offset === 0 && rows.length === 0 ? 0 : await count();
    return { totalResults: total, resources: await this.hydrate(this.db, type, rows, q) };
  }

  /** Builds StoredResources from rows, loading Groups' `members` in one batched query. */
  private async hydrate(db: Db | Tx, type: ResourceType, rows: Row[], opts: { withMembers?: boolean }): Promise<StoredResource[]> {
    const out: StoredResource[] = rows.map((r) => ({
      type,
      id: r.id,
      resource: { ...r.resource },
      version: r.version,
      created: r.created_at,
      lastModified: r.updated_at,
    }));
    if (out.length === 0) return out;
    const ids = out.map((r) => r.id);
    const byId = new Map(out.map((r) => [r.id, r]));
    if (type === 'Group' && opts.withMembers !== false) {
      const { rows: members } = await db.query<{ group_id: string; member_id: string; member_type: ResourceType; display: string | null }>(
        `SELECT m.group_id, m.member_id, m.member_type,
                COALESCE(m.display, mu.display_name, mu.user_name, mg.display_name) AS display
           FROM group_members m
           LEFT JOIN users mu ON m.member_type = 'User' AND mu.id = m.member_id
           LEFT JOIN groups mg ON m.member_type = 'Group' AND mg.id = m.member_id
          WHERE m.group_id = ANY($1)
          ORDER BY m.added_at, m.member_id`,
        [ids],
      );
      for (const r of out) r.resource.members = [];
      for (const m of members) {
        (byId.get(m.group_id)!.resource.members as Member[]).push({
          value: m.member_id,
          type: m.member_type,
          ...(m.display ? { display: m.display } : {}),
        });
      }
    }
    if (type === 'User') {
      for (const [i, r] of rows.entries()) {
        if (r.groups && r.groups.length > 0) out[i]!.resource.groups = r.groups;
      }
    }
    return out;
  }

  // ---------------------------------------------------------------- writes

  async create(type: ResourceType, actor: Actor, body: unknown): Promise<StoredResource> {
    const resource = normalizeResource(body, { registry: this.registry, resourceType: type });
    if (type === 'User') return await this.createUser(actor, resource);
    const id = randomUUID();
    // The transaction may run more than once (see write), so it leaves `resource` as it found it.
    const { members: rawMembers, ...attributes } = resource;
    return await this.write(type, async (tx) => {
      const members = await this.resolveMembers(tx, id, rawMembers);
      const row = await this.insertGroup(tx, id, attributes);
      const affected = new Set<string>();
      await this.addMembers(tx, id, members, affected);
      await this.audit(tx, actor, 'group.created', type, id, null, members.length ? { ...attributes, members: members.map(auditMember) } : attributes);
      await this.announce(tx, affected);
      const [out] = await this.hydrate(tx, type, [row], {});
      return out!;
    }, resource);
  }

  async replace(type: ResourceType, actor: Actor, id: string, body: unknown, ifMatch?: string, opts: ReadOptions = {}): Promise<StoredResource> {
    const next = normalizeResource(body, { registry: this.registry, resourceType: type });
    if (type === 'User') {
      const ctx = { registry: this.registry, resourceType: type };
      const out = await this.updateUser(actor, id, ifMatch, 'user.replaced', (current) => {
        checkImmutable(current.resource, next, ctx);
        return next;
      });
      return out.resource;
    }
    return await this.write(type, async (tx) => {
      const current = await this.lockForUpdate(tx, type, id, ifMatch, { withMembers: false });
      const { members: rawMembers, ...attributes } = next;
      checkImmutable(current.resource, attributes, { registry: this.registry, resourceType: type });
      // The delta between the members stored and the members given: only it is checked, written,
      // audited and announced, so replacing a large group with itself costs one read of its ids.
      const stored = await this.memberIds(tx, id);
      const given = new Map<string, RawMember>();
      for (const m of (Array.isArray(rawMembers) ? rawMembers : []) as RawMember[]) given.set(m.value.toLowerCase(), m);
      for (const [value, m] of given) {
        const actual = stored.get(value);
        if (actual !== undefined && m.type !== undefined && m.type.toLowerCase() !== actual.toLowerCase()) {
          throw ScimError.badRequest('invalidValue', `members: ${m.value} is a ${actual}, not a ${m.type}`);
        }
      }
      const added = [...given].filter(([value]) => !stored.has(value)).map(([, m]) => m);
      const removed = [...stored].filter(([value]) => !given.has(value)).map(([value, type]) => ({ value, type }));
      return await this.updateGroup(tx, actor, current, attributes, { added, removed }, 'group.replaced', opts);
    }, next);
  }

  async patch(
    type: ResourceType,
    actor: Actor,
    id: string,
    ops: PatchOperation[],
    ifMatch?: string,
    opts: ReadOptions = {},
  ): Promise<{ resource: StoredResource; changed: boolean }> {
    if (type === 'User') {
      return await this.updateUser(actor, id, ifMatch, 'user.patched', (current) => {
        const rendered = { ...current.resource, id: current.id, meta: { resourceType: type, version: etagOf(current.version) } };
        const { resource: patched, changed } = applyPatch(rendered, ops, { registry: this.registry, resourceType: type });
        return changed ? normalizeResource(patched, { registry: this.registry, resourceType: type }) : undefined;
      });
    }
    // Operations that name the members they change (how identity providers add and remove members)
    // are applied to a view of the group holding only those members (./member-patch.ts).
    const named = membersNamed(ops);
    return await this.write(type, async (tx) => {
      const current = await this.lockForUpdate(tx, type, id, ifMatch, { withMembers: named === undefined });
      if (named !== undefined) current.resource.members = await this.membersAmong(tx, id, named);
      const rendered = { ...current.resource, id: current.id, meta: { resourceType: type, version: etagOf(current.version) } };
      const { resource: patched, changed } = applyPatch(rendered, ops, { registry: this.registry, resourceType: type });
      if (!changed) return { resource: await this.load(tx, type, id, opts), changed: false };
      const { members: rawAfter, ...attributes } = normalizeResource(patched, { registry: this.registry, resourceType: type });
      const before = new Map(((current.resource.members ?? []) as Member[]).map((m) => [m.value.toLowerCase(), m]));
      const after = new Map(((rawAfter ?? []) as RawMember[]).map((m) => [m.value.toLowerCase(), m]));
      const delta = {
        added: [...after].filter(([value]) => !before.has(value)).map(([, m]) => m),
        removed: [...before].filter(([value]) => !after.has(value)).map(([, m]) => m),
      };
      return { resource: await this.updateGroup(tx, actor, current, attributes, delta, 'group.patched', opts), changed: true };
    });
  }

  async delete(type: ResourceType, actor: Actor, id: string, ifMatch?: string): Promise<void> {
    await this.write(type, async (tx) => {
      const current = await this.lockForUpdate(tx, type, id, ifMatch);
      if (type === 'User') await this.refuseSourceOwned(tx, id);
      const affected = new Set<string>(type === 'User' ? [id] : await this.usersUnder(tx, id));
      // A deleted resource is no longer a member of anything, and a deleted group has no members.
      // The row lock taken above keeps memberships from being added meanwhile (the group_members
      // trigger waits for it), and the trigger on deleted_at would remove any left; they are
      // removed here first so the audit event can list them.
      const { rows: memberOf } = await tx.query<{ id: string; display: string | null }>(
        `DELETE FROM group_members m USING groups g WHERE m.member_id = $1 AND g.id = m.group_id RETURNING g.id, g.display_name AS display`,
        [id],
      );
      await tx.query(`UPDATE ${KINDS[type].table} SET deleted_at = now(), updated_at = now(), version = version + 1 WHERE id = $1`, [id]);
      const before: Record<string, unknown> = { ...current.resource };
      if (type === 'Group') before.members = ((current.resource.members ?? []) as Member[]).map(auditMember);
      if (memberOf.length) before.memberOf = memberOf.map((g) => ({ value: g.id, ...(g.display ? { display: g.display } : {}) }));
      await this.audit(tx, actor, `${type.toLowerCase()}.deleted`, type, id, before, null);
      await this.announce(tx, affected);
    });
  }

  // ---------------------------------------------------------------- internals

  /**
   * A user, its audit event and its outbox message in ONE statement: atomic without a
   * transaction block, and one round trip, which is what makes SCIM POST fast.
   */
  private async createUser(actor: Actor, resource: Record<string, unknown>): Promise<StoredResource> {
    try {
      const { rows } = await queryPrepared<Row>(
        this.db,
        `WITH u AS (
           INSERT INTO users (id, user_name, external_id, display_name, active, resource)
           VALUES ($1, $2, $3, $4, $5, $6)
           RETURNING id, user_name, resource, version, created_at, updated_at),
         a AS (
           INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, after)
           SELECT $7, 'user.created', 'User', u.id::text, 'SCIM', u.resource FROM u),
         o AS (
           INSERT INTO outbox (topic, aggregate_id, payload)
           SELECT 'user.changed', u.id, jsonb_build_object('userName', u.user_name) FROM u)
         SELECT id, resource, version, created_at, updated_at FROM u`,
        [randomUUID(), ...userColumns(resource), resource, actor.name],
      );
      const [out] = await this.hydrate(this.db, 'User', rows, {});
      return out!;
    } catch (err) {
      throw this.uniqueness(err, 'User', resource);
    }
  }

  /**
   * Changes a user with optimistic concurrency: read, compute the new resource, then one statement
   * that updates the row only if its version is still the one read, and appends the audit event
   * and the outbox message. A concurrent change makes the statement match nothing, and the
   * change is computed again from the fresh row. `compute` returns undefined for "no change".
   */
  private async updateUser(
    actor: Actor,
    id: string,
    ifMatch: string | undefined,
    action: string,
    compute: (current: StoredResource) => Record<string, unknown> | undefined,
  ): Promise<{ resource: StoredResource; changed: boolean }> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const current = await this.load(this.db, 'User', id, {});
      if (ifMatch !== undefined && !etagMatches(ifMatch, current.version)) {
        throw new ScimError(412, `User ${id} has changed: its version is ${etagOf(current.version)}, not ${ifMatch}`);
      }
      const { groups: _readOnly, ...before } = current.resource;
      const next = compute(current);
      if (next === undefined) return { resource: current, changed: false };
      let rows: Row[];
      try {
        ({ rows } = await queryPrepared<Row>(
          this.db,
          `WITH u AS (
             UPDATE users SET user_name = $3, external_id = $4, display_name = $5, active = $6, resource = $7,
                    version = version + 1, updated_at = now()
              WHERE id = $1 AND version = $2 AND deleted_at IS NULL AND source_id IS NULL
              RETURNING id, user_name, resource, version, created_at, updated_at),
           a AS (
             INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, before, after)
             SELECT $8, $9, 'User', u.id::text, 'SCIM', $10, u.resource FROM u),
           o AS (
             INSERT INTO outbox (topic, aggregate_id, payload)
             SELECT 'user.changed', u.id, jsonb_build_object('userName', u.user_name) FROM u)
           SELECT ${selectColumns('User', true)} FROM u`,
          [id, current.version, ...userColumns(next), next, actor.name, action, JSON.stringify(before)],
        ));
      } catch (err) {
        throw this.uniqueness(err, 'User', next);
      }
      if (rows.length > 0) {
        const [out] = await this.hydrate(this.db, 'User', rows, {});
        return { resource: out!, changed: true };
      }
      // Owned by a source, or changed or deleted since it was read: go round again (a deletion becomes a 404).
      await this.refuseSourceOwned(this.db, id);
    }
    throw new ScimError(409, `User ${id} is being changed by others too often to apply this change; retry`);
  }

  /**
   * A user imported from a source (core/sources/) is changed only by that source: SCIM writes to it
   * answer 409, naming the source, so the source's next import cannot silently undo them.
   */
  private async refuseSourceOwned(db: Db | Tx, id: string): Promise<void> {
    const { rows } = await db.query<{ source_id: string | null }>('SELECT source_id FROM users WHERE id = $1 AND deleted_at IS NULL', [id]);
    const source = rows[0]?.source_id;
    if (source) throw new ScimError(409, `User ${id} is owned by the source "${source}" and changes only there; change it in that source`);
  }

  /** A unique-index violation as the SCIM 409 it means; other errors unchanged. */
  private uniqueness(err: unknown, type: ResourceType, resource: Record<string, unknown> | undefined): unknown {
    if ((err as { code?: string }).code !== UNIQUE_VIOLATION) return err;
    const attr = KINDS[type].unique;
    const value = resource?.[attr];
    return ScimError.conflict(`a ${type} with ${attr} ${value === undefined ? 'of that value' : JSON.stringify(value)} already exists`);
  }

  /** Runs a write transaction, turning unique-index violations into SCIM 409s. */
  private async write<T>(type: ResourceType, fn: (tx: Tx) => Promise<T>, resource?: Record<string, unknown>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await withTransaction(this.db, fn);
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code !== undefined && RETRYABLE.has(code) && attempt < WRITE_ATTEMPTS) continue;
        // A member deleted between the check and the insert: the database refused it.
        if (code === FOREIGN_KEY_VIOLATION) throw ScimError.badRequest('invalidValue', `members: no User or Group with id ${memberInError(err)}`);
        throw this.uniqueness(err, type, resource);
      }
    }
  }

  private async lockForUpdate(tx: Tx, type: ResourceType, id: string, ifMatch: string | undefined, opts: ReadOptions = {}): Promise<StoredResource> {
    if (!UUID_RE.test(id)) throw notFound(type, id);
    const { rows } = await tx.query<Row>(
      `SELECT id, resource, version, created_at, updated_at FROM ${KINDS[type].table} WHERE id = $1 AND deleted_at IS NULL FOR UPDATE`,
      [id],
    );
    if (!rows[0]) throw notFound(type, id);
    if (ifMatch !== undefined && !etagMatches(ifMatch, rows[0].version)) {
      throw new ScimError(412, `${type} ${id} has changed: its version is ${etagOf(rows[0].version)}, not ${ifMatch}`);
    }
    const [res] = await this.hydrate(tx, type, rows, { withMembers: opts.withMembers !== false });
    return res!;
  }

  /** A group's member ids (lower-case) and their types: what a delta is computed against. */
  private async memberIds(tx: Tx, groupId: string): Promise<Map<string, ResourceType>> {
    const { rows } = await tx.query<{ id: string; type: ResourceType }>(
      'SELECT member_id::text AS id, member_type AS type FROM group_members WHERE group_id = $1',
      [groupId],
    );
    return new Map(rows.map((r) => [r.id, r.type]));
  }

  /** The members of a group among `ids`, as `hydrate` renders them (one index probe per id). */
  private async membersAmong(tx: Tx, groupId: string, ids: Set<string>): Promise<Member[]> {
    const uuids = [...ids].filter((v) => UUID_RE.test(v));
    if (uuids.length === 0) return [];
    const { rows } = await tx.query<{ member_id: string; member_type: ResourceType; display: string | null }>(
      `SELECT m.member_id, m.member_type, COALESCE(m.display, mu.display_name, mu.user_name, mg.display_name) AS display
         FROM group_members m
         LEFT JOIN users mu ON m.member_type = 'User' AND mu.id = m.member_id
         LEFT JOIN groups mg ON m.member_type = 'Group' AND mg.id = m.member_id
        WHERE m.group_id = $1 AND m.member_id = ANY($2::uuid[])
        ORDER BY m.added_at, m.member_id`,
      [groupId, uuids],
    );
    return rows.map((m) => ({ value: m.member_id, type: m.member_type, ...(m.display ? { display: m.display } : {}) }));
  }

  /**
   * Writes a group's new attributes and a member delta inside the caller's transaction: the added
   * members are checked (and only they), the removed ones deleted in one statement, the added ones
   * inserted in one statement; the audit event records the delta and the outbox announces the
   * users it concerns (members of nested groups included), and no one else.
   */
  private async updateGroup(
    tx: Tx,
    actor: Actor,
    current: StoredResource,
    next: Record<string, unknown>,
    delta: { added: RawMember[]; removed: Array<{ value: string; type: ResourceType }> },
    action: string,
    opts: ReadOptions,
  ): Promise<StoredResource> {
    const affected = new Set<string>();
    const added = await this.resolveMembers(tx, current.id, delta.added);
    const removed: Member[] = [];
    if (delta.removed.length) {
      const { rows: gone } = await tx.query<{ value: string; type: ResourceType; name: string | null }>(
        `DELETE FROM group_members m WHERE m.group_id = $1 AND m.member_id = ANY($2::uuid[])
         RETURNING m.member_id::text AS value, m.member_type AS type,
                   CASE m.member_type WHEN 'User' THEN (SELECT u.user_name FROM users u WHERE u.id = m.member_id)
                                      ELSE (SELECT g.display_name FROM groups g WHERE g.id = m.member_id) END AS name`,
        [current.id, delta.removed.map((m) => m.value)],
      );
      for (const m of gone) {
        const member: Member = { value: m.value, type: m.type, ...(m.name !== null ? { name: m.name } : {}) };
        removed.push(member);
        for (const u of await this.membersUsers(tx, member)) affected.add(u);
      }
    }
    const inserted = await this.addMembers(tx, current.id, added, affected);
    const { members: _omit, ...beforeResource } = current.resource;
    const externalId = typeof next.externalId === 'string' ? next.externalId : null;
    const { rows } = await tx.query<Row>(
      `UPDATE groups SET display_name = $2, external_id = $3, resource = $4, version = version + 1, updated_at = now()
        WHERE id = $1 RETURNING id, resource, version, created_at, updated_at`,
      [current.id, next.displayName, externalId, next],
    );
    // The member delta rides in `after`: the full member lists of a large group would make every
    // event as big as the group, and the delta is what says who gained or lost access.
    await this.audit(tx, actor, action, 'Group', current.id, beforeResource, {
      ...next,
      membersAdded: inserted.map(auditMember),
      membersRemoved: removed.map(auditMember),
    });
    await this.announce(tx, affected);
    const [out] = await this.hydrate(tx, 'Group', rows, opts);
    return out!;
  }

  private async insertGroup(tx: Tx, id: string, resource: Record<string, unknown>): Promise<Row> {
    const { rows } = await tx.query<Row>(
      `INSERT INTO groups (id, display_name, external_id, resource) VALUES ($1, $2, $3, $4)
       RETURNING id, resource, version, created_at, updated_at`,
      [id, resource.displayName, typeof resource.externalId === 'string' ? resource.externalId : null, resource],
    );
    return rows[0]!;
  }

  /** Checks that every member exists (and its type), and that no group would contain itself. */
  private async resolveMembers(tx: Tx, groupId: string, raw: unknown): Promise<Member[]> {
    const list = (Array.isArray(raw) ? raw : []) as RawMember[];
    // Ids are UUIDs, which compare in any casing; the lower-case spelling is the stored one.
    const unique = new Map<string, RawMember>();
    for (const m of list) unique.set(UUID_RE.test(m.value) ? m.value.toLowerCase() : m.value, { ...m, value: UUID_RE.test(m.value) ? m.value.toLowerCase() : m.value });
    if (unique.size === 0) return [];
    const bad = [...unique.keys()].filter((v) => !UUID_RE.test(v));
    if (bad.length) throw ScimError.badRequest('invalidValue', `members: no User or Group with id ${bad.slice(0, 5).map((b) => JSON.stringify(b)).join(', ')}`);
    // FOR SHARE conflicts with the deletion's row lock: a member being deleted is waited for (and
    // then not found), and a member locked here cannot be deleted until this transaction has
    // committed the membership, which the deletion then removes. Rows are locked in id order.
    const ids = [...unique.keys()];
    const { rows: users } = await tx.query<{ id: string; name: string }>(
      'SELECT id, user_name AS name FROM users WHERE id = ANY($1) AND deleted_at IS NULL ORDER BY id FOR SHARE',
      [ids],
    );
    const { rows: groups } = await tx.query<{ id: string; name: string }>(
      'SELECT id, display_name AS name FROM groups WHERE id = ANY($1) AND deleted_at IS NULL ORDER BY id FOR SHARE',
      [ids],
    );
    const found = new Map<string, ResourceType>([...users.map((r) => [r.id, 'User'] as const), ...groups.map((r) => [r.id, 'Group'] as const)]);
    const names = new Map([...users, ...groups].map((r) => [r.id, r.name]));
    const missing = [...unique.keys()].filter((v) => !found.has(v));
    if (missing.length) throw ScimError.badRequest('invalidValue', `members: no User or Group with id ${missing.slice(0, 5).join(', ')}`);
    const members: Member[] = [];
    for (const m of unique.values()) {
      const actual = found.get(m.value)!;
      if (m.type !== undefined && m.type.toLowerCase() !== actual.toLowerCase()) {
        throw ScimError.badRequest('invalidValue', `members: ${m.value} is a ${actual}, not a ${m.type}`);
      }
      members.push({ value: m.value, type: actual, display: m.display, name: names.get(m.value) });
    }
    const nested = members.filter((m) => m.type === 'Group').map((m) => m.value);
    if (nested.includes(groupId)) throw ScimError.badRequest('invalidValue', 'members: a group cannot be a member of itself');
    if (nested.length) {
      // Would adding these groups make `groupId` reachable from itself?
      const { rows: cycle } = await tx.query(
        `WITH RECURSIVE below(id) AS (
           SELECT unnest($1::uuid[])
           UNION
           SELECT m.member_id FROM group_members m JOIN below b ON m.group_id = b.id WHERE m.member_type = 'Group'
         ) SELECT 1 FROM below WHERE id = $2 LIMIT 1`,
        [nested, groupId],
      );
      if (cycle.length) throw ScimError.badRequest('invalidValue', 'members: nesting these groups would make the group contain itself');
    }
    return members;
  }

  /** Inserts members in one statement; answers those that were not members yet (and announces their users). */
  private async addMembers(tx: Tx, groupId: string, members: Member[], affected: Set<string>): Promise<Member[]> {
    if (members.length === 0) return [];
    const { rows } = await tx.query<{ id: string }>(
      `INSERT INTO group_members (group_id, member_id, member_type, display)
       SELECT $1, x.member_id, x.member_type, x.display
         FROM unnest($2::uuid[], $3::text[], $4::text[]) AS x(member_id, member_type, display)
       ON CONFLICT DO NOTHING
       RETURNING member_id::text AS id`,
      [groupId, members.map((m) => m.value), members.map((m) => m.type), members.map((m) => m.display ?? null)],
    );
    const fresh = new Set(rows.map((r) => r.id));
    const inserted = members.filter((m) => fresh.has(m.value));
    for (const m of inserted) for (const u of await this.membersUsers(tx, m)) affected.add(u);
    return inserted;
  }

  /** The users a member stands for: itself, or every user under a nested group. */
  private async membersUsers(tx: Tx, m: Member): Promise<string[]> {
    return m.type === 'User' ? [m.value] : await this.usersUnder(tx, m.value);
  }

  private async usersUnder(tx: Tx, groupId: string): Promise<string[]> {
    const { rows } = await tx.query<{ id: string }>(
      `WITH RECURSIVE below(id) AS (
         SELECT $1::uuid
         UNION
         SELECT m.member_id FROM group_members m JOIN below b ON m.group_id = b.id WHERE m.member_type = 'Group'
       )
       SELECT DISTINCT m.member_id AS id FROM group_members m JOIN below b ON m.group_id = b.id WHERE m.member_type = 'User'`,
      [groupId],
    );
    return rows.map((r) => r.id);
  }

  private async audit(tx: Tx, actor: Actor, action: string, type: ResourceType, id: string, before: unknown, after: unknown): Promise<void> {
    await tx.query(
      `INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, before, after)
       VALUES ($1, $2, $3, $4, 'SCIM', $5, $6)`,
      [actor.name, action, type, id, before === null ? null : JSON.stringify(before), after === null ? null : JSON.stringify(after)],
    );
  }

  private async announce(tx: Tx, userIds: Set<string>): Promise<void> {
    await enqueueUserChanges(tx, [...userIds]);
  }
}

/** Active users who are members of the group, nested groups included. */
export async function activeGroupMembers(db: Pick<Db | Tx, 'query'>, groupId: string): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    `WITH RECURSIVE sub(id) AS (
       SELECT $1::uuid
       UNION
       SELECT m.member_id FROM sub JOIN group_members m ON m.group_id = sub.id AND m.member_type = 'Group'
     )
     SELECT DISTINCT u.id FROM sub JOIN group_members m ON m.group_id = sub.id AND m.member_type = 'User'
       JOIN users u ON u.id = m.member_id AND u.active AND u.deleted_at IS NULL
      ORDER BY u.id`,
    [groupId],
  );
  return rows.map((r) => r.id);
}
