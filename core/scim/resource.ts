/**
 * Validation and canonical form of client-supplied Users and Groups (RFC 7643 §2, §3, §4; RFC 7644
 * §3.3, §3.5.1). Every write path (POST, PUT, the result of a PATCH, Bulk) goes through
 * {@link normalizeResource}, so what is stored always has the same shape whatever casing, quirks
 * or server-owned attributes the client sent.
 */
import { ScimError } from './errors.js';
import { MAX_INDEXED_VALUE_BYTES, MAX_VALUE_BYTES, type AttributeDef, type SchemaRegistry } from './schemas.js';

export interface ResourceContext {
  registry: SchemaRegistry;
  resourceType: 'User' | 'Group';
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function invalidValue(detail: string): ScimError {
  return ScimError.badRequest('invalidValue', detail);
}

function invalidSyntax(detail: string): ScimError {
  return ScimError.badRequest('invalidSyntax', detail);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  return `the ${typeof v} ${JSON.stringify(v) ?? String(typeof v)}`;
}

function findCi<T extends { name: string }>(defs: T[] | undefined, name: string): T | undefined {
  const lower = name.toLowerCase();
  return defs?.find((d) => d.name.toLowerCase() === lower);
}

// xsd:dateTime as RFC 7643 §2.3.5 requires: date, "T", time, optional fraction and offset.
const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-](\d{2}):(\d{2}))?$/i;

export function isDateTime(v: string): boolean {
  const m = DATE_TIME.exec(v);
  if (!m) return false;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return false;
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  if (day > daysInMonth) return false;
  if (m[9] !== undefined && (Number(m[9]) > 14 || Number(m[10]) > 59)) return false;
  return true;
}


/** Top-level attributes with an index behind them, by resource type (`externalId` is common to both). */
const INDEXED: Record<ResourceContext['resourceType'], ReadonlySet<string>> = {
  User: new Set(['userName', 'externalId']),
  Group: new Set(['displayName', 'externalId']),
};

const LONE_SURROGATE = /\p{Cs}/u;

/**
 * The longest value `path` may hold, in UTF-8 bytes; advertised in the attribute's description in
 * /Schemas and in docs/scim-compatibility.md.
 */
export function maxValueBytes(resourceType: ResourceContext['resourceType'], path: string): number {
  return INDEXED[resourceType].has(path) ? MAX_INDEXED_VALUE_BYTES : MAX_VALUE_BYTES;
}

/**
 * Refuses a string PostgreSQL cannot store or index: NUL (text and jsonb have no place for it), an
 * unpaired UTF-16 surrogate (not valid Unicode, refused by jsonb), or a value over its length
 * limit. Filters refuse the same characters (core/scim/filter/parse.ts), so what can be searched for
 * and what can be stored agree.
 */
function storableString(v: string, path: string, ctx: ResourceContext): string {
  if (v.includes('\u0000') || LONE_SURROGATE.test(v)) {
    throw invalidValue(`"${path}" contains characters that cannot be stored (NUL or an unpaired surrogate)`);
  }
  const max = maxValueBytes(ctx.resourceType, path);
  // A UTF-16 code unit is at most 3 bytes of UTF-8, so short strings need no count.
  if (v.length * 3 > max && Buffer.byteLength(v, 'utf8') > max) {
    throw invalidValue(`"${path}" is ${Buffer.byteLength(v, 'utf8')} bytes long (UTF-8); at most ${max} are accepted`);
  }
  return v;
}

