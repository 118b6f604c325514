/**
 * Approver functions: a small module, named by path or npm package like connector plugins, that
 * answers who approves one stage of a request. It runs in an activity of the request's workflow
 * (with a timeout and a few retries), never inside the workflow sandbox.
 *
 * The module's default export (or its `approvers` export) is an {@link ApproverFunction}.
 */
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

/** What an approver function is told about the request. */
export interface ApproverFunctionInput {
  requestId: string;
  requester: { id: string; userName: string };
  policy: string;
  entitlement: string | null;
  stage: { index: number; name: string };
  justification: string | null;
  /** An invitation request: the person invited, who is not in the directory (the requester sponsors them); null otherwise. */
  invitee?: { email: string; displayName: string | null } | null;
}

/** Answers the approvers of a stage as user ids or userNames; unknown or inactive ones are ignored. */
export type ApproverFunction = (input: ApproverFunctionInput) => Promise<string[]> | string[];

const cache = new Map<string, Promise<ApproverFunction>>();

/** Loads the approver function `name` (a path, relative to `baseDir`, or an npm package name). */
export async function loadApproverFunction(name: string, baseDir = process.cwd()): Promise<ApproverFunction> {
  let pending = cache.get(name);
  if (!pending) {
    pending = (async () => {
      let mod: { default?: unknown; approvers?: unknown };
      try {
        mod = (await import(name.startsWith('.') || isAbsolute(name) ? pathToFileURL(resolve(baseDir, name)).href : name)) as typeof mod;
      } catch (err) {
        throw new Error(`approver function "${name}" cannot be loaded: ${(err as Error).message}`, { cause: err });
      }
      const fn = typeof mod.default === 'function' ? mod.default : typeof mod.approvers === 'function' ? mod.approvers : undefined;
      if (!fn) throw new Error(`module "${name}" exports no approver function (a default or "approvers" export)`);
      return fn as ApproverFunction;
    })();
    cache.set(name, pending);
    pending.catch(() => cache.delete(name));
  }
  return await pending;
}
