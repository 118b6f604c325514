/**
 * Leniencies for what identity providers really send, applied by the SCIM routes before the
 * directory validates a write (which stays strict, see resource.ts and patch.ts):
 *
 * - Group members carrying `displayName` (several IdPs' spelling) get it as `display`, the
 *   sub-attribute RFC 7643 §4.2 defines; always applied.
 * - Attributes and sub-attributes the schemas do not describe (typically a mapping typo in the
 *   IdP's attribute mapping), and extension URNs in `schemas` the resource type does not have, are
 *   dropped and reported, so one bad mapping does not stop a whole organisation's provisioning.
 *   With SCIM_STRICT=true they are kept, and the directory refuses them as before (400).
 *
 * Anything that is malformed rather than unknown (a path that is not RFC 7644 PATH syntax, a value
 * of the wrong type) is left alone so the usual 400 says what is wrong.
 */
import type { BaseLogger } from 'pino';
import { parsePath, type PatchOperation } from './patch/index.js';
import type { AttributeDef, SchemaRegistry } from './schemas.js';

type Json = Record<string, unknown>;
type ResourceType = 'User' | 'Group';

/** What a lenient pass produced: the value to validate and store, and the names it dropped (empty in strict mode). */
export interface Relaxed<T> {
  value: T;
  ignored: string[];
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function findCi<T extends { name: string }>(defs: readonly T[] | undefined, name: string): T | undefined {
  const lower = name.toLowerCase();
  return defs?.find((d) => d.name.toLowerCase() === lower);
}

class Relaxer {
  readonly ignored: string[] = [];

  constructor(
    private readonly registry: SchemaRegistry,
    private readonly type: ResourceType,
    private readonly strict: boolean,
  ) {}

  private ignore(name: string): void {
    if (!this.ignored.includes(name)) this.ignored.push(name);
  }

  extensionOf(key: string): string | undefined {
    return this.registry.extensionsOf(this.type).find((e) => e.toLowerCase() === key.toLowerCase());
  }

  /** One element of a complex attribute: unknown sub-attributes dropped, member `displayName` read as `display`. */
  private element(def: AttributeDef, v: Json, path: string): Json {
    const members = this.type === 'Group' && path === 'members';
    let out: Json | undefined;
    const copy = () => (out ??= { ...v });
    for (const key of Object.keys(v)) {
      if (findCi(def.subAttributes, key)) continue;
      if (members && key.toLowerCase() === 'displayname') {
        const o = copy();
        if (!Object.keys(o).some((k) => k.toLowerCase() === 'display')) o.display = o[key];
        delete o[key];
        continue;
      }
      if (this.strict) continue;
      delete copy()[key];
      this.ignore(`${path}.${key}`);
    }
    return out ?? v;
  }

  /** A value of attribute `def` (one element, a list of them, or anything else, returned as is). */
  value(def: AttributeDef, v: unknown, path: string): unknown {
    if (def.type !== 'complex' || !def.subAttributes) return v;
    if (isObject(v)) return this.element(def, v, path);
    if (Array.isArray(v)) return (v as unknown[]).map((item) => (isObject(item) ? this.element(def, item, path) : item));
    return v;
  }

  /** The attributes of one extension object. */
  extension(urn: string, v: unknown): unknown {
    if (!isObject(v)) return v;
    const out: Json = {};
    for (const [name, raw] of Object.entries(v)) {
      const resolved = this.registry.resolve(this.type, `${urn}:${name}`);
      if (!resolved && !this.strict) {
        this.ignore(`${urn}:${name}`);
        continue;
      }
      out[name] = resolved && !resolved.subAttribute ? this.value(resolved.attribute, raw, resolved.path) : raw;
    }
    return out;
  }

