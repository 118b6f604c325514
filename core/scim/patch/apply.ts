/**
 * Applying PATCH operations, RFC 7644 §3.5.2 (https://www.rfc-editor.org/rfc/rfc7644#section-3.5.2), to a rendered resource: a pure
 * function, no I/O and no clock.
 */
import { ScimError } from '../errors.js';
import type { SchemaRegistry, AttributeDef } from '../schemas.js';
import { parsePath, type Target } from './path.js';
import type { PatchContext, PatchOperation } from './request.js';
import { elementFilter, impliedElement } from './value-filter.js';
import { deepEqual, describe, invalidValue, isObject, isUnassigned, normalizeAttr, normalizeSingle, sameValue, subDef, ValueIndex, withoutNulls, type Obj } from './values.js';

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
