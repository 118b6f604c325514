/**
 * Understanding a request written in plain words ("give me access to vpn", "I need the github eng
 * team for 2 days to debug the release"): which of the policies the person may request it names
 * (by name, display name or alias; case-insensitive; a small typo forgiven), for how long, and why.
 *
 * Hand-written rather than a language library: the vocabulary is the catalogue itself, and what is
 * understood is only a suggestion that the person reviews in a prefilled form before anything is
 * requested.
 */

/** What a policy can be called. */
export interface Requestable {
  name: string;
  displayName: string;
  aliases: string[];
}

export interface Understood<P extends Requestable> {
  /** The one policy meant, when it is clear. */
  policy: P | undefined;
  /** When the words fit several policies (or fit none well): the candidates to choose from. */
  choices: P[];
  durationSeconds: number | undefined;
  permanent: boolean;
  justification: string | undefined;
}

const UNITS: Array<[RegExp, number]> = [
  [/^(m|mins?|minutes?)$/, 60],
  [/^(h|hrs?|hours?)$/, 3600],
  [/^(d|days?)$/, 86_400],
  [/^(w|wks?|weeks?)$/, 7 * 86_400],
  [/^(months?)$/, 30 * 86_400],
];
const NUMBER_WORDS: Record<string, number> = { a: 1, an: 1, one: 1, two: 2, three: 3, four: 4, five: 5, six: 6, seven: 7, eight: 8, nine: 9, ten: 10, twelve: 12, couple: 2 };

/** Words that say nothing about which resource is meant. */
const FILLER = new Set([
  'i', 'me', 'my', 'we', 'us', 'need', 'needs', 'want', 'would', 'like', 'please', 'pls', 'give', 'get', 'grant', 'request', 'requesting', 'access', 'to', 'the', 'a', 'an',
  'for', 'on', 'in', 'into', 'of', 'can', 'could', 'you', 'have', 'be', 'added', 'add', 'team', 'group', 'role', 'and', 'with', 'some', 'hi', 'hello', 'hey', 'rights',
]);

/** Splits into lower-case words (letters, digits; hyphens, dots and underscores separate words). */
export function words(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
}

