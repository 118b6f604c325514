/**
 * The PatchOp request body, RFC 7644 §3.5.2 (https://www.rfc-editor.org/rfc/rfc7644#section-3.5.2): the envelope checked and the operations
 * normalized, including the identity-provider dialects listed in docs/scim-compatibility.md.
 */
import { ScimError } from '../errors.js';
import { PATCH_OP_SCHEMA } from '../schemas.js';
import type { SchemaRegistry } from '../schemas.js';
import { parsePath } from './path.js';
import { isObject, type Obj } from './values.js';

/** One operation of a PatchOp request, normalized: `op` lower-case, an empty path dropped. */
export interface PatchOperation {
  op: 'add' | 'remove' | 'replace';
  path?: string;
  value?: unknown;
}

/** What applying operations needs to know: the schemas and the type of the resource patched. */
export interface PatchContext {
  registry: SchemaRegistry;
  resourceType: 'User' | 'Group';
}

/** Requests with more operations than this are refused before any is applied. */
export const MAX_PATCH_OPERATIONS = 1000;

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
