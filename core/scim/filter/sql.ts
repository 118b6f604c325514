/**
 * Filter to PostgreSQL, RFC 7644 §3.4.2.2 (https://www.rfc-editor.org/rfc/rfc7644#section-3.4.2.2),
 * and sort keys, RFC 7644 §3.4.2.3 (https://www.rfc-editor.org/rfc/rfc7644#section-3.4.2.3), with
 * exactly the semantics of the in-memory evaluation in ./evaluate.ts.
 */
import type { Filter } from 'scim2-parse-filter';
import { ScimError } from '../errors.js';
import type { AttributeDef, SchemaRegistry } from '../schemas.js';
import { analyze, isReadable, kindOf, resolvePath, type CmpOp, type Leaf, type Node, type Operand, type ResourceType } from './analyze.js';
import { ceilDiv, floorDiv, formatMicros, MS, STORED_WITH_ZONE, STORED_WITHOUT_ZONE } from './datetime.js';
import { compareValue, present } from './evaluate.js';
import { invalidFilter, show } from './errors.js';

type ColumnType = 'string' | 'boolean' | 'dateTime' | 'integer' | 'decimal';

/** SQL target description for one resource type. */
export interface SqlTarget {
  resourceType: ResourceType;
  /** SQL expression of the jsonb resource column, e.g. 'u.resource'. */
  resource: string;
  /**
   * Attributes answered by a dedicated column, by canonical path (e.g. 'userName': { sql:
   * 'u.user_name', type: 'string' }, 'id': { sql: 'u.id::text', ... }, 'meta.created': { sql:
   * 'u.created_at', type: 'dateTime' }). `id` and `meta.*` (other than `meta.resourceType`) can only
   * be filtered when listed here, since the jsonb resource holds neither.
   */
  columns: Record<string, { sql: string; type: ColumnType }>;
  /**
   * Multi-valued attributes stored in another table, e.g. Group 'members': { table:
   * 'group_members', alias: 'm', join: 'm.group_id = g.id', subAttributes: { value:
   * 'm.member_id::text', type: 'm.member_type', display: 'm.display' } }. Sub-attribute
   * expressions are text.
   */
  relations?: Record<string, { table: string; alias: string; join: string; subAttributes: Record<string, string> }>;
}

type Relation = NonNullable<SqlTarget['relations']>[string];

/** Where a leaf's value comes from in SQL. */
type Source =
  | { from: 'column'; sql: string; type: ColumnType }
  | { from: 'json'; json: string; text: string }
  | { from: 'relation'; sql: string }
  | { from: 'constant'; value: unknown };

interface Context {
  /** Alias of the jsonb element in a jsonb_array_elements subquery. */
  element?: string;
  relation?: Relation;
}

const STRING_JSONB = (json: string): string => `jsonb_typeof(${json}) = 'string'`;
const NEEDS_NO_PARENS = /^[\w.]+(::\w+)?$/;
const paren = (sql: string): string => (NEEDS_NO_PARENS.test(sql) ? sql : `(${sql})`);
const SQL_OPS: Record<CmpOp, string> = { eq: '=', co: 'LIKE', sw: 'LIKE', ew: 'LIKE', gt: '>', ge: '>=', lt: '<', le: '<=' };

/**
 * A jsonb object key as a SQL literal. Keys are canonical names from the schema registry, never
 * client text; custom schema URNs may still contain a quote, so quoting is done properly, in a form
 * that reads the same whatever standard_conforming_strings says.
 */
