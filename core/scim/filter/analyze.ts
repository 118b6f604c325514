/**
 * Filter analysis, RFC 7644 §3.4.2.2 (https://www.rfc-editor.org/rfc/rfc7644#section-3.4.2.2): the
 * parsed filter resolved against the schema registry, operators checked against attribute types and
 * comparison values normalized once, shared by SQL translation and in-memory evaluation so both
 * accept and reject exactly the same filters.
 */
import type { Filter } from 'scim2-parse-filter';
import { attr, type AttributeDef, type SchemaRegistry } from '../schemas.js';
import { formatMicros, parseDateTimeValue } from './datetime.js';
import { invalidFilter, show } from './errors.js';
import { JSON_NUMBER, MAX_FILTER_DEPTH } from './parse.js';

/** The resource types a filter is resolved for. */
export type ResourceType = 'User' | 'Group';

/** How values of an attribute compare. */
export type Kind = 'text' | 'boolean' | 'number' | 'dateTime' | 'complex';
/** Comparison operators after analysis: `ne` has become `not (eq)`. */
export type CmpOp = 'eq' | 'co' | 'sw' | 'ew' | 'gt' | 'ge' | 'lt' | 'le';

/** One attribute value a filter reads. */
export interface Leaf {
  /** Canonical path from the resource root: `userName`, `name.givenName`, `emails.value`, `urn:…:User:manager.value`. */
  path: string;
  /** JSON keys leading to the value: from the resource (root scope) or from one element of a multi-valued attribute (element scope; none for the element itself). */
  keys: string[];
  scope: 'root' | 'element';
  def: AttributeDef;
  kind: Kind;
}

/** A multi-valued attribute whose elements a node ranges over. */
export interface Collection {
  path: string;
  keys: string[];
  complex: boolean;
}

/** A comparison value normalized for the attribute it is compared with. */
export type Operand =
  | { kind: 'text'; value: string; caseExact: boolean }
  | { kind: 'boolean'; value: boolean }
  | { kind: 'number'; value: number }
  | { kind: 'dateTime'; micros: bigint };

/** An analyzed filter: what the SQL writer and the in-memory evaluator both walk. */
export type Node =
  | { t: 'and' | 'or'; items: Node[] }
  | { t: 'not'; item: Node }
  | { t: 'cmp'; leaf: Leaf; op: CmpOp; operand: Operand }
  | { t: 'pr'; leaf: Leaf }
  /** Some element of a multi-valued attribute satisfies `inner`. */
  | { t: 'any'; coll: Collection; inner: Node }
  /** A single-valued complex attribute is an object and satisfies `inner` (whose leaves are root-scoped). */
  | { t: 'obj'; leaf: Leaf; inner: Node };

/** An attribute path resolved from the resource root. */
export interface Resolved {
  /** Canonical path and JSON keys of what the path names (the sub-attribute when there is one). */
  path: string;
  keys: string[];
  /** Canonical path and JSON keys of the top-level attribute alone. */
  attributePath: string;
  attributeKeys: string[];
  attribute: AttributeDef;
  sub?: AttributeDef;
}

// `schemas` is not in any schema's attribute list, yet clients filter on it (RFC 7644 §3.4.2.2).
const SCHEMAS_ATTRIBUTE = attr('schemas', { multiValued: true, caseExact: false });

/** The comparison kind of an attribute definition. */
export function kindOf(def: AttributeDef): Kind {
  switch (def.type) {
    case 'boolean':
      return 'boolean';
    case 'integer':
    case 'decimal':
      return 'number';
    case 'dateTime':
      return 'dateTime';
    case 'complex':
      return 'complex';
    default:
      return 'text';
  }
}

/** Resolves an attribute path for a resource type (`schemas` included); undefined when unknown. */
export function resolvePath(registry: SchemaRegistry, rt: ResourceType, path: string): Resolved | undefined {
  if (path.toLowerCase() === 'schemas') {
    return { path: 'schemas', keys: ['schemas'], attributePath: 'schemas', attributeKeys: ['schemas'], attribute: SCHEMAS_ATTRIBUTE };
  }
  const r = registry.resolve(rt, path);
  if (!r) return undefined;
  const attributeKeys = r.extension && r.schema ? [r.schema, r.attribute.name] : [r.attribute.name];
  const attributePath = r.extension && r.schema ? `${r.schema}:${r.attribute.name}` : r.attribute.name;
  if (!r.subAttribute) return { path: r.path, keys: attributeKeys, attributePath, attributeKeys, attribute: r.attribute };
  return { path: r.path, keys: [...attributeKeys, r.subAttribute.name], attributePath, attributeKeys, attribute: r.attribute, sub: r.subAttribute };
}

/** Whether a resolved path may be filtered or sorted on: nothing along it is `returned: never`. */
export function isReadable(r: Resolved): boolean {
  return r.attribute.returned !== 'never' && r.sub?.returned !== 'never';
}