/** A simple (non-complex) value checked against its type; Entra's "True"/"False" become booleans. */
function simpleValue(def: AttributeDef, v: unknown, path: string, ctx: ResourceContext): unknown {
  switch (def.type) {
    case 'boolean':
      if (typeof v === 'boolean') return v;
      // Microsoft Entra ID sends booleans as the strings "True" and "False".
      if (typeof v === 'string' && /^(true|false)$/i.test(v)) return v.toLowerCase() === 'true';
      throw invalidValue(`"${path}" must be a boolean, got ${describe(v)}`);
    case 'integer':
      if (typeof v === 'number' && Number.isSafeInteger(v)) return v;
      throw invalidValue(`"${path}" must be an integer, got ${describe(v)}`);
    case 'decimal':
      if (typeof v === 'number' && Number.isFinite(v)) return v;
      throw invalidValue(`"${path}" must be a number, got ${describe(v)}`);
    case 'dateTime':
      if (typeof v === 'string' && isDateTime(v)) return v;
      throw invalidValue(`"${path}" must be an ISO 8601 date-time such as 2024-01-31T12:00:00Z, got ${describe(v)}`);
    case 'string':
    case 'reference':
    case 'binary':
      if (typeof v === 'string') return storableString(v, path, ctx);
      throw invalidValue(`"${path}" must be a string, got ${describe(v)}`);
    case 'complex':
      // Handled by complexValue; reaching here means a schema without sub-attributes, whose
      // free-form content must still be storable.
      if (isObject(v)) {
        const stack: Array<[unknown, string]> = [[v, path]];
        while (stack.length > 0) {
          const [item, where] = stack.pop()!;
          if (typeof item === 'string') storableString(item, where, ctx);
          else if (typeof item === 'object' && item !== null) {
            for (const [k, sub] of Object.entries(item)) stack.push([k, where], [sub, `${where}.${k}`]);
          }
        }
        return v;
      }
      throw invalidValue(`"${path}" must be an object, got ${describe(v)}`);
  }
}

/**
 * One complex value: sub-attribute names made canonical, each sub-value checked, readOnly and
 * writeOnly sub-attributes dropped. Returns undefined when nothing is left (RFC 7643 §2.5: an
 * empty value is the same as no value).
 */
function complexValue(def: AttributeDef, v: unknown, path: string, ctx: ResourceContext): Json | undefined {
  let input = v;
  // Entra ID sets the enterprise `manager` to the manager's id as a bare string; a single-valued
  // complex attribute with a `value` sub-attribute takes such a string as `{ value }`.
  if (typeof input === 'string' && !def.multiValued && findCi(def.subAttributes, 'value')) input = { value: input };
  if (!isObject(input)) throw invalidValue(`"${path}" must be an object, got ${describe(input)}`);
  const out: Json = {};
  const given = new Set<string>();
  for (const [key, raw] of Object.entries(input)) {
    const sub = findCi(def.subAttributes, key);
    if (!sub) throw invalidSyntax(`unknown attribute "${path}.${key}"`);
    if (given.has(sub.name)) throw invalidSyntax(`attribute "${path}.${sub.name}" is given more than once`);
    given.add(sub.name);
    if (sub.mutability === 'readOnly') continue;
    const value = attributeValue(sub, raw, `${path}.${sub.name}`, ctx);
    if (value !== undefined && sub.mutability !== 'writeOnly') out[sub.name] = value;
  }
  if (Object.keys(out).length === 0) return undefined;
  for (const sub of def.subAttributes ?? []) {
    if (sub.required && sub.mutability !== 'readOnly' && sub.mutability !== 'writeOnly' && isEmpty(out[sub.name])) {
      throw invalidValue(`"${path}.${sub.name}" is required`);
    }
  }
  return out;
}

function singleValue(def: AttributeDef, v: unknown, path: string, ctx: ResourceContext): unknown {
  if (def.type === 'complex' && def.subAttributes) return complexValue(def, v, path, ctx);
  return simpleValue(def, v, path, ctx);
}

