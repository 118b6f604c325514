/**
 * TypeBox schemas the routes share: the two error shapes (SCIM errors on /scim/v2, the API's own
 * on everything else) and the open SCIM resource.
 *
 * Routes declare params, querystring, body and a `response` schema for every status they answer.
 * Fastify validates requests with the first three and serializes answers with the last
 * (fast-json-stringify), which writes only the properties a schema names and coerces values to the
 * declared type. So:
 * - an object whose producer may add fields (SCIM resources with extension attributes, database
 *   rows, views that grow) is declared with `additionalProperties: true`, so nothing is dropped;
 * - a property that may be null says so (`Nullable`), or it would be written as "" / 0 / false;
 * - a value of no fixed shape is `Type.Unknown()`, written as it is.
 * The test gateway (test/helpers/gateway.ts) compares every serialized answer with the value the
 * handler gave, so a schema that loses or changes data fails the route tests.
 */
import { STATUS_CODES } from 'node:http';
import { Type, type Static, type TObject, type TNull, type TSchema, type TUnion } from '@sinclair/typebox';

/** `T` or null. */
export function Nullable<T extends TSchema>(schema: T, description?: string): TUnion<[T, TNull]> {
  return Type.Union([schema, Type.Null()], description ? { description } : {});
}

/** An object with the documented `properties` that keeps every other property it has. */
export function Open<P extends Record<string, TSchema>>(properties: P, options: { description?: string } = {}): TObject<P> {
  return Type.Object(properties, { ...options, additionalProperties: true });
}

/**
 * A string out of `values`, as a JSON-schema `enum` (TypeBox's union of literals would validate the
 * same but document and report errors less plainly).
 */
export function StringEnum<const T extends readonly string[]>(values: T, options: { description?: string } = {}) {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...options });
}

/** A date-time as an ISO 8601 string (a Date from the database is written as one). */
export const DateTime = (description?: string) => Type.Unsafe<string | Date>({ type: 'string', format: 'date-time', ...(description ? { description } : {}) });

/** An answer without a body (204, 304). */
export const NoContent = (description: string) => Type.Unsafe<void>({ type: 'null', description });

const API_ERROR_DESCRIPTIONS: Record<number, string> = {
  400: 'the request is not valid',
  401: 'no valid bearer token',
  403: 'the token may not do this',
  404: 'no such resource',
  409: 'the request conflicts with the current state',
  410: 'gone',
  429: 'too many failed authentications from this address (see Retry-After)',
  500: 'internal error (details are logged, never sent)',
  503: 'a service the gateway needs is unreachable; try again later',
};

/**
 * The admin API's error, the shape Fastify gives its own errors (gateway/routes/api/errors.ts).
 * Some refusals carry more (a 409 on an access request has the request's `state`), so it is open.
 */
export function ApiError(description?: string) {
  return Open(
    {
      statusCode: Type.Integer(),
      error: Type.String({ description: 'the HTTP reason phrase' }),
      message: Type.String(),
      code: Type.Optional(Type.String({ description: "Fastify's error code, on errors Fastify raises (e.g. FST_ERR_VALIDATION)" })),
    },
    description ? { description } : {},
  );
}

/**
 * The two error shapes as shared schemas (registered with `app.addSchema` in gateway/app.ts), so the
 * OpenAPI document describes each once, under components.schemas, and every error answer refers to it.
 */
export const API_ERROR_ID = 'ApiError';
export const SCIM_ERROR_ID = 'ScimError';

/** A shared schema by its $id, with its own description, typed as that schema. */
function errorRef<T extends TSchema>(id: string, description: string) {
  return Type.Unsafe<Static<T>>({ $ref: `${id}#`, description });
}

/** Errors every route behind a bearer token can answer: 401, 403, 429 and 500. */
export const AUTH_ERRORS = [401, 403, 429, 500] as const;

/**
 * Response schemas of API errors, one per status; `descriptions` overrides the generic text. The
 * authentication errors ({@link AUTH_ERRORS}) are added unless `authenticated` is false.
 */
