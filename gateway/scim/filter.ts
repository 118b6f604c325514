/**
 * SCIM filtering, RFC 7644 §3.4.2.2 (https://www.rfc-editor.org/rfc/rfc7644#section-3.4.2.2).
 *
 * One filter has two evaluators that must agree exactly: {@link filterToSql} turns it into a
 * parameterized PostgreSQL boolean expression for list and search requests, {@link matchesFilter}
 * evaluates it over a rendered resource in memory (PATCH value filters, tests). Both go through
 * the same analysis ({@link analyze}): attribute names are resolved against the schema registry,
 * operators are checked against attribute types and comparison values are normalized once, so a
 * filter one side rejects the other rejects too, with the same 400 invalidFilter detail.
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
import { parse as parseGrammar, type Filter } from 'scim2-parse-filter';
import { ScimError } from './errors.js';
import { attr, type AttributeDef, type SchemaRegistry } from './schemas.js';

export type { Filter } from 'scim2-parse-filter';

/** Longest filter text accepted; longer ones are refused before any parsing. */
export const MAX_FILTER_LENGTH = 4096;
/** Deepest nesting of parentheses, value-filter brackets and `not` accepted. */
export const MAX_FILTER_DEPTH = 50;

type ResourceType = 'User' | 'Group';

const invalidFilter = (detail: string): ScimError => ScimError.badRequest('invalidFilter', detail);

