/**
 * SCIM PATCH (RFC 7644 §3.5.2, https://www.rfc-editor.org/rfc/rfc7644#section-3.5.2) as a pure
 * function over a rendered resource: no I/O, no clock. The route loads the resource, calls
 * {@link parsePatchRequest} then {@link applyPatch}, and stores the result only when `changed`.
 *
 * Identity providers do not all speak the RFC dialect. What is accepted beyond the RFC (Entra ID's
 * capitalized ops, "True"/"False" strings, dotted keys in path-less values, Okta's unchanged `id`
 * in replace values, …) is listed in docs/scim-compatibility.md, section "PATCH: what is accepted
 * and what is answered"; keep that table in step with this file.
 */
import { ScimError } from './errors.js';
import { foldCase, matchesElement, parseFilter } from './filter.js';
import type { Filter } from './filter.js';
import { isDateTime } from './resource.js';
import { PATCH_OP_SCHEMA } from './schemas.js';
import type { AttributeDef, SchemaRegistry } from './schemas.js';

export interface PatchOperation {
  op: 'add' | 'remove' | 'replace';
  path?: string;
  value?: unknown;
}

export interface PatchContext {
  registry: SchemaRegistry;
  resourceType: 'User' | 'Group';
}

/** Requests with more operations than this are refused before any is applied. */
export const MAX_PATCH_OPERATIONS = 1000;

type Obj = Record<string, unknown>;

// ---------------------------------------------------------------------------------------------
// Envelope

/** Looks a member up case-insensitively: SCIM attribute names, including `Operations`, are case-insensitive. */
function member(obj: Obj, name: string): unknown {
  if (Object.hasOwn(obj, name)) return obj[name];
  const key = Object.keys(obj).find((k) => k.toLowerCase() === name.toLowerCase());
  return key === undefined ? undefined : obj[key];
}

/** Validates a PatchOp request body and normalizes identity-provider dialects; throws ScimError 400 (invalidSyntax for a bad envelope/op, invalidPath for a bad path). */
export function parsePatchRequest(body: unknown): PatchOperation[] {
  if (!isObject(body)) throw ScimError.badRequest('invalidSyntax', 'The PATCH body must be a JSON object.');
  const schemas = member(body, 'schemas');
  if (!Array.isArray(schemas) || !schemas.some((s) => typeof s === 'string' && s.toLowerCase() === PATCH_OP_SCHEMA.toLowerCase())) {
    throw ScimError.badRequest('invalidSyntax', `"schemas" must contain "${PATCH_OP_SCHEMA}".`);
  }
  const operations = member(body, 'Operations');
  if (!Array.isArray(operations) || operations.length === 0) {
    throw ScimError.badRequest('invalidSyntax', '"Operations" must be a non-empty array.');
  }
  if (operations.length > MAX_PATCH_OPERATIONS) {
    throw ScimError.badRequest('tooMany', `A PATCH request may carry at most ${MAX_PATCH_OPERATIONS} operations; this one has ${operations.length}.`);
  }
  return operations.map((raw, i) => {
    const where = `Operations[${i}]`;
    if (!isObject(raw)) throw ScimError.badRequest('invalidSyntax', `${where} must be an object.`);
    const opRaw = member(raw, 'op');
    // Entra ID sends "Add", "Replace", "Remove".
    const op = typeof opRaw === 'string' ? opRaw.trim().toLowerCase() : undefined;
    if (op !== 'add' && op !== 'remove' && op !== 'replace') {
      throw ScimError.badRequest('invalidSyntax', `${where}.op must be "add", "remove" or "replace"; got ${JSON.stringify(opRaw) ?? 'nothing'}.`);
    }
    const pathRaw = member(raw, 'path');
    let path: string | undefined;
    if (typeof pathRaw === 'string') {
      // Some clients send "" (or null) for "no path".
      path = pathRaw.trim() === '' ? undefined : pathRaw.trim();
    } else if (pathRaw !== undefined && pathRaw !== null) {
      throw ScimError.badRequest('invalidPath', `${where}.path must be a string.`);
    }
    if (path !== undefined) parsePath(path);
    const value = member(raw, 'value');
    if (op === 'remove' && path === undefined) {
      throw ScimError.badRequest('noTarget', `${where}: a "remove" operation needs a "path".`);
    }
    if (op === 'add' && (value === undefined || value === null)) {
      throw ScimError.badRequest('invalidSyntax', `${where}: an "add" operation needs a "value".`);
    }
    if (op === 'replace' && value === undefined) {
      throw ScimError.badRequest('invalidSyntax', `${where}: a "replace" operation needs a "value".`);
    }
    const out: PatchOperation = { op };
    if (path !== undefined) out.path = path;
    if (value !== undefined) out.value = value;
    return out;
  });
}

