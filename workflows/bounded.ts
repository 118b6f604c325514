/**
 * Bounds for values the project copies into Temporal's visibility data (search attributes and
 * memo). Temporal refuses a whole start or signal-with-start whose search attribute value exceeds
 * its size limit (2,048 bytes by default), so a long directory value (a userName is limited only by
 * the request body) would otherwise make the change undeliverable. Values are cut by bytes of
 * their encoded form, and only between characters, so the stored prefix is always valid UTF-8.
 */

/**
 * Most bytes a value may take in its JSON-encoded payload: well under Temporal's default
 * per-value search attribute limit (2,048), with room for the quotes and a marker.
 */
export const VISIBILITY_VALUE_MAX_BYTES = 1024;

/** Appended to a cut value, so a reader knows it is a prefix. */
export const TRUNCATION_MARK = '…';

/**
 * `value` unchanged when its JSON encoding fits in `maxBytes`; otherwise its longest prefix of
 * whole characters (code points) that fits together with {@link TRUNCATION_MARK}.
 */
export function boundedVisibilityValue(value: string, maxBytes = VISIBILITY_VALUE_MAX_BYTES): string {
  if (encodedBytes(value) <= maxBytes) return value;
  const budget = maxBytes - encodedBytes(TRUNCATION_MARK);
  let used = 2; // the quotes of the JSON string
  let end = 0;
  for (const ch of value) {
    // JSON.stringify escapes quotes, backslashes, control characters and lone surrogates.
    const size = encodedBytes(ch) - 2;
    if (used + size > budget) break;
    used += size;
    end += ch.length;
  }
  return value.slice(0, end) + TRUNCATION_MARK;
}

function encodedBytes(value: string): number {
  return Buffer.byteLength(JSON.stringify(value), 'utf8');
}
