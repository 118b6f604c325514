/**
 * The 400 invalidFilter error every filter module raises (RFC 7644 §3.12, scimType invalidFilter;
 * https://www.rfc-editor.org/rfc/rfc7644#section-3.12), and the quoting of client input in its detail.
 */
import { ScimError } from '../errors.js';

/** A 400 invalidFilter ScimError with `detail`. */
export const invalidFilter = (detail: string): ScimError => ScimError.badRequest('invalidFilter', detail);

/** Quotes a piece of client input for an error detail, shortened so details stay readable. */
export function show(s: string): string {
  return JSON.stringify(s.length > 60 ? `${s.slice(0, 60)}…` : s);
}