/** Quotes a piece of client input for an error detail, shortened so details stay readable. */
function show(s: string): string {
  return JSON.stringify(s.length > 60 ? `${s.slice(0, 60)}…` : s);
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

type Token =
  | { k: '(' | ')' | '[' | ']'; pos: number }
  | { k: 'word'; text: string; pos: number }
  | { k: 'string'; value: string; pos: number };

const COMPARE_OPS = new Set(['eq', 'ne', 'co', 'sw', 'ew', 'gt', 'ge', 'lt', 'le']);
const JSON_NUMBER = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/;
const LONE_SURROGATE = /\p{Cs}/u;
const SIMPLE_ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

/** Reads a double-quoted string at `start`; JSON escapes are decoded, any other backslash is kept (`"DOMAIN\user"`). */
function readString(text: string, start: number): { value: string; end: number } {
  let out = '';
  let i = start + 1;
  while (i < text.length) {
    const c = text[i]!;
    if (c === '"') return { value: out, end: i + 1 };
    if (c === '\\') {
      const n = text[i + 1] ?? '';
      const simple = SIMPLE_ESCAPES[n];
      if (simple !== undefined) {
        out += simple;
        i += 2;
        continue;
      }
      const hex = text.slice(i + 2, i + 6);
      if (n === 'u' && /^[0-9a-fA-F]{4}$/.test(hex)) {
        out += String.fromCharCode(parseInt(hex, 16));
        i += 6;
        continue;
      }
      out += c;
      i += 1;
      continue;
    }
    out += c;
    i += 1;
  }
  throw invalidFilter(`unterminated string starting at position ${start + 1}`);
}

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (/\s/.test(c)) {
      i += 1;
    } else if (c === '(' || c === ')' || c === '[' || c === ']') {
      tokens.push({ k: c, pos: i + 1 });
      i += 1;
    } else if (c === '"') {
      const { value, end } = readString(text, i);
      tokens.push({ k: 'string', value, pos: i + 1 });
      i = end;
    } else {
      const start = i;
      while (i < text.length && !/[\s()[\]"]/.test(text[i]!)) i += 1;
      tokens.push({ k: 'word', text: text.slice(start, i), pos: start + 1 });
    }
  }
  return tokens;
}

function describeToken(t: Token | undefined): string {
  if (!t) return 'the end of the filter';
  if (t.k === 'word') return `${show(t.text)} at position ${t.pos}`;
  if (t.k === 'string') return `the string ${show(t.value)} at position ${t.pos}`;
  return `"${t.k}" at position ${t.pos}`;
}

/** An unquoted comparison value (an identity-provider quirk): JSON literals and numbers as such, anything else a string. */
function unquotedValue(word: string): string | number | boolean | null {
  if (word === 'true') return true;
  if (word === 'false') return false;
  if (word === 'null') return null;
  if (JSON_NUMBER.test(word)) {
    const n = Number(word);
    // Only when the number reads back the same, so "007" or "1.50" keep their spelling.
    if (Number.isFinite(n) && String(n) === word) return n;
  }
  return word;
}

function checkStorable(value: string, pos: number): void {
  if (value.includes('\u0000') || LONE_SURROGATE.test(value)) {
    throw invalidFilter(`the value at position ${pos} contains characters that cannot be stored (NUL or an unpaired surrogate)`);
  }
}

/**
 * Parses a SCIM filter (RFC 7644 §3.4.2.2), tolerant of identity-provider quirks: operators and
 * `and`/`or`/`not` in any case, unquoted values (`userName eq bjensen@example.com`), backslashes
 * that are not JSON escapes kept as written, any whitespace. Throws ScimError 400 invalidFilter,
 * with a detail naming the problem and its position, for anything it cannot answer: malformed
 * text, a `null` comparison value, more than {@link MAX_FILTER_LENGTH} characters or more than
 * {@link MAX_FILTER_DEPTH} levels of nesting.
 *
 * The text is checked and normalized by a small state machine first; scim2-parse-filter then
 * builds the tree (and/or precedence) from a skeleton in which every attribute path and value is a
 * placeholder, so no client text reaches its tokenizer and odd characters in values survive intact.
 * Attribute names are returned as written: they are resolved per resource type when the filter is
 * translated or evaluated.
 */
export function parseFilter(text: string): Filter {
  if (typeof text !== 'string') throw invalidFilter('the filter must be a string');
  if (text.length > MAX_FILTER_LENGTH) {
    throw invalidFilter(`the filter is ${text.length} characters long; at most ${MAX_FILTER_LENGTH} are accepted`);
  }
  const tokens = tokenize(text);
  if (tokens.length === 0) throw invalidFilter('the filter is empty');

  const attrs: string[] = [];
  const values: Array<string | number | boolean> = [];
  const out: string[] = [];
  const stack: Frame[] = [];
  let state: 'expr' | 'op' | 'value' | 'after' = 'expr';
  let lastAttr = '';
  let lastOp = '';


  for (const t of tokens) {
    switch (state) {
      case 'expr':
        if (t.k === '(') {
          push(stack, '(', t);
          out.push('(');
        } else if (t.k === 'word' && t.text.toLowerCase() === 'not') {
          push(stack, 'not', t);
          out.push('not');
        } else if (t.k === 'word') {
          lastAttr = t.text;
          out.push(`a${attrs.length}`);
          attrs.push(t.text);
          state = 'op';
        } else {
          throw invalidFilter(`expected an attribute name, "not" or "(" but found ${describeToken(t)}`);
        }
        break;
      case 'op':
        if (t.k === '[') {
          if (stack.includes('[')) throw invalidFilter(`value filters cannot be nested (${describeToken(t)})`);
          push(stack, '[', t);
          out.push('[');
          state = 'expr';
        } else if (t.k === 'word' && t.text.toLowerCase() === 'pr') {
          out.push('pr');
          state = complete(stack);
        } else if (t.k === 'word' && COMPARE_OPS.has(t.text.toLowerCase())) {
          lastOp = t.text.toLowerCase();
          out.push(lastOp);
          state = 'value';
        } else {
          throw invalidFilter(
            `expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr) or "[" after ${show(lastAttr)} but found ${describeToken(t)}`,
          );
        }
        break;
      case 'value': {
        let value: string | number | boolean | null;
        if (t.k === 'string') value = t.value;
        else if (t.k === 'word') value = unquotedValue(t.text);
        else throw invalidFilter(`expected a value after ${show(`${lastAttr} ${lastOp}`)} but found ${describeToken(t)}`);
        if (value === null) {
          throw invalidFilter(`null is not a comparison value (position ${t.pos}); use "not (${lastAttr} pr)" to find resources without a value`);
        }
        if (typeof value === 'string') checkStorable(value, t.pos);
        out.push(`"${values.length}"`);
        values.push(value);
        state = complete(stack);
        break;
      }
      case 'after':
        if (t.k === ')' || t.k === ']') {
          const open = t.k === ')' ? '(' : '[';
          if (stack[stack.length - 1] !== open) throw invalidFilter(`unbalanced ${describeToken(t)}`);
          stack.pop();
          out.push(t.k);
          state = complete(stack);
        } else if (t.k === 'word' && /^(and|or)$/i.test(t.text)) {
          out.push(t.text.toLowerCase());
          state = 'expr';
        } else if (t.k === 'word' && t.text.startsWith('.')) {
          throw invalidFilter(`a sub-attribute after a value filter (${describeToken(t)}) is only valid in PATCH paths`);
        } else {
          throw invalidFilter(`expected "and", "or", ")" or the end of the filter but found ${describeToken(t)}`);
        }
        break;
    }
  }
  if (state !== 'after') throw invalidFilter(`the filter ends unexpectedly after ${show(text.trim().slice(-40))}`);
  if (stack.length > 0) throw invalidFilter(`the filter has an unclosed "${stack[stack.length - 1]}"`);

  return restore(skeletonTree(out.join(' ')), attrs, values);
}

type Frame = '(' | '[' | 'not';

function push(stack: Frame[], frame: Frame, t: Token): void {
  stack.push(frame);
  if (stack.length > MAX_FILTER_DEPTH) {
    throw invalidFilter(`the filter nests more than ${MAX_FILTER_DEPTH} levels deep (at position ${t.pos})`);
  }
}

/** An expression is complete: `not`s waiting for it are done too. */
function complete(stack: Frame[]): 'after' {
  while (stack[stack.length - 1] === 'not') stack.pop();
  return 'after';
}

/**
 * Skeletons parsed so far. A skeleton holds no client text, only the filter's shape (`a0 eq "0"`),
 * so the few shapes clients really send are parsed once; bounded, and never mutated.
 */
const skeletons = new Map<string, Filter>();
const MAX_SKELETONS = 1000;

function skeletonTree(skeleton: string): Filter {
  let tree = skeletons.get(skeleton);
  if (tree) return tree;
  try {
    tree = parseGrammar(skeleton);
  } catch (err) {
    // The state machine accepts only what the grammar accepts, so this is a defect, still a 400.
    throw invalidFilter(`the filter could not be parsed (${err instanceof Error ? err.message : String(err)})`);
  }
  if (skeletons.size < MAX_SKELETONS) skeletons.set(skeleton, tree);
  return tree;
}

/** The skeleton's tree with the placeholders replaced by the attribute paths and values they stand for. */
function restore(f: Filter, attrs: string[], values: Array<string | number | boolean>): Filter {
  switch (f.op) {
    case 'and':
    case 'or':
      return { op: f.op, filters: f.filters.map((g) => restore(g, attrs, values)) };
    case 'not':
      return { op: 'not', filter: restore(f.filter, attrs, values) };
    case '[]':
      return { op: '[]', attrPath: attrs[Number(f.attrPath.slice(1))]!, valFilter: restore(f.valFilter, attrs, values) };
    case 'pr':
      return { op: 'pr', attrPath: attrs[Number(f.attrPath.slice(1))]! };
    default:
      return { op: f.op, attrPath: attrs[Number(f.attrPath.slice(1))]!, compValue: values[Number(f.compValue)]! };
  }
}

// ---------------------------------------------------------------------------------------------
// Analysis: the filter resolved against the schema, shared by SQL and in-memory evaluation
// ---------------------------------------------------------------------------------------------

type Kind = 'text' | 'boolean' | 'number' | 'dateTime' | 'complex';
type CmpOp = 'eq' | 'co' | 'sw' | 'ew' | 'gt' | 'ge' | 'lt' | 'le';

/** One attribute value a filter reads. */
interface Leaf {
  /** Canonical path from the resource root: `userName`, `name.givenName`, `emails.value`, `urn:…:User:manager.value`. */
  path: string;
  /** JSON keys leading to the value: from the resource (root scope) or from one element of a multi-valued attribute (element scope; none for the element itself). */
  keys: string[];
  scope: 'root' | 'element';
  def: AttributeDef;
  kind: Kind;
}

/** A multi-valued attribute whose elements a node ranges over. */
interface Collection {
  path: string;
  keys: string[];
  complex: boolean;
}

type Operand =
  | { kind: 'text'; value: string; caseExact: boolean }
  | { kind: 'boolean'; value: boolean }
  | { kind: 'number'; value: number }
  | { kind: 'dateTime'; micros: bigint };

type Node =
  | { t: 'and' | 'or'; items: Node[] }
  | { t: 'not'; item: Node }
  | { t: 'cmp'; leaf: Leaf; op: CmpOp; operand: Operand }
  | { t: 'pr'; leaf: Leaf }
  /** Some element of a multi-valued attribute satisfies `inner`. */
  | { t: 'any'; coll: Collection; inner: Node }
  /** A single-valued complex attribute is an object and satisfies `inner` (whose leaves are root-scoped). */
  | { t: 'obj'; leaf: Leaf; inner: Node };

/** An attribute path resolved from the resource root. */
interface Resolved {
  /** Canonical path and JSON keys of what the path names (the sub-attribute when there is one). */
  path: string;
  keys: string[];
  /** Canonical path and JSON keys of the top-level attribute alone. */
  attributePath: string;
  attributeKeys: string[];
  attribute: AttributeDef;
  sub?: AttributeDef;
}

// `schemas` is not in any schema's attribute list, yet clients filter on it (RFC 7644 §3.4.2.2).
const SCHEMAS_ATTRIBUTE = attr('schemas', { multiValued: true, caseExact: false });

function kindOf(def: AttributeDef): Kind {
  switch (def.type) {
    case 'boolean':
      return 'boolean';
    case 'integer':
    case 'decimal':
      return 'number';
    case 'dateTime':
      return 'dateTime';
    case 'complex':
      return 'complex';
    default:
      return 'text';
  }
}

function resolvePath(registry: SchemaRegistry, rt: ResourceType, path: string): Resolved | undefined {
  if (path.toLowerCase() === 'schemas') {
    return { path: 'schemas', keys: ['schemas'], attributePath: 'schemas', attributeKeys: ['schemas'], attribute: SCHEMAS_ATTRIBUTE };
  }
  const r = registry.resolve(rt, path);
  if (!r) return undefined;
  const attributeKeys = r.extension && r.schema ? [r.schema, r.attribute.name] : [r.attribute.name];
  const attributePath = r.extension && r.schema ? `${r.schema}:${r.attribute.name}` : r.attribute.name;
  if (!r.subAttribute) return { path: r.path, keys: attributeKeys, attributePath, attributeKeys, attribute: r.attribute };
  return { path: r.path, keys: [...attributeKeys, r.subAttribute.name], attributePath, attributeKeys, attribute: r.attribute, sub: r.subAttribute };
}

function isReadable(r: Resolved): boolean {
  return r.attribute.returned !== 'never' && r.sub?.returned !== 'never';
}

const MAX_TREE_DEPTH = 2 * MAX_FILTER_DEPTH + 10;

class Analyzer {
  constructor(
    private readonly registry: SchemaRegistry,
    private readonly rt: ResourceType,
  ) {}

  private resolve(path: unknown): Resolved {
    if (typeof path !== 'string' || path === '') throw invalidFilter('a filter expression has no attribute path');
    const r = resolvePath(this.registry, this.rt, path);
    if (!r) throw invalidFilter(`unknown attribute ${show(path)} for ${this.rt} resources`);
    if (!isReadable(r)) throw invalidFilter(`attribute "${r.path}" cannot be used in a filter`);
    return r;
  }

  /** Resolves a name inside `parent[...]` to a sub-attribute of parent. */
  private resolveSub(parent: Resolved, name: unknown): AttributeDef {
    if (typeof name !== 'string' || name === '') throw invalidFilter(`an expression inside "${parent.path}[...]" has no attribute name`);
    if (name.includes('.') || name.includes(':')) {
      throw invalidFilter(`inside "${parent.path}[...]" name sub-attributes of "${parent.path}" alone (such as "value"), not ${show(name)}`);
    }
    const r = resolvePath(this.registry, this.rt, `${parent.path}.${name}`);
    if (!r?.sub) throw invalidFilter(`"${parent.path}" has no sub-attribute ${show(name)}`);
    if (!isReadable(r)) throw invalidFilter(`attribute "${r.path}" cannot be used in a filter`);
    return r.sub;
  }

  /**
   * The node for a filter. Inside a value filter `within` is the complex attribute; `elementScope`
   * says whether leaves are read from each element (multi-valued) or from the resource root.
   */
  node(f: unknown, depth: number, within?: { parent: Resolved; elementScope: boolean }): Node {
    if (depth > MAX_TREE_DEPTH) throw invalidFilter(`the filter nests more than ${MAX_FILTER_DEPTH} levels deep`);
    if (typeof f !== 'object' || f === null) throw invalidFilter('malformed filter expression');
    const e = f as Record<string, unknown>;
    const op = e.op;
    switch (op) {
      case 'and':
      case 'or': {
        if (!Array.isArray(e.filters) || e.filters.length === 0) throw invalidFilter(`"${op}" needs operands`);
        return { t: op, items: (e.filters as unknown[]).map((c) => this.node(c, depth + 1, within)) };
      }
      case 'not':
        return { t: 'not', item: this.node(e.filter, depth + 1, within) };
      case '[]': {
        if (within) throw invalidFilter(`value filters cannot be nested (inside "${within.parent.path}[...]")`);
        const r = this.resolve(e.attrPath);
        if (r.sub || r.attribute.type !== 'complex') {
          throw invalidFilter(`"${r.path}[...]" needs a complex attribute such as "emails" or "name"`);
        }
        const inner = this.node(e.valFilter, depth + 1, { parent: r, elementScope: r.attribute.multiValued });
        if (r.attribute.multiValued) return { t: 'any', coll: { path: r.path, keys: r.keys, complex: true }, inner };
        return { t: 'obj', leaf: this.rootLeaf(r, r.attribute), inner };
      }
      case 'pr':
        return this.presence(e.attrPath, within);
      case 'eq':
      case 'ne':
      case 'co':
      case 'sw':
      case 'ew':
      case 'gt':
      case 'ge':
      case 'lt':
      case 'le': {
        const node = this.compare(e.attrPath, op === 'ne' ? 'eq' : op, e.compValue, within);
        // ne is the negation of eq, so it also holds where the attribute has no value.
        return op === 'ne' ? { t: 'not', item: node } : node;
      }
      default:
        throw invalidFilter(`unknown filter operator ${show(String(op))}`);
    }
  }

  private rootLeaf(r: Resolved, def: AttributeDef): Leaf {
    return { path: r.path, keys: r.keys, scope: 'root', def, kind: kindOf(def) };
  }

  private subLeaf(parent: Resolved, sub: AttributeDef, elementScope: boolean): Leaf {
    return {
      path: `${parent.attributePath}.${sub.name}`,
      keys: elementScope ? [sub.name] : [...parent.attributeKeys, sub.name],
      scope: elementScope ? 'element' : 'root',
      def: sub,
      kind: kindOf(sub),
    };
  }

  private collection(r: Resolved): Collection {
    return { path: r.attributePath, keys: r.attributeKeys, complex: r.attribute.type === 'complex' };
  }

  /** The leaf a comparison on a multi-valued attribute reads from each element. */
  private elementValue(r: Resolved): Leaf {
    if (r.attribute.type !== 'complex') {
      return { path: r.attributePath, keys: [], scope: 'element', def: r.attribute, kind: kindOf(r.attribute) };
    }
    const value = r.attribute.subAttributes?.find((s) => s.name === 'value');
    if (!value) throw invalidFilter(`"${r.path}" has no "value" sub-attribute; compare one of its sub-attributes`);
    return this.subLeaf(r, value, true);
  }

  private presence(path: unknown, within: { parent: Resolved; elementScope: boolean } | undefined): Node {
    if (within) return { t: 'pr', leaf: this.subLeaf(within.parent, this.resolveSub(within.parent, path), within.elementScope) };
    const r = this.resolve(path);
    if (r.sub && r.attribute.multiValued) {
      return { t: 'any', coll: this.collection(r), inner: { t: 'pr', leaf: this.subLeaf(r, r.sub, true) } };
    }
    return { t: 'pr', leaf: this.rootLeaf(r, r.sub ?? r.attribute) };
  }

  private compare(path: unknown, op: CmpOp, raw: unknown, within: { parent: Resolved; elementScope: boolean } | undefined): Node {
    if (within) {
      const leaf = this.subLeaf(within.parent, this.resolveSub(within.parent, path), within.elementScope);
      return { t: 'cmp', leaf, op, operand: operand(leaf, op, raw) };
    }
    const r = this.resolve(path);
    if (r.attribute.multiValued) {
      const leaf = r.sub ? this.subLeaf(r, r.sub, true) : this.elementValue(r);
      return { t: 'any', coll: this.collection(r), inner: { t: 'cmp', leaf, op, operand: operand(leaf, op, raw) } };
    }
    const leaf = this.rootLeaf(r, r.sub ?? r.attribute);
    return { t: 'cmp', leaf, op, operand: operand(leaf, op, raw) };
  }
}

function operand(leaf: Leaf, op: CmpOp, raw: unknown): Operand {
  const where = `"${leaf.path}"`;
  if (raw === null || raw === undefined) {
    throw invalidFilter(`${where} cannot be compared with null; use "not (${leaf.path} pr)" to find resources without a value`);
  }
  const ordering = op === 'gt' || op === 'ge' || op === 'lt' || op === 'le';
  const substring = op === 'co' || op === 'sw' || op === 'ew';
  switch (leaf.kind) {
    case 'complex':
      throw invalidFilter(`${where} is a complex attribute; compare one of its sub-attributes`);
    case 'text':
      if (ordering && leaf.def.type === 'binary') throw invalidFilter(`operator "${op}" cannot be used with binary attribute ${where}`);
      // Unquoted numbers and literals sent for a string attribute mean their spelling.
      if (typeof raw === 'string' || typeof raw === 'number' || typeof raw === 'boolean') {
        return { kind: 'text', value: String(raw), caseExact: leaf.def.caseExact };
      }
      break;
    case 'boolean':
      if (op !== 'eq') throw invalidFilter(`operator "${op}" cannot be used with boolean attribute ${where}; use eq, ne or pr`);
      if (typeof raw === 'boolean') return { kind: 'boolean', value: raw };
      // Entra ID sends booleans as strings, in any case.
      if (typeof raw === 'string' && /^(true|false)$/i.test(raw)) return { kind: 'boolean', value: raw.toLowerCase() === 'true' };
      throw invalidFilter(`${where} is a boolean; compare it with true or false, not ${JSON.stringify(raw)}`);
    case 'number':
      if (substring) throw invalidFilter(`operator "${op}" cannot be used with numeric attribute ${where}`);
      if (typeof raw === 'number' && Number.isFinite(raw)) return { kind: 'number', value: raw };
      if (typeof raw === 'string' && JSON_NUMBER.test(raw.trim())) return { kind: 'number', value: Number(raw.trim()) };
      throw invalidFilter(`${where} is numeric; compare it with a number, not ${JSON.stringify(raw)}`);
    case 'dateTime': {
      if (substring) throw invalidFilter(`operator "${op}" cannot be used with dateTime attribute ${where}`);
      const micros = typeof raw === 'string' ? parseDateTimeValue(raw) : undefined;
      if (micros === undefined) {
        throw invalidFilter(`${where} is a dateTime; compare it with an ISO 8601 date-time such as "2011-05-13T04:42:34Z", not ${JSON.stringify(raw)}`);
      }
      formatMicros(micros); // range check: the value must be expressible to PostgreSQL
      return { kind: 'dateTime', micros };
    }
  }
  throw invalidFilter(`${where} cannot be compared with ${JSON.stringify(raw)}`);
}

/** Resolves and checks a filter for a resource type; throws 400 invalidFilter as parseFilter does. */
function analyze(filter: Filter, registry: SchemaRegistry, resourceType: ResourceType): Node {
  return new Analyzer(registry, resourceType).node(filter, 0);
}

// ---------------------------------------------------------------------------------------------
// Values: case folding, code point order, dateTime
// ---------------------------------------------------------------------------------------------

const ASCII = /^[\x00-\x7f]*$/;
const foldCache = new Map<string, string>();

/**
 * Lowers a string code point by code point with the Unicode simple lowercase mapping, the way
 * PostgreSQL's lower() does under a UTF-8 locale. String.prototype.toLowerCase differs in two ways
 * that matter here: "İ" becomes two code points, and a final "Σ" becomes "ς" depending on context.
 */
export function foldCase(s: string): string {
  if (ASCII.test(s)) return s.toLowerCase();
  let out = '';
  for (const ch of s) {
    let lowered = foldCache.get(ch);
    if (lowered === undefined) {
      lowered = String.fromCodePoint(ch.toLowerCase().codePointAt(0)!);
      if (foldCache.size < 10_000) foldCache.set(ch, lowered);
    }
    out += lowered;
  }
  return out;
}

/** Orders strings by code point, as PostgreSQL's "C" collation orders UTF-8 bytes. */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) {
      // UTF-16 puts surrogates (astral code points) below U+E000–U+FFFF; code point order puts them above.
      const fx = x >= 0xd800 && x <= 0xdfff ? x + 0x2000 : x >= 0xe000 ? x - 0x800 : x;
      const fy = y >= 0xd800 && y <= 0xdfff ? y + 0x2000 : y >= 0xe000 ? y - 0x800 : y;
      return fx - fy;
    }
  }
  return a.length - b.length;
}

