/**
 * Access policies: the catalogue of what people may request, who decides and how it is fulfilled.
 * The API body names users and groups as people write them (userName or id, displayName or id);
 * {@link resolvePolicy} turns them into ids once, so a stored policy (and the snapshot each request
 * keeps of it) never depends on names that may change later.
 */
import type { Db, Tx } from '../db/pool.js';
import { parseFilter } from '../scim/filter/index.js';
import { ScimError } from '../scim/errors.js';

type Queryable = Pick<Db | Tx, 'query'>;

/** How one stage's approvers are found at run time, with ids resolved. */
export interface StageApprovers {
  userIds: string[];
  groupId: string | null;
  /** The requester's manager this many levels up (1: the direct manager); null: not asked. */
  managerLevels: number | null;
  owners: boolean;
  /** An approver function (path or npm name) and how long one call may take. */
  function?: { module: string; timeoutSeconds: number } | null;
}

/** One serial approval stage as stored and as snapshotted onto each request. */
export interface PolicyStage {
  name: string;
  approvers: StageApprovers;
  /** any: the first decision decides; all: every approver approves; quorum: `quorum` approvals. */
  rule: 'any' | 'all' | 'quorum';
  quorum: number | null;
  /** What happens when the stage resolves to nobody but the requester. */
  whenNobody: 'reject' | 'skip' | 'escalate';
  fallbackGroupId: string | null;
  /** The stage expires the request when undecided for this long; null: no limit. */
  timeoutSeconds: number | null;
  /** A SCIM filter on the requester: when it matches, the stage approves itself. */
  autoApprove?: string | null;
  /** What a stage timeout does: expire the request, or add the fallback group as approvers once. */
  onTimeout?: 'expire' | 'escalate';
  /** Reminders to the approvers still undecided, this many seconds before the stage times out. */
  remindBeforeSeconds?: number[];
}

/** A policy as the API answers it and as a request keeps it. */
export interface AccessPolicy {
  id: string;
  name: string;
  entitlementId: string | null;
  /** `connectorId/name` of the entitlement; null for a manual-only resource. */
  entitlement: string | null;
  displayName: string;
  description: string | null;
  aliases: string[];
  owners: { userIds: string[]; groupId: string | null };
  eligibility: { filter: string | null; groupId: string | null };
  durations: { defaultSeconds: number | null; maxSeconds: number | null; permanentAllowed: boolean; expiringNoticeSeconds?: number | null };
  justificationRequired: boolean;
  fulfilment: { mode: 'automatic' | 'manual'; groupId: string | null; instructions: string | null };
  stages: PolicyStage[];
  requestTtlSeconds: number | null;
  /** Invitations of people not in the directory yet; null (or absent, in requests made before invitations existed): the policy does not invite. */
  invitation?: PolicyInvitation | null;
}

/** How a policy invites people who are not in the directory yet (resolved). */
export interface PolicyInvitation {
  /** The Auth0 source (tenant and database connection) the invitee is invited into. */
  sourceId: string;
  /** Who may sponsor an invitation: users matching the SCIM filter and/or members of the group (both when both are given). */
  sponsors: { filter: string | null; groupId: string | null };
  /** How long the invitation link stays valid once sent (seconds). */
  expiresInSeconds: number;
}

/** Default and longest validity of an invitation link (as for the admin API). */
export const INVITATION_DEFAULT_SECONDS = 7 * 86_400;
export const INVITATION_MAX_SECONDS = 30 * 86_400;

/** The create-or-replace body of `PUT /api/access-policies/{name}`. */
export interface AccessPolicyBody {
  entitlement?: string;
  displayName: string;
  description?: string;
  aliases?: string[];
  owners?: { users?: string[]; group?: string };
  eligibility?: { filter?: string; group?: string };
  durations?: { defaultSeconds?: number; maxSeconds?: number; permanentAllowed?: boolean; expiringNoticeSeconds?: number };
  justificationRequired?: boolean;
  fulfilment: { mode: 'automatic' | 'manual'; group?: string; instructions?: string };
  stages: Array<{
    name?: string;
    approvers: { users?: string[]; group?: string; manager?: number; owners?: boolean; function?: string; functionTimeoutSeconds?: number };
    rule?: 'any' | 'all' | 'quorum';
    quorum?: number;
    whenNobody?: 'reject' | 'skip' | 'escalate';
    fallbackGroup?: string;
    timeoutSeconds?: number;
    onTimeout?: 'expire' | 'escalate';
    autoApprove?: string;
    remindBeforeSeconds?: number[];
  }>;
  requestTtlSeconds?: number;
  invitation?: { source: string; sponsors: { filter?: string; group?: string }; expiresInSeconds?: number };
}

