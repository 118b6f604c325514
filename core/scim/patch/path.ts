/**
 * PATCH paths, RFC 7644 §3.5.2 (https://www.rfc-editor.org/rfc/rfc7644#section-3.5.2): the PATH syntax (`attrPath`,
 * `attrPath[valFilter]`, `attrPath[valFilter].subAttr`) and the resolved target of an operation.
 */
import { ScimError } from '../errors.js';
import { parseFilter, type Filter } from '../filter/index.js';
import type { AttributeDef } from '../schemas.js';

/** The syntax of a PATCH path (RFC 7644 §3.5.2 PATH): `attrPath`, or `attrPath[valFilter]` optionally followed by `.subAttr`. */
export interface PathSyntax {
  /** `emails`, `name.givenName`, `urn:…:User:manager.value`: everything before any `[`. */
  attrPath: string;
  filter?: Filter;
  /** The sub-attribute after `]`, as written. */
  subAfterFilter?: string;
}

const NAME = '[A-Za-z$][\\w$-]*';
const NAME_AND_SUB = new RegExp(`^${NAME}(?:\\.${NAME})?$`);
const NAME_ONLY = new RegExp(`^${NAME}$`);
const SUB_AFTER_FILTER = new RegExp(`^\\.(${NAME})$`);

/** `[urn:…:]name[.sub]`; the URN is whatever precedes the last colon (URNs contain dots and colons). */
function isAttrPath(text: string, allowSub: boolean): boolean {
  const colon = text.lastIndexOf(':');
  if (colon !== -1 && !/^urn:./i.test(text)) return false;
  return (allowSub ? NAME_AND_SUB : NAME_ONLY).test(text.slice(colon + 1));
}

/** Splits a PATCH path into attribute path, value filter and trailing sub-attribute; throws ScimError 400 invalidPath when it is not RFC 7644 PATH syntax. */
export function parsePath(path: string): PathSyntax {
  const bad = (why: string): ScimError => ScimError.badRequest('invalidPath', `Invalid path "${path}": ${why}.`);
  const open = path.indexOf('[');
  if (open === -1) {
    if (!isAttrPath(path, true)) throw bad('expected an attribute name, optionally with a sub-attribute or a schema URN prefix');
    return { attrPath: path };
  }
  const attrPath = path.slice(0, open).trim();
  if (!isAttrPath(attrPath, false)) throw bad('a value filter must follow a multi-valued attribute name');
  // The closing bracket is the first `]` outside a quoted string.
  let close = -1;
  let quoted = false;
  for (let i = open + 1; i < path.length; i++) {
    const c = path[i];
    if (quoted && c === '\\') i++;
    else if (c === '"') quoted = !quoted;
    else if (!quoted && c === ']') {
      close = i;
      break;
    }
  }
  if (close === -1) throw bad('unterminated "["');
  const filterText = path.slice(open + 1, close).trim();
  if (filterText === '') throw bad('empty value filter');
  const rest = path.slice(close + 1);
  const sub = rest === '' ? undefined : SUB_AFTER_FILTER.exec(rest)?.[1];
  if (rest !== '' && sub === undefined) throw bad(`unexpected "${rest}" after the value filter`);
  let filter: Filter;
  try {
    filter = parseFilter(filterText);
  } catch (err) {
    throw asInvalidPath(err, path);
  }
  return sub === undefined ? { attrPath, filter } : { attrPath, filter, subAfterFilter: sub };
}

/** Where an operation points, resolved against the schema. */
export interface Target {
  /** The path as the client wrote it, for error details. */
  raw: string;
  /** Canonical path of the attribute, for error details. */
  name: string;
  /** The extension URN whose object holds the attribute; undefined for core and common attributes. */
  extension: string | undefined;
  attr: AttributeDef;
  sub?: AttributeDef;
  filter?: Filter;
}

/** A filter the filter module refuses is, in a PATCH path, a bad path (RFC 7644 §3.5.2). */
export function asInvalidPath(err: unknown, raw: string): unknown {
  if (err instanceof ScimError && err.scimType === 'invalidFilter') {
    return ScimError.badRequest('invalidPath', `Invalid path "${raw}": ${err.detail}.`);
  }
  return err;
}