const MS = 1000n;
const floorDiv = (a: bigint, b: bigint): bigint => (a >= 0n ? a / b : -((-a + b - 1n) / b));
const ceilDiv = (a: bigint, b: bigint): bigint => -floorDiv(-a, b);

function isLeapYear(y: number): boolean {
  return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
}

function daysInMonth(y: number, m: number): number {
  return m === 2 ? (isLeapYear(y) ? 29 : 28) : [4, 6, 9, 11].includes(m) ? 30 : 31;
}

function civilMicros(y: number, mo: number, d: number, h: number, mi: number, s: number): bigint {
  const date = new Date(0);
  date.setUTCFullYear(y, mo - 1, d);
  date.setUTCHours(h, mi, s, 0);
  return BigInt(date.getTime()) * MS;
}

const LENIENT_DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?\s*(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?$/;

/**
 * A dateTime comparison value, in microseconds since the epoch. Lenient, as clients are: a date
 * alone, seconds or offset omitted (UTC), a space for "T", fractions beyond microseconds dropped.
 */
function parseDateTimeValue(text: string): bigint | undefined {
  const m = LENIENT_DATE_TIME.exec(text.trim());
  if (!m) return undefined;
  const [y, mo, d, h, mi, s] = [m[1], m[2], m[3], m[4] ?? '0', m[5] ?? '0', m[6] ?? '0'].map(Number) as [number, number, number, number, number, number];
  if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > daysInMonth(y, mo) || h > 23 || mi > 59 || s > 59) return undefined;
  const offH = Number(m[10] ?? '0');
  const offM = Number(m[11] ?? '0');
  if (offH > 23 || offM > 59) return undefined;
  const offset = BigInt((offH * 60 + offM) * 60) * 1_000_000n * (m[9] === '-' ? -1n : 1n);
  const frac = BigInt((m[7] ?? '').slice(0, 6).padEnd(6, '0'));
  return civilMicros(y, mo, d, h, mi, s) + frac - offset;
}

