/**
 * Which members of a group a PATCH request can touch.
 *
 * Identity providers change large groups by naming members: `add` to `members` with a list of
 * values, `remove` from `members` with a list of values (Entra ID) or with the path
 * `members[value eq "…"]` (Okta). Such a request leaves every member it does not name as it was, so
 * it can be applied to a view of the group that holds only the named members (those that are
 * members now): the result on that view is the result on the whole group, restricted to the named
 * members. That keeps the cost of a PATCH proportional to the request, not to the group.
 *
 * {@link membersNamed} answers the named member ids, or undefined when some operation reaches
 * members it does not name (replacing or removing all members, a filter on anything but `value`,
 * a sub-attribute of every member); such requests are applied to the whole group.
 */
import { parsePath } from '../scim/patch/index.js';
import type { PatchOperation } from '../scim/patch/index.js';
import { GROUP_SCHEMA } from '../scim/schemas.js';

const MEMBERS = 'members';

/** `members`, plain or URN-qualified, as an attribute path (any casing). */
function isMembersPath(attrPath: string): boolean {
  const lower = attrPath.toLowerCase();
  return lower === MEMBERS || lower === `${GROUP_SCHEMA.toLowerCase()}:${MEMBERS}`;
}

/** Whether an attribute path reaches members at all (`members`, `members.display`, URN-qualified). */
function reachesMembers(attrPath: string): boolean {
  const lower = attrPath.toLowerCase();
  const bare = lower.startsWith(`${GROUP_SCHEMA.toLowerCase()}:`) ? lower.slice(GROUP_SCHEMA.length + 1) : lower;
  return bare === MEMBERS || bare.startsWith(`${MEMBERS}.`);
}

/** The ids in a list of member values (`[{ "value": "…" }, …]` or one such object), or undefined when any element names none. */
function valuesOf(value: unknown, into: Set<string>): boolean {
  const list: unknown[] = Array.isArray(value) ? value : [value];
  for (const el of list) {
    if (typeof el !== 'object' || el === null || Array.isArray(el)) return false;
    const keys = Object.keys(el).filter((k) => k.toLowerCase() === 'value');
    if (keys.length !== 1) return false;
    const v = (el as Record<string, unknown>)[keys[0]!];
    if (typeof v !== 'string') return false;
    into.add(v.toLowerCase());
  }
  return true;
}

/** The member ids the operations name, lower-cased; undefined when they may reach members they do not name. */
export function membersNamed(ops: PatchOperation[]): Set<string> | undefined {
  const ids = new Set<string>();
  for (const op of ops) {
    if (op.path === undefined) {
      // A path-less value: each key is applied as if it were the path.
      let value = op.value;
      if (Array.isArray(value) && value.length === 1) value = value[0];
      if (typeof value !== 'object' || value === null || Array.isArray(value)) continue; // refused by the patch itself
      for (const [key, v] of Object.entries(value)) {
        // Entra ID's filtered keys (`members[value eq "…"].display`) are left to the whole group.
        const bracket = key.indexOf('[');
        if (bracket !== -1) {
          if (reachesMembers(key.slice(0, bracket))) return undefined;
          continue;
        }
        if (!reachesMembers(key)) continue;
        if (op.op !== 'add' || !isMembersPath(key) || !valuesOf(v, ids)) return undefined;
      }
      continue;
    }
    let syntax;
    try {
      syntax = parsePath(op.path);
    } catch {
      return undefined; // the whole-group path answers the error
    }
    if (!reachesMembers(syntax.attrPath)) continue;
    if (!isMembersPath(syntax.attrPath)) return undefined; // `members.display`: every member
    if (syntax.filter) {
      const f = syntax.filter as { op?: string; attrPath?: unknown; compValue?: unknown };
      if (f.op !== 'eq' || typeof f.attrPath !== 'string' || f.attrPath.toLowerCase() !== 'value' || typeof f.compValue !== 'string') return undefined;
      ids.add(f.compValue.toLowerCase());
      continue;
    }
    if (op.op === 'replace') return undefined;
    if (op.op === 'remove' && (op.value === undefined || op.value === null)) return undefined;
    if (!valuesOf(op.value, ids)) return undefined;
  }
  return ids;
}
