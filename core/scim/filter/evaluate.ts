/**
 * In-memory filter evaluation, RFC 7644 §3.4.2.2 (https://www.rfc-editor.org/rfc/rfc7644#section-3.4.2.2),
 * over rendered resources, with exactly the semantics of the SQL translation in ./sql.ts.
 */
import type { Filter } from 'scim2-parse-filter';
import type { SchemaRegistry } from '../schemas.js';
import { Analyzer, analyze, resolvePath, type CmpOp, type Leaf, type Node, type Operand, type ResourceType } from './analyze.js';
import { compareCodePoints, foldCase } from './collation.js';
import { parseStoredDateTime } from './datetime.js';
import { invalidFilter, show } from './errors.js';

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function getPath(from: unknown, keys: string[]): unknown {
  let cur = from;
  for (const k of keys) {
    if (!isObject(cur) || !Object.hasOwn(cur, k)) return undefined;
    cur = cur[k];
  }
  return cur;
}

/** Whether a value counts as present for `pr`: not missing, null, "", [] or {}. */
export function present(v: unknown): boolean {
  if (v === undefined || v === null || v === '') return false;
  if (Array.isArray(v)) return v.length > 0;
  if (isObject(v)) return Object.keys(v).length > 0;
  return true;
}

function compareOrdered(c: number, op: CmpOp): boolean {
  switch (op) {
    case 'gt':
      return c > 0;
    case 'ge':
      return c >= 0;
    case 'lt':
      return c < 0;
    case 'le':
      return c <= 0;
    default:
      return c === 0;
  }
}

/** Compares one stored value with a comparison's operand; a value of the wrong type never matches. */
export function compareValue(x: unknown, op: CmpOp, o: Operand): boolean {
  switch (o.kind) {
    case 'text': {
      if (typeof x !== 'string') return false;
      const a = o.caseExact ? x : foldCase(x);
      const b = o.caseExact ? o.value : foldCase(o.value);
      if (op === 'co') return a.includes(b);
      if (op === 'sw') return a.startsWith(b);
      if (op === 'ew') return a.endsWith(b);
      return compareOrdered(compareCodePoints(a, b), op);
    }
    case 'boolean':
      return typeof x === 'boolean' && x === o.value;
    case 'number':
      return typeof x === 'number' && Number.isFinite(x) && compareOrdered(x < o.value ? -1 : x > o.value ? 1 : 0, op);
    case 'dateTime': {
      const t = parseStoredDateTime(x);
      return t !== undefined && compareOrdered(t < o.micros ? -1 : t > o.micros ? 1 : 0, op);
    }
  }
}

function evaluate(n: Node, root: unknown, element: unknown): boolean {
  switch (n.t) {
    case 'and':
      return n.items.every((c) => evaluate(c, root, element));
    case 'or':
      return n.items.some((c) => evaluate(c, root, element));
    case 'not':
      return !evaluate(n.item, root, element);
    case 'cmp':
      return compareValue(readLeaf(n.leaf, root, element), n.op, n.operand);
    case 'pr':
      return present(readLeaf(n.leaf, root, element));
    case 'any': {
      const list = getPath(root, n.coll.keys);
      if (!Array.isArray(list)) return false;
      return list.some((e) => (!n.coll.complex || isObject(e)) && evaluate(n.inner, root, e));
    }
    case 'obj':
      return isObject(readLeaf(n.leaf, root, element)) && evaluate(n.inner, root, element);
  }
}

function readLeaf(leaf: Leaf, root: unknown, element: unknown): unknown {
  return leaf.scope === 'root' ? getPath(root, leaf.keys) : leaf.keys.length === 0 ? element : getPath(element, leaf.keys);
}

/**
 * Evaluates a filter over a rendered SCIM resource (canonical attribute names; `id`; `meta` with
 * ISO 8601 `created` / `lastModified`; Groups with `members`), with exactly the semantics of
 * {@link filterToSql}. Throws 400 invalidFilter for filters that cannot be answered.
 */
export function matchesFilter(filter: Filter, resource: Record<string, unknown>, registry: SchemaRegistry, resourceType: ResourceType): boolean {
  return evaluate(analyze(filter, registry, resourceType), resource, undefined);
}

/**
 * Evaluates the value filter of a PATCH path (`emails[type eq "work"]`, RFC 7644 §3.5.2) over one
 * element of the multi-valued attribute `attributePath`: names in the filter are its
 * sub-attributes. Same semantics as {@link matchesFilter}.
 */
export function matchesElement(
  filter: Filter,
  attributePath: string,
  element: unknown,
  registry: SchemaRegistry,
  resourceType: ResourceType,
): boolean {
  const parent = resolvePath(registry, resourceType, attributePath);
  if (!parent || parent.sub || parent.attribute.type !== 'complex') {
    throw invalidFilter(`${show(attributePath)} is not a complex attribute of ${resourceType} resources`);
  }
  const node = new Analyzer(registry, resourceType).node(filter, 0, { parent, elementScope: true });
  return isObject(element) && evaluate(node, undefined, element);
}