// A stored dateTime the SQL side can cast without error: xsd:dateTime with a real calendar date, at
// most microseconds, an optional offset (UTC when absent), after upper-casing "t" and "z". The same
// pattern (POSIX-compatible syntax) guards the cast in SQL and decides validity in memory.
const YEAR = '([0-9]{3}[1-9]|[0-9]{2}[1-9]0|[0-9][1-9]00|[1-9]000)';
const LEAP_YEAR = '([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)';
const MONTH_DAY = '((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))';
const STORED_DATE_TIME_BASE = `^(${YEAR}-${MONTH_DAY}|${LEAP_YEAR}-02-29)T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]([.][0-9]{1,6})?`;
const STORED_WITH_ZONE = `${STORED_DATE_TIME_BASE}(Z|[+-](0[0-9]|1[0-4]):[0-5][0-9])$`;
const STORED_WITHOUT_ZONE = `${STORED_DATE_TIME_BASE}$`;
const STORED_WITH_ZONE_RE = new RegExp(STORED_WITH_ZONE);
const STORED_WITHOUT_ZONE_RE = new RegExp(STORED_WITHOUT_ZONE);
const STORED_FIELDS = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(?:Z|([+-])(\d{2}):(\d{2}))?$/;

/** A stored (or rendered) dateTime in microseconds, or undefined when SQL would not read it either. */
function parseStoredDateTime(v: unknown): bigint | undefined {
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? undefined : BigInt(v.getTime()) * MS;
  if (typeof v !== 'string') return undefined;
  const s = v.toUpperCase();
  if (!STORED_WITH_ZONE_RE.test(s) && !STORED_WITHOUT_ZONE_RE.test(s)) return undefined;
  const m = STORED_FIELDS.exec(s)!;
  const [y, mo, d, h, mi, sec] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const offset = m[8] ? BigInt((Number(m[9]) * 60 + Number(m[10])) * 60) * 1_000_000n * (m[8] === '-' ? -1n : 1n) : 0n;
  return civilMicros(y, mo, d, h, mi, sec) + BigInt((m[7] ?? '').padEnd(6, '0')) - offset;
}