  /**
   * A key that is an attribute path (a resource body's key, or a PATCH path or path-less key):
   * 'unknown' when it is well-formed but names nothing this type has, else how to relax its value.
   */
  path(text: string): 'unknown' | ((v: unknown) => unknown) {
    const ext = this.extensionOf(text);
    if (ext) return (v) => this.extension(ext, v);
    let syntax;
    try {
      syntax = parsePath(text);
    } catch {
      return (v) => v;
    }
    const resolved = this.registry.resolve(this.type, syntax.attrPath);
    if (!resolved) return 'unknown';
    if (syntax.subAfterFilter !== undefined) {
      if (resolved.subAttribute || !findCi(resolved.attribute.subAttributes, syntax.subAfterFilter)) return 'unknown';
      return (v) => v;
    }
    if (resolved.subAttribute) return (v) => v;
    return (v) => this.value(resolved.attribute, v, resolved.path);
  }

  /** `schemas`: extension URNs this type does not have are dropped (the core schema stays required). */
  schemas(v: unknown): unknown {
    if (this.strict || !Array.isArray(v)) return v;
    const core = this.registry.resourceType(this.type).schema.toLowerCase();
    return v.filter((s) => {
      if (typeof s !== 'string' || s.toLowerCase() === core || this.extensionOf(s)) return true;
      this.ignore(`schemas: ${s}`);
      return false;
    });
  }

  /** An object whose keys are attribute paths: a resource body, or a path-less PATCH value. */
  object(body: Json): Json {
    const out: Json = {};
    for (const [key, raw] of Object.entries(body)) {
      if (key.toLowerCase() === 'schemas') {
        out[key] = this.schemas(raw);
        continue;
      }
      const relax = this.path(key);
      if (relax === 'unknown') {
        if (this.strict) out[key] = raw;
        else this.ignore(key);
        continue;
      }
      out[key] = relax(raw);
    }
    return out;
  }
}

/**
 * A User or Group body (POST, PUT, Bulk data) as the directory should see it; see the module
 * comment. Something that is not an object is returned unchanged for the directory to refuse.
 */
export function relaxResource(body: unknown, registry: SchemaRegistry, type: ResourceType, strict: boolean): Relaxed<unknown> {
  if (!isObject(body)) return { value: body, ignored: [] };
  const r = new Relaxer(registry, type, strict);
  return { value: r.object(body), ignored: r.ignored };
}

/**
 * PATCH operations (already through parsePatchRequest) as the directory should see them: an
 * operation whose path names an unknown attribute is dropped, unknown keys of a path-less value and
 * unknown sub-attributes of values are removed. Dropping every operation leaves nothing to change.
 */
export function relaxPatch(ops: PatchOperation[], registry: SchemaRegistry, type: ResourceType, strict: boolean): Relaxed<PatchOperation[]> {
  const r = new Relaxer(registry, type, strict);
  const out: PatchOperation[] = [];
  for (const op of ops) {
    if (op.path === undefined) {
      const one = Array.isArray(op.value) && op.value.length === 1 ? (op.value[0] as unknown) : op.value;
      out.push(isObject(one) ? { ...op, value: r.object(one) } : op);
      continue;
    }
    const relax = r.path(op.path);
    if (relax === 'unknown') {
      if (strict) out.push(op);
      else r.ignored.push(op.path);
      continue;
    }
    out.push(op.value === undefined ? op : { ...op, value: relax(op.value) });
  }
  return { value: out, ignored: r.ignored };
}

/**
 * Logs, once per request, the names a lenient pass dropped: the operator's clue to fix the IdP's
 * attribute mapping (or to set SCIM_STRICT=true and make the IdP see the error).
 */
export function warnIgnored(log: Pick<BaseLogger, 'warn'>, type: ResourceType, ignored: string[]): void {
  if (ignored.length === 0) return;
  log.warn({ resourceType: type, ignoredAttributes: ignored }, `SCIM: ignored attributes a ${type} does not have: ${ignored.join(', ')} (SCIM_STRICT=true refuses them)`);
}