/** A value for `def`, multi-valued or not; undefined means "no value" (null, [] or an emptied object). */
function attributeValue(def: AttributeDef, v: unknown, path: string, ctx: ResourceContext): unknown {
  if (v === null || v === undefined) return undefined;
  if (!def.multiValued) {
    if (Array.isArray(v)) {
      // Some clients wrap single values in a list; one element is unambiguous, more are not.
      if (v.length === 0) return undefined;
      if (v.length > 1) throw invalidValue(`"${path}" is single-valued, got an array of ${v.length} values`);
      const only: unknown = v[0];
      if (Array.isArray(only)) throw invalidValue(`"${path}" is single-valued, got nested arrays`);
      return only === null || only === undefined ? undefined : singleValue(def, only, path, ctx);
    }
    return singleValue(def, v, path, ctx);
  }
  let list: unknown[];
  if (Array.isArray(v)) list = v;
  // A client that sends one object for a multi-valued complex attribute means a list of one.
  else if (def.type === 'complex' && isObject(v)) list = [v];
  else throw invalidValue(`"${path}" is multi-valued and must be an array, got ${describe(v)}`);
  const out: unknown[] = [];
  list.forEach((item, i) => {
    if (item === null || item === undefined) throw invalidValue(`"${path}[${i}]" must not be null`);
    if (Array.isArray(item)) throw invalidValue(`"${path}[${i}]" must not be an array`);
    const value = singleValue(def, item, `${path}[${i}]`, ctx);
    if (value !== undefined) out.push(value);
  });
  if (def.type === 'complex') {
    const primaries = out.filter((item) => isObject(item) && item.primary === true).length;
    if (primaries > 1) throw invalidValue(`"${path}" has ${primaries} values with "primary": true; at most one is allowed`);
  }
  return out.length > 0 ? out : undefined;
}

function isEmpty(v: unknown): boolean {
  return v === undefined || v === null || (typeof v === 'string' && v.trim() === '') || (Array.isArray(v) && v.length === 0);
}

/** Group members: every member names the resource by id; `type` is User or Group in any casing. */
function checkMembers(members: unknown): void {
  if (!Array.isArray(members)) return;
  members.forEach((m, i) => {
    const member = m as Json;
    if (typeof member.value !== 'string' || member.value.trim() === '') {
      throw invalidValue(`"members[${i}].value" is required: the id of the member User or Group`);
    }
    if (member.type !== undefined) {
      const type = typeof member.type === 'string' ? member.type.toLowerCase() : undefined;
      if (type !== 'user' && type !== 'group') {
        throw invalidValue(`"members[${i}].type" must be "User" or "Group", got ${describe(member.type)}`);
      }
      member.type = type === 'user' ? 'User' : 'Group';
    }
  });
}

/**
 * Validates a client-supplied User or Group body (POST, PUT, or the result of a PATCH) against the
 * registry and returns it in canonical form:
 *
 * - attribute and sub-attribute names in their canonical case (RFC 7643 §2.1: names are
 *   case-insensitive); extension attributes under their extension URN key, also when the client
 *   spelled the URN in another case or sent a URN-qualified attribute name as a key;
 * - `schemas` is the core schema followed by exactly the extensions that have data, in the order
 *   the resource type declares them;
 * - readOnly attributes and sub-attributes (id, meta, groups, manager.displayName) are dropped
 *   unchecked: RFC 7643 §2.2 says a client's readOnly values are ignored;
 * - writeOnly attributes (`password`) are checked and dropped: they are never stored;
 * - null, `[]` and objects left empty are dropped (RFC 7643 §2.5: equivalent to unassigned);
 * - "True"/"False" strings on boolean attributes become booleans (Microsoft Entra ID);
 * - a single object for a multi-valued complex attribute becomes a list of one, a one-element
 *   array for a single-valued attribute becomes its element, and a bare
 *   string for a single-valued complex attribute with a `value` sub-attribute becomes `{ value }`
 *   (Entra's `manager`);
 * - Group members each need a string `value`; their `type`, when given, becomes "User" or "Group".
 *
 * canonicalValues are not enforced: clients send custom `type` labels.
 *
 * @throws ScimError 400 invalidSyntax: not an object; `schemas` missing, not a list of strings, without
 *   the core schema, or naming a schema this resource type does not have; an unknown attribute or
 *   sub-attribute; the same attribute twice (in different casings).
 * @throws ScimError 400 invalidValue: a value of the wrong type (including an object or array where
 *   the schema has a simple value, or a multi-valued attribute given a non-array); a dateTime that
 *   is not ISO 8601; a required attribute missing or empty (userName, Group displayName, required
 *   extension attributes or extensions); more than one `primary: true` in a multi-valued attribute.
 */