// ---------------------------------------------------------------------------------------------
// Paths

/** The syntax of a PATCH path (RFC 7644 §3.5.2 PATH): `attrPath`, or `attrPath[valFilter]` optionally followed by `.subAttr`. */
export interface PathSyntax {
  /** `emails`, `name.givenName`, `urn:…:User:manager.value`: everything before any `[`. */
  attrPath: string;
  filter?: Filter;
  /** The sub-attribute after `]`, as written. */
  subAfterFilter?: string;
}

const NAME = '[A-Za-z$][\\w$-]*';
const NAME_AND_SUB = new RegExp(`^${NAME}(?:\\.${NAME})?$`);
const NAME_ONLY = new RegExp(`^${NAME}$`);
const SUB_AFTER_FILTER = new RegExp(`^\\.(${NAME})$`);

/** `[urn:…:]name[.sub]`; the URN is whatever precedes the last colon (URNs contain dots and colons). */
function isAttrPath(text: string, allowSub: boolean): boolean {
  const colon = text.lastIndexOf(':');
  if (colon !== -1 && !/^urn:./i.test(text)) return false;
  return (allowSub ? NAME_AND_SUB : NAME_ONLY).test(text.slice(colon + 1));
}

/** Splits a PATCH path into attribute path, value filter and trailing sub-attribute; throws ScimError 400 invalidPath when it is not RFC 7644 PATH syntax. */
export function parsePath(path: string): PathSyntax {
  const bad = (why: string): ScimError => ScimError.badRequest('invalidPath', `Invalid path "${path}": ${why}.`);
  const open = path.indexOf('[');
  if (open === -1) {
    if (!isAttrPath(path, true)) throw bad('expected an attribute name, optionally with a sub-attribute or a schema URN prefix');
    return { attrPath: path };
  }
  const attrPath = path.slice(0, open).trim();
  if (!isAttrPath(attrPath, false)) throw bad('a value filter must follow a multi-valued attribute name');
  // The closing bracket is the first `]` outside a quoted string.
  let close = -1;
  let quoted = false;
  for (let i = open + 1; i < path.length; i++) {
    const c = path[i];
    if (quoted && c === '\\') i++;
    else if (c === '"') quoted = !quoted;
    else if (!quoted && c === ']') {
      close = i;
      break;
    }
  }
  if (close === -1) throw bad('unterminated "["');
  const filterText = path.slice(open + 1, close).trim();
  if (filterText === '') throw bad('empty value filter');
  const rest = path.slice(close + 1);
  const sub = rest === '' ? undefined : SUB_AFTER_FILTER.exec(rest)?.[1];
  if (rest !== '' && sub === undefined) throw bad(`unexpected "${rest}" after the value filter`);
  let filter: Filter;
  try {
    filter = parseFilter(filterText);
  } catch (err) {
    throw asInvalidPath(err, path);
  }
  return sub === undefined ? { attrPath, filter } : { attrPath, filter, subAfterFilter: sub };
}

/** Where an operation points, resolved against the schema. */
interface Target {
  /** The path as the client wrote it, for error details. */
  raw: string;
  /** Canonical path of the attribute, for error details. */
  name: string;
  /** The extension URN whose object holds the attribute; undefined for core and common attributes. */
  extension: string | undefined;
  attr: AttributeDef;
  sub?: AttributeDef;
  filter?: Filter;
}

// ---------------------------------------------------------------------------------------------
// Values

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Unassigned in the sense of RFC 7643 §2.5: absent, null, an empty array or an empty complex value. */
function isUnassigned(v: unknown): boolean {
  return v === undefined || v === null || (Array.isArray(v) && v.length === 0) || (isObject(v) && Object.keys(v).length === 0);
}

