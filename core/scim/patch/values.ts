/**
 * Attribute values in PATCH operations, RFC 7644 §3.5.2 (https://www.rfc-editor.org/rfc/rfc7644#section-3.5.2): type checks and
 * normalization against the schema, equality as SCIM defines it (RFC 7643 §2.5 unassigned values,
 * caseExact), and an index for finding equal elements of a multi-valued attribute.
 */
import { ScimError } from '../errors.js';
import { foldCase } from '../filter/index.js';
import { isDateTime } from '../resource.js';
import type { AttributeDef } from '../schemas.js';

/** A JSON object: a resource, a complex value or an element of a multi-valued complex attribute. */
export type Obj = Record<string, unknown>;

/** Whether a value is a JSON object (not null, not an array). */
export function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Unassigned in the sense of RFC 7643 §2.5: absent, null, an empty array or an empty complex value. */
export function isUnassigned(v: unknown): boolean {
  return v === undefined || v === null || (Array.isArray(v) && v.length === 0) || (isObject(v) && Object.keys(v).length === 0);
}

/** Structural equality of JSON values; member order and members that are undefined do not matter. */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  if (isObject(a) && isObject(b)) {
    const ka = Object.keys(a).filter((k) => a[k] !== undefined);
    const kb = Object.keys(b).filter((k) => b[k] !== undefined);
    return ka.length === kb.length && ka.every((k) => deepEqual(a[k], b[k]));
  }
  return false;
}

/** Equality of two values of one attribute: strings compare case-insensitively unless the attribute is caseExact. */
export function sameValue(def: AttributeDef | undefined, a: unknown, b: unknown): boolean {
  if (typeof a === 'string' && typeof b === 'string' && def && !def.caseExact && def.type !== 'binary') {
    return a === b || foldCase(a) === foldCase(b);
  }
  return deepEqual(a, b);
}

/** A key under which equal values (in the sense of {@link sameValue}) collide; undefined for complex values. */
function valueKey(def: AttributeDef | undefined, v: unknown): string | undefined {
  if (typeof v === 'string') return def && !def.caseExact && def.type !== 'binary' ? `s${foldCase(v)}` : `s${v}`;
  if (typeof v === 'number' || typeof v === 'boolean') return `${typeof v}${String(v)}`;
  return undefined;
}

/**
 * The values of a multi-valued attribute indexed by their `value` (by themselves when they are
 * not complex), so that adding or removing many members of a large group stays linear.
 */
export class ValueIndex {
  private readonly byKey = new Map<string, unknown[]>();
  /** Elements without an indexable value: always compared. */
  private readonly rest: unknown[] = [];
  private readonly def: AttributeDef | undefined;

  constructor(
    private readonly attr: AttributeDef,
    list: unknown[],
  ) {
    this.def = attr.subAttributes ? subDef(attr, 'value') : attr;
    for (const el of list) this.add(el);
  }

  private keyOf(el: unknown): string | undefined {
    return valueKey(this.def, this.attr.subAttributes ? (isObject(el) ? el.value : undefined) : el);
  }

  add(el: unknown): void {
    const key = this.keyOf(el);
    if (key === undefined) {
      this.rest.push(el);
      return;
    }
    const bucket = this.byKey.get(key);
    if (bucket) bucket.push(el);
    else this.byKey.set(key, [el]);
  }

  /** The elements that may equal `el`: same value, or no indexable value. */
  candidates(el: unknown): unknown[] {
    const key = this.keyOf(el);
    if (key === undefined) return [...this.byKey.values()].flat().concat(this.rest);
    return (this.byKey.get(key) ?? []).concat(this.rest);
  }
}

/** A sub-attribute of a complex attribute by name, case-insensitively. */
export function subDef(attr: AttributeDef, name: string): AttributeDef | undefined {
  return attr.subAttributes?.find((s) => s.name.toLowerCase() === name.toLowerCase());
}

/** A short rendering of a client value for an error detail. */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v)}`;
}

/** A 400 invalidValue error saying what attribute `path` expects and what it got. */
export function invalidValue(path: string, expected: string, got: unknown): ScimError {
  return ScimError.badRequest('invalidValue', `Attribute "${path}" expects ${expected}; got ${describe(got)}.`);
}

/**
 * Normalizes a value for a whole attribute: arrays for multi-valued attributes (a single value is
 * wrapped), a single value otherwise (a one-element array is unwrapped). `null` is kept: it means
 * "unassign" (RFC 7643 §2.5).
 */
export function normalizeAttr(def: AttributeDef, value: unknown, path: string): unknown {
  if (value === null) return null;
  if (def.multiValued) {
    const items = Array.isArray(value) ? value : [value];
    return items.filter((v) => v !== null).map((v) => normalizeSingle(def, v, path));
  }
  if (Array.isArray(value)) {
    if (value.length !== 1) throw invalidValue(path, 'a single value', value);
    return normalizeSingle(def, value[0], path);
  }
  return normalizeSingle(def, value, path);
}

/** Normalizes one value (one element, for a multi-valued attribute) and checks its type against the schema. */
export function normalizeSingle(def: AttributeDef, value: unknown, path: string): unknown {
  if (value === null) return null;
  switch (def.type) {
    case 'complex': {
      if (isObject(value)) {
        const out: Obj = {};
        for (const [key, v] of Object.entries(value)) {
          const sd = subDef(def, key);
          if (!sd) throw ScimError.badRequest('invalidPath', `Attribute "${path}" has no sub-attribute "${key}".`);
          out[sd.name] = normalizeAttr(sd, v, `${path}.${sd.name}`);
        }
        return out;
      }
      // A reference given as its bare value: Entra ID sends the enterprise manager as a string.
      const valueDef = subDef(def, 'value');
      if (valueDef && !Array.isArray(value)) return { value: normalizeSingle(valueDef, value, `${path}.value`) };
      throw invalidValue(path, 'a complex value (an object)', value);
    }
    case 'boolean':
      if (typeof value === 'boolean') return value;
      // Entra ID sends booleans as "True" / "False".
      if (typeof value === 'string' && /^(true|false)$/i.test(value.trim())) return value.trim().toLowerCase() === 'true';
      throw invalidValue(path, 'a boolean', value);
    case 'integer':
      if (typeof value === 'number' && Number.isInteger(value)) return value;
      throw invalidValue(path, 'an integer', value);
    case 'decimal':
      if (typeof value === 'number' && Number.isFinite(value)) return value;
      throw invalidValue(path, 'a number', value);
    case 'dateTime':
      if (typeof value === 'string' && isDateTime(value)) return value;
      throw invalidValue(path, 'an xsd:dateTime string such as 2024-01-31T12:00:00Z', value);
    default:
      if (typeof value === 'string') return value;
      throw invalidValue(path, 'a string', value);
  }
}

/** Drops `null` members, which in a new value mean "not given". */
export function withoutNulls(v: Obj): Obj {
  const out: Obj = {};
  for (const [k, x] of Object.entries(v)) if (x !== null && x !== undefined) out[k] = x;
  return out;
}
