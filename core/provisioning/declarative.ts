/**
 * Declarative provisioning configuration: connectors, entitlements, birthright rules and access
 * policies described in a YAML or JSON file kept under version control, applied to the database the
 * way the admin API would apply them one by one.
 *
 * Applying is idempotent and atomic. Everything is validated first, with the admin API's rules, and
 * every problem is reported at once with its location in the file; then, in the same transaction,
 * each item is compared with what the database holds and written only if it differs, so applying an
 * unchanged file writes nothing (no audit event, no outbox message, no `updated_at` bump). Items the
 * file does not mention are left alone: a file adds and changes, it never deletes.
 */
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, extname, resolve } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { loadConnector, validateConfig, PermanentError, type ConnectorDefinition } from '../../connectors/index.js';
import { withTransaction, type Db, type Tx } from '../db/pool.js';
import { enqueue, enqueueUserChanges } from '../outbox/outbox.js';
import { coveredUsers, plaintextSecrets, targetProblems } from './checks.js';
import { parseFilter } from '../scim/filter/index.js';
import { ScimError } from '../scim/errors.js';
import { Ajv, type ErrorObject } from 'ajv';
import { AccessPolicyBodySchema, getPolicyByName, PolicyError, resolvePolicy, savePolicy, type AccessPolicy, type AccessPolicyBody } from '../access/policies.js';

export interface ChangeCounts {
  created: number;
  updated: number;
  unchanged: number;
}

export interface ApplyReport {
  connectors: ChangeCounts;
  entitlements: ChangeCounts;
  rules: ChangeCounts;
  accessPolicies: ChangeCounts;
}

export interface ApplyOptions {
  /** Audit actor; default "provisioning-file". */
  actor?: string;
}

export interface ApplyDocumentOptions extends ApplyOptions {
  /** Folder that relative connector plugin paths are resolved against; default the working directory. */
  baseDir?: string;
  /** What to call the document in error messages; default "provisioning document". */
  source?: string;
}