function keyLiteral(k: string): string {
  const quoted = k.replace(/'/g, "''");
  return k.includes('\\') ? `E'${quoted.replace(/\\/g, '\\\\')}'` : `'${quoted}'`;
}

/** Escapes LIKE metacharacters with backslash, PostgreSQL's default LIKE escape character. */
function likeEscape(s: string): string {
  return s.replace(/[\\%_]/g, (c) => `\\${c}`);
}

class SqlWriter {
  private aliases = 0;

  constructor(
    private readonly target: SqlTarget,
    private readonly params: unknown[],
  ) {}

  private param(v: unknown): string {
    this.params.push(v);
    return `$${this.params.length}`;
  }

  /** The jsonb value at `keys` under `base`, and its text. */
  json(base: string, keys: string[]): { json: string; text: string } {
    if (keys.length === 0) return { json: base, text: `(${base} #>> '{}')` };
    const init = keys
      .slice(0, -1)
      .map((k) => `->${keyLiteral(k)}`)
      .join('');
    const last = keyLiteral(keys[keys.length - 1]!);
    return { json: `${base}${init}->${last}`, text: `${base}${init}->>${last}` };
  }

  source(leaf: Leaf, ctx: Context): Source {
    if (leaf.scope === 'element') {
      if (ctx.relation) {
        const sql = ctx.relation.subAttributes[leaf.def.name];
        if (sql === undefined) throw invalidFilter(`"${leaf.path}" cannot be used in a filter`);
        return { from: 'relation', sql };
      }
      return { from: 'json', ...this.json(`${ctx.element!}.v`, leaf.keys) };
    }
    const column = this.target.columns[leaf.path];
    if (column) return { from: 'column', ...column };
    if (leaf.path === 'meta.resourceType') return { from: 'constant', value: this.target.resourceType };
    if (leaf.path === 'meta') return { from: 'constant', value: { resourceType: this.target.resourceType } };
    if (leaf.path === 'id' || leaf.path.startsWith('meta.')) throw invalidFilter(`"${leaf.path}" cannot be used in a filter`);
    return { from: 'json', ...this.json(this.target.resource, leaf.keys) };
  }

  /** SQL for a node; `negate` pushes a `not` down to the leaves, where NULL is turned into false first. */
  node(n: Node, negate: boolean, ctx: Context): string {
    switch (n.t) {
      case 'and':
      case 'or': {
        const parts = n.items.map((c) => this.node(c, negate, ctx));
        if (parts.length === 1) return parts[0]!;
        return `(${parts.join((n.t === 'and') !== negate ? ' AND ' : ' OR ')})`;
      }
      case 'not':
        return this.node(n.item, !negate, ctx);
      case 'any': {
        const exists = this.any(n);
        return negate ? `NOT ${exists}` : exists;
      }
      default: {
        // A leaf may be NULL (missing value); WHERE treats that as false, so it is only a concern
        // under negation.
        const sql = this.leaf(n, ctx);
        if (sql === 'TRUE' || sql === 'FALSE') return (sql === 'TRUE') !== negate ? 'TRUE' : 'FALSE';
        return negate ? `NOT COALESCE(${sql}, FALSE)` : sql;
      }
    }
  }

  private any(n: Extract<Node, { t: 'any' }>): string {
    const relation = this.target.relations?.[n.coll.path];
    if (relation) {
      return `EXISTS (SELECT 1 FROM ${relation.table} ${relation.alias} WHERE ${relation.join} AND ${this.node(n.inner, false, { relation })})`;
    }
    const alias = `scim_e${++this.aliases}`;
    const { json } = this.json(this.target.resource, n.coll.keys);
    const objects = n.coll.complex ? `jsonb_typeof(${alias}.v) = 'object' AND ` : '';
    const inner = this.node(n.inner, false, { element: alias });
    return `EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof(${json}) = 'array' THEN ${json} END) AS ${alias}(v) WHERE ${objects}${inner})`;
  }

  private leaf(n: Extract<Node, { t: 'cmp' | 'pr' | 'obj' }>, ctx: Context): string {
    if (n.t === 'pr' && n.leaf.scope === 'root') {
      const relation = this.target.relations?.[n.leaf.path];
      if (relation) return `EXISTS (SELECT 1 FROM ${relation.table} ${relation.alias} WHERE ${relation.join})`;
    }
    const src = this.source(n.leaf, ctx);
    if (src.from === 'constant') {
      if (n.t === 'obj') return this.node(n.inner, false, ctx);
      const ok = n.t === 'pr' ? present(src.value) : compareValue(src.value, n.op, n.operand);
      return ok ? 'TRUE' : 'FALSE';
    }
    if (n.t === 'obj') {
      if (src.from !== 'json') throw invalidFilter(`"${n.leaf.path}[...]" cannot be used in a filter`);
      return `(jsonb_typeof(${src.json}) = 'object' AND ${this.node(n.inner, false, ctx)})`;
    }
    if (n.t === 'pr') return this.presence(src, n.leaf);
    return this.compare(src, n.leaf, n.op, n.operand);
  }

  private presence(src: Exclude<Source, { from: 'constant' }>, leaf: Leaf): string {
    switch (src.from) {
      case 'json':
        return `(jsonb_typeof(${src.json}) <> 'null' AND ${src.json} NOT IN ('""', '[]', '{}'))`;
      case 'relation':
        return `(${src.sql} IS NOT NULL AND ${src.sql} <> '')`;
      case 'column':
        return leaf.kind === 'text' ? `(${src.sql} IS NOT NULL AND ${src.sql} <> '')` : `${paren(src.sql)} IS NOT NULL`;
    }
  }

  private compare(src: Exclude<Source, { from: 'constant' }>, leaf: Leaf, op: CmpOp, o: Operand): string {
    switch (o.kind) {
      case 'text': {
        const text = src.from === 'json' ? src.text : src.sql;
        let value = o.value;
        if (op === 'co') value = `%${likeEscape(value)}%`;
        else if (op === 'sw') value = `${likeEscape(value)}%`;
        else if (op === 'ew') value = `%${likeEscape(value)}`;
        const p = this.param(value);
        const [l, r] = o.caseExact ? [paren(text), p] : [`lower(${text})`, `lower(${p})`];
        const collate = op === 'gt' || op === 'ge' || op === 'lt' || op === 'le' ? ' COLLATE "C"' : '';
        const cmp = `${l} ${SQL_OPS[op]} ${r}${collate}`;
        return src.from === 'json' ? `(${STRING_JSONB(src.json)} AND ${cmp})` : cmp;
      }
      case 'boolean':
        if (src.from === 'json') return `${src.json} = ${this.param(JSON.stringify(o.value))}::jsonb`;
        if (src.from === 'column') return `${paren(src.sql)} = ${this.param(o.value)}::boolean`;
        throw invalidFilter(`"${leaf.path}" cannot be compared in a filter`);
      case 'number':
        if (src.from === 'json') {
          return `CASE WHEN jsonb_typeof(${src.json}) = 'number' THEN (${src.json})::numeric END ${SQL_OPS[op]} ${this.param(String(o.value))}::numeric`;
        }
        if (src.from === 'column') return `${paren(src.sql)} ${SQL_OPS[op]} ${this.param(String(o.value))}::numeric`;
        throw invalidFilter(`"${leaf.path}" cannot be compared in a filter`);
      case 'dateTime':
        if (src.from === 'json') {
          const t = `upper(${src.text})`;
          const instant =
            `CASE WHEN ${STRING_JSONB(src.json)} AND ${t} ~ '${STORED_WITH_ZONE}' THEN ${t}::timestamptz ` +
            `WHEN ${STRING_JSONB(src.json)} AND ${t} ~ '${STORED_WITHOUT_ZONE}' THEN (${t} || 'Z')::timestamptz END`;
          return `${instant} ${SQL_OPS[op]} ${this.param(formatMicros(o.micros))}::timestamptz`;
        }
        if (src.from === 'column') return this.columnInstant(paren(src.sql), op, o.micros);
        throw invalidFilter(`"${leaf.path}" cannot be compared in a filter`);
    }
  }

  /**
   * Clients see a timestamp column truncated to milliseconds, so the comparison is made on that
   * value, rewritten into bounds on the raw column so its index still applies: for a millisecond
   * boundary K, trunc(col) >= K exactly when col >= K.
   */
  private columnInstant(col: string, op: CmpOp, v: bigint): string {
    const at = (micros: bigint): string => `${this.param(formatMicros(micros))}::timestamptz`;
    const floor = floorDiv(v, MS) * MS;
    const ceil = ceilDiv(v, MS) * MS;
    switch (op) {
      case 'gt':
        return `${col} >= ${at(floor + MS)}`;
      case 'ge':
        return `${col} >= ${at(ceil)}`;
      case 'lt':
        return `${col} < ${at(ceil)}`;
      case 'le':
        return `${col} < ${at(floor + MS)}`;
      default:
        return v === floor ? `(${col} >= ${at(v)} AND ${col} < ${at(v + MS)})` : 'FALSE';
    }
  }
}

/**
 * Translates a filter into a SQL boolean expression over `target`, appending every comparison value
 * to `params` (values never appear in the SQL text) and returning the expression. Equivalent to
 * {@link matchesFilter} on the rendered resource. Index-friendly where it matters: `userName eq "x"`
 * becomes `lower(u.user_name) = lower($n)`, `externalId eq` a plain column equality, `id eq`
 * `u.id::text = $n` (never a uuid cast that a non-UUID could break), multi-valued attributes and
 * relations EXISTS subqueries. Throws 400 invalidFilter for filters that cannot be answered.
 */
export function filterToSql(filter: Filter, target: SqlTarget, registry: SchemaRegistry, params: unknown[]): string {
  const node = analyze(filter, registry, target.resourceType);
  return new SqlWriter(target, params).node(node, false, {});
}

/**
 * The SQL expression to ORDER BY for a sortBy attribute path (RFC 7644 §3.4.2.3): strings that are
 * not caseExact lowered, text in code point order (`COLLATE "C"`, as filters compare), jsonb values
 * read with their type; for a multi-valued attribute the primary value, else the first one (the
 * smallest for a relation). The expression is NULL for resources without a value: callers add
 * NULLS LAST. Throws 400 invalidValue for an unknown or unsortable attribute.
 */
export function sortExpression(path: string, target: SqlTarget, registry: SchemaRegistry): string {
  const invalid = (why: string): ScimError => ScimError.badRequest('invalidValue', `sortBy ${show(path)} ${why}`);
  const r = resolvePath(registry, target.resourceType, path);
  if (!r) throw invalid(`is not an attribute of ${target.resourceType} resources`);
  if (!isReadable(r)) throw invalid('cannot be used for sorting');
  // Sort keys read columns and jsonb only: the writer is never asked for a parameter here.
  const writer = new SqlWriter(target, []);
  const key = (src: Source, def: AttributeDef): string => {
    const kind = kindOf(def);
    switch (src.from) {
      case 'column':
      case 'relation':
        return kind === 'text' ? `${def.caseExact ? paren(src.sql) : `lower(${src.sql})`} COLLATE "C"` : paren(src.sql);
      case 'json': {
        const typed = (type: string, value: string): string => `CASE WHEN jsonb_typeof(${src.json}) = '${type}' THEN ${value} END`;
        if (kind === 'boolean') return typed('boolean', `(${src.json})::boolean`);
        if (kind === 'number') return typed('number', `(${src.json})::numeric`);
        if (kind === 'dateTime') {
          const t = `upper(${src.text})`;
          return (
            `CASE WHEN ${STRING_JSONB(src.json)} AND ${t} ~ '${STORED_WITH_ZONE}' THEN ${t}::timestamptz ` +
            `WHEN ${STRING_JSONB(src.json)} AND ${t} ~ '${STORED_WITHOUT_ZONE}' THEN (${t} || 'Z')::timestamptz END`
          );
        }
        const text = typed('string', src.text);
        return def.caseExact ? `(${text}) COLLATE "C"` : `lower(${text}) COLLATE "C"`;
      }
      case 'constant':
        throw invalid('cannot be used for sorting');
    }
  };
  let sql: string;
  if (r.attribute.multiValued) {
    const sub = r.sub ?? (r.attribute.type === 'complex' ? r.attribute.subAttributes?.find((s) => s.name === 'value') : r.attribute);
    if (!sub) throw invalid('names a multi-valued attribute without a "value" sub-attribute; name a sub-attribute');
    const complex = r.attribute.type === 'complex';
    const element: Leaf = { path: complex ? `${r.attributePath}.${sub.name}` : r.attributePath, keys: complex ? [sub.name] : [], scope: 'element', def: sub, kind: kindOf(sub) };
    const relation = target.relations?.[r.attributePath];
    if (relation) {
      const k = key(writer.source(element, { relation }), sub);
      sql = `(SELECT min(${k}) FROM ${relation.table} ${relation.alias} WHERE ${relation.join})`;
    } else {
      const alias = 'scim_s';
      const k = key(writer.source(element, { element: alias }), sub);
      const list = writer.json(target.resource, r.attributeKeys).json;
      const primary = r.attribute.type === 'complex' ? `(${alias}.v->'primary' = 'true'::jsonb) IS TRUE DESC, ` : '';
      sql =
        `(SELECT ${k} FROM jsonb_array_elements(CASE WHEN jsonb_typeof(${list}) = 'array' THEN ${list} END) ` +
        `WITH ORDINALITY AS ${alias}(v, n) WHERE ${k} IS NOT NULL ORDER BY ${primary}${alias}.n LIMIT 1)`;
    }
  } else {
    const def = r.sub ?? r.attribute;
    if (def.type === 'complex') throw invalid('names a complex attribute; name one of its sub-attributes');
    const leaf: Leaf = { path: r.path, keys: r.keys, scope: 'root', def, kind: kindOf(def) };
    let src: Source;
    try {
      src = writer.source(leaf, {});
    } catch {
      throw invalid('cannot be used for sorting');
    }
    sql = key(src, def);
  }
  return sql;
}
