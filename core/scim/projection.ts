/**
 * Attribute selection in responses (RFC 7644 §3.4.2.5, §3.9) under the `returned` characteristic of
 * RFC 7643 §2.2 / §7: which attributes and sub-attributes of a rendered User or Group a client sees.
 */
import { ScimError } from './errors.js';
import { matchesElement, type Filter } from './filter/index.js';
import { parsePath } from './patch/index.js';
import type { AttributeDef, ResolvedAttribute, SchemaRegistry } from './schemas.js';

type ResourceType = 'User' | 'Group';
type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Which list a name comes from: they differ only in how unknown names are treated. */
export type AttributeListKind = 'attributes' | 'excludedAttributes';

/**
 * Parses an `attributes` or `excludedAttributes` value — the query parameter (comma-separated,
 * possibly repeated) or the SearchRequest body member (an array of names, each possibly
 * comma-separated) — into canonical paths: `userName`, `name.givenName`, `emails.value`,
 * `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value`, or an extension URN
 * alone for the whole extension. Names are case-insensitive and may be URN-qualified
 * (`urn:ietf:params:scim:schemas:core:2.0:User:userName` is `userName`); the core schema URN alone
 * stands for every core attribute. `schemas` is accepted and kept (it is always returned anyway).
 * Duplicates are removed; empty items are skipped; no names at all gives undefined.
 *
 * In `attributes`, a multi-valued complex attribute may carry a value filter, as Okta and others
 * send it: `emails[type eq "work"]` (or `emails[type eq "work"].value`) returns the attribute with
 * only the values matching the filter (same semantics as a PATCH value filter). It is kept in the
 * result with canonical names and the filter text as sent; {@link project} applies it. Commas
 * inside the brackets do not separate names. `excludedAttributes` takes no value filter (400).
 *
 * Unknown names (RFC 7644 leaves the answer open):
 * - in `attributes` they are refused with 400 invalidValue naming them — a client asking for an
 *   attribute the server does not have would otherwise silently get a resource without it;
 *   invalidPath is not used because RFC 7644 Table 9 defines it for the PATCH `path` member;
 * - in `excludedAttributes` they are ignored: excluding what does not exist already holds.
 *
 * @param kind which parameter `value` came from; callers parsing `excludedAttributes` pass
 *   'excludedAttributes' to get the lenient treatment.
 */
/** Splits an attribute list on commas, except inside a value filter's brackets or quotes. */
function splitList(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let quoted = false;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '\\') i++;
      else if (c === '"') quoted = false;
    } else if (c === '"') quoted = true;
    else if (c === '[') depth++;
    else if (c === ']') depth = Math.max(0, depth - 1);
    else if (c === ',' && depth === 0) {
      out.push(text.slice(start, i));
      start = i + 1;
    }
  }
  out.push(text.slice(start));
  return out;
}

/**
 * `emails[type eq "work"]` or `emails[type eq "work"].value` in `attributes`: checked against the
 * schema and returned with canonical names, the filter text kept as sent.
 */
function valueFilterItem(item: string, registry: SchemaRegistry, resourceType: ResourceType, kind: AttributeListKind): string {
  const refuse = (why: string) => ScimError.badRequest('invalidValue', `${kind}: "${item}" ${why}`);
  if (kind === 'excludedAttributes') throw refuse('has a value filter, which only attributes accepts');
  let syntax;
  try {
    syntax = parsePath(item);
  } catch (err) {
    throw err instanceof ScimError ? refuse(`is not an attribute with a value filter: ${err.detail}`) : err;
  }
  const resolved = registry.resolve(resourceType, syntax.attrPath);
  if (!resolved || resolved.subAttribute || !resolved.attribute.multiValued || resolved.attribute.type !== 'complex') {
    throw refuse(`does not name a multi-valued complex attribute of a ${resourceType}`);
  }
  let sub = '';
  if (syntax.subAfterFilter !== undefined) {
    const lower = syntax.subAfterFilter.toLowerCase();
    const def = resolved.attribute.subAttributes?.find((d) => d.name.toLowerCase() === lower);
    if (!def) throw refuse(`names no sub-attribute of ${resolved.path}`);
    sub = `.${def.name}`;
  }
  try {
    // Checks the names inside the filter against the attribute's sub-attributes now, not per value.
    matchesElement(syntax.filter!, resolved.path, {}, registry, resourceType);
  } catch (err) {
    throw err instanceof ScimError ? refuse(`has a value filter the server cannot answer: ${err.detail}`) : err;
  }
  const open = item.indexOf('[');
  return `${resolved.path}${item.slice(open, item.lastIndexOf(']') + 1)}${sub}`;
}