/** The file cannot be applied; `problems` lists each one as "location: what is wrong". */
export class ProvisioningFileError extends Error {
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(problems.length === 1 ? `${source}: ${problems[0]}` : `${source}: ${problems.length} problems:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ProvisioningFileError';
  }
}

const DEFAULT_ACTOR = 'provisioning-file';
const AUDIT_REASON = 'declarative configuration';
const CONNECTOR_ID = /^[a-z0-9][a-z0-9-]{0,62}$/;
const MODES = ['enforce', 'monitor'] as const;
const DEPROVISION = ['disable', 'delete'] as const;
const MEMBERSHIP = ['authoritative', 'additive'] as const;
const SECRET_ADVICE = 'give secrets as env:NAME or file:/path references, never as values';
/** Access policy names, as `PUT /api/access-policies/{name}` accepts them. */
const POLICY_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
const SECTIONS = ['connectors', 'entitlements', 'rules', 'accessPolicies'];

/**
 * The access policy body schema of the admin API, checked strictly: no coercion, every error
 * reported, unknown fields refused (the API's schema says `additionalProperties: false`).
 */
const checkPolicyBody = new Ajv({ allErrors: true, strict: false, coerceTypes: false, removeAdditional: false }).compile<AccessPolicyBody>(AccessPolicyBodySchema as object);

/** An ajv error as "field: what is wrong", in the file's dotted notation. */
function schemaProblem(at: string, e: ErrorObject): string {
  const path = e.instancePath
    .split('/')
    .slice(1)
    .map((k) => (/^\d+$/.test(k) ? `[${k}]` : `.${k.replace(/~1/g, '/').replace(/~0/g, '~')}`))
    .join('');
  if (e.keyword === 'additionalProperties') return `${at}${path}.${String((e.params as { additionalProperty: string }).additionalProperty)}: unknown field`;
  if (e.keyword === 'required') return `${at}${path}.${String((e.params as { missingProperty: string }).missingProperty)}: is required`;
  return `${at}${path}: ${e.message ?? 'is not valid'}${e.keyword === 'enum' ? ` (${(e.params as { allowedValues: unknown[] }).allowedValues.join(', ')})` : ''}`;
}

/** Reads a YAML (.yaml, .yml) or JSON (.json) file and applies it; see {@link applyProvisioningDocument}. */
export async function applyProvisioningFile(db: Db, file: string, opts: ApplyOptions = {}): Promise<ApplyReport> {
  const source = `provisioning file ${file}`;
  const ext = extname(file).toLowerCase();
  if (!['.yaml', '.yml', '.json'].includes(ext)) throw new ProvisioningFileError(source, ['the file name must end in .yaml, .yml or .json']);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ProvisioningFileError(source, [`cannot be read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`]);
  }
  let doc: unknown;
  try {
    doc = ext === '.json' ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new ProvisioningFileError(source, [`is not valid ${ext === '.json' ? 'JSON' : 'YAML'}: ${(err as Error).message.trim()}`]);
  }
  return await applyProvisioningDocument(db, doc, { ...opts, baseDir: dirname(resolve(file)), source });
}

/**
 * Applies a parsed document `{ connectors, entitlements, rules, accessPolicies }` in one
 * transaction: connectors are upserted by id, entitlements by (connector, name), rules and access
 * policies by name. Throws a
 * {@link ProvisioningFileError} listing every problem, having written nothing, if any is found.
 */
export async function applyProvisioningDocument(db: Db, doc: unknown, opts: ApplyDocumentOptions = {}): Promise<ApplyReport> {
  const source = opts.source ?? 'provisioning document';
  const actor = opts.actor ?? DEFAULT_ACTOR;
  const problems: string[] = [];
  const spec = readDocument(doc, opts.baseDir ?? process.cwd(), problems);
  // Loading plugins needs no database: do it before the transaction holds a connection.
  const defs = new Map<string, ConnectorDefinition>();
  for (const c of spec.connectors) {
    const def = await loadDefinition(c.type, `${c.at}.type`, problems);
    if (!def) continue;
    defs.set(c.id, def);
    try {
      validateConfig(def, c.config);
    } catch (err) {
      if (!(err instanceof PermanentError)) throw err;
      problems.push(`${c.at}.config: ${err.message}`);
    }
  }

  return await withTransaction(db, async (tx) => {
    // Gateways starting together apply the same file one after the other, each comparing with what
    // the previous one wrote.
    await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', ['provisioning-file']);
    const plan = await planChanges(tx, spec, defs, problems);
    if (problems.length) throw new ProvisioningFileError(source, byLocation(problems));
    return await writeChanges(tx, plan, actor);
  });
}

/** Problems in the order of the file: by section, then item index (numerically), then field. */
function byLocation(problems: string[]): string[] {
  const location = (p: string) => p.slice(0, p.indexOf(': ') + 1 || p.length);
  return [...problems].sort((a, b) => location(a).localeCompare(location(b), 'en', { numeric: true }));
}

// ------------------------------------------------------------------ reading the document

interface ConnectorSpec {
  at: string;
  id: string;
  type: string;
  config: Record<string, unknown>;
  mode: string;
  deprovision: string;
  enabled: boolean;
  reconcileEveryMinutes: number | null;
}

interface EntitlementSpec {
  at: string;
  connector: string;
  name: string;
  target: Record<string, unknown>;
  membership: string;
}

interface RuleSpec {
  at: string;
  name: string;
  group: string | null;
  condition: string | null;
  entitlements: Array<{ at: string; ref: string }>;
}

interface PolicySpec {
  /** `accessPolicies.<name>`: problems name the policy. */
  at: string;
  /** `accessPolicies[i]`. */
  index: string;
  name: string;
  body: AccessPolicyBody;
}

interface DocumentSpec {
  connectors: ConnectorSpec[];
  entitlements: EntitlementSpec[];
  rules: RuleSpec[];
  accessPolicies: PolicySpec[];
}

type Obj = Record<string, unknown>;

const isObject = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Reads fields of one object, recording a problem for each missing, mistyped or unknown one. */
class Fields {
  constructor(
    private readonly obj: Obj,
    private readonly at: string,
    private readonly problems: string[],
    allowed: readonly string[],
  ) {
    for (const key of Object.keys(obj)) {
      if (!allowed.includes(key)) problems.push(`${at}.${key}: unknown field (expected ${allowed.join(', ')})`);
    }
  }

  private problem(key: string, message: string): undefined {
    this.problems.push(`${this.at}.${key}: ${message}`);
    return undefined;
  }

  string(key: string, opts: { required?: boolean; pattern?: RegExp; maxLength?: number } = {}): string | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null) return opts.required ? this.problem(key, 'is required') : undefined;
    if (typeof v !== 'string' || v.trim() === '') return this.problem(key, 'must be a non-empty string');
    // A string of the wrong form is still returned, so the rest of its item is checked too; nothing
    // is written while any problem stands.
    if (opts.maxLength !== undefined && v.length > opts.maxLength) this.problem(key, `must be at most ${opts.maxLength} characters`);
    if (opts.pattern && !opts.pattern.test(v)) this.problem(key, `"${v}" must match ${String(opts.pattern)}`);
    return v;
  }

  oneOf<T extends string>(key: string, allowed: readonly T[], fallback: T): T {
    const v = this.obj[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
      this.problem(key, `must be one of ${allowed.join(', ')}, got ${JSON.stringify(v)}`);
      return fallback;
    }
    return v as T;
  }

  boolean(key: string, fallback: boolean): boolean {
    const v = this.obj[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') {
      this.problem(key, `must be true or false, got ${JSON.stringify(v)}`);
      return fallback;
    }
    return v;
  }

  positiveIntegerOrNull(key: string): number | null {
    const v = this.obj[key];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 2_147_483_647) {
      this.problem(key, `must be a whole number of at least 1, got ${JSON.stringify(v)}`);
      return null;
    }
    return v;
  }

  /** A JSON object; values JSON cannot represent (YAML's .inf, .nan) would not survive storage. */
  object(key: string, opts: { required?: boolean } = {}): Obj | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null) return opts.required ? this.problem(key, 'is required') : undefined;
    if (!isObject(v)) return this.problem(key, 'must be an object');
    if (!isDeepStrictEqual(JSON.parse(JSON.stringify(v)), v)) this.problem(key, 'holds values JSON cannot represent (such as .inf or .nan)');
    return v;
  }

  list(key: string): Array<{ at: string; value: unknown }> | undefined {
    const v = this.obj[key];
    if (!Array.isArray(v) || v.length === 0) return this.problem(key, 'must be a non-empty list');
    return (v as unknown[]).map((value, i) => ({ at: `${this.at}.${key}[${i}]`, value }));
  }
}

/** The items of a top-level section, each with its location; absent or empty sections are empty. */
function section(doc: Obj, key: string, problems: string[]): Array<{ at: string; item: Obj }> {
  const v = doc[key];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) {
    problems.push(`${key}: must be a list`);
    return [];
  }
  return v.flatMap((item, i) => {
    if (isObject(item)) return [{ at: `${key}[${i}]`, item }];
    problems.push(`${key}[${i}]: must be an object`);
    return [];
  });
}

/** Records a problem for each item whose key repeats an earlier one. */
function noDuplicates<T extends { at: string }>(items: T[], key: (x: T) => string, field: string, problems: string[]): void {
  const seen = new Map<string, string>();
  for (const x of items) {
    const k = key(x);
    const first = seen.get(k);
    if (first) problems.push(`${x.at}.${field}: "${k}" is already declared at ${first}`);
    else seen.set(k, x.at);
  }
}

function readDocument(doc: unknown, baseDir: string, problems: string[]): DocumentSpec {
  if (!isObject(doc)) {
    problems.push(`the document must be an object with the keys ${SECTIONS.join(', ')}`);
    return { connectors: [], entitlements: [], rules: [], accessPolicies: [] };
  }
  for (const key of Object.keys(doc)) {
    if (!SECTIONS.includes(key)) problems.push(`${key}: unknown section (expected ${SECTIONS.join(', ')})`);
  }

  const connectors: ConnectorSpec[] = [];
  for (const { at, item } of section(doc, 'connectors', problems)) {
    const f = new Fields(item, at, problems, ['id', 'type', 'config', 'mode', 'deprovision', 'enabled', 'reconcileEveryMinutes']);
    const id = f.string('id', { required: true, pattern: CONNECTOR_ID });
    const type = f.string('type', { required: true });
    const config = f.object('config') ?? {};
    for (const path of plaintextSecrets(config)) problems.push(`${at}.config.${path}: ${SECRET_ADVICE}`);
    const rest = {
      mode: f.oneOf('mode', MODES, 'enforce'),
      deprovision: f.oneOf('deprovision', DEPROVISION, 'disable'),
      enabled: f.boolean('enabled', true),
      reconcileEveryMinutes: f.positiveIntegerOrNull('reconcileEveryMinutes'),
    };
    // A plugin path relative to the file is stored absolute: workers resolve types against their own
    // working directory, not the file's.
    if (id && type) connectors.push({ at, id, type: type.startsWith('.') ? resolve(baseDir, type) : type, config, ...rest });
  }
  noDuplicates(connectors, (c) => c.id, 'id', problems);

  const entitlements: EntitlementSpec[] = [];
  for (const { at, item } of section(doc, 'entitlements', problems)) {
    const f = new Fields(item, at, problems, ['connector', 'name', 'target', 'membership']);
    const connector = f.string('connector', { required: true });
    const name = f.string('name', { required: true, maxLength: 200 });
    const target = f.object('target', { required: true });
    const membership = f.oneOf('membership', MEMBERSHIP, 'additive');
    if (connector && name && target) entitlements.push({ at, connector, name, target, membership });
  }
  noDuplicates(entitlements, (e) => `${e.connector}/${e.name}`, 'name', problems);

  const rules: RuleSpec[] = [];
  for (const { at, item } of section(doc, 'rules', problems)) {
    const f = new Fields(item, at, problems, ['name', 'group', 'condition', 'entitlements']);
    const name = f.string('name', { required: true, maxLength: 200 });
    const group = f.string('group');
    const condition = f.string('condition');
    if ((item.group === undefined || item.group === null) === (item.condition === undefined || item.condition === null)) {
      problems.push(`${at}: give exactly one of "group" and "condition"`);
    }
    if (condition !== undefined) {
      try {
        parseFilter(condition);
      } catch (err) {
        problems.push(`${at}.condition: ${err instanceof ScimError ? err.detail : String(err)}`);
      }
    }
    const refs: RuleSpec['entitlements'] = [];
    for (const { at: refAt, value } of f.list('entitlements') ?? []) {
      if (typeof value !== 'string' || value.trim() === '') problems.push(`${refAt}: must be "connector/name" or an entitlement id`);
      else if (!refs.some((r) => r.ref === value)) refs.push({ at: refAt, ref: value });
    }
    if (name) rules.push({ at, name, group: group ?? null, condition: condition ?? null, entitlements: refs });
  }
  noDuplicates(rules, (r) => r.name, 'name', problems);

  // An access policy is the body of PUT /api/access-policies/{name} with its name beside it.
  const accessPolicies: PolicySpec[] = [];
  for (const { at: index, item } of section(doc, 'accessPolicies', problems)) {
    const { name, ...body } = item;
    if (typeof name !== 'string' || !POLICY_NAME.test(name)) {
      problems.push(`${index}.name: ${name === undefined || name === null ? 'is required' : `${JSON.stringify(name)} must match ${String(POLICY_NAME)}`}`);
      continue;
    }
    const at = `accessPolicies.${name}`;
    if (!checkPolicyBody(body)) {
      for (const e of checkPolicyBody.errors ?? []) problems.push(schemaProblem(at, e));
      continue;
    }
    // An approver function given by a relative path is taken from the file's folder, like plugins.
    for (const stage of body.stages) {
      const fn = stage.approvers.function;
      if (fn?.startsWith('.')) stage.approvers.function = resolve(baseDir, fn);
    }
    accessPolicies.push({ at, index, name, body });
  }
  noDuplicates(accessPolicies.map((p) => ({ at: p.index, name: p.name })), (p) => p.name, 'name', problems);

  return { connectors, entitlements, rules, accessPolicies };
}

async function loadDefinition(type: string, at: string, problems: string[]): Promise<ConnectorDefinition | undefined> {
  try {
    return await loadConnector(type);
  } catch (err) {
    if (!(err instanceof PermanentError)) throw err;
    problems.push(`${at}: ${err.message}`);
    return undefined;
  }
}

// ------------------------------------------------------------------ comparing with the database

interface ConnectorRow {
  id: string;
  type: string;
  config: Obj;
  mode: string;
  deprovision: string;
  enabled: boolean;
  reconcileEveryMinutes: number | null;
}

interface EntitlementRow {
  id: string;
  connectorId: string;
  name: string;
  target: Obj;
  membership: string;
}

interface RuleRow {
  id: string;
  name: string;
  groupId: string | null;
  condition: string | null;
  entitlementIds: string[];
}

interface Plan {
  connectors: Array<{ spec: ConnectorSpec; before: ConnectorRow | undefined }>;
  entitlements: Array<{ spec: EntitlementSpec; id: string; before: EntitlementRow | undefined }>;
  rules: Array<{ spec: RuleSpec; groupId: string | null; entitlementIds: string[]; before: RuleRow | undefined }>;
  accessPolicies: Array<{ resolved: Omit<AccessPolicy, 'id' | 'entitlement'>; before: AccessPolicy | undefined }>;
}

const CONNECTOR_COLUMNS = 'id, type, config, mode, deprovision, enabled, reconcile_every_minutes AS "reconcileEveryMinutes", created_at, updated_at';
const ENTITLEMENT_COLUMNS = 'id, connector_id AS "connectorId", name, target, membership';
const RULE_COLUMNS = 'id, name, group_id AS "groupId", condition, entitlement_ids AS "entitlementIds"';

/** Reads what the file refers to, checks the references, and pairs each item with its current row. */
async function planChanges(tx: Tx, spec: DocumentSpec, defs: Map<string, ConnectorDefinition>, problems: string[]): Promise<Plan> {
  const connectorIds = [...new Set([...spec.connectors.map((c) => c.id), ...spec.entitlements.map((e) => e.connector)])];
  const { rows: connectorRows } = await tx.query<ConnectorRow>(`SELECT ${CONNECTOR_COLUMNS} FROM connectors WHERE id = ANY($1) FOR UPDATE`, [connectorIds]);
  const connectorsInDb = new Map(connectorRows.map((r) => [r.id, r]));
  const connectorsInFile = new Map(spec.connectors.map((c) => [c.id, c]));

  const refs = spec.rules.flatMap((r) => r.entitlements.map((e) => e.ref));
  const keys = [...spec.entitlements.map((e) => `${e.connector}/${e.name}`), ...refs];
  const { rows: entitlementRows } = await tx.query<EntitlementRow>(
    `SELECT ${ENTITLEMENT_COLUMNS} FROM entitlements WHERE connector_id || '/' || name = ANY($1) OR id::text = ANY($2) FOR UPDATE`,
    [keys, refs],
  );
  const entitlementsInDb = new Map(entitlementRows.map((r) => [`${r.connectorId}/${r.name}`, r]));

  const plan: Plan = { connectors: [], entitlements: [], rules: [], accessPolicies: [] };
  for (const c of spec.connectors) plan.connectors.push({ spec: c, before: connectorsInDb.get(c.id) });

  // Entitlement ids by "connector/name" and by id, for the rules: existing ones and those the file creates.
  const entitlementIds = new Map<string, string>();
  for (const r of entitlementRows) {
    entitlementIds.set(`${r.connectorId}/${r.name}`, r.id);
    entitlementIds.set(r.id, r.id);
  }
  for (const e of spec.entitlements) {
    const before = entitlementsInDb.get(`${e.connector}/${e.name}`);
    const id = before?.id ?? randomUUID();
    entitlementIds.set(`${e.connector}/${e.name}`, id);
    plan.entitlements.push({ spec: e, id, before });
    let def: ConnectorDefinition | undefined;
    if (connectorsInFile.has(e.connector)) def = defs.get(e.connector); // absent: its type failed to load, already reported
    else {
      const row = connectorsInDb.get(e.connector);
      if (!row) {
        problems.push(`${e.at}.connector: no connector "${e.connector}" in the file or the database`);
        continue;
      }
      def = await loadDefinition(row.type, `${e.at}.connector`, problems);
    }
    if (!def) continue;
    const wrong = targetProblems(def, e.target);
    if (wrong.length) problems.push(`${e.at}.target: not valid for a ${def.type} entitlement: ${wrong.join('; ')}`);
  }

  const { rows: ruleRows } = await tx.query<RuleRow>(`SELECT ${RULE_COLUMNS} FROM rules WHERE name = ANY($1) FOR UPDATE`, [spec.rules.map((r) => r.name)]);
  const rulesInDb = new Map(ruleRows.map((r) => [r.name, r]));
  for (const r of spec.rules) {
    let groupId: string | null = null;
    if (r.group !== null) {
      const { rows } = await tx.query<{ id: string }>('SELECT id FROM groups WHERE deleted_at IS NULL AND (id::text = $1 OR lower(display_name) = lower($1))', [r.group]);
      if (rows[0]) groupId = rows[0].id;
      else problems.push(`${r.at}.group: no group "${r.group}"; groups come from the identity provider, so push it over SCIM before applying this file`);
    }
    const ids: string[] = [];
    for (const { at, ref } of r.entitlements) {
      const id = entitlementIds.get(ref);
      if (id) ids.push(id);
      else problems.push(`${at}: no entitlement "${ref}" in the file or the database`);
    }
    plan.rules.push({ spec: r, groupId, entitlementIds: [...new Set(ids)], before: rulesInDb.get(r.name) });
  }

  // Access policies: the admin API's checks and name resolution; entitlements this file creates count.
  for (const p of spec.accessPolicies) {
    try {
      const resolved = await resolvePolicy(tx, p.name, p.body, { entitlements: entitlementIds });
      plan.accessPolicies.push({ resolved, before: await getPolicyByName(tx, p.name, true) });
    } catch (err) {
      if (!(err instanceof PolicyError)) throw err;
      problems.push(`${p.at}.${err.message}`);
    }
  }
  return plan;
}

/** Whether the stored policy already says what the file says. */
function policyUnchanged(resolved: Omit<AccessPolicy, 'id' | 'entitlement'>, before: AccessPolicy): boolean {
  const { id: _id, entitlement: _e, ...stored } = before;
  return isDeepStrictEqual(JSON.parse(JSON.stringify(stored)), JSON.parse(JSON.stringify(resolved)));
}

function connectorUnchanged(c: ConnectorSpec, row: ConnectorRow): boolean {
  return (
    row.type === c.type &&
    isDeepStrictEqual(row.config, c.config) &&
    row.mode === c.mode &&
    row.deprovision === c.deprovision &&
    row.enabled === c.enabled &&
    row.reconcileEveryMinutes === c.reconcileEveryMinutes
  );
}

const sameSet = (a: string[], b: string[]) => a.length === b.length && isDeepStrictEqual([...a].sort(), [...b].sort());

// ------------------------------------------------------------------ writing what changed

async function audit(tx: Tx, actor: string, action: string, type: string, id: string, before: unknown, after: unknown): Promise<void> {
  await tx.query(`INSERT INTO audit_events (actor, action, resource_type, resource_id, reason, before, after) VALUES ($1, $2, $3, $4, $5, $6, $7)`, [
    actor,
    action,
    type,
    id,
    AUDIT_REASON,
    before === undefined ? null : JSON.stringify(before),
    JSON.stringify(after),
  ]);
}

async function writeChanges(tx: Tx, plan: Plan, actor: string): Promise<ApplyReport> {
  const report: ApplyReport = {
    connectors: { created: 0, updated: 0, unchanged: 0 },
    entitlements: { created: 0, updated: 0, unchanged: 0 },
    rules: { created: 0, updated: 0, unchanged: 0 },
    accessPolicies: { created: 0, updated: 0, unchanged: 0 },
  };
  const count = (counts: ChangeCounts, before: unknown) => (before ? counts.updated++ : counts.created++);

  for (const { spec: c, before } of plan.connectors) {
    if (before && connectorUnchanged(c, before)) {
      report.connectors.unchanged++;
      continue;
    }
    const { rows } = await tx.query<Obj>(
      `INSERT INTO connectors (id, type, config, mode, deprovision, enabled, reconcile_every_minutes) VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (id) DO UPDATE SET type = $2, config = $3, mode = $4, deprovision = $5, enabled = $6, reconcile_every_minutes = $7, updated_at = now()
       RETURNING ${CONNECTOR_COLUMNS}`,
      [c.id, c.type, JSON.stringify(c.config), c.mode, c.deprovision, c.enabled, c.reconcileEveryMinutes],
    );
    await audit(tx, actor, 'connector.saved', 'Connector', c.id, before, rows[0]);
    // As in the admin API: the reconcile Schedule follows the connector through the outbox.
    await enqueue(tx, { topic: 'connector.changed', aggregateId: c.id, payload: { reconcileEveryMinutes: c.enabled ? c.reconcileEveryMinutes : null } });
    count(report.connectors, before);
  }

  for (const { spec: e, id, before } of plan.entitlements) {
    if (before && before.membership === e.membership && isDeepStrictEqual(before.target, e.target)) {
      report.entitlements.unchanged++;
      continue;
    }
    const { rows } = before
      ? await tx.query<Obj>(`UPDATE entitlements SET target = $2, membership = $3 WHERE id = $1 RETURNING ${ENTITLEMENT_COLUMNS}`, [id, JSON.stringify(e.target), e.membership])
      : await tx.query<Obj>(`INSERT INTO entitlements (id, connector_id, name, target, membership) VALUES ($1, $2, $3, $4, $5) RETURNING ${ENTITLEMENT_COLUMNS}`, [
          id,
          e.connector,
          e.name,
          JSON.stringify(e.target),
          e.membership,
        ]);
    await audit(tx, actor, before ? 'entitlement.updated' : 'entitlement.created', 'Entitlement', id, before, rows[0]);
    count(report.entitlements, before);
  }

  // Whoever a new or changed rule may cover, before or after the change, is re-evaluated by their
  // userSync workflow; each user gets one message however many rules changed.
  const users = new Set<string>();
  let everyone = false;
  const cover = async (groupId: string | null) => {
    if (groupId === null) everyone = true;
    else for (const u of await coveredUsers(tx, groupId)) users.add(u);
  };
  for (const { spec: r, groupId, entitlementIds, before } of plan.rules) {
    if (before && before.groupId === groupId && before.condition === r.condition && sameSet(before.entitlementIds, entitlementIds)) {
      report.rules.unchanged++;
      continue;
    }
    const id = before?.id ?? randomUUID();
    const { rows } = before
      ? await tx.query<Obj>(`UPDATE rules SET group_id = $2, condition = $3, entitlement_ids = $4 WHERE id = $1 RETURNING ${RULE_COLUMNS}`, [id, groupId, r.condition, entitlementIds])
      : await tx.query<Obj>(`INSERT INTO rules (id, name, group_id, condition, entitlement_ids) VALUES ($1, $2, $3, $4, $5) RETURNING ${RULE_COLUMNS}`, [
          id,
          r.name,
          groupId,
          r.condition,
          entitlementIds,
        ]);
    await audit(tx, actor, before ? 'rule.updated' : 'rule.created', 'Rule', id, before, rows[0]);
    await cover(groupId);
    if (before) await cover(before.groupId);
    count(report.rules, before);
  }
  if (everyone) for (const u of await coveredUsers(tx, null)) users.add(u);
  await enqueueUserChanges(tx, [...users]);

  // The file is authoritative for the policies it declares: each is replaced to match it, as by
  // PUT /api/access-policies/{name}. Pending requests keep the policy they were made under.
  for (const { resolved, before } of plan.accessPolicies) {
    if (before && policyUnchanged(resolved, before)) {
      report.accessPolicies.unchanged++;
      continue;
    }
    const { saved } = await savePolicy(tx, randomUUID(), resolved);
    await audit(tx, actor, 'access-policy.saved', 'AccessPolicy', saved.id, before, saved);
    count(report.accessPolicies, before);
  }
  return report;
}
