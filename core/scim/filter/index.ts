/**
 * SCIM filtering, RFC 7644 §3.4.2.2 (https://www.rfc-editor.org/rfc/rfc7644#section-3.4.2.2).
 *
 * One filter has two evaluators that must agree exactly: {@link filterToSql} (./sql.ts) turns it
 * into a parameterized PostgreSQL boolean expression for list and search requests,
 * {@link matchesFilter} (./evaluate.ts) evaluates it over a rendered resource in memory (PATCH value
 * filters, tests). Both go through the same analysis (./analyze.ts): attribute names are resolved
 * against the schema registry, operators are checked against attribute types and comparison values
 * are normalized once, so a filter one side rejects the other rejects too, with the same 400
 * invalidFilter detail. Text becomes a tree in ./parse.ts; dateTime handling is in ./datetime.ts and
 * string folding and ordering in ./collation.ts.
 *
 * Semantics shared by both sides:
 * - A comparison on a multi-valued attribute is true when any value satisfies it; a multi-valued
 *   complex attribute named alone (`emails co "x"`) means its `value` sub-attribute.
 * - `ne` is `not (eq)`: true when the attribute has no value at all.
 * - Strings that are not caseExact compare after lowering each code point (Unicode simple
 *   lowercase, which is what PostgreSQL's lower() does under a UTF-8 locale); ordering compares
 *   code points (`COLLATE "C"` in SQL).
 * - dateTime compares instants; `meta.created` / `meta.lastModified` are compared as the client
 *   sees them, at millisecond precision, even though the columns hold microseconds.
 * - `pr` is false for a missing value, null, "", [] and {}.
 */
export { MAX_FILTER_DEPTH, MAX_FILTER_LENGTH, parseFilter, type Filter } from './parse.js';
export { compareCodePoints, foldCase } from './collation.js';
export { matchesElement, matchesFilter } from './evaluate.js';
export { filterToSql, sortExpression, type SqlTarget } from './sql.js';