export function parseAttributeList(
  value: string | string[] | undefined,
  registry: SchemaRegistry,
  resourceType: ResourceType,
  kind: AttributeListKind = 'attributes',
): string[] | undefined {
  if (value === undefined) return undefined;
  const items = (Array.isArray(value) ? value : [value])
    .flatMap((v) => splitList(String(v)))
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (items.length === 0) return undefined;
  const rt = registry.resourceType(resourceType);
  const out: string[] = [];
  const add = (p: string) => {
    if (!out.includes(p)) out.push(p);
  };
  for (const item of items) {
    const lower = item.toLowerCase();
    if (lower === 'schemas') {
      add('schemas');
      continue;
    }
    if (lower === rt.schema.toLowerCase()) {
      for (const def of registry.schema(rt.schema)!.attributes) add(def.name);
      continue;
    }
    const ext = registry.extensionsOf(resourceType).find((e) => e.toLowerCase() === lower);
    if (ext) {
      add(ext);
      continue;
    }
    if (item.includes('[')) {
      add(valueFilterItem(item, registry, resourceType, kind));
      continue;
    }
    const resolved = registry.resolve(resourceType, item);
    if (resolved) {
      add(resolved.path);
      continue;
    }
    if (kind === 'attributes') {
      throw ScimError.badRequest('invalidValue', `attributes: "${item}" is not an attribute of a ${resourceType}`);
    }
  }
  return out.length > 0 ? out : undefined;
}

/** Selection keys: `<schema or ''>|<attribute>` in lower case; common attributes have no schema. */
function keyOf(r: Pick<ResolvedAttribute, 'schema' | 'attribute'>): string {
  return `${r.schema ?? ''}|${r.attribute.name}`.toLowerCase();
}

interface Selection {
  /** Attributes named (or excluded) whole. */
  whole: Set<string>;
  /** Attributes named (or excluded) by some of their sub-attributes: key → lower-case sub names. */
  subs: Map<string, Set<string>>;
  /** Extension URNs (lower case) named (or excluded) whole. */
  extensions: Set<string>;
  /**
   * Multi-valued attributes named only with value filters (`emails[type eq "work"]`): key → the
   * filters, any of which selects a value. Named once without a filter too: every value ('all').
   */
  valueFilters: Map<string, Filter[] | 'all'>;
}

function selection(paths: string[] | undefined, registry: SchemaRegistry, resourceType: ResourceType): Selection {
  const sel: Selection = { whole: new Set(), subs: new Map(), extensions: new Set(), valueFilters: new Map() };
  const rt = registry.resourceType(resourceType);
  const extensions = registry.extensionsOf(resourceType).map((e) => e.toLowerCase());
  for (const path of paths ?? []) {
    const lower = path.toLowerCase();
    if (extensions.includes(lower)) {
      sel.extensions.add(lower);
      continue;
    }
    if (lower === rt.schema.toLowerCase()) {
      for (const def of registry.schema(rt.schema)!.attributes) sel.whole.add(keyOf({ schema: rt.schema, attribute: def }));
      continue;
    }
    let filter: Filter | undefined;
    let name = path;
    if (path.includes('[')) {
      const syntax = parsePath(path);
      filter = syntax.filter;
      name = syntax.subAfterFilter === undefined ? syntax.attrPath : `${syntax.attrPath}.${syntax.subAfterFilter}`;
    }
    const r = registry.resolve(resourceType, name);
    if (!r) continue;
    const filters = sel.valueFilters.get(keyOf(r));
    if (!filter) sel.valueFilters.set(keyOf(r), 'all');
    else if (filters !== 'all') sel.valueFilters.set(keyOf(r), [...(filters ?? []), filter]);
    if (!r.subAttribute) {
      sel.whole.add(keyOf(r));
    } else {
      const key = keyOf(r);
      if (!sel.subs.has(key)) sel.subs.set(key, new Set());
      sel.subs.get(key)!.add(r.subAttribute.name.toLowerCase());
    }
  }
  return sel;
}

/** Keeps the sub-attributes `keep` accepts, in every element of a multi-valued attribute; undefined if none is left. */
function filterSubs(def: AttributeDef, value: unknown, keep: (sub: AttributeDef | undefined, name: string) => boolean): unknown {
  if (def.type !== 'complex' || !def.subAttributes) return value;
  const one = (v: unknown): unknown => {
    if (!isObject(v)) return v;
    const out: Json = {};
    for (const [name, sv] of Object.entries(v)) {
      const lower = name.toLowerCase();
      if (keep(def.subAttributes!.find((s) => s.name.toLowerCase() === lower), lower)) out[name] = sv;
    }
    return Object.keys(out).length > 0 ? out : undefined;
  };
  if (Array.isArray(value)) {
    const list = value.map(one).filter((v) => v !== undefined);
    return list.length > 0 ? list : undefined;
  }
  return one(value);
}