function deepEqual(a: unknown, b: unknown): boolean {
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
function sameValue(def: AttributeDef | undefined, a: unknown, b: unknown): boolean {
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
class ValueIndex {
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

function subDef(attr: AttributeDef, name: string): AttributeDef | undefined {
  return attr.subAttributes?.find((s) => s.name.toLowerCase() === name.toLowerCase());
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v)}`;
}

function invalidValue(path: string, expected: string, got: unknown): ScimError {
  return ScimError.badRequest('invalidValue', `Attribute "${path}" expects ${expected}; got ${describe(got)}.`);
}

/**
 * Normalizes a value for a whole attribute: arrays for multi-valued attributes (a single value is
 * wrapped), a single value otherwise (a one-element array is unwrapped). `null` is kept: it means
 * "unassign" (RFC 7643 §2.5).
 */
function normalizeAttr(def: AttributeDef, value: unknown, path: string): unknown {
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
function normalizeSingle(def: AttributeDef, value: unknown, path: string): unknown {
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
function withoutNulls(v: Obj): Obj {
  const out: Obj = {};
  for (const [k, x] of Object.entries(v)) if (x !== null && x !== undefined) out[k] = x;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Value filters on elements of a multi-valued attribute

type ElementPredicate = (element: unknown) => boolean;

/** A filter the filter module refuses is, in a PATCH path, a bad path (RFC 7644 §3.5.2). */
function asInvalidPath(err: unknown, raw: string): unknown {
  if (err instanceof ScimError && err.scimType === 'invalidFilter') {
    return ScimError.badRequest('invalidPath', `Invalid path "${raw}": ${err.detail}.`);
  }
  return err;
}

/**
 * The value filter of a path as a predicate over elements of the target attribute, with the same
 * semantics as filters on list requests (gateway/scim/filter.ts). Names in the filter are
 * sub-attributes of the target; an unknown one is refused up front, even when there is no element.
 */
function elementFilter(target: Target, ctx: PatchContext): ElementPredicate {
  if (target.attr.type !== 'complex') {
    throw ScimError.badRequest('invalidPath', `Invalid path "${target.raw}": "${target.name}" has no sub-attributes to filter on.`);
  }
  const filter = target.filter!;
  const test = (el: unknown): boolean => matchesElement(filter, target.name, el, ctx.registry, ctx.resourceType);
  try {
    test({});
  } catch (err) {
    throw asInvalidPath(err, target.raw);
  }
  return equalityFastPath(target.attr, filter) ?? test;
}

/**
 * `members[value eq "…"]` (Okta removes members one operation each) runs over every member of a
 * group, and matchesElement analyzes the filter again for each element. For a lone eq/ne on a text
 * sub-attribute with a string value this predicate gives the same answers (filter.ts: text compares
 * after foldCase unless caseExact; ne is not eq) without that cost.
 */
function equalityFastPath(attr: AttributeDef, filter: Filter): ElementPredicate | undefined {
  if ((filter.op !== 'eq' && filter.op !== 'ne') || typeof filter.compValue !== 'string') return undefined;
  const def = subDef(attr, filter.attrPath);
  if (!def || !['string', 'reference', 'binary'].includes(def.type)) return undefined;
  const name = def.name;
  const wanted = def.caseExact ? filter.compValue : foldCase(filter.compValue);
  const wantedAscii = ASCII.test(wanted);
  const hit = (v: unknown): boolean => typeof v === 'string' && (def.caseExact ? v === wanted : foldedEquals(v, wanted, wantedAscii));
  if (filter.op === 'eq') return (el) => isObject(el) && Object.hasOwn(el, name) && hit(el[name]);
  return (el) => isObject(el) && !(Object.hasOwn(el, name) && hit(el[name]));
}

const ASCII = /^[\x00-\x7f]*$/;

/** `foldCase(v) === folded`, without allocating while both are ASCII (ids, most emails). */
function foldedEquals(v: string, folded: string, foldedAscii: boolean): boolean {
  if (!foldedAscii) return foldCase(v) === folded;
  if (v.length !== folded.length) return !ASCII.test(v) && foldCase(v) === folded;
  for (let i = 0; i < v.length; i++) {
    let c = v.charCodeAt(i);
    if (c >= 128) return foldCase(v) === folded;
    if (c >= 65 && c <= 90) c += 32;
    // Everything before i was ASCII, so positions in foldCase(v) line up with `folded`.
    if (c !== folded.charCodeAt(i)) return false;
  }
  return true;
}

/**
 * The element a value filter describes, when it is only `eq` comparisons joined by `and`
 * (`type eq "work"` gives `{ type: "work" }`); undefined otherwise.
 */
function impliedElement(attr: AttributeDef, filter: Filter): Obj | undefined {
  if (filter.op === 'and') {
    const out: Obj = {};
    for (const part of filter.filters) {
      const one = impliedElement(attr, part);
      if (!one) return undefined;
      Object.assign(out, one);
    }
    return out;
  }
  if (filter.op !== 'eq' || filter.compValue === null) return undefined;
  const def = subDef(attr, filter.attrPath);
  if (!def) return undefined;
  // Unquoted values (`type eq 5`) come back from the filter parser as numbers or booleans.
  const textual = def.type === 'string' || def.type === 'reference' || def.type === 'binary';
  const value = textual && typeof filter.compValue !== 'string' ? String(filter.compValue) : filter.compValue;
  return { [def.name]: normalizeSingle(def, value, `${attr.name}.${def.name}`) };
}

// ---------------------------------------------------------------------------------------------
// Applying

/** Applies the operations to a rendered SCIM resource (a deep copy is made; the input is not mutated). Returns the new resource and whether anything changed. */
export function applyPatch(
  resource: Record<string, unknown>,
  ops: PatchOperation[],
  ctx: { registry: SchemaRegistry; resourceType: 'User' | 'Group' },
): { resource: Record<string, unknown>; changed: boolean } {
  const patcher = new Patcher(structuredClone(resource), ctx);
  for (const op of ops) patcher.apply(op);
  patcher.finish(resource);
  return { resource: patcher.resource, changed: !deepEqual(resource, patcher.resource) };
}

class Patcher {
  private readonly touchedExtensions = new Set<string>();
  /** Elements to which the current operation gave `primary: true`. */
  private primaries = new Set<Obj>();
  /** Elements created by the current operation: their immutable sub-attributes may still be set. */
  private fresh = new WeakSet<Obj>();

  constructor(
    readonly resource: Obj,
    private readonly ctx: PatchContext,
  ) {}

  apply(op: PatchOperation): void {
    if (op.path === undefined) {
      if (op.op === 'remove') throw ScimError.badRequest('noTarget', 'A "remove" operation needs a "path".');
      let value = op.value;
      if (Array.isArray(value) && value.length === 1) value = value[0];
      if (!isObject(value)) {
        throw ScimError.badRequest('invalidValue', `An "${op.op}" operation without "path" needs an object of attributes as its value; got ${describe(value)}.`);
      }
      this.applyObject(op.op, value, undefined);
      return;
    }
    this.applyPath(op.op, op.path, op.value);
  }

  /**
   * A path-less value, or the value for a whole extension: each key is applied as if it were the
   * path. That covers RFC attribute names and also the dotted, URN-qualified and filtered keys
   * Entra ID puts there (`name.givenName`, `urn:…:User:department`, `emails[type eq "work"].value`).
   */
  private applyObject(op: 'add' | 'replace', value: Obj, extension: string | undefined): void {
    for (const [key, v] of Object.entries(value)) {
      if (extension === undefined) {
        // The gateway maintains `schemas` itself from the extension objects present.
        if (key.toLowerCase() === 'schemas') continue;
        const ext = this.extensionUrn(key);
        if (ext !== undefined) {
          this.applyPath(op, ext, v);
          continue;
        }
      }
      this.applyPath(op, extension === undefined ? key : `${extension}:${key}`, v);
    }
  }

  private extensionUrn(text: string): string | undefined {
    return this.ctx.registry.extensionsOf(this.ctx.resourceType).find((urn) => urn.toLowerCase() === text.toLowerCase());
  }

  private applyPath(op: PatchOperation['op'], path: string, value: unknown): void {
    const ext = this.extensionUrn(path);
    if (ext !== undefined) {
      this.applyExtension(op, ext, value);
      return;
    }
    const target = this.resolve(path);
    const container = this.container(target, false);
    const guarded = target.attr.mutability === 'readOnly' || target.attr.mutability === 'immutable';
    const before = guarded ? structuredClone(container?.[target.attr.name]) : undefined;
    this.primaries = new Set();
    this.fresh = new WeakSet();

    if (target.filter) this.applyFiltered(op, target, value);
    else if (target.sub) this.applySub(op, target, value);
    else this.applyWhole(op, target, value);

    if (guarded) {
      const after = this.container(target, false)?.[target.attr.name];
      const changed = !deepEqual(isUnassigned(before) ? undefined : before, isUnassigned(after) ? undefined : after);
      if (changed && (target.attr.mutability === 'readOnly' || !isUnassigned(before))) {
        throw ScimError.badRequest('mutability', `Attribute "${target.name}" is ${target.attr.mutability} and cannot be changed.`);
      }
    }
    this.enforceSinglePrimary(target);
    if (target.extension !== undefined) this.touchedExtensions.add(target.extension);
  }

  /** A path naming a whole extension (`urn:…:enterprise:2.0:User`): its attributes one by one. */
  private applyExtension(op: PatchOperation['op'], urn: string, value: unknown): void {
    this.touchedExtensions.add(urn);
    if (op === 'remove') {
      const current = this.resource[urn];
      if (isObject(current)) for (const key of Object.keys(current)) this.applyPath('remove', `${urn}:${key}`, undefined);
      delete this.resource[urn];
      return;
    }
    if (Array.isArray(value) && value.length === 1) value = value[0];
    if (value === null && op === 'replace') {
      this.applyExtension('remove', urn, undefined);
      return;
    }
    if (!isObject(value)) throw invalidValue(urn, 'an object of extension attributes', value);
    this.applyObject(op, value, urn);
  }

  private resolve(path: string): Target {
    const syntax = parsePath(path);
    const resolved = this.ctx.registry.resolve(this.ctx.resourceType, syntax.attrPath);
    if (!resolved) {
      throw ScimError.badRequest('invalidPath', `Invalid path "${path}": no attribute "${syntax.attrPath}" on ${this.ctx.resourceType}.`);
    }
    const target: Target = {
      raw: path,
      name: resolved.subAttribute ? resolved.path.slice(0, resolved.path.lastIndexOf('.')) : resolved.path,
      extension: resolved.extension ? resolved.schema : undefined,
      attr: resolved.attribute,
    };
    if (resolved.subAttribute) target.sub = resolved.subAttribute;
    if (syntax.filter) {
      if (!target.attr.multiValued) {
        throw ScimError.badRequest('invalidPath', `Invalid path "${path}": "${target.name}" is single-valued and takes no value filter.`);
      }
      target.filter = syntax.filter;
      if (syntax.subAfterFilter !== undefined) {
        const sd = subDef(target.attr, syntax.subAfterFilter);
        if (!sd) throw ScimError.badRequest('invalidPath', `Invalid path "${path}": "${target.name}" has no sub-attribute "${syntax.subAfterFilter}".`);
        target.sub = sd;
      }
    }
    return target;
  }

  /** The object holding the target attribute: the resource, or its extension object (created on demand). */
  private container(target: Target, create: boolean): Obj | undefined {
    if (target.extension === undefined) return this.resource;
    const current = this.resource[target.extension];
    if (isObject(current)) return current;
    if (!create) return undefined;
    const made: Obj = {};
    this.resource[target.extension] = made;
    return made;
  }

  private read(target: Target): unknown {
    return this.container(target, false)?.[target.attr.name];
  }

  /** Sets the target attribute, or unassigns it when the value is unassigned. */
  private write(target: Target, value: unknown): void {
    if (isUnassigned(value)) {
      const c = this.container(target, false);
      if (c) delete c[target.attr.name];
      return;
    }
    this.container(target, true)![target.attr.name] = value;
  }

  private elements(target: Target): unknown[] {
    const current = this.read(target);
    return Array.isArray(current) ? current : [];
  }

  // -- `attr` ----------------------------------------------------------------------------------

  private applyWhole(op: PatchOperation['op'], target: Target, value: unknown): void {
    const { attr } = target;
    if (op === 'remove') {
      if (attr.multiValued && value !== undefined && value !== null) {
        // Entra ID removes group members as `"path": "members", "value": [{"value": "id"}, …]`.
        const gone = (normalizeAttr(attr, value, target.name) as unknown[]).map((v) => (isObject(v) ? withoutNulls(v) : v));
        const list = this.elements(target);
        const doomed = new Set<unknown>();
        const index = new ValueIndex(attr, list);
        for (const g of gone) for (const el of index.candidates(g)) if (this.describesElement(attr, g, el)) doomed.add(el);
        if (doomed.size > 0) this.write(target, list.filter((el) => !doomed.has(el)));
      } else {
        this.write(target, undefined);
      }
      return;
    }
    const v = normalizeAttr(attr, value, target.name);
    if (v === null) {
      this.write(target, undefined);
      return;
    }
    if (attr.multiValued) {
      // add appends, replace replaces every value (RFC 7644 §3.5.2.1, §3.5.2.3).
      const list = op === 'add' ? [...this.elements(target)] : [];
      const index = new ValueIndex(attr, list);
      for (const item of v as unknown[]) this.append(attr, list, item, index);
      this.write(target, list);
      return;
    }
    if (attr.type === 'complex') {
      const current = this.read(target);
      const record = isObject(current) ? current : {};
      if (!isObject(current)) this.fresh.add(record);
      this.mergeRecord(attr, record, v as Obj, target.name);
      this.write(target, record);
      return;
    }
    this.write(target, v);
  }

  // -- `attr.sub` ------------------------------------------------------------------------------

  private applySub(op: PatchOperation['op'], target: Target, value: unknown): void {
    const { attr } = target;
    const sub = target.sub!;
    if (attr.multiValued) {
      // No filter: the sub-attribute of every element.
      const list = this.elements(target);
      if (list.length === 0) {
        if (op !== 'remove') this.createElement(target, {}, value);
        return;
      }
      for (const el of list) if (isObject(el)) this.applyToElement(op, target, el, value);
      this.write(target, list.filter((el) => !isUnassigned(el)));
      return;
    }
    const current = this.read(target);
    if (op === 'remove') {
      if (!isObject(current)) return;
      this.setSub(attr, current, sub, null, target.name);
      this.write(target, current);
      return;
    }
    const record = isObject(current) ? current : {};
    if (!isObject(current)) this.fresh.add(record);
    const v = normalizeAttr(sub, value, `${target.name}.${sub.name}`);
    const oldValue = record.value;
    this.setSub(attr, record, sub, v, target.name, op === 'add');
    if (sub.name === 'value') this.dropStaleReference(attr, record, oldValue, ['value']);
    this.write(target, record);
  }

  // -- `attr[filter]` and `attr[filter].sub` ---------------------------------------------------

  private applyFiltered(op: PatchOperation['op'], target: Target, value: unknown): void {
    const { attr } = target;
    const matches = elementFilter(target, this.ctx);
    const list = this.elements(target);

    if (op === 'remove') {
      // No match: nothing to remove, and the request still succeeds (idempotent retries).
      if (target.sub) {
        for (const el of list) if (isObject(el) && matches(el)) this.setSub(attr, el, target.sub, null, target.name);
        this.write(target, list.filter((el) => !isUnassigned(el)));
      } else {
        const kept = list.filter((el) => !matches(el));
        if (kept.length !== list.length) this.write(target, kept);
      }
      return;
    }

    const matched = list.filter(matches);
    if (matched.length === 0) {
      // Entra ID sets `emails[type eq "work"].value` on users that have no work email yet: the
      // element the filter describes is created, for add and for replace.
      const implied = impliedElement(attr, target.filter!);
      if (target.sub && implied) {
        this.createElement(target, implied, value);
        return;
      }
      if (op === 'add' && !target.sub) {
        const v = normalizeSingle(attr, Array.isArray(value) && value.length === 1 ? value[0] : value, target.name);
        if (v === null) return;
        const base = implied ?? {};
        const merged = isObject(v) ? { ...base, ...v } : v;
        const next = [...list];
        this.append(attr, next, merged, new ValueIndex(attr, next));
        this.write(target, next);
        return;
      }
      throw ScimError.badRequest('noTarget', `No value of "${target.name}" matches the filter in path "${target.raw}".`);
    }

    if (target.sub) {
      for (const el of matched) if (isObject(el)) this.applyToElement(op, target, el, value);
      return;
    }
    const v = normalizeSingle(attr, Array.isArray(value) && value.length === 1 ? value[0] : value, target.name);
    if (v === null) {
      // null unassigns (RFC 7643 §2.5): the matching values go.
      const doomed = new Set(matched);
      this.write(target, list.filter((el) => !doomed.has(el)));
      return;
    }
    if (!isObject(v)) throw invalidValue(target.name, 'a complex value (an object)', v);
    for (const el of matched) {
      if (!isObject(el)) continue;
      if (op === 'add') this.mergeRecord(attr, el, v, target.name);
      else this.replaceRecord(attr, el, v, target.name);
    }
  }

  /** Sets or removes `target.sub` on one existing element. */
  private applyToElement(op: PatchOperation['op'], target: Target, el: Obj, value: unknown): void {
    const sub = target.sub!;
    if (op === 'remove') {
      this.setSub(target.attr, el, sub, null, target.name);
      return;
    }
    const v = normalizeAttr(sub, value, `${target.name}.${sub.name}`);
    this.setSub(target.attr, el, sub, v, target.name, op === 'add');
  }

  /** Appends `{ ...base, [sub]: value }` to a multi-valued attribute. */
  private createElement(target: Target, base: Obj, value: unknown): void {
    const sub = target.sub!;
    const v = normalizeAttr(sub, value, `${target.name}.${sub.name}`);
    if (isUnassigned(v)) return;
    const list = [...this.elements(target)];
    this.append(target.attr, list, { ...base, [sub.name]: v }, new ValueIndex(target.attr, list));
    this.write(target, list);
  }

  // -- records ---------------------------------------------------------------------------------

  /**
   * Adds one normalized element to a multi-valued attribute, unless it is already there. Elements
   * whose `value` is immutable (Group members) are identified by that value: adding an existing
   * member again only updates its mutable sub-attributes (`display`). Other elements are skipped
   * when an equal element exists.
   */
  private append(attr: AttributeDef, list: unknown[], item: unknown, index: ValueIndex): void {
    if (!isObject(item)) {
      if (!index.candidates(item).some((el) => sameValue(attr, el, item))) {
        list.push(item);
        index.add(item);
      }
      return;
    }
    const element = withoutNulls(item);
    if (Object.keys(element).length === 0) return;
    const candidates = index.candidates(element);
    const valueDef = subDef(attr, 'value');
    if (valueDef?.mutability === 'immutable' && element.value !== undefined) {
      const existing = candidates.find((el) => isObject(el) && sameValue(valueDef, el.value, element.value));
      if (isObject(existing)) {
        const mutable: Obj = {};
        for (const [k, v] of Object.entries(element)) {
          const sd = subDef(attr, k);
          if (sd && sd.mutability !== 'immutable' && sd.mutability !== 'readOnly') mutable[k] = v;
        }
        this.mergeRecord(attr, existing, mutable, attr.name);
        return;
      }
    }
    if (candidates.some((el) => isObject(el) && this.sameElement(attr, el, element))) return;
    this.fresh.add(element);
    // A readOnly attribute as a whole (groups) is checked by comparing it before and after.
    for (const sd of attr.mutability === 'readOnly' ? [] : (attr.subAttributes ?? [])) {
      if (sd.mutability === 'readOnly' && element[sd.name] !== undefined) {
        throw ScimError.badRequest('mutability', `Sub-attribute "${attr.name}.${sd.name}" is readOnly and cannot be set.`);
      }
    }
    if (element.primary === true) this.primaries.add(element);
    list.push(element);
    index.add(element);
  }

  private sameElement(attr: AttributeDef, a: Obj, b: Obj): boolean {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)].filter((k) => a[k] !== undefined || b[k] !== undefined));
    for (const k of keys) if (!sameValue(subDef(attr, k), a[k], b[k])) return false;
    return true;
  }

  /** Whether `given` (from a remove's value) names `el`: every sub-attribute it gives is equal. */
  private describesElement(attr: AttributeDef, given: unknown, el: unknown): boolean {
    if (!isObject(given)) return sameValue(attr, given, el);
    if (!isObject(el) || Object.keys(given).length === 0) return false;
    return Object.entries(given).every(([k, v]) => sameValue(subDef(attr, k), el[k], v));
  }

  /** Merges the given sub-attributes into a complex value; the others are kept (RFC 7644 §3.5.2.3). */
  private mergeRecord(attr: AttributeDef, record: Obj, value: Obj, name: string): void {
    const oldValue = record.value;
    for (const [k, v] of Object.entries(value)) {
      const sd = subDef(attr, k);
      if (sd) this.setSub(attr, record, sd, v, name, false);
    }
    this.dropStaleReference(attr, record, oldValue, Object.keys(value));
  }

  /**
   * A reference (the enterprise manager) whose `value` now points elsewhere: its `$ref` and display
   * name described the previous target, so those not given along with the new value go.
   */
  private dropStaleReference(attr: AttributeDef, record: Obj, oldValue: unknown, given: string[]): void {
    const valueDef = subDef(attr, 'value');
    if (!valueDef || !subDef(attr, '$ref') || oldValue === undefined || record.value === undefined) return;
    if (sameValue(valueDef, oldValue, record.value)) return;
    for (const k of Object.keys(record)) if (!given.includes(k)) delete record[k];
  }

  /** Replaces an element matched by a filter; readOnly and immutable sub-attributes not given are kept. */
  private replaceRecord(attr: AttributeDef, record: Obj, value: Obj, name: string): void {
    const next: Obj = {};
    for (const sd of attr.subAttributes ?? []) {
      const given = value[sd.name];
      const keep = sd.mutability === 'readOnly' || sd.mutability === 'immutable';
      if (given === undefined || given === null) {
        if (keep && record[sd.name] !== undefined) next[sd.name] = record[sd.name];
        continue;
      }
      this.checkSubMutability(attr, record, sd, given, name);
      next[sd.name] = given;
    }
    for (const k of Object.keys(record)) delete record[k];
    Object.assign(record, next);
    if (record.primary === true) this.primaries.add(record);
  }

  /** Sets (or with null, removes) one sub-attribute of a complex value, enforcing its mutability. */
  private setSub(attr: AttributeDef, record: Obj, sd: AttributeDef, value: unknown, name: string, append = false): void {
    if (value === null || value === undefined) {
      if (record[sd.name] === undefined) return;
      if (sd.mutability === 'readOnly' || (sd.mutability === 'immutable' && !this.fresh.has(record))) {
        throw ScimError.badRequest('mutability', `Sub-attribute "${name}.${sd.name}" is ${sd.mutability} and cannot be removed.`);
      }
      delete record[sd.name];
      return;
    }
    let next = value;
    if (sd.multiValued && append && Array.isArray(record[sd.name])) {
      const list = [...(record[sd.name] as unknown[])];
      for (const item of value as unknown[]) if (!list.some((el) => sameValue(sd, el, item))) list.push(item);
      next = list;
    }
    this.checkSubMutability(attr, record, sd, next, name);
    if (isUnassigned(next)) delete record[sd.name];
    else record[sd.name] = next;
    if (sd.name === 'primary' && next === true) this.primaries.add(record);
  }

  private checkSubMutability(attr: AttributeDef, record: Obj, sd: AttributeDef, value: unknown, name: string): void {
    const current = record[sd.name];
    if (sameValue(sd, current, value)) return;
    if (sd.mutability === 'readOnly' || (sd.mutability === 'immutable' && current !== undefined && !this.fresh.has(record))) {
      throw ScimError.badRequest('mutability', `Sub-attribute "${name}.${sd.name}" is ${sd.mutability} and cannot be changed.`);
    }
  }

  /** RFC 7643 §2.4: `primary: true` appears at most once; the element the operation made primary wins. */
  private enforceSinglePrimary(target: Target): void {
    if (this.primaries.size === 0 || !target.attr.multiValued) return;
    const list = this.elements(target);
    const winners = list.filter((el) => isObject(el) && this.primaries.has(el));
    if (winners.length > 1) {
      throw ScimError.badRequest('invalidValue', `More than one value of "${target.name}" would be primary.`);
    }
    for (const el of list) if (isObject(el) && !winners.includes(el) && el.primary === true) delete el.primary;
  }

  /** Checks required attributes and keeps `schemas` in step with the extension objects. */
  finish(original: Obj): void {
    const { registry, resourceType } = this.ctx;
    const rt = registry.resourceType(resourceType);
    for (const schemaId of [rt.schema, ...this.touchedExtensions]) {
      const schema = registry.schema(schemaId);
      if (!schema) continue;
      const inOriginal = schemaId === rt.schema ? original : original[schemaId];
      const inResult = schemaId === rt.schema ? this.resource : this.resource[schemaId];
      for (const def of schema.attributes) {
        if (!def.required) continue;
        const was = isObject(inOriginal) ? inOriginal[def.name] : undefined;
        const is = isObject(inResult) ? inResult[def.name] : undefined;
        if (!isUnassigned(was) && isUnassigned(is)) {
          throw ScimError.badRequest('mutability', `Attribute "${def.name}" is required and cannot be removed.`);
        }
      }
    }
    if (this.touchedExtensions.size === 0) return;
    const schemas = Array.isArray(this.resource.schemas) ? [...(this.resource.schemas as unknown[])] : [];
    let next = schemas;
    for (const urn of this.touchedExtensions) {
      const has = next.some((s) => typeof s === 'string' && s.toLowerCase() === urn.toLowerCase());
      if (isUnassigned(this.resource[urn])) {
        delete this.resource[urn];
        next = next.filter((s) => !(typeof s === 'string' && s.toLowerCase() === urn.toLowerCase()));
      } else if (!has) {
        next = [...next, urn];
      }
    }
    if (!deepEqual(next, schemas)) this.resource.schemas = next;
  }
}
