/**
 * Filter text to tree, RFC 7644 §3.4.2.2 (https://www.rfc-editor.org/rfc/rfc7644#section-3.4.2.2):
 * a tolerant tokenizer and nesting check in front of scim2-parse-filter's grammar.
 */
import { parse as parseGrammar, type Filter } from 'scim2-parse-filter';
import { invalidFilter, show } from './errors.js';

export type { Filter } from 'scim2-parse-filter';

/** Longest filter text accepted; longer ones are refused before any parsing. */
export const MAX_FILTER_LENGTH = 4096;
/** Deepest nesting of parentheses, value-filter brackets and `not` accepted. */
export const MAX_FILTER_DEPTH = 50;

type Token =
  | { k: '(' | ')' | '[' | ']'; pos: number }
  | { k: 'word'; text: string; pos: number }
  | { k: 'string'; value: string; pos: number };

const COMPARE_OPS = new Set(['eq', 'ne', 'co', 'sw', 'ew', 'gt', 'ge', 'lt', 'le']);
/** A JSON number, as an unquoted or quoted numeric comparison value must be spelled. */
export const JSON_NUMBER = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/;
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
