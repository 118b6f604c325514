/**
 * Query parameters of SCIM list and search requests (RFC 7644 §3.4.2 and §3.4.3): filter, sorting,
 * paging and attribute selection, read from the query string (GET) or a SearchRequest body (POST
 * /.search), validated into one shape.
 */
import type { Filter } from 'scim2-parse-filter';
import { ScimError } from './errors.js';
import { parseFilter } from './filter/index.js';
import { parseAttributeList } from './projection.js';
import { LIST_RESPONSE_SCHEMA, SEARCH_REQUEST_SCHEMA, type SchemaRegistry } from './schemas.js';

/** Most resources one list or search response returns (advertised as `filter.maxResults`). */
export const MAX_RESULTS = 1000;
/** Page size when a list request gives no `count`. */
export const DEFAULT_COUNT = 100;

export interface ListParams {
  filter: Filter | undefined;
  /** The filter text as sent, for logs and errors. */
  filterText: string | undefined;
  startIndex: number;
  count: number;
  sortBy: string | undefined;
  sortOrder: 'ascending' | 'descending' | undefined;
  attributes: string[] | undefined;
  excludedAttributes: string[] | undefined;
}

export interface RawListParams {
  filter?: unknown;
  startIndex?: unknown;
  count?: unknown;
  sortBy?: unknown;
  sortOrder?: unknown;
  attributes?: unknown;
  excludedAttributes?: unknown;
}

function integer(name: string, raw: unknown): number | undefined {
  if (raw === undefined || raw === null || raw === '') return undefined;
  const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^-?\d+$/.test(raw.trim()) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n)) throw ScimError.badRequest('invalidValue', `${name} must be an integer, got ${JSON.stringify(raw)}`);
  return n;
}

function text(name: string, raw: unknown): string | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (typeof raw !== 'string') throw ScimError.badRequest('invalidValue', `${name} must be a string`);
  return raw;
}

function attributeList(name: string, raw: unknown): string | string[] | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (typeof raw === 'string') return raw;
  if (Array.isArray(raw) && raw.every((a) => typeof a === 'string')) return raw;
  throw ScimError.badRequest('invalidValue', `${name} must be a list of attribute names`);
}

/**
 * Validates list parameters for one resource type (or, for the root /.search, with `resourceType`
 * undefined, which only checks their form). Out-of-range paging values are clamped as RFC 7644
 * §3.4.2.4 prescribes: startIndex below 1 means 1, a negative count means 0, and count is capped
 * at the advertised maximum.
 */
export function parseListParams(raw: RawListParams, registry: SchemaRegistry, resourceType: 'User' | 'Group' | undefined): ListParams {
  const filterText = text('filter', raw.filter);
  const startIndex = Math.max(1, integer('startIndex', raw.startIndex) ?? 1);
  const count = Math.min(MAX_RESULTS, Math.max(0, integer('count', raw.count) ?? DEFAULT_COUNT));
  const sortBy = text('sortBy', raw.sortBy);
  const sortOrderRaw = text('sortOrder', raw.sortOrder);
  let sortOrder: ListParams['sortOrder'];
  if (sortOrderRaw !== undefined) {
    const lower = sortOrderRaw.toLowerCase();
    if (lower !== 'ascending' && lower !== 'descending') {
      throw ScimError.badRequest('invalidValue', `sortOrder must be "ascending" or "descending", got ${JSON.stringify(sortOrderRaw)}`);
    }
    sortOrder = lower;
  }
  const attrs = attributeList('attributes', raw.attributes);
  const excluded = attributeList('excludedAttributes', raw.excludedAttributes);
  return {
    filter: filterText !== undefined && filterText.trim() !== '' ? parseFilter(filterText) : undefined,
    filterText,
    startIndex,
    count,
    sortBy: sortBy?.trim() || undefined,
    sortOrder,
    attributes: resourceType ? parseAttributeList(attrs, registry, resourceType) : undefined,
    excludedAttributes: resourceType ? parseAttributeList(excluded, registry, resourceType, 'excludedAttributes') : undefined,
  };
}

/** Checks a SearchRequest envelope (RFC 7644 §3.4.3) and returns its parameters unparsed. */
export function searchRequestParams(body: unknown): RawListParams {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw ScimError.badRequest('invalidSyntax', 'the search request must be a JSON object');
  }
  const b = body as Record<string, unknown>;
  if (!Array.isArray(b.schemas) || !b.schemas.includes(SEARCH_REQUEST_SCHEMA)) {
    throw ScimError.badRequest('invalidSyntax', `"schemas" must include ${SEARCH_REQUEST_SCHEMA}`);
  }
  return b;
}

/** A SCIM ListResponse (RFC 7644 §3.4.2). */
export interface ListResponseBody {
  schemas: string[];
  totalResults: number;
  itemsPerPage: number;
  startIndex: number;
  Resources: Array<Record<string, unknown>>;
}

/** A list response over resources already rendered and projected. */
export function listResponse(totalResults: number, startIndex: number, resources: Array<Record<string, unknown>>): ListResponseBody {
  return { schemas: [LIST_RESPONSE_SCHEMA], totalResults, itemsPerPage: resources.length, startIndex, Resources: resources };
}
