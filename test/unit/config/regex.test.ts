import { expect } from 'chai';
import fc from 'fast-check';
import { parseConfig } from '../../../src/config/load.js';
import { compileRouteRegex, unsupportedConstruct } from '../../../src/config/regex.js';
import { isStranglerError, type StranglerError } from '../../../src/errors.js';
import { matchRoute } from '../../../src/routing/table.js';
import { TWO_BACKENDS, tableWithRoutes } from '../../support/tables.js';

/** The one-line error a file whose only route has `jobType` is rejected with. */
function rejection(jobType: string): string {
  try {
    parseConfig(Buffer.from(`${TWO_BACKENDS}routes:\n  - jobType: ${JSON.stringify(jobType)}\n    backend: buildbot\n`), 'routes.yaml');
  } catch (error) {
    expect(isStranglerError(error, 'CONFIG_INVALID'), String(error)).to.equal(true);
    return (error as StranglerError).message;
  }
  expect.fail(`${jobType} was accepted`);
}

describe('config/regex: route regular expressions run on RE2', () => {
  it('matches a catastrophic-backtracking pattern against a 50,000-character name, with the right answer', () => {
    const table = tableWithRoutes([
      ['/^(a+)+$/', 'taskservice'],
      ['/^(a|aa)*b$/', 'taskservice'],
      ['/(x+x+)+y/', 'taskservice'],
    ]);
    const many = 'a'.repeat(50_000);
    // With a backtracking engine each of these runs for longer than the test suite.
    expect(matchRoute(table, `${many}!`)).to.equal(undefined);
    expect(matchRoute(table, many)?.pattern).to.equal('/^(a+)+$/');
    expect(matchRoute(table, `${many}b`)?.pattern).to.equal('/^(a|aa)*b$/');
    expect(matchRoute(table, 'x'.repeat(50_000))).to.equal(undefined);
  });

  it('keeps the i flag, and RE2 syntax such as \\x{...}, (?i) and (?P<name>...)', () => {
    const table = tableWithRoutes([
      ['/^WIN(32|64)-/i', 'taskservice'],
      ['/^mac-\\x{41}$/', 'taskservice'],
      ['/^(?i)linux-(?P<build>opt|debug)$/', 'taskservice'],
    ]);
    expect(matchRoute(table, 'win64-opt')?.pattern).to.equal('/^WIN(32|64)-/i');
    expect(matchRoute(table, 'WIN32-debug')?.pattern).to.equal('/^WIN(32|64)-/i');
    expect(matchRoute(table, 'mac-A')?.pattern).to.equal('/^mac-\\x{41}$/');
    expect(matchRoute(table, 'mac-a')).to.equal(undefined);
    expect(matchRoute(table, 'LINUX-Opt')?.pattern).to.equal('/^(?i)linux-(?P<build>opt|debug)$/');
  });

  it('rejects lookahead, lookbehind and backreferences at load, located, saying why', () => {
    const prefix = `routes.yaml:5:14: routes[0].jobType: `;
    const tail = ' is not supported (route patterns are RE2, which matches in linear time); expected /PATTERN/ or /PATTERN/i in RE2 syntax, without lookahead, lookbehind or backreferences';
    expect(rejection('/^(?!test-)/')).to.equal(`${prefix}negative lookahead "(?!"${tail}`);
    expect(rejection('/^linux(?=64)/')).to.equal(`${prefix}lookahead "(?="${tail}`);
    expect(rejection('/(?<=win)64$/')).to.equal(`${prefix}lookbehind "(?<="${tail}`);
    expect(rejection('/(?<!win)64$/')).to.equal(`${prefix}negative lookbehind "(?<!"${tail}`);
    expect(rejection('/^(a)\\1$/')).to.equal(`${prefix}the backreference "\\1"${tail}`);
    expect(rejection('/^(?<p>a)-\\k<p>$/')).to.equal(`${prefix}the named backreference "\\k<...>"${tail}`);
  });

  it('rejects other invalid patterns with RE2\'s reason, located', () => {
    expect(rejection('/[/')).to.equal('routes.yaml:5:14: routes[0].jobType: bad regular expression: missing closing ]: `[`; expected /PATTERN/ or /PATTERN/i in RE2 syntax');
    expect(rejection('/a{2,1}/')).to.match(/^routes\.yaml:5:14: routes\[0\]\.jobType: bad regular expression: invalid repeat count: `\{2,1\}`; expected /);
    expect(rejection('/^\\u0041/')).to.contain('invalid escape sequence: `\\u` (write \\x{0041} for a code point)');
  });

  it('names a JavaScript-only construct only outside escapes and character classes', () => {
    expect(unsupportedConstruct('[(?=]a')).to.equal(undefined);
    expect(unsupportedConstruct('\\(?=a')).to.equal(undefined);
    expect(unsupportedConstruct('[\\]1](?<=a)')).to.equal('lookbehind "(?<="');
    expect(unsupportedConstruct('\\\\1')).to.equal(undefined); // an escaped backslash, then a literal 1
    expect(unsupportedConstruct('[]\\1]')).to.equal(undefined);
  });

  it('agrees with RegExp on patterns both engines read the same way (generated)', () => {
    // Tokens whose meaning is the same in RE2 and in JavaScript without the u flag.
    const token = fc.constantFrom('a', 'b', '-', '1', '^', '$', '.', '\\d', '\\w', '[ab]', '[^a]', '[a-c]', 'a?', 'b*', 'a+', 'b{2}', 'a{1,3}', '(a|b)', '(?:ab)+', '(a+)+', '\\.', '\\-', '|');
    const name = fc.array(fc.constantFrom('a', 'b', 'c', '-', '1', '.', 'A', '_'), { maxLength: 12 }).map((cs) => cs.join(''));
    fc.assert(
      fc.property(fc.array(token, { minLength: 1, maxLength: 8 }), fc.constantFrom('', 'i' as const), fc.array(name, { minLength: 1, maxLength: 10 }), (tokens, flags, names) => {
        const source = tokens.join('');
        let native: RegExp;
        try {
          native = new RegExp(source, flags);
        } catch {
          return;
        }
        const re2 = compileRouteRegex(source, flags);
        if (!re2.ok) return; // RE2 refuses some forms RegExp accepts (a*+, say): the file is rejected, never misrouted
        for (const n of names) expect(re2.test(n), `/${source}/${flags} on ${JSON.stringify(n)}`).to.equal(native.test(n));
      }),
      { numRuns: 2000 },
    );
  });
});
