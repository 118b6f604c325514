/**
 * SCIM Bulk (RFC 7644 §3.7): many operations in one request, each applied in its own transaction
 * (a bulk request is not atomic), with `bulkId` cross-references and `failOnErrors`.
 *
 * - `bulkId:<id>` may appear in an operation's path or anywhere in its data; the operation runs
 *   after the one that creates `<id>`, whatever the order in the request (§3.7.2).
 * - References that can never be resolved (circular, or to a bulkId no POST defines) fail with 409
 *   rather than leaving half-linked resources. Cyclic group nesting is refused by the directory
 *   anyway, so resolving a cycle in two passes would only fail later.
 * - `failOnErrors: n` stops after n errors; operations not attempted are left out of the response.
 */
import { ScimError, scimErrorBody, type ScimErrorBody } from './errors.js';
import { BULK_REQUEST_SCHEMA, BULK_RESPONSE_SCHEMA } from './schemas.js';

export type BulkMethod = 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface BulkOperation {
  method: BulkMethod;
  bulkId?: string;
  version?: string;
  path: string;
  data?: unknown;
}

export interface BulkRequest {
  failOnErrors: number | undefined;
  operations: BulkOperation[];
}

export interface BulkOperationResult {
  method: BulkMethod;
  bulkId?: string;
  version?: string;
  location?: string;
  status: string;
  response?: unknown;
}

/** A BulkResponse (RFC 7644 §3.7.3). */
export interface BulkResponse {
  schemas: string[];
  Operations: BulkOperationResult[];
}

/** What running one operation produced; `id` is what a bulkId resolves to. */
export interface ExecutedOperation {
  status: number;
  id?: string;
  location?: string;
  version?: string;
  response?: unknown;
}

export type BulkExecutor = (op: BulkOperation) => Promise<ExecutedOperation>;

const METHODS: BulkMethod[] = ['POST', 'PUT', 'PATCH', 'DELETE'];
const BULK_REF = /bulkId:([^"\s/]+)/g;

/** Validates the envelope (RFC 7644 §3.7); `maxOperations` over the limit is 413 as §3.7.4 says. */
export function parseBulkRequest(body: unknown, maxOperations: number): BulkRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw ScimError.badRequest('invalidSyntax', 'the bulk request must be a JSON object');
  }
  const b = body as Record<string, unknown>;
  if (!Array.isArray(b.schemas) || !b.schemas.includes(BULK_REQUEST_SCHEMA)) {
    throw ScimError.badRequest('invalidSyntax', `"schemas" must include ${BULK_REQUEST_SCHEMA}`);
  }
  if (!Array.isArray(b.Operations)) throw ScimError.badRequest('invalidSyntax', '"Operations" must be an array');
  if (b.Operations.length > maxOperations) {
    throw new ScimError(413, `the bulk request has ${b.Operations.length} operations; maxOperations is ${maxOperations}`);
  }
  let failOnErrors: number | undefined;
  if (b.failOnErrors !== undefined) {
    if (!Number.isInteger(b.failOnErrors) || (b.failOnErrors as number) < 1) {
      throw ScimError.badRequest('invalidValue', '"failOnErrors" must be a positive integer');
    }
    failOnErrors = b.failOnErrors as number;
  }
  const seen = new Set<string>();
  const operations = b.Operations.map((raw, i): BulkOperation => {
    if (typeof raw !== 'object' || raw === null) throw ScimError.badRequest('invalidSyntax', `Operations[${i}] must be an object`);
    const o = raw as Record<string, unknown>;
    const method = typeof o.method === 'string' ? (o.method.toUpperCase() as BulkMethod) : undefined;
    if (!method || !METHODS.includes(method)) {
      throw ScimError.badRequest('invalidSyntax', `Operations[${i}].method must be one of ${METHODS.join(', ')}`);
    }
    if (typeof o.path !== 'string' || !o.path.startsWith('/')) {
      throw ScimError.badRequest('invalidSyntax', `Operations[${i}].path must be a path such as /Users or /Users/{id}`);
    }
    if (o.bulkId !== undefined && (typeof o.bulkId !== 'string' || o.bulkId === '')) {
      throw ScimError.badRequest('invalidSyntax', `Operations[${i}].bulkId must be a non-empty string`);
    }
    if (method === 'POST' && o.bulkId === undefined) {
      throw ScimError.badRequest('invalidSyntax', `Operations[${i}]: a POST needs a bulkId`);
    }
    if (typeof o.bulkId === 'string') {
      if (seen.has(o.bulkId)) throw ScimError.badRequest('invalidSyntax', `bulkId "${o.bulkId}" is used twice`);
      seen.add(o.bulkId);
    }
    if (method !== 'DELETE' && o.data === undefined) {
      throw ScimError.badRequest('invalidSyntax', `Operations[${i}]: ${method} needs "data"`);
    }
    if (o.version !== undefined && typeof o.version !== 'string') {
      throw ScimError.badRequest('invalidSyntax', `Operations[${i}].version must be a string`);
    }
    return {
      method,
      path: o.path,
      ...(typeof o.bulkId === 'string' ? { bulkId: o.bulkId } : {}),
      ...(typeof o.version === 'string' ? { version: o.version } : {}),
      ...(o.data !== undefined ? { data: o.data } : {}),
    };
  });
  return { failOnErrors, operations };
}