export function normalizeResource(input: unknown, ctx: ResourceContext): Record<string, unknown> {
  const { registry, resourceType } = ctx;
  if (!isObject(input)) throw invalidSyntax(`the ${resourceType} must be a JSON object`);
  const rt = registry.resourceType(resourceType);
  const extensions = registry.extensionsOf(resourceType);
  const extensionOf = (key: string) => extensions.find((e) => e.toLowerCase() === key.toLowerCase());

  const schemaKeys = Object.keys(input).filter((k) => k.toLowerCase() === 'schemas');
  if (schemaKeys.length > 1) throw invalidSyntax('"schemas" is given more than once');
  const schemas = schemaKeys[0] === undefined ? undefined : input[schemaKeys[0]];
  if (!Array.isArray(schemas) || schemas.length === 0 || !schemas.every((s) => typeof s === 'string')) {
    throw invalidSyntax(`"schemas" must be a non-empty array of schema URIs including ${rt.schema}`);
  }
  if (!schemas.some((s) => s.toLowerCase() === rt.schema.toLowerCase())) {
    throw invalidSyntax(`"schemas" must include ${rt.schema}`);
  }
  for (const s of schemas) {
    if (s.toLowerCase() !== rt.schema.toLowerCase() && !extensionOf(s)) {
      throw invalidSyntax(`unknown schema "${s}" for a ${resourceType}; supported: ${[rt.schema, ...extensions].join(', ')}`);
    }
  }

  const core: Json = {};
  const ext = new Map<string, Json>();
  const given = new Set<string>();

  const place = (path: string, raw: unknown, shown: string) => {
    const resolved = registry.resolve(resourceType, path);
    if (!resolved || resolved.subAttribute) throw invalidSyntax(`unknown attribute "${shown}" for a ${resourceType}`);
    const canonical = resolved.path.toLowerCase();
    if (given.has(canonical)) throw invalidSyntax(`attribute "${resolved.path}" is given more than once`);
    given.add(canonical);
    const def = resolved.attribute;
    if (def.mutability === 'readOnly') return;
    const value = attributeValue(def, raw, resolved.path, ctx);
    if (value === undefined || def.mutability === 'writeOnly') return;
    if (resolved.extension) {
      const urn = resolved.schema!;
      if (!ext.has(urn)) ext.set(urn, {});
      ext.get(urn)![def.name] = value;
    } else {
      core[def.name] = value;
    }
  };

  for (const [key, raw] of Object.entries(input)) {
    if (key.toLowerCase() === 'schemas') continue;
    const urn = extensionOf(key);
    if (urn) {
      if (raw === null || raw === undefined) continue;
      if (!isObject(raw)) throw invalidValue(`"${urn}" must be an object of extension attributes, got ${describe(raw)}`);
      for (const [name, value] of Object.entries(raw)) place(`${urn}:${name}`, value, `${urn}:${name}`);
      continue;
    }
    place(key, raw, key);
  }

  if (resourceType === 'Group') checkMembers(core.members);

  const required = (defs: AttributeDef[], values: Json, prefix: string) => {
    for (const def of defs) {
      if (!def.required || def.mutability === 'readOnly' || def.mutability === 'writeOnly') continue;
      if (isEmpty(values[def.name])) throw invalidValue(`"${prefix}${def.name}" is required and must not be empty`);
    }
  };
  required(registry.schema(rt.schema)!.attributes, core, '');
  for (const { schema, required: extRequired } of rt.schemaExtensions) {
    const values = ext.get(schema);
    if (!values) {
      if (extRequired) throw invalidValue(`the extension ${schema} is required for a ${resourceType}`);
      continue;
    }
    required(registry.schema(schema)!.attributes, values, `${schema}:`);
  }

  const present = extensions.filter((e) => ext.has(e));
  const out: Json = { schemas: [rt.schema, ...present] };
  Object.assign(out, core);
  for (const urn of present) out[urn] = ext.get(urn);
  return out;
}