const userList = { type: 'array', maxItems: 200, uniqueItems: true, items: { type: 'string', minLength: 1 }, description: 'userNames or ids' } as const;

/** JSON schema of {@link AccessPolicyBody}. */
export const AccessPolicyBodySchema = {
  type: 'object',
  required: ['displayName', 'fulfilment', 'stages'],
  additionalProperties: false,
  properties: {
    entitlement: { type: 'string', minLength: 1, description: 'entitlement id or "connectorId/name"; absent for a manual-only resource' },
    displayName: { type: 'string', minLength: 1, maxLength: 200 },
    description: { type: 'string', maxLength: 4000 },
    aliases: { type: 'array', maxItems: 50, uniqueItems: true, items: { type: 'string', minLength: 1, maxLength: 200 } },
    owners: { type: 'object', additionalProperties: false, properties: { users: userList, group: { type: 'string', minLength: 1 } } },
    eligibility: {
      type: 'object',
      additionalProperties: false,
      description: 'who may request: users matching the SCIM filter and/or members of the group (nested included)',
      properties: { filter: { type: 'string', minLength: 1 }, group: { type: 'string', minLength: 1 } },
    },
    durations: {
      type: 'object',
      additionalProperties: false,
      properties: {
        defaultSeconds: { type: 'integer', minimum: 1 },
        maxSeconds: { type: 'integer', minimum: 1 },
        permanentAllowed: { type: 'boolean' },
        expiringNoticeSeconds: { type: 'integer', minimum: 1, description: 'tell the requester this long before time-bound access ends (default: not told)' },
      },
    },
    justificationRequired: { type: 'boolean' },
    fulfilment: {
      type: 'object',
      required: ['mode'],
      additionalProperties: false,
      properties: {
        mode: { type: 'string', enum: ['automatic', 'manual'], description: 'automatic: a grant provisioned through the connector; manual: a person does it' },
        group: { type: 'string', minLength: 1, description: 'manual: the group that fulfils' },
        instructions: { type: 'string', maxLength: 4000 },
      },
    },
    stages: {
      type: 'array',
      maxItems: 10,
      description: 'serial approval stages; none: approved on request',
      items: {
        type: 'object',
        required: ['approvers'],
        additionalProperties: false,
        properties: {
          name: { type: 'string', maxLength: 200 },
          approvers: {
            type: 'object',
            additionalProperties: false,
            properties: {
              users: userList,
              group: { type: 'string', minLength: 1, description: 'members (nested included) approve' },
              manager: { type: 'integer', minimum: 1, maximum: 10, description: "the requester's enterprise manager this many levels up" },
              owners: { type: 'boolean', description: "the policy's owners approve" },
              function: { type: 'string', minLength: 1, description: 'an approver function: a module (path or npm name) whose default export answers approver user ids or userNames' },
              functionTimeoutSeconds: { type: 'integer', minimum: 1, maximum: 300, description: 'how long one call of the function may take (default 10)' },
            },
          },
          rule: { type: 'string', enum: ['any', 'all', 'quorum'] },
          quorum: { type: 'integer', minimum: 1 },
          whenNobody: { type: 'string', enum: ['reject', 'skip', 'escalate'], description: 'when the stage resolves to nobody but the requester' },
          fallbackGroup: { type: 'string', minLength: 1, description: 'escalate: the group that approves instead' },
          timeoutSeconds: { type: 'integer', minimum: 1, description: 'an undecided stage expires the request after this long' },
          onTimeout: { type: 'string', enum: ['expire', 'escalate'], description: 'at the stage timeout: expire the request (default) or escalate to fallbackGroup, once' },
          autoApprove: { type: 'string', minLength: 1, description: 'SCIM filter on the requester; when it matches, the stage is approved without anyone deciding' },
          remindBeforeSeconds: {
            type: 'array',
            maxItems: 10,
            uniqueItems: true,
            items: { type: 'integer', minimum: 1 },
            description: 'remind the approvers still undecided this many seconds before the stage times out (each shorter than timeoutSeconds)',
          },
        },
      },
    },
    requestTtlSeconds: { type: 'integer', minimum: 1, description: 'a request still pending after this long expires' },
    invitation: {
      type: 'object',
      required: ['source', 'sponsors'],
      additionalProperties: false,
      description: 'requests may name an invitee who is not in the directory yet (an email): once approved, the invitee is invited into the Auth0 source and gets the entitlement at the first login',
      properties: {
        source: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,62}$', description: 'the Auth0 source (tenant and connection) to invite into; it needs an invitationUrl' },
        sponsors: {
          type: 'object',
          additionalProperties: false,
          description: 'who may ask for an invitation: users matching the SCIM filter and/or members of the group (nested included); at least one',
          properties: { filter: { type: 'string', minLength: 1 }, group: { type: 'string', minLength: 1 } },
        },
        expiresInSeconds: { type: 'integer', minimum: 3600, maximum: 2_592_000, description: 'how long the invitation link stays valid once sent (default 7 days, at most 30)' },
      },
    },
  },
} as const;