const MAX_TREE_DEPTH = 2 * MAX_FILTER_DEPTH + 10;

/** Turns a parsed filter into a {@link Node} for one resource type, throwing 400 invalidFilter. */
export class Analyzer {
  constructor(
    private readonly registry: SchemaRegistry,
    private readonly rt: ResourceType,
  ) {}

  private resolve(path: unknown): Resolved {
    if (typeof path !== 'string' || path === '') throw invalidFilter('a filter expression has no attribute path');
    const r = resolvePath(this.registry, this.rt, path);
    if (!r) throw invalidFilter(`unknown attribute ${show(path)} for ${this.rt} resources`);
    if (!isReadable(r)) throw invalidFilter(`attribute "${r.path}" cannot be used in a filter`);
    return r;
  }

  /** Resolves a name inside `parent[...]` to a sub-attribute of parent. */
  private resolveSub(parent: Resolved, name: unknown): AttributeDef {
    if (typeof name !== 'string' || name === '') throw invalidFilter(`an expression inside "${parent.path}[...]" has no attribute name`);
    if (name.includes('.') || name.includes(':')) {
      throw invalidFilter(`inside "${parent.path}[...]" name sub-attributes of "${parent.path}" alone (such as "value"), not ${show(name)}`);
    }
    const r = resolvePath(this.registry, this.rt, `${parent.path}.${name}`);
    if (!r?.sub) throw invalidFilter(`"${parent.path}" has no sub-attribute ${show(name)}`);
    if (!isReadable(r)) throw invalidFilter(`attribute "${r.path}" cannot be used in a filter`);
    return r.sub;
  }

  /**
   * The node for a filter. Inside a value filter `within` is the complex attribute; `elementScope`
   * says whether leaves are read from each element (multi-valued) or from the resource root.
   */
  node(f: unknown, depth: number, within?: { parent: Resolved; elementScope: boolean }): Node {
    if (depth > MAX_TREE_DEPTH) throw invalidFilter(`the filter nests more than ${MAX_FILTER_DEPTH} levels deep`);
    if (typeof f !== 'object' || f === null) throw invalidFilter('malformed filter expression');
    const e = f as Record<string, unknown>;
    const op = e.op;
    switch (op) {
      case 'and':
      case 'or': {
        if (!Array.isArray(e.filters) || e.filters.length === 0) throw invalidFilter(`"${op}" needs operands`);
        return { t: op, items: (e.filters as unknown[]).map((c) => this.node(c, depth + 1, within)) };
      }
      case 'not':
        return { t: 'not', item: this.node(e.filter, depth + 1, within) };
      case '[]': {
        if (within) throw invalidFilter(`value filters cannot be nested (inside "${within.parent.path}[...]")`);
        const r = this.resolve(e.attrPath);
        if (r.sub || r.attribute.type !== 'complex') {
          throw invalidFilter(`"${r.path}[...]" needs a complex attribute such as "emails" or "name"`);
        }
        const inner = this.node(e.valFilter, depth + 1, { parent: r, elementScope: r.attribute.multiValued });
        if (r.attribute.multiValued) return { t: 'any', coll: { path: r.path, keys: r.keys, complex: true }, inner };
        return { t: 'obj', leaf: this.rootLeaf(r, r.attribute), inner };
      }
      case 'pr':
        return this.presence(e.attrPath, within);
      case 'eq':
      case 'ne':
      case 'co':
      case 'sw':
      case 'ew':
      case 'gt':
      case 'ge':
      case 'lt':
      case 'le': {
        const node = this.compare(e.attrPath, op === 'ne' ? 'eq' : op, e.compValue, within);
        // ne is the negation of eq, so it also holds where the attribute has no value.
        return op === 'ne' ? { t: 'not', item: node } : node;
      }
      default:
        throw invalidFilter(`unknown filter operator ${show(String(op))}`);
    }
  }

  private rootLeaf(r: Resolved, def: AttributeDef): Leaf {
    return { path: r.path, keys: r.keys, scope: 'root', def, kind: kindOf(def) };
  }

  private subLeaf(parent: Resolved, sub: AttributeDef, elementScope: boolean): Leaf {
    return {
      path: `${parent.attributePath}.${sub.name}`,
      keys: elementScope ? [sub.name] : [...parent.attributeKeys, sub.name],
      scope: elementScope ? 'element' : 'root',
      def: sub,
      kind: kindOf(sub),
    };
  }

  private collection(r: Resolved): Collection {
    return { path: r.attributePath, keys: r.attributeKeys, complex: r.attribute.type === 'complex' };
  }

