/**
 * dateTime values in filters (RFC 7644 §3.4.2.2 compares dateTime attributes as instants;
 * https://www.rfc-editor.org/rfc/rfc7644#section-3.4.2.2): lenient parsing of comparison values,
 * the stored forms PostgreSQL can cast, and instants as timestamptz input, all in microseconds.
 */
import { invalidFilter } from './errors.js';

/** Microseconds per millisecond. */
export const MS = 1000n;
/** Integer division rounding toward negative infinity. */
export const floorDiv = (a: bigint, b: bigint): bigint => (a >= 0n ? a / b : -((-a + b - 1n) / b));
/** Integer division rounding toward positive infinity. */
export const ceilDiv = (a: bigint, b: bigint): bigint => -floorDiv(-a, b);

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
export function parseDateTimeValue(text: string): bigint | undefined {
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
/** POSIX regular expression for a stored dateTime with an offset (after upper-casing). */
export const STORED_WITH_ZONE = `${STORED_DATE_TIME_BASE}(Z|[+-](0[0-9]|1[0-4]):[0-5][0-9])$`;
/** POSIX regular expression for a stored dateTime without an offset, read as UTC. */
export const STORED_WITHOUT_ZONE = `${STORED_DATE_TIME_BASE}$`;
const STORED_WITH_ZONE_RE = new RegExp(STORED_WITH_ZONE);
const STORED_WITHOUT_ZONE_RE = new RegExp(STORED_WITHOUT_ZONE);
const STORED_FIELDS = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(?:Z|([+-])(\d{2}):(\d{2}))?$/;

/** A stored (or rendered) dateTime in microseconds, or undefined when SQL would not read it either. */
export function parseStoredDateTime(v: unknown): bigint | undefined {
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
export function formatMicros(micros: bigint): string {
  const ms = floorDiv(micros, MS);
  const iso = new Date(Number(ms)).toISOString();
  if (!/^\d{4}-/.test(iso) || iso.startsWith('0000')) throw invalidFilter('the dateTime value is out of range (years 0001 to 9999)');
  return `${iso.slice(0, -1)}${String(micros - ms * MS).padStart(3, '0')}Z`;
}