/**
 * Projects a rendered resource (canonical names, with id and meta) for a response:
 *
 * - `schemas` is always returned, and so are attributes and sub-attributes whose `returned` is
 *   `always` (id), even when excluded or not named;
 * - `never` (password) is never returned, even when named;
 * - `default` is returned unless excluded, and, when `attributes` is given, only if named there;
 * - `request` is returned only when named in `attributes`.
 *
 * With `attributes`, naming an attribute returns all of its sub-attributes (those `never` aside);
 * naming sub-attributes (`name.givenName`, `emails.value`) returns only those (plus any `always`
 * ones), in every element of a multi-valued attribute. An extension is addressed attribute by
 * attribute with URN-qualified paths or whole by its URN. `meta` is `default` like the RFC schemas
 * say, so `attributes=userName` gives `schemas`, `id` and `userName` (RFC 7644 §3.9's example).
 *
 * A value filter in `attributes` (`emails[type eq "work"]`) keeps only the values it matches (any
 * of the filters given for that attribute); the attribute is left out when none matches. Naming
 * the attribute without a filter as well returns every value.
 *
 * `excludedAttributes` removes attributes, sub-attributes (from every element) or whole
 * extensions from that set, `always` ones aside; given together with `attributes`, it is applied
 * after it. Values left empty by a projection (an object or element with no sub-attribute left,
 * an extension with no attribute left) are left out. The input is not modified.
 */
export function project(
  resource: Record<string, unknown>,
  opts: { attributes?: string[]; excludedAttributes?: string[] },
  registry: SchemaRegistry,
  resourceType: ResourceType,
): Record<string, unknown> {
  // Nothing asked for and nothing to hide: the resource is shown as it is (the common case).
  if (!opts.attributes?.length && !opts.excludedAttributes?.length) {
    const hidden = registry.hiddenKeys(resourceType);
    if (!Object.keys(resource).some((k) => hidden.has(k.toLowerCase()))) return resource;
  }
  const requested = opts.attributes && opts.attributes.length > 0 ? selection(opts.attributes, registry, resourceType) : undefined;
  const excluded = selection(opts.excludedAttributes, registry, resourceType);
  const extensions = registry.extensionsOf(resourceType);

  /**
   * One attribute's projected value, or undefined to leave it out. `inNamed`/`inExcluded` say
   * whether its whole extension was named in `attributes`/`excludedAttributes`.
   */
  const attribute = (r: ResolvedAttribute | undefined, value: unknown, inNamed: boolean, inExcluded: boolean): unknown => {
    if (!r) {
      // Something the schemas do not describe is treated as `returned: default`.
      if (inExcluded || (requested && !inNamed)) return undefined;
      return value;
    }
    const def = r.attribute;
    if (def.returned === 'never') return undefined;
    const key = keyOf(r);
    const excludedSubs = excluded.subs.get(key);
    const baseKeep = (sub: AttributeDef | undefined): boolean | undefined => {
      if (sub?.returned === 'never') return false;
      if (sub?.returned === 'always') return true;
      return undefined;
    };
    if (def.returned === 'always') return filterSubs(def, value, (sub) => baseKeep(sub) ?? true);
    if (inExcluded || excluded.whole.has(key)) return undefined;
    const notExcluded = (name: string) => !excludedSubs?.has(name);

    if (requested) {
      const named = inNamed || requested.whole.has(key);
      const namedSubs = requested.subs.get(key);
      if (!named && !namedSubs) return undefined;
      const filters = inNamed ? 'all' : requested.valueFilters.get(key);
      if (Array.isArray(filters) && Array.isArray(value)) {
        value = value.filter((el) => filters.some((f) => matchesElement(f, r.path, el, registry, resourceType)));
        if ((value as unknown[]).length === 0) return undefined;
      }
      return filterSubs(def, value, (sub, name) => {
        const base = baseKeep(sub);
        if (base !== undefined) return base;
        return (named || namedSubs!.has(name)) && notExcluded(name);
      });
    }
    if (def.returned === 'request') return undefined;
    return filterSubs(def, value, (sub, name) => {
      const base = baseKeep(sub);
      if (base !== undefined) return base;
      return sub?.returned !== 'request' && notExcluded(name);
    });
  };

  const out: Json = {};
  for (const [key, value] of Object.entries(resource)) {
    if (key.toLowerCase() === 'schemas') {
      out[key] = value;
      continue;
    }
    const urn = extensions.find((e) => e.toLowerCase() === key.toLowerCase());
    if (urn) {
      const lower = urn.toLowerCase();
      const inNamed = requested?.extensions.has(lower) ?? false;
      const inExcluded = excluded.extensions.has(lower);
      if (!isObject(value)) {
        if (!inExcluded && (!requested || inNamed)) out[key] = value;
        continue;
      }
      const ext: Json = {};
      for (const [name, v] of Object.entries(value)) {
        const resolved = registry.resolve(resourceType, `${urn}:${name}`);
        const projected = attribute(resolved?.subAttribute ? undefined : resolved, v, inNamed, inExcluded);
        if (projected !== undefined) ext[name] = projected;
      }
      if (Object.keys(ext).length > 0) out[key] = ext;
      continue;
    }
    const resolved = registry.resolve(resourceType, key);
    const projected = attribute(resolved?.subAttribute ? undefined : resolved, value, false, false);
    if (projected !== undefined) out[key] = projected;
  }
  return out;
}