/** A policy body that names something missing or contradicts itself; the message says which. */
export class PolicyError extends Error {}

/**
 * The ids of the live users named (by id or userName, any case); `fail` makes the error naming
 * those that do not exist (a PolicyError by default).
 */
export async function userIds(db: Queryable, names: string[], where: string, fail: (message: string) => Error = (m) => new PolicyError(m)): Promise<string[]> {
  if (names.length === 0) return [];
  const { rows } = await db.query<{ id: string; user_name: string }>(
    'SELECT id, user_name FROM users WHERE deleted_at IS NULL AND (id::text = ANY($1) OR lower(user_name) = ANY($2))',
    [names, names.map((n) => n.toLowerCase())],
  );
  const missing = names.filter((n) => !rows.some((r) => r.id === n || r.user_name.toLowerCase() === n.toLowerCase()));
  if (missing.length) throw fail(`${where}: no user ${missing.join(', ')}`);
  return [...new Set(rows.map((r) => r.id))];
}

/** The id of the live group named (by id or displayName, any case), or null when none is named. */
export async function groupId(db: Queryable, name: string | undefined, where: string, fail: (message: string) => Error = (m) => new PolicyError(m)): Promise<string | null> {
  if (name === undefined) return null;
  const { rows } = await db.query<{ id: string }>('SELECT id FROM groups WHERE deleted_at IS NULL AND (id::text = $1 OR lower(display_name) = lower($1))', [name]);
  if (!rows[0]) throw fail(`${where}: no group ${name}`);
  return rows[0].id;
}

/** How {@link resolvePolicy} finds what the body names beyond the database. */
export interface ResolveOptions {
  /**
   * Entitlement ids by `connectorId/name` (or id) that are about to exist, such as those a
   * declarative file creates in the same transaction; looked up before the database.
   */
  entitlements?: ReadonlyMap<string, string>;
}