/** An instant as PostgreSQL timestamptz input; years outside 1–9999 are refused. */
function formatMicros(micros: bigint): string {
  const ms = floorDiv(micros, MS);
  const iso = new Date(Number(ms)).toISOString();
  if (!/^\d{4}-/.test(iso) || iso.startsWith('0000')) throw invalidFilter('the dateTime value is out of range (years 0001 to 9999)');
  return `${iso.slice(0, -1)}${String(micros - ms * MS).padStart(3, '0')}Z`;
}

// ---------------------------------------------------------------------------------------------
// In-memory evaluation
// ---------------------------------------------------------------------------------------------

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function getPath(from: unknown, keys: string[]): unknown {
  let cur = from;
  for (const k of keys) {
    if (!isObject(cur) || !Object.hasOwn(cur, k)) return undefined;
    cur = cur[k];
  }
  return cur;
}

function present(v: unknown): boolean {
  if (v === undefined || v === null || v === '') return false;
  if (Array.isArray(v)) return v.length > 0;
  if (isObject(v)) return Object.keys(v).length > 0;
  return true;
}

function compareOrdered(c: number, op: CmpOp): boolean {
  switch (op) {
    case 'gt':
      return c > 0;
    case 'ge':
      return c >= 0;
    case 'lt':
      return c < 0;
    case 'le':
      return c <= 0;
    default:
      return c === 0;
  }
}

/** Compares one stored value with a comparison's operand; a value of the wrong type never matches. */
function compareValue(x: unknown, op: CmpOp, o: Operand): boolean {
  switch (o.kind) {
    case 'text': {
      if (typeof x !== 'string') return false;
      const a = o.caseExact ? x : foldCase(x);
      const b = o.caseExact ? o.value : foldCase(o.value);
      if (op === 'co') return a.includes(b);
      if (op === 'sw') return a.startsWith(b);
      if (op === 'ew') return a.endsWith(b);
      return compareOrdered(compareCodePoints(a, b), op);
    }
    case 'boolean':
      return typeof x === 'boolean' && x === o.value;
    case 'number':
      return typeof x === 'number' && Number.isFinite(x) && compareOrdered(x < o.value ? -1 : x > o.value ? 1 : 0, op);
    case 'dateTime': {
      const t = parseStoredDateTime(x);
      return t !== undefined && compareOrdered(t < o.micros ? -1 : t > o.micros ? 1 : 0, op);
    }
  }
}