  /** The leaf a comparison on a multi-valued attribute reads from each element. */
  private elementValue(r: Resolved): Leaf {
    if (r.attribute.type !== 'complex') {
      return { path: r.attributePath, keys: [], scope: 'element', def: r.attribute, kind: kindOf(r.attribute) };
    }
    const value = r.attribute.subAttributes?.find((s) => s.name === 'value');
    if (!value) throw invalidFilter(`"${r.path}" has no "value" sub-attribute; compare one of its sub-attributes`);
    return this.subLeaf(r, value, true);
  }

  private presence(path: unknown, within: { parent: Resolved; elementScope: boolean } | undefined): Node {
    if (within) return { t: 'pr', leaf: this.subLeaf(within.parent, this.resolveSub(within.parent, path), within.elementScope) };
    const r = this.resolve(path);
    if (r.sub && r.attribute.multiValued) {
      return { t: 'any', coll: this.collection(r), inner: { t: 'pr', leaf: this.subLeaf(r, r.sub, true) } };
    }
    return { t: 'pr', leaf: this.rootLeaf(r, r.sub ?? r.attribute) };
  }

  private compare(path: unknown, op: CmpOp, raw: unknown, within: { parent: Resolved; elementScope: boolean } | undefined): Node {
    if (within) {
      const leaf = this.subLeaf(within.parent, this.resolveSub(within.parent, path), within.elementScope);
      return { t: 'cmp', leaf, op, operand: operand(leaf, op, raw) };
    }
    const r = this.resolve(path);
    if (r.attribute.multiValued) {
      const leaf = r.sub ? this.subLeaf(r, r.sub, true) : this.elementValue(r);
      return { t: 'any', coll: this.collection(r), inner: { t: 'cmp', leaf, op, operand: operand(leaf, op, raw) } };
    }
    const leaf = this.rootLeaf(r, r.sub ?? r.attribute);
    return { t: 'cmp', leaf, op, operand: operand(leaf, op, raw) };
  }
}

function operand(leaf: Leaf, op: CmpOp, raw: unknown): Operand {
  const where = `"${leaf.path}"`;
  if (raw === null || raw === undefined) {
    throw invalidFilter(`${where} cannot be compared with null; use "not (${leaf.path} pr)" to find resources without a value`);
  }
  const ordering = op === 'gt' || op === 'ge' || op === 'lt' || op === 'le';
  const substring = op === 'co' || op === 'sw' || op === 'ew';
  switch (leaf.kind) {
    case 'complex':
      throw invalidFilter(`${where} is a complex attribute; compare one of its sub-attributes`);
    case 'text':
      if (ordering && leaf.def.type === 'binary') throw invalidFilter(`operator "${op}" cannot be used with binary attribute ${where}`);
      // Unquoted numbers and literals sent for a string attribute mean their spelling.
      if (typeof raw === 'string' || typeof raw === 'number' || typeof raw === 'boolean') {
        return { kind: 'text', value: String(raw), caseExact: leaf.def.caseExact };
      }
      break;
    case 'boolean':
      if (op !== 'eq') throw invalidFilter(`operator "${op}" cannot be used with boolean attribute ${where}; use eq, ne or pr`);
      if (typeof raw === 'boolean') return { kind: 'boolean', value: raw };
      // Entra ID sends booleans as strings, in any case.
      if (typeof raw === 'string' && /^(true|false)$/i.test(raw)) return { kind: 'boolean', value: raw.toLowerCase() === 'true' };
      throw invalidFilter(`${where} is a boolean; compare it with true or false, not ${JSON.stringify(raw)}`);
    case 'number':
      if (substring) throw invalidFilter(`operator "${op}" cannot be used with numeric attribute ${where}`);
      if (typeof raw === 'number' && Number.isFinite(raw)) return { kind: 'number', value: raw };
      if (typeof raw === 'string' && JSON_NUMBER.test(raw.trim())) return { kind: 'number', value: Number(raw.trim()) };
      throw invalidFilter(`${where} is numeric; compare it with a number, not ${JSON.stringify(raw)}`);
    case 'dateTime': {
      if (substring) throw invalidFilter(`operator "${op}" cannot be used with dateTime attribute ${where}`);
      const micros = typeof raw === 'string' ? parseDateTimeValue(raw) : undefined;
      if (micros === undefined) {
        throw invalidFilter(`${where} is a dateTime; compare it with an ISO 8601 date-time such as "2011-05-13T04:42:34Z", not ${JSON.stringify(raw)}`);
      }
      formatMicros(micros); // range check: the value must be expressible to PostgreSQL
      return { kind: 'dateTime', micros };
    }
  }
  throw invalidFilter(`${where} cannot be compared with ${JSON.stringify(raw)}`);
}

/** Resolves and checks a filter for a resource type; throws 400 invalidFilter as parseFilter does. */
export function analyze(filter: Filter, registry: SchemaRegistry, resourceType: ResourceType): Node {
  return new Analyzer(registry, resourceType).node(filter, 0);
}