/**
 * A copy of a JSON value with `fn` applied to every string (keys included), walked with an explicit
 * stack: however deep the data, the walk cannot exhaust the call stack.
 */
function mapStrings(value: unknown, fn: (s: string) => string): unknown {
  const root: { v: unknown } = { v: undefined };
  const work: Array<[unknown, Record<string, unknown> | unknown[], string | number]> = [[value, root, 'v']];
  while (work.length > 0) {
    const [v, parent, key] = work.pop()!;
    let copy: unknown = v;
    if (typeof v === 'string') copy = fn(v);
    else if (Array.isArray(v)) {
      const list: unknown[] = new Array<unknown>(v.length);
      v.forEach((item: unknown, i) => work.push([item, list, i]));
      copy = list;
    } else if (typeof v === 'object' && v !== null) {
      const obj: Record<string, unknown> = {};
      for (const [k, item] of Object.entries(v)) work.push([item, obj, fn(k)]);
      copy = obj;
    }
    (parent as Record<string | number, unknown>)[key] = copy;
  }
  return root.v;
}

/** The bulkIds an operation refers to (in its path or anywhere in its data). */
export function bulkReferences(op: BulkOperation): string[] {
  const refs = new Set<string>();
  const collect = (s: string) => {
    for (const m of s.matchAll(BULK_REF)) refs.add(m[1]!);
    return s;
  };
  collect(op.path);
  mapStrings(op.data, collect);
  return [...refs];
}

/** Replaces `bulkId:<id>` by the created resource ids, everywhere in path and data. */
function substitute(op: BulkOperation, ids: Map<string, string>): BulkOperation {
  const swap = (s: string) => s.replace(BULK_REF, (whole, id: string) => ids.get(id) ?? whole);
  return { ...op, path: swap(op.path), ...(op.data !== undefined ? { data: mapStrings(op.data, swap) } : {}) };
}

function errorResult(op: BulkOperation, err: ScimErrorBody): BulkOperationResult {
  return { method: op.method, ...(op.bulkId ? { bulkId: op.bulkId } : {}), status: err.status, response: err };
}

/** Runs a parsed bulk request; returns the BulkResponse body. */
export async function runBulk(req: BulkRequest, execute: BulkExecutor, onUnexpected: (err: unknown) => void): Promise<BulkResponse> {
  const results: Array<BulkOperationResult | undefined> = req.operations.map(() => undefined);
  const ids = new Map<string, string>();
  const failedIds = new Set<string>();
  const definedIds = new Set(req.operations.filter((o) => o.method === 'POST' && o.bulkId).map((o) => o.bulkId!));
  const pending = req.operations.map((op, index) => ({ op, index, refs: bulkReferences(op) }));
  let errors = 0;
  const stop = () => req.failOnErrors !== undefined && errors >= req.failOnErrors;

  while (pending.length > 0 && !stop()) {
    // The first operation, in request order, whose references are all settled.
    const next = pending.findIndex((p) => p.refs.every((r) => ids.has(r) || failedIds.has(r) || !definedIds.has(r)));
    if (next === -1) {
      // Every remaining operation waits on another: a cycle. Fail them all.
      for (const p of pending.splice(0)) {
        errors++;
        results[p.index] = errorResult(p.op, scimErrorBody(409, `circular bulkId reference: ${p.op.bulkId ?? p.op.path} refers to ${p.refs.join(', ')}, which refer back to it`, 'invalidValue'));
        if (p.op.bulkId) failedIds.add(p.op.bulkId);
      }
      break;
    }
    const [{ op, index, refs }] = pending.splice(next, 1) as [(typeof pending)[number]];
    const unresolved = refs.filter((r) => !ids.has(r));
    if (unresolved.length > 0) {
      errors++;
      const why = unresolved.map((r) => (definedIds.has(r) ? `bulkId "${r}" failed` : `no operation defines bulkId "${r}"`)).join('; ');
      results[index] = errorResult(op, scimErrorBody(409, `cannot resolve bulkId reference: ${why}`, 'invalidValue'));
      if (op.bulkId) failedIds.add(op.bulkId);
      continue;
    }
    try {
      const done = await execute(substitute(op, ids));
      if (op.bulkId && done.id) ids.set(op.bulkId, done.id);
      results[index] = {
        method: op.method,
        ...(op.bulkId ? { bulkId: op.bulkId } : {}),
        ...(done.version ? { version: done.version } : {}),
        ...(done.location ? { location: done.location } : {}),
        status: String(done.status),
        ...(done.response !== undefined ? { response: done.response } : {}),
      };
    } catch (err) {
      errors++;
      if (op.bulkId) failedIds.add(op.bulkId);
      if (err instanceof ScimError) {
        results[index] = errorResult(op, scimErrorBody(err.status, err.detail, err.scimType));
      } else {
        onUnexpected(err);
        results[index] = errorResult(op, scimErrorBody(500, 'internal server error'));
      }
    }
  }
  return { schemas: [BULK_RESPONSE_SCHEMA], Operations: results.filter((r): r is BulkOperationResult => r !== undefined) };
}