/** Optimal string alignment distance (Damerau–Levenshtein with adjacent transpositions), capped. */
export function editDistance(a: string, b: string, cap = 3): number {
  if (Math.abs(a.length - b.length) > cap) return cap + 1;
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** Whether a written word is the catalogue's word, allowing one typo in 4+ letters and two in 8+. */
function sameWord(written: string, known: string): boolean {
  if (written === known) return true;
  if (/^\d+$/.test(known) || known.length < 4) return false;
  const allowed = known.length >= 8 ? 2 : 1;
  return editDistance(written, known, allowed) <= allowed;
}

/** The phrases a policy answers to, as word lists. */
function phrases(p: Requestable): string[][] {
  const all = [p.name, p.displayName, ...p.aliases].map(words).filter((w) => w.length > 0);
  // "github-eng-team" also answers to "github eng"; a phrase of only filler words is dropped.
  return all.filter((w) => w.some((x) => !FILLER.has(x)));
}

/** Where `phrase` occurs in `text` (word by word, forgiving typos), as [start, end) word indexes. */
function find(text: string[], phrase: string[]): [number, number] | undefined {
  outer: for (let i = 0; i + phrase.length <= text.length; i++) {
    for (let j = 0; j < phrase.length; j++) if (!sameWord(text[i + j]!, phrase[j]!)) continue outer;
    return [i, i + phrase.length];
  }
  return undefined;
}

/** Seconds named by "for 2 days", "3h", "a week", …; with the word span it came from. */
function findDuration(text: string[]): { seconds: number; span: [number, number] } | { permanent: true; span: [number, number] } | undefined {
  for (let i = 0; i < text.length; i++) {
    const w = text[i]!;
    if (/^(permanent|permanently|forever|indefinitely)$/.test(w)) return { permanent: true, span: [i, i + 1] };
    const glued = /^(\d+)([a-z]+)$/.exec(w);
    if (glued) {
      const unit = UNITS.find(([re]) => re.test(glued[2]!));
      if (unit) return { seconds: Number(glued[1]) * unit[1], span: [i, i + 1] };
    }
    const n = /^\d+$/.test(w) ? Number(w) : NUMBER_WORDS[w];
    if (n === undefined) continue;
    let k = i + 1;
    if (w === 'couple' && text[k] === 'of') k++;
    const unit = text[k] !== undefined ? UNITS.find(([re]) => re.test(text[k]!)) : undefined;
    if (unit && n > 0) return { seconds: n * unit[1], span: [i, k + 1] };
  }
  return undefined;
}

const REASON_MARKERS = ['because', 'since', 'so', 'to', 'for'];

/**
 * Understands `text` against the policies the person may request. The policy is the one whose
 * name, display name or alias occurs in the text (the longest such phrase wins; a tie between
 * policies is a choice); failing that, the policies sharing a meaningful word with the text are the
 * choices.
 */
export function understand<P extends Requestable>(text: string, eligible: P[]): Understood<P> {
  const ws = words(text);
  const duration = findDuration(ws);
  const taken = new Set<number>();
  if (duration) for (let i = duration.span[0]; i < duration.span[1]; i++) taken.add(i);

  let best: { length: number; end: number; policies: P[] } = { length: 0, end: 0, policies: [] };
  for (const p of eligible) {
    for (const phrase of phrases(p)) {
      const at = find(ws, phrase);
      if (!at || [...Array(at[1] - at[0]).keys()].some((k) => taken.has(at[0] + k))) continue;
      const length = phrase.join(' ').length;
      if (length > best.length) best = { length, end: at[1], policies: [p] };
      else if (length === best.length && !best.policies.includes(p)) best.policies.push(p);
    }
  }
  let policy: P | undefined;
  let choices: P[] = [];
  let resourceEnd = 0;
  if (best.policies.length === 1) {
    policy = best.policies[0];
    resourceEnd = best.end;
  } else if (best.policies.length > 1) {
    choices = best.policies;
    resourceEnd = best.end;
  } else {
    const meaningful = ws.filter((w, i) => !FILLER.has(w) && !taken.has(i) && !/^\d+$/.test(w));
    choices = eligible.filter((p) => phrases(p).some((ph) => ph.some((k) => !FILLER.has(k) && meaningful.some((w) => sameWord(w, k)))));
  }

  // The reason: what follows "because", "so that", "to …" after the resource and the duration.
  const after = Math.max(resourceEnd, duration?.span[1] ?? 0);
  let justification: string | undefined;
  if (policy || choices.length) {
    const tail = ws.slice(after);
    const marker = tail.findIndex((w) => REASON_MARKERS.includes(w));
    if (marker !== -1) {
      // Keep the person's own spelling: cut the original text at the marker word.
      const lower = text.toLowerCase();
      let pos = 0;
      for (let i = 0; i < after + marker; i++) pos = lower.indexOf(ws[i]!, pos) + ws[i]!.length;
      const markerWord = ws[after + marker]!;
      const start = lower.indexOf(markerWord, pos) + markerWord.length;
      let reason = text.slice(start).trim();
      if (markerWord === 'so' && /^that\b/i.test(reason)) reason = reason.slice(4).trim();
      reason = reason.replace(/[.!]+$/, '').trim();
      if (reason.length > 0) justification = reason;
    }
  }
  return {
    policy,
    choices,
    durationSeconds: duration && 'seconds' in duration ? duration.seconds : undefined,
    permanent: Boolean(duration && 'permanent' in duration),
    justification,
  };
}

/** "2 days", "8 hours", "1 week", "90 minutes"; for form fields and messages. */
export function formatDuration(seconds: number): string {
  const units: Array<[number, string]> = [
    [7 * 86_400, 'week'],
    [86_400, 'day'],
    [3600, 'hour'],
    [60, 'minute'],
  ];
  for (const [size, name] of units) if (seconds % size === 0 && seconds >= size) return `${seconds / size} ${name}${seconds / size === 1 ? '' : 's'}`;
  return `${seconds} seconds`;
}

/** Parses a duration typed in a form ("2 days", "36h", "permanent"); undefined when it says none. */
export function parseDuration(text: string): { seconds: number } | { permanent: true } | undefined {
  const ws = words(text);
  if (ws.length === 0) return undefined;
  if (/^\d+$/.test(ws[0]!) && ws.length === 1) return { seconds: Number(ws[0]) * 3600 };
  const d = findDuration(ws);
  if (!d || d.span[1] - d.span[0] !== ws.length) return undefined;
  return 'seconds' in d ? { seconds: d.seconds } : { permanent: true };
}