/** Checks a policy body and resolves its names to ids; throws {@link PolicyError}. */
export async function resolvePolicy(db: Queryable, name: string, body: AccessPolicyBody, opts: ResolveOptions = {}): Promise<Omit<AccessPolicy, 'id' | 'entitlement'>> {
  let entitlementId: string | null = null;
  const planned = body.entitlement !== undefined ? opts.entitlements?.get(body.entitlement) : undefined;
  if (planned) {
    entitlementId = planned;
  } else if (body.entitlement !== undefined) {
    const { rows } = await db.query<{ id: string }>(`SELECT id FROM entitlements WHERE id::text = $1 OR connector_id || '/' || name = $1`, [body.entitlement]);
    if (!rows[0]) throw new PolicyError(`entitlement: no entitlement ${body.entitlement}`);
    entitlementId = rows[0].id;
  }
  if (body.fulfilment.mode === 'automatic' && !entitlementId) throw new PolicyError('fulfilment: automatic fulfilment needs an entitlement; a resource with no connector is fulfilled manually');
  if (body.fulfilment.mode === 'manual' && body.fulfilment.group === undefined) throw new PolicyError('fulfilment.group: manual fulfilment needs the group that fulfils');
  if (body.eligibility?.filter !== undefined) {
    try {
      parseFilter(body.eligibility.filter);
    } catch (err) {
      throw new PolicyError(`eligibility.filter: ${err instanceof ScimError ? err.detail : String(err)}`);
    }
  }
  const invitation = body.invitation ? await resolveInvitation(db, body.invitation, entitlementId, body.fulfilment.mode) : null;
  const d = body.durations ?? {};
  if (d.defaultSeconds !== undefined && d.maxSeconds !== undefined && d.defaultSeconds > d.maxSeconds) throw new PolicyError('durations: defaultSeconds is longer than maxSeconds');
  const owners = { userIds: await userIds(db, body.owners?.users ?? [], 'owners.users'), groupId: await groupId(db, body.owners?.group, 'owners.group') };
  const stages: PolicyStage[] = [];
  for (const [i, s] of body.stages.entries()) {
    const where = `stages[${i}]`;
    const a = s.approvers;
    if (!a.users?.length && a.group === undefined && a.manager === undefined && !a.owners && a.function === undefined) throw new PolicyError(`${where}.approvers: name at least one source of approvers`);
    if (a.owners && owners.userIds.length === 0 && owners.groupId === null) throw new PolicyError(`${where}.approvers.owners: the policy has no owners`);
    const rule = s.rule ?? 'any';
    if ((rule === 'quorum') !== (s.quorum !== undefined)) throw new PolicyError(`${where}: give quorum exactly when the rule is "quorum"`);
    const whenNobody = s.whenNobody ?? 'reject';
    const onTimeout = s.onTimeout ?? 'expire';
    if (onTimeout === 'escalate' && s.timeoutSeconds === undefined) throw new PolicyError(`${where}: onTimeout "escalate" needs timeoutSeconds`);
    if (s.remindBeforeSeconds?.length) {
      if (s.timeoutSeconds === undefined) throw new PolicyError(`${where}.remindBeforeSeconds: reminders come before a timeout; give timeoutSeconds`);
      const late = s.remindBeforeSeconds.filter((x) => x >= s.timeoutSeconds!);
      if (late.length) throw new PolicyError(`${where}.remindBeforeSeconds: ${late.join(', ')} is not shorter than timeoutSeconds (${s.timeoutSeconds})`);
    }
    if ((whenNobody === 'escalate' || onTimeout === 'escalate') !== (s.fallbackGroup !== undefined)) {
      throw new PolicyError(`${where}: give fallbackGroup exactly when whenNobody or onTimeout is "escalate"`);
    }
    if (s.autoApprove !== undefined) {
      try {
        parseFilter(s.autoApprove);
      } catch (err) {
        throw new PolicyError(`${where}.autoApprove: ${err instanceof ScimError ? err.detail : String(err)}`);
      }
    }
    stages.push({
      name: s.name ?? `stage ${i + 1}`,
      approvers: {
        userIds: await userIds(db, a.users ?? [], `${where}.approvers.users`),
        groupId: await groupId(db, a.group, `${where}.approvers.group`),
        managerLevels: a.manager ?? null,
        owners: a.owners ?? false,
        function: a.function !== undefined ? { module: a.function, timeoutSeconds: a.functionTimeoutSeconds ?? 10 } : null,
      },
      rule,
      quorum: s.quorum ?? null,
      whenNobody,
      fallbackGroupId: await groupId(db, s.fallbackGroup, `${where}.fallbackGroup`),
      timeoutSeconds: s.timeoutSeconds ?? null,
      autoApprove: s.autoApprove ?? null,
      onTimeout,
      remindBeforeSeconds: [...(s.remindBeforeSeconds ?? [])].sort((a, b) => b - a),
    });
  }
  return {
    name,
    entitlementId,
    displayName: body.displayName,
    description: body.description ?? null,
    aliases: body.aliases ?? [],
    owners,
    eligibility: { filter: body.eligibility?.filter ?? null, groupId: await groupId(db, body.eligibility?.group, 'eligibility.group') },
    durations: { defaultSeconds: d.defaultSeconds ?? null, maxSeconds: d.maxSeconds ?? null, permanentAllowed: d.permanentAllowed ?? false, expiringNoticeSeconds: d.expiringNoticeSeconds ?? null },
    justificationRequired: body.justificationRequired ?? false,
    fulfilment: { mode: body.fulfilment.mode, groupId: await groupId(db, body.fulfilment.group, 'fulfilment.group'), instructions: body.fulfilment.instructions ?? null },
    stages,
    requestTtlSeconds: body.requestTtlSeconds ?? null,
    invitation,
  };
}

