/**
 * SCIM filtering, RFC 7644 §3.4.2.2 (https://www.rfc-editor.org/rfc/rfc7644#section-3.4.2.2).
 *
 * The implementation lives in ./filter/ (parse, analyze, datetime, collation, evaluate, sql); this
 * module keeps the public surface importable from its long-standing path.
 */
export {
  compareCodePoints,
  filterToSql,
  foldCase,
  matchesElement,
  matchesFilter,
  MAX_FILTER_DEPTH,
  MAX_FILTER_LENGTH,
  parseFilter,
  sortExpression,
  type Filter,
  type SqlTarget,
} from './filter/index.js';
