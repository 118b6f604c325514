/**
 * SCIM PATCH (RFC 7644 §3.5.2, https://www.rfc-editor.org/rfc/rfc7644#section-3.5.2) as a pure
 * function over a rendered resource: no I/O, no clock. The route loads the resource, calls
 * {@link parsePatchRequest} (./request.ts) then {@link applyPatch} (./apply.ts), and stores the
 * result only when `changed`. Paths are parsed in ./path.ts, values checked and compared in
 * ./values.ts, and value filters in paths evaluated in ./value-filter.ts.
 *
 * Identity providers do not all speak the RFC dialect. What is accepted beyond the RFC (Entra ID's
 * capitalized ops, "True"/"False" strings, dotted keys in path-less values, Okta's unchanged `id`
 * in replace values, …) is listed in docs/scim-compatibility.md, section "PATCH: what is accepted
 * and what is answered"; keep that table in step with this folder.
 */
export { applyPatch } from './apply.js';
export { parsePath, type PathSyntax } from './path.js';
export { MAX_PATCH_OPERATIONS, parsePatchRequest, type PatchContext, type PatchOperation } from './request.js';