/**
 * Checks a policy's invitation settings: automatic fulfilment of an entitlement (the grant made
 * when the invitation is redeemed; any connector), an Auth0 source with an invitationUrl, and who
 * may sponsor.
 */
async function resolveInvitation(
  db: Queryable,
  inv: NonNullable<AccessPolicyBody['invitation']>,
  entitlementId: string | null,
  mode: 'automatic' | 'manual',
): Promise<PolicyInvitation> {
  if (mode !== 'automatic' || !entitlementId) throw new PolicyError('invitation: invitations grant an entitlement at the first login; give an entitlement and automatic fulfilment');
  const { rows } = await db.query<{ type: string; config: { invitationUrl?: unknown } }>('SELECT type, config FROM sources WHERE id = $1', [inv.source]);
  if (!rows[0]) throw new PolicyError(`invitation.source: no source ${inv.source}`);
  if (rows[0].type !== 'auth0') throw new PolicyError(`invitation.source: ${inv.source} is not an Auth0 source`);
  if (typeof rows[0].config.invitationUrl !== 'string') throw new PolicyError(`invitation.source: ${inv.source} has no invitationUrl (the application's login URL is needed for invitation links)`);
  if (inv.sponsors.filter === undefined && inv.sponsors.group === undefined) throw new PolicyError('invitation.sponsors: name who may sponsor an invitation (filter and/or group)');
  if (inv.sponsors.filter !== undefined) {
    try {
      parseFilter(inv.sponsors.filter);
    } catch (err) {
      throw new PolicyError(`invitation.sponsors.filter: ${err instanceof ScimError ? err.detail : String(err)}`);
    }
  }
  return {
    sourceId: inv.source,
    sponsors: { filter: inv.sponsors.filter ?? null, groupId: await groupId(db, inv.sponsors.group, 'invitation.sponsors.group') },
    expiresInSeconds: inv.expiresInSeconds ?? INVITATION_DEFAULT_SECONDS,
  };
}

const POLICY_COLUMNS = `p.id, p.name, p.entitlement_id, e.connector_id || '/' || e.name AS entitlement, p.display_name, p.description, p.aliases,
  p.owner_user_ids, p.owner_group_id, p.eligibility_filter, p.eligibility_group_id, p.default_duration_s, p.max_duration_s,
  p.permanent_allowed, p.justification_required, p.fulfilment, p.fulfilment_group_id, p.fulfilment_instructions, p.stages, p.request_ttl_s, p.expiring_notice_s, p.invitation`;

interface PolicyRow {
  id: string;
  name: string;
  entitlement_id: string | null;
  entitlement: string | null;
  display_name: string;
  description: string | null;
  aliases: string[];
  owner_user_ids: string[];
  owner_group_id: string | null;
  eligibility_filter: string | null;
  eligibility_group_id: string | null;
  default_duration_s: number | null;
  max_duration_s: number | null;
  permanent_allowed: boolean;
  justification_required: boolean;
  fulfilment: 'automatic' | 'manual';
  fulfilment_group_id: string | null;
  fulfilment_instructions: string | null;
  stages: PolicyStage[];
  request_ttl_s: number | null;
  expiring_notice_s: number | null;
  invitation: PolicyInvitation | null;
}

function toPolicy(r: PolicyRow): AccessPolicy {
  return {
    id: r.id,
    name: r.name,
    entitlementId: r.entitlement_id,
    entitlement: r.entitlement,
    displayName: r.display_name,
    description: r.description,
    aliases: r.aliases,
    owners: { userIds: r.owner_user_ids, groupId: r.owner_group_id },
    eligibility: { filter: r.eligibility_filter, groupId: r.eligibility_group_id },
    durations: { defaultSeconds: r.default_duration_s, maxSeconds: r.max_duration_s, permanentAllowed: r.permanent_allowed, expiringNoticeSeconds: r.expiring_notice_s },
    justificationRequired: r.justification_required,
    fulfilment: { mode: r.fulfilment, groupId: r.fulfilment_group_id, instructions: r.fulfilment_instructions },
    stages: r.stages,
    requestTtlSeconds: r.request_ttl_s,
    invitation: r.invitation,
  };
}

