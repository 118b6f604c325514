/**
 * Value filters in PATCH paths (`emails[type eq "work"]`), RFC 7644 §3.5.2 (https://www.rfc-editor.org/rfc/rfc7644#section-3.5.2), as
 * predicates over the elements of a multi-valued attribute, with the semantics of list filters.
 */
import { ScimError } from '../errors.js';
import { foldCase, matchesElement, type Filter } from '../filter/index.js';
import type { AttributeDef } from '../schemas.js';
import { asInvalidPath, type Target } from './path.js';
import type { PatchContext } from './request.js';
import { isObject, normalizeSingle, subDef, type Obj } from './values.js';

/** Whether one element of a multi-valued attribute is selected by a path's value filter. */
export type ElementPredicate = (element: unknown) => boolean;

/**
 * The value filter of a path as a predicate over elements of the target attribute, with the same
 * semantics as filters on list requests (core/scim/filter/). Names in the filter are
 * sub-attributes of the target; an unknown one is refused up front, even when there is no element.
 */
export function elementFilter(target: Target, ctx: PatchContext): ElementPredicate {
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
 * sub-attribute with a string value this predicate gives the same answers (filter/evaluate.ts: text compares
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
export function impliedElement(attr: AttributeDef, filter: Filter): Obj | undefined {
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
