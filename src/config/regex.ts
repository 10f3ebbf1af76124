/**
 * Route regular expressions (`jobType: /PATTERN/` or `/PATTERN/i`), compiled
 * with RE2 (re2js) rather than JavaScript's RegExp.
 *
 * SECURITY: job types come from clients (paths, headers, force bodies). A
 * backtracking engine lets one pattern such as `/^(a+)+$/` and one crafted
 * builder name hold the event loop for minutes; RE2 matches in time linear in
 * the name, whatever the pattern. The price is RE2's syntax: no lookahead,
 * lookbehind or backreferences, which are rejected when the file is loaded.
 */
import { RE2JS } from 're2js';
import { classEnd } from '../routing/pattern-literals.js';

export type RouteRegexResult = { ok: true; test: (name: string) => boolean } | { ok: false; reason: string };

const EXPECTED = 'expected /PATTERN/ or /PATTERN/i in RE2 syntax';

/**
 * Compiles the text between the slashes of a route pattern.
 *
 * @example compileRouteRegex('^android-api-1[56]-', '').ok // true
 * @example compileRouteRegex('^(?!test-)', '') // { ok: false, reason: 'lookahead "(?!" is not supported; ...' }
 */
export function compileRouteRegex(source: string, flags: '' | 'i'): RouteRegexResult {
  let regex: RE2JS;
  try {
    regex = RE2JS.compile(source, flags === 'i' ? RE2JS.CASE_INSENSITIVE : 0);
  } catch (error) {
    const unsupported = unsupportedConstruct(source);
    if (unsupported) return { ok: false, reason: `${unsupported} is not supported (route patterns are RE2, which matches in linear time); ${EXPECTED}, without lookahead, lookbehind or backreferences` };
    return { ok: false, reason: `bad regular expression: ${describe(error)}; ${EXPECTED}` };
  }
  return { ok: true, test: (name) => regex.test(name) };
}

function describe(error: unknown): string {
  const message = String((error as Error)?.message ?? error).replace(/^error parsing regexp: /, '');
  // The JavaScript spelling of a code point; RE2 spells it \x{...}.
  return message.includes('`\\u`') ? `${message} (write \\x{0041} for a code point)` : message;
}

/**
 * The JavaScript-only construct in `source` that RE2 cannot run, named for a
 * person: lookaround and backreferences. Read outside character classes and
 * escapes; used only to explain a pattern RE2 has already refused.
 */
export function unsupportedConstruct(source: string): string | undefined {
  for (let i = 0; i < source.length; i++) {
    const char = source[i];
    if (char === '\\') {
      const next = source[i + 1] ?? '';
      if (/[1-9]/.test(next)) return `the backreference "\\${next}"`;
      if (next === 'k' && source[i + 2] === '<') return 'the named backreference "\\k<...>"';
      i++;
    } else if (char === '[') {
      i = classEnd(source, i);
    } else if (char === '(' && source[i + 1] === '?') {
      const rest = source.slice(i + 2, i + 4);
      if (rest.startsWith('=')) return 'lookahead "(?="';
      if (rest.startsWith('!')) return 'negative lookahead "(?!"';
      if (rest === '<=') return 'lookbehind "(?<="';
      if (rest === '<!') return 'negative lookbehind "(?<!"';
    }
  }
  return undefined;
}
