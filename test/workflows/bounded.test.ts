/**
 * Values copied into Temporal's search attributes and memo are bounded by encoded bytes and cut
 * only between characters.
 */
import t from 'tap';
import fc from 'fast-check';
import { boundedVisibilityValue, TRUNCATION_MARK, VISIBILITY_VALUE_MAX_BYTES } from '../../workflows/bounded.js';

const encoded = (v: string) => Buffer.byteLength(JSON.stringify(v), 'utf8');

t.test('a value that fits is kept as it is', async (t) => {
  t.equal(boundedVisibilityValue('alice@example.com'), 'alice@example.com');
  const exact = 'a'.repeat(VISIBILITY_VALUE_MAX_BYTES - 2);
  t.equal(boundedVisibilityValue(exact), exact, 'a value exactly at the limit (with its quotes) is not cut');
});

t.test('a long multi-byte value is cut at a character boundary, within the limit', async (t) => {
  const long = 'é😀中'.repeat(400); // 2 + 4 + 3 bytes each: 3,600 bytes
  const cut = boundedVisibilityValue(long);
  t.ok(encoded(cut) <= VISIBILITY_VALUE_MAX_BYTES, `encoded size ${encoded(cut)} within the limit`);
  t.ok(cut.endsWith(TRUNCATION_MARK), 'the cut is marked');
  const prefix = cut.slice(0, -TRUNCATION_MARK.length);
  t.ok(long.startsWith(prefix), 'what is kept is a prefix of the value');
  t.equal(Buffer.from(prefix, 'utf8').toString('utf8'), prefix, 'and valid UTF-8 (no half character)');
  t.ok(encoded(cut) > VISIBILITY_VALUE_MAX_BYTES - 8, 'no more is cut than needed');
});

t.test('escapes count: quotes, backslashes and control characters take their encoded size', async (t) => {
  const cut = boundedVisibilityValue('"\\\u0001'.repeat(1000), 100);
  t.ok(encoded(cut) <= 100, `encoded size ${encoded(cut)} within 100`);
});

t.test('any string: the result fits, is a code-point prefix, and is the value itself when it fits', async () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 3000 }), fc.integer({ min: 16, max: 2048 }), (value, max) => {
      const cut = boundedVisibilityValue(value, max);
      if (encoded(value) <= max) return cut === value;
      const prefix = cut.slice(0, -TRUNCATION_MARK.length);
      const codePointPrefix = [...value].slice(0, [...prefix].length).join('') === prefix;
      return encoded(cut) <= max && cut.endsWith(TRUNCATION_MARK) && codePointPrefix;
    }),
  );
});
