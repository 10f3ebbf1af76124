/**
 * The literal text every match of a glob or regex route must start and end
 * with, read off the pattern: `linux64-*-mochitest` can only match names
 * starting with `linux64-` and ending with `-mochitest`. Checking that first
 * costs a few nanoseconds where running the matcher costs a hundred or more,
 * and rules out most patterns for most names. It matters for a job type seen
 * for the first time (not yet memoised), which scans the patterns: with
 * thousands of them, a client sending made-up builder names would otherwise
 * cost close to a millisecond of CPU per request.
 *
 * Read conservatively: only plain name characters count as literal, and
 * anything unusual yields '' (no constraint). A test in
 * test/unit/routing/pattern-literals.test.ts checks, for generated patterns
 * and names, that no name the matcher accepts is ruled out. Pure.
 */

export interface PatternLiterals {
  readonly prefix: string;
  readonly suffix: string;
}

const NONE: PatternLiterals = Object.freeze({ prefix: '', suffix: '' });

/** Characters that mean themselves in picomatch globs and in regular expressions. */
function isPlain(char: string): boolean {
  return /^[A-Za-z0-9_-]$/.test(char);
}

function plainRunFrom(text: string, start: number): string {
  let end = start;
  while (end < text.length && isPlain(text[end]!)) end++;
  return text.slice(start, end);
}

function plainRunBefore(text: string, end: number): string {
  let start = end;
  while (start > 0 && isPlain(text[start - 1]!)) start--;
  return text.slice(start, end);
}

/** For a picomatch glob (as compiled in src/config/compile.ts). */
export function globLiterals(glob: string): PatternLiterals {
  // Negated (`!x`, also after a `./` picomatch strips): matches what the rest does not.
  if (glob.startsWith('!') || glob.startsWith('.')) return NONE;
  const prefix = plainRunFrom(glob, 0);
  if (prefix.length === glob.length) return NONE; // nothing special in it: not a glob we know how to read
  return { prefix, suffix: plainRunBefore(glob, glob.length) };
}

/** For a regular expression route (RE2 syntax, src/config/regex.ts); only `^`/`$`-anchored plain text counts. */
export function regexLiterals(source: string, flags: string): PatternLiterals {
  if (flags !== '' || hasTopLevelAlternative(source)) return NONE; // case-insensitive, or alternatives of the whole
  // RE2's inline flags ((?i), (?m): ^ and $ at line ends) and \Q...\E quoting change what the plain text means.
  if (/\(\?[imsU-]/.test(source) || source.includes('\\Q')) return NONE;
  let prefix = '';
  if (source.startsWith('^')) {
    prefix = plainRunFrom(source, 1);
    // A quantifier that allows zero of the last character (?, *, {0,...}) makes it optional.
    if (/^[?*{]/.test(source.slice(1 + prefix.length))) prefix = prefix.slice(0, -1);
  }
  let suffix = '';
  if (source.endsWith('$') && !source.endsWith('\\$')) {
    suffix = plainRunBefore(source, source.length - 1);
    const before = source.length - 1 - suffix.length - 1;
    if (before >= 0 && source[before] === '\\') suffix = ''; // the run is part of an escape such as \d or \u0041
    if (before < 0 || (before === 0 && source[0] === '^')) return NONE; // the whole pattern is plain text: leave it alone
  }
  return { prefix, suffix };
}

/**
 * Whether `source` has a `|` outside every group: `a|b` does, `^x-(opt|debug)$`
 * does not (its `x-` is still needed by every match). Escapes and character
 * classes are skipped; an unbalanced `)` counts as top level.
 */
function hasTopLevelAlternative(source: string): boolean {
  let depth = 0;
  for (let i = 0; i < source.length; i++) {
    const char = source[i];
    if (char === '\\') i++;
    else if (char === '[') i = classEnd(source, i);
    else if (char === '(') depth++;
    else if (char === ')') depth = Math.max(0, depth - 1);
    else if (char === '|' && depth === 0) return true;
  }
  return false;
}

/** Index of the `]` closing the class opened at `open` (a leading `]` or `^]` is literal); the end if none. */
export function classEnd(source: string, open: number): number {
  let i = open + 1;
  if (source[i] === '^') i++;
  if (source[i] === ']') i++;
  for (; i < source.length; i++) {
    if (source[i] === '\\') i++;
    else if (source[i] === ']') return i;
  }
  return source.length;
}

/** `test`, preceded by the cheap literal check when the pattern has literals. */
export function withLiterals(literals: PatternLiterals, test: (name: string) => boolean): (name: string) => boolean {
  const { prefix, suffix } = literals;
  if (prefix === '' && suffix === '') return test;
  const shortest = prefix.length + suffix.length;
  return (name) => name.length >= shortest && name.startsWith(prefix) && name.endsWith(suffix) && test(name);
}