function evaluate(n: Node, root: unknown, element: unknown): boolean {
  switch (n.t) {
    case 'and':
      return n.items.every((c) => evaluate(c, root, element));
    case 'or':
      return n.items.some((c) => evaluate(c, root, element));
    case 'not':
      return !evaluate(n.item, root, element);
    case 'cmp':
      return compareValue(readLeaf(n.leaf, root, element), n.op, n.operand);
    case 'pr':
      return present(readLeaf(n.leaf, root, element));
    case 'any': {
      const list = getPath(root, n.coll.keys);
      if (!Array.isArray(list)) return false;
      return list.some((e) => (!n.coll.complex || isObject(e)) && evaluate(n.inner, root, e));
    }
    case 'obj':
      return isObject(readLeaf(n.leaf, root, element)) && evaluate(n.inner, root, element);
  }
}

function readLeaf(leaf: Leaf, root: unknown, element: unknown): unknown {
  return leaf.scope === 'root' ? getPath(root, leaf.keys) : leaf.keys.length === 0 ? element : getPath(element, leaf.keys);
}

/**
 * Evaluates a filter over a rendered SCIM resource (canonical attribute names; `id`; `meta` with
 * ISO 8601 `created` / `lastModified`; Groups with `members`), with exactly the semantics of
 * {@link filterToSql}. Throws 400 invalidFilter for filters that cannot be answered.
 */
export function matchesFilter(filter: Filter, resource: Record<string, unknown>, registry: SchemaRegistry, resourceType: ResourceType): boolean {
  return evaluate(analyze(filter, registry, resourceType), resource, undefined);
}

/**
 * Evaluates the value filter of a PATCH path (`emails[type eq "work"]`, RFC 7644 §3.5.2) over one
 * element of the multi-valued attribute `attributePath`: names in the filter are its
 * sub-attributes. Same semantics as {@link matchesFilter}.
 */
export function matchesElement(
  filter: Filter,
  attributePath: string,
  element: unknown,
  registry: SchemaRegistry,
  resourceType: ResourceType,
): boolean {
  const parent = resolvePath(registry, resourceType, attributePath);
  if (!parent || parent.sub || parent.attribute.type !== 'complex') {
    throw invalidFilter(`${show(attributePath)} is not a complex attribute of ${resourceType} resources`);
  }
  const node = new Analyzer(registry, resourceType).node(filter, 0, { parent, elementScope: true });
  return isObject(element) && evaluate(node, undefined, element);
}

// ---------------------------------------------------------------------------------------------
// SQL
// ---------------------------------------------------------------------------------------------

type ColumnType = 'string' | 'boolean' | 'dateTime' | 'integer' | 'decimal';

/** SQL target description for one resource type. */
export interface SqlTarget {
  resourceType: ResourceType;
  /** SQL expression of the jsonb resource column, e.g. 'u.resource'. */
  resource: string;
  /**
   * Attributes answered by a dedicated column, by canonical path (e.g. 'userName': { sql:
   * 'u.user_name', type: 'string' }, 'id': { sql: 'u.id::text', ... }, 'meta.created': { sql:
   * 'u.created_at', type: 'dateTime' }). `id` and `meta.*` (other than `meta.resourceType`) can only
   * be filtered when listed here, since the jsonb resource holds neither.
   */
  columns: Record<string, { sql: string; type: ColumnType }>;
  /**
   * Multi-valued attributes stored in another table, e.g. Group 'members': { table:
   * 'group_members', alias: 'm', join: 'm.group_id = g.id', subAttributes: { value:
   * 'm.member_id::text', type: 'm.member_type', display: 'm.display' } }. Sub-attribute
   * expressions are text.
   */
  relations?: Record<string, { table: string; alias: string; join: string; subAttributes: Record<string, string> }>;
}

type Relation = NonNullable<SqlTarget['relations']>[string];

/** Where a leaf's value comes from in SQL. */
type Source =
  | { from: 'column'; sql: string; type: ColumnType }
  | { from: 'json'; json: string; text: string }
  | { from: 'relation'; sql: string }
  | { from: 'constant'; value: unknown };

interface Context {
  /** Alias of the jsonb element in a jsonb_array_elements subquery. */
  element?: string;
  relation?: Relation;
}

const STRING_JSONB = (json: string): string => `jsonb_typeof(${json}) = 'string'`;
const NEEDS_NO_PARENS = /^[\w.]+(::\w+)?$/;
const paren = (sql: string): string => (NEEDS_NO_PARENS.test(sql) ? sql : `(${sql})`);
const SQL_OPS: Record<CmpOp, string> = { eq: '=', co: 'LIKE', sw: 'LIKE', ew: 'LIKE', gt: '>', ge: '>=', lt: '<', le: '<=' };

/**
 * A jsonb object key as a SQL literal. Keys are canonical names from the schema registry, never
 * client text; custom schema URNs may still contain a quote, so quoting is done properly, in a form
 * that reads the same whatever standard_conforming_strings says.
 */
