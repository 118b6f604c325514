/**
 * String comparison shared by in-memory evaluation and sorting: case folding and code point order,
 * matching what PostgreSQL does in SQL (lower() under a UTF-8 locale, `COLLATE "C"`).
 */
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