/** Equality under the attribute's characteristics: caseExact for strings, order-free for lists. */
function sameValue(def: AttributeDef, a: unknown, b: unknown): boolean {
  if (isEmpty(a) || isEmpty(b)) return isEmpty(a) && isEmpty(b);
  if (def.multiValued) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    const one = { ...def, multiValued: false };
    return a.every((x) => b.some((y) => sameValue(one, x, y))) && b.every((y) => a.some((x) => sameValue(one, x, y)));
  }
  if (def.type === 'complex' && def.subAttributes) {
    if (!isObject(a) || !isObject(b)) return false;
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const key of keys) {
      const sub = findCi(def.subAttributes, key);
      if (sub ? !sameValue(sub, a[key], b[key]) : JSON.stringify(a[key]) !== JSON.stringify(b[key])) return false;
    }
    return true;
  }
  if (typeof a === 'string' && typeof b === 'string' && !def.caseExact) return a.toLowerCase() === b.toLowerCase();
  return a === b;
}

/**
 * For PUT (RFC 7644 §3.5.1): an `immutable` attribute that already has a value must be sent again
 * with the same value (compared as its caseExact characteristic says). Leaving it out would clear
 * it, so that is refused too. Immutable sub-attributes are checked inside single-valued complex
 * attributes; in a multi-valued attribute (Group `members.value`) an element cannot change, it can
 * only be removed or added, which the readWrite parent allows.
 *
 * @param before the stored resource, canonical
 * @param after the replacement, as {@link normalizeResource} returned it
 * @throws ScimError 400 mutability
 */
export function checkImmutable(before: Record<string, unknown>, after: Record<string, unknown>, ctx: ResourceContext): void {
  const { registry, resourceType } = ctx;
  const rt = registry.resourceType(resourceType);
  const refuse = (path: string) =>
    ScimError.badRequest('mutability', `"${path}" is immutable: once set it cannot be changed or removed`);
  for (const schemaId of [rt.schema, ...registry.extensionsOf(resourceType)]) {
    const isCore = schemaId === rt.schema;
    const was: Json = isCore ? before : isObject(before[schemaId]) ? before[schemaId] : {};
    const now: Json = isCore ? after : isObject(after[schemaId]) ? after[schemaId] : {};
    const prefix = isCore ? '' : `${schemaId}:`;
    for (const def of registry.schema(schemaId)!.attributes) {
      if (def.mutability === 'immutable') {
        if (!isEmpty(was[def.name]) && !sameValue(def, was[def.name], now[def.name])) throw refuse(`${prefix}${def.name}`);
        continue;
      }
      if (def.type !== 'complex' || def.multiValued || def.mutability === 'readOnly') continue;
      const wasObj = isObject(was[def.name]) ? (was[def.name] as Json) : {};
      const nowObj = isObject(now[def.name]) ? (now[def.name] as Json) : {};
      for (const sub of def.subAttributes ?? []) {
        if (sub.mutability !== 'immutable' || isEmpty(wasObj[sub.name])) continue;
        if (!sameValue(sub, wasObj[sub.name], nowObj[sub.name])) throw refuse(`${prefix}${def.name}.${sub.name}`);
      }
    }
  }
}