/** Every policy, by name. */
export async function listPolicies(db: Queryable): Promise<AccessPolicy[]> {
  const { rows } = await db.query<PolicyRow>(`SELECT ${POLICY_COLUMNS} FROM access_policies p LEFT JOIN entitlements e ON e.id = p.entitlement_id ORDER BY p.name`);
  return rows.map(toPolicy);
}

/** A policy by id, name or alias (case-insensitive for names and aliases). */
export async function findPolicy(db: Queryable, key: string): Promise<AccessPolicy | undefined> {
  const { rows } = await db.query<PolicyRow>(
    `SELECT ${POLICY_COLUMNS} FROM access_policies p LEFT JOIN entitlements e ON e.id = p.entitlement_id
      WHERE p.id::text = $1 OR p.name = lower($1) OR lower($1) = ANY (SELECT lower(a) FROM unnest(p.aliases) a)
      ORDER BY (p.name = lower($1)) DESC LIMIT 1`,
    [key],
  );
  return rows[0] ? toPolicy(rows[0]) : undefined;
}

/** Creates or replaces the policy `name`; answers it as stored and the previous version, if any. */
export async function savePolicy(tx: Tx, id: string, p: Omit<AccessPolicy, 'id' | 'entitlement'>): Promise<{ saved: AccessPolicy; before: AccessPolicy | undefined }> {
  const before = await findPolicyByName(tx, p.name, true);
  await tx.query(
    `INSERT INTO access_policies (id, name, entitlement_id, display_name, description, aliases, owner_user_ids, owner_group_id, eligibility_filter,
       eligibility_group_id, default_duration_s, max_duration_s, permanent_allowed, justification_required, fulfilment, fulfilment_group_id,
       fulfilment_instructions, stages, request_ttl_s, expiring_notice_s, invitation)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
     ON CONFLICT (name) DO UPDATE SET entitlement_id = $3, display_name = $4, description = $5, aliases = $6, owner_user_ids = $7,
       owner_group_id = $8, eligibility_filter = $9, eligibility_group_id = $10, default_duration_s = $11, max_duration_s = $12,
       permanent_allowed = $13, justification_required = $14, fulfilment = $15, fulfilment_group_id = $16, fulfilment_instructions = $17,
       stages = $18, request_ttl_s = $19, expiring_notice_s = $20, invitation = $21, updated_at = now()`,
    [
      before?.id ?? id,
      p.name,
      p.entitlementId,
      p.displayName,
      p.description,
      p.aliases,
      p.owners.userIds,
      p.owners.groupId,
      p.eligibility.filter,
      p.eligibility.groupId,
      p.durations.defaultSeconds,
      p.durations.maxSeconds,
      p.durations.permanentAllowed,
      p.justificationRequired,
      p.fulfilment.mode,
      p.fulfilment.groupId,
      p.fulfilment.instructions,
      JSON.stringify(p.stages),
      p.requestTtlSeconds,
      p.durations.expiringNoticeSeconds ?? null,
      p.invitation ? JSON.stringify(p.invitation) : null,
    ],
  );
  return { saved: (await findPolicyByName(tx, p.name, false))!, before };
}

/** The policy named exactly `name` (no alias, no id), locked for the transaction when `lock`. */
export async function getPolicyByName(db: Queryable, name: string, lock = false): Promise<AccessPolicy | undefined> {
  return await findPolicyByName(db, name, lock);
}

async function findPolicyByName(db: Queryable, name: string, lock: boolean): Promise<AccessPolicy | undefined> {
  const { rows } = await db.query<PolicyRow>(
    `SELECT ${POLICY_COLUMNS} FROM access_policies p LEFT JOIN entitlements e ON e.id = p.entitlement_id WHERE p.name = $1${lock ? ' FOR UPDATE OF p' : ''}`,
    [name],
  );
  return rows[0] ? toPolicy(rows[0]) : undefined;
}
