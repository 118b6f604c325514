/**
 * SCIM PATCH, RFC 7644 §3.5.2 (https://www.rfc-editor.org/rfc/rfc7644#section-3.5.2).
 *
 * The implementation lives in ./patch/ (request, path, values, value-filter, apply); this module
 * keeps the public surface importable from its long-standing path.
 */
export {
  applyPatch,
  MAX_PATCH_OPERATIONS,
  parsePatchRequest,
  parsePath,
  type PatchContext,
  type PatchOperation,
  type PathSyntax,
} from './patch/index.js';