function keyLiteral(k: string): string {
  const quoted = k.replace(/'/g, "''");
  return k.includes('\\') ? `E'${quoted.replace(/\\/g, '\\\\')}'` : `'${quoted}'`;
}

/** Escapes LIKE metacharacters with backslash, PostgreSQL's default LIKE escape character. */
function likeEscape(s: string): string {
  return s.replace(/[\\%_]/g, (c) => `\\${c}`);
}

class SqlWriter {
  private aliases = 0;

  constructor(
    private readonly target: SqlTarget,
    private readonly params: unknown[],
  ) {}

  private param(v: unknown): string {
    this.params.push(v);
    return `$${this.params.length}`;
  }

  /** The jsonb value at `keys` under `base`, and its text. */
  json(base: string, keys: string[]): { json: string; text: string } {
    if (keys.length === 0) return { json: base, text: `(${base} #>> '{}')` };
    const init = keys
      .slice(0, -1)
      .map((k) => `->${keyLiteral(k)}`)
      .join('');
    const last = keyLiteral(keys[keys.length - 1]!);
    return { json: `${base}${init}->${last}`, text: `${base}${init}->>${last}` };
  }

  source(leaf: Leaf, ctx: Context): Source {
    if (leaf.scope === 'element') {
      if (ctx.relation) {
        const sql = ctx.relation.subAttributes[leaf.def.name];
        if (sql === undefined) throw invalidFilter(`"${leaf.path}" cannot be used in a filter`);
        return { from: 'relation', sql };
      }
      return { from: 'json', ...this.json(`${ctx.element!}.v`, leaf.keys) };
    }
    const column = this.target.columns[leaf.path];
    if (column) return { from: 'column', ...column };
    if (leaf.path === 'meta.resourceType') return { from: 'constant', value: this.target.resourceType };
    if (leaf.path === 'meta') return { from: 'constant', value: { resourceType: this.target.resourceType } };
    if (leaf.path === 'id' || leaf.path.startsWith('meta.')) throw invalidFilter(`"${leaf.path}" cannot be used in a filter`);
    return { from: 'json', ...this.json(this.target.resource, leaf.keys) };
  }

  /** SQL for a node; `negate` pushes a `not` down to the leaves, where NULL is turned into false first. */
  node(n: Node, negate: boolean, ctx: Context): string {
    switch (n.t) {
      case 'and':
      case 'or': {
        const parts = n.items.map((c) => this.node(c, negate, ctx));
        if (parts.length === 1) return parts[0]!;
        return `(${parts.join((n.t === 'and') !== negate ? ' AND ' : ' OR ')})`;
      }
      case 'not':
        return this.node(n.item, !negate, ctx);
      case 'any': {
        const exists = this.any(n);
        return negate ? `NOT ${exists}` : exists;
      }
      default: {
        // A leaf may be NULL (missing value); WHERE treats that as false, so it is only a concern
        // under negation.
        const sql = this.leaf(n, ctx);
        if (sql === 'TRUE' || sql === 'FALSE') return (sql === 'TRUE') !== negate ? 'TRUE' : 'FALSE';
        return negate ? `NOT COALESCE(${sql}, FALSE)` : sql;
      }
    }
  }

  private any(n: Extract<Node, { t: 'any' }>): string {
    const relation = this.target.relations?.[n.coll.path];
    if (relation) {
      return `EXISTS (SELECT 1 FROM ${relation.table} ${relation.alias} WHERE ${relation.join} AND ${this.node(n.inner, false, { relation })})`;
    }
    const alias = `scim_e${++this.aliases}`;
    const { json } = this.json(this.target.resource, n.coll.keys);
    const objects = n.coll.complex ? `jsonb_typeof(${alias}.v) = 'object' AND ` : '';
    const inner = this.node(n.inner, false, { element: alias });
    return `EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof(${json}) = 'array' THEN ${json} END) AS ${alias}(v) WHERE ${objects}${inner})`;
  }

  private leaf(n: Extract<Node, { t: 'cmp' | 'pr' | 'obj' }>, ctx: Context): string {
    if (n.t === 'pr' && n.leaf.scope === 'root') {
      const relation = this.target.relations?.[n.leaf.path];
      if (relation) return `EXISTS (SELECT 1 FROM ${relation.table} ${relation.alias} WHERE ${relation.join})`;
    }
    const src = this.source(n.leaf, ctx);
    if (src.from === 'constant') {
      if (n.t === 'obj') return this.node(n.inner, false, ctx);
      const ok = n.t === 'pr' ? present(src.value) : compareValue(src.value, n.op, n.operand);
      return ok ? 'TRUE' : 'FALSE';
    }
    if (n.t === 'obj') {
      if (src.from !== 'json') throw invalidFilter(`"${n.leaf.path}[...]" cannot be used in a filter`);
      return `(jsonb_typeof(${src.json}) = 'object' AND ${this.node(n.inner, false, ctx)})`;
    }
    if (n.t === 'pr') return this.presence(src, n.leaf);
    return this.compare(src, n.leaf, n.op, n.operand);
  }

  private presence(src: Exclude<Source, { from: 'constant' }>, leaf: Leaf): string {
    switch (src.from) {
      case 'json':
        return `(jsonb_typeof(${src.json}) <> 'null' AND ${src.json} NOT IN ('""', '[]', '{}'))`;
      case 'relation':
        return `(${src.sql} IS NOT NULL AND ${src.sql} <> '')`;
      case 'column':
        return leaf.kind === 'text' ? `(${src.sql} IS NOT NULL AND ${src.sql} <> '')` : `${paren(src.sql)} IS NOT NULL`;
    }
  }

  private compare(src: Exclude<Source, { from: 'constant' }>, leaf: Leaf, op: CmpOp, o: Operand): string {
    switch (o.kind) {
      case 'text': {
        const text = src.from === 'json' ? src.text : src.sql;
        let value = o.value;
        if (op === 'co') value = `%${likeEscape(value)}%`;
        else if (op === 'sw') value = `${likeEscape(value)}%`;
        else if (op === 'ew') value = `%${likeEscape(value)}`;
        const p = this.param(value);
        const [l, r] = o.caseExact ? [paren(text), p] : [`lower(${text})`, `lower(${p})`];
        const collate = op === 'gt' || op === 'ge' || op === 'lt' || op === 'le' ? ' COLLATE "C"' : '';
        const cmp = `${l} ${SQL_OPS[op]} ${r}${collate}`;
        return src.from === 'json' ? `(${STRING_JSONB(src.json)} AND ${cmp})` : cmp;
      }
      case 'boolean':
        if (src.from === 'json') return `${src.json} = ${this.param(JSON.stringify(o.value))}::jsonb`;
        if (src.from === 'column') return `${paren(src.sql)} = ${this.param(o.value)}::boolean`;
        throw invalidFilter(`"${leaf.path}" cannot be compared in a filter`);
      case 'number':
        if (src.from === 'json') {
          return `CASE WHEN jsonb_typeof(${src.json}) = 'number' THEN (${src.json})::numeric END ${SQL_OPS[op]} ${this.param(String(o.value))}::numeric`;
        }
        if (src.from === 'column') return `${paren(src.sql)} ${SQL_OPS[op]} ${this.param(String(o.value))}::numeric`;
        throw invalidFilter(`"${leaf.path}" cannot be compared in a filter`);
      case 'dateTime':
        if (src.from === 'json') {
          const t = `upper(${src.text})`;
          const instant =
            `CASE WHEN ${STRING_JSONB(src.json)} AND ${t} ~ '${STORED_WITH_ZONE}' THEN ${t}::timestamptz ` +
            `WHEN ${STRING_JSONB(src.json)} AND ${t} ~ '${STORED_WITHOUT_ZONE}' THEN (${t} || 'Z')::timestamptz END`;
          return `${instant} ${SQL_OPS[op]} ${this.param(formatMicros(o.micros))}::timestamptz`;
        }
        if (src.from === 'column') return this.columnInstant(paren(src.sql), op, o.micros);
        throw invalidFilter(`"${leaf.path}" cannot be compared in a filter`);
    }
  }

  /**
   * Clients see a timestamp column truncated to milliseconds, so the comparison is made on that
   * value, rewritten into bounds on the raw column so its index still applies: for a millisecond
   * boundary K, trunc(col) >= K exactly when col >= K.
   */
  private columnInstant(col: string, op: CmpOp, v: bigint): string {
    const at = (micros: bigint): string => `${this.param(formatMicros(micros))}::timestamptz`;
    const floor = floorDiv(v, MS) * MS;
    const ceil = ceilDiv(v, MS) * MS;
    switch (op) {
      case 'gt':
        return `${col} >= ${at(floor + MS)}`;
      case 'ge':
        return `${col} >= ${at(ceil)}`;
      case 'lt':
        return `${col} < ${at(ceil)}`;
      case 'le':
        return `${col} < ${at(floor + MS)}`;
      default:
        return v === floor ? `(${col} >= ${at(v)} AND ${col} < ${at(v + MS)})` : 'FALSE';
    }
  }
}

/**
 * Translates a filter into a SQL boolean expression over `target`, appending every comparison value
 * to `params` (values never appear in the SQL text) and returning the expression. Equivalent to
 * {@link matchesFilter} on the rendered resource. Index-friendly where it matters: `userName eq "x"`
 * becomes `lower(u.user_name) = lower($n)`, `externalId eq` a plain column equality, `id eq`
 * `u.id::text = $n` (never a uuid cast that a non-UUID could break), multi-valued attributes and
 * relations EXISTS subqueries. Throws 400 invalidFilter for filters that cannot be answered.
 */
export function filterToSql(filter: Filter, target: SqlTarget, registry: SchemaRegistry, params: unknown[]): string {
  const node = analyze(filter, registry, target.resourceType);
  return new SqlWriter(target, params).node(node, false, {});
}

/**
 * The SQL expression to ORDER BY for a sortBy attribute path (RFC 7644 §3.4.2.3): strings that are
 * not caseExact lowered, text in code point order (`COLLATE "C"`, as filters compare), jsonb values
 * read with their type; for a multi-valued attribute the primary value, else the first one (the
 * smallest for a relation). The expression is NULL for resources without a value: callers add
 * NULLS LAST. Throws 400 invalidValue for an unknown or unsortable attribute.
 */
export function sortExpression(path: string, target: SqlTarget, registry: SchemaRegistry): string {
  const invalid = (why: string): ScimError => ScimError.badRequest('invalidValue', `sortBy ${show(path)} ${why}`);
  const r = resolvePath(registry, target.resourceType, path);
  if (!r) throw invalid(`is not an attribute of ${target.resourceType} resources`);
  if (!isReadable(r)) throw invalid('cannot be used for sorting');
  // Sort keys read columns and jsonb only: the writer is never asked for a parameter here.
  const writer = new SqlWriter(target, []);
  const key = (src: Source, def: AttributeDef): string => {
    const kind = kindOf(def);
    switch (src.from) {
      case 'column':
      case 'relation':
        return kind === 'text' ? `${def.caseExact ? paren(src.sql) : `lower(${src.sql})`} COLLATE "C"` : paren(src.sql);
      case 'json': {
        const typed = (type: string, value: string): string => `CASE WHEN jsonb_typeof(${src.json}) = '${type}' THEN ${value} END`;
        if (kind === 'boolean') return typed('boolean', `(${src.json})::boolean`);
        if (kind === 'number') return typed('number', `(${src.json})::numeric`);
        if (kind === 'dateTime') {
          const t = `upper(${src.text})`;
          return (
            `CASE WHEN ${STRING_JSONB(src.json)} AND ${t} ~ '${STORED_WITH_ZONE}' THEN ${t}::timestamptz ` +
            `WHEN ${STRING_JSONB(src.json)} AND ${t} ~ '${STORED_WITHOUT_ZONE}' THEN (${t} || 'Z')::timestamptz END`
          );
        }
        const text = typed('string', src.text);
        return def.caseExact ? `(${text}) COLLATE "C"` : `lower(${text}) COLLATE "C"`;
      }
      case 'constant':
        throw invalid('cannot be used for sorting');
    }
  };
  let sql: string;
  if (r.attribute.multiValued) {
    const sub = r.sub ?? (r.attribute.type === 'complex' ? r.attribute.subAttributes?.find((s) => s.name === 'value') : r.attribute);
    if (!sub) throw invalid('names a multi-valued attribute without a "value" sub-attribute; name a sub-attribute');
    const complex = r.attribute.type === 'complex';
    const element: Leaf = { path: complex ? `${r.attributePath}.${sub.name}` : r.attributePath, keys: complex ? [sub.name] : [], scope: 'element', def: sub, kind: kindOf(sub) };
    const relation = target.relations?.[r.attributePath];
    if (relation) {
      const k = key(writer.source(element, { relation }), sub);
      sql = `(SELECT min(${k}) FROM ${relation.table} ${relation.alias} WHERE ${relation.join})`;
    } else {
      const alias = 'scim_s';
      const k = key(writer.source(element, { element: alias }), sub);
      const list = writer.json(target.resource, r.attributeKeys).json;
      const primary = r.attribute.type === 'complex' ? `(${alias}.v->'primary' = 'true'::jsonb) IS TRUE DESC, ` : '';
      sql =
        `(SELECT ${k} FROM jsonb_array_elements(CASE WHEN jsonb_typeof(${list}) = 'array' THEN ${list} END) ` +
        `WITH ORDINALITY AS ${alias}(v, n) WHERE ${k} IS NOT NULL ORDER BY ${primary}${alias}.n LIMIT 1)`;
    }
  } else {
    const def = r.sub ?? r.attribute;
    if (def.type === 'complex') throw invalid('names a complex attribute; name one of its sub-attributes');
    const leaf: Leaf = { path: r.path, keys: r.keys, scope: 'root', def, kind: kindOf(def) };
    let src: Source;
    try {
      src = writer.source(leaf, {});
    } catch {
      throw invalid('cannot be used for sorting');
    }
    sql = key(src, def);
  }
  return sql;
}