export function apiErrors(codes: readonly number[], descriptions: Record<number, string> = {}, authenticated = true) {
  const all = new Set<number>([...codes, ...(authenticated ? AUTH_ERRORS : [500])]);
  return Object.fromEntries(
    [...all]
      .sort((a, b) => a - b)
      .map((code) => [code, errorRef<ReturnType<typeof ApiError>>(API_ERROR_ID, descriptions[code] ?? API_ERROR_DESCRIPTIONS[code] ?? STATUS_CODES[code] ?? 'error')]),
  );
}

const SCIM_ERROR_DESCRIPTIONS: Record<number, string> = {
  400: 'invalid request; scimType says which kind (invalidFilter, invalidSyntax, invalidValue, invalidPath, noTarget, mutability, uniqueness, tooMany…)',
  401: 'no valid bearer token',
  403: 'the token lacks the scope, or the request is not allowed',
  404: 'no such resource',
  405: 'the method needs a resource id',
  409: 'uniqueness: a resource with that value exists',
  412: 'If-Match names a version that is no longer current',
  413: 'the request body (or Bulk request) is larger than the server accepts',
  414: 'a path segment of the URL is longer than the server accepts',
  415: 'the body is not application/scim+json or application/json',
  429: 'too many failed authentications from this address (see Retry-After)',
  500: 'internal error (details are logged, never sent)',
};

/** A SCIM error (RFC 7644 §3.12), as core/scim/errors.ts renders it. */
export function ScimErrorResponse(description?: string) {
  return Type.Object(
    {
      schemas: Type.Array(Type.String(), { description: 'urn:ietf:params:scim:api:messages:2.0:Error' }),
      status: Type.String({ description: 'the HTTP status, as a string' }),
      scimType: Type.Optional(Type.String()),
      detail: Type.Optional(Type.String()),
    },
    description ? { description } : {},
  );
}

/** Response schemas of SCIM errors, one per status (500 always included). */
export function scimErrors(codes: readonly number[]) {
  const all = [...new Set([...codes, 500])].sort((a, b) => a - b);
  return Object.fromEntries(
    all.map((code) => [code, errorRef<ReturnType<typeof ScimErrorResponse>>(SCIM_ERROR_ID, SCIM_ERROR_DESCRIPTIONS[code] ?? STATUS_CODES[code] ?? 'error')]),
  );
}

/** The shared schemas routes refer to; gateway/app.ts adds them to the app before any route. */
export const SHARED_SCHEMAS = [
  { ...ApiError("the admin API's error (Fastify's error shape)"), $id: API_ERROR_ID },
  { ...ScimErrorResponse('a SCIM error (RFC 7644 §3.12)'), $id: SCIM_ERROR_ID },
];

/** SCIM errors of a route behind a bearer token. */
export function scimAuthErrors(codes: readonly number[]) {
  return scimErrors([...codes, 401, 403, 429]);
}

/** Media types of SCIM answers (always application/scim+json) and bodies (either), for the OpenAPI document. */
export const SCIM_ANSWERS = { produces: ['application/scim+json'] };
export const SCIM_BODIES = { ...SCIM_ANSWERS, consumes: ['application/scim+json', 'application/json'] };

/** `meta` of a SCIM resource (RFC 7643 §3.1). */
export const ScimMeta = Open({
  resourceType: Type.Optional(Type.String()),
  created: Type.Optional(DateTime()),
  lastModified: Type.Optional(DateTime()),
  location: Type.Optional(Type.String({ format: 'uri' })),
  version: Type.Optional(Type.String({ description: 'the ETag' })),
});

/**
 * A SCIM resource: the common attributes are described, every other attribute (core, enterprise
 * and custom extensions alike) is kept as it is.
 */
export function ScimResourceOf(description = 'a SCIM resource; attributes of every schema it carries, extensions included') {
  return Open(
    {
      schemas: Type.Optional(Type.Array(Type.String())),
      id: Type.Optional(Type.String()),
      externalId: Type.Optional(Type.String()),
      meta: Type.Optional(ScimMeta),
    },
    { description },
  );
}

export const ScimResource = ScimResourceOf();

/** A SCIM ListResponse (RFC 7644 §3.4.2). */
export function ScimListResponse(description: string) {
  return Open(
    {
      schemas: Type.Array(Type.String()),
      totalResults: Type.Integer(),
      itemsPerPage: Type.Integer(),
      startIndex: Type.Integer(),
      Resources: Type.Array(ScimResource),
    },
    { description },
  );
}
