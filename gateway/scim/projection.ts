/**
 * Attribute selection in responses (RFC 7644 §3.4.2.5, §3.9) under the `returned` characteristic of
 * RFC 7643 §2.2 / §7: which attributes and sub-attributes of a rendered User or Group a client sees.
 */
import { ScimError } from './errors.js';
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
 * Unknown names (RFC 7644 leaves the answer open):
 * - in `attributes` they are refused with 400 invalidValue naming them — a client asking for an
 *   attribute the server does not have would otherwise silently get a resource without it;
 *   invalidPath is not used because RFC 7644 Table 9 defines it for the PATCH `path` member;
 * - in `excludedAttributes` they are ignored: excluding what does not exist already holds.
 *
 * @param kind which parameter `value` came from; callers parsing `excludedAttributes` pass
 *   'excludedAttributes' to get the lenient treatment.
 */
export function parseAttributeList(
  value: string | string[] | undefined,
  registry: SchemaRegistry,
  resourceType: ResourceType,
  kind: AttributeListKind = 'attributes',
): string[] | undefined {
  if (value === undefined) return undefined;
  const items = (Array.isArray(value) ? value : [value])
    .flatMap((v) => String(v).split(','))
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
}

function selection(paths: string[] | undefined, registry: SchemaRegistry, resourceType: ResourceType): Selection {
  const sel: Selection = { whole: new Set(), subs: new Map(), extensions: new Set() };
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
    const r = registry.resolve(resourceType, path);
    if (!r) continue;
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
