import { expect } from 'chai';
import fc from 'fast-check';
import picomatch from 'picomatch';
import { compileRouteRegex } from '../../../src/config/regex.js';
import { globLiterals, regexLiterals, withLiterals } from '../../../src/routing/pattern-literals.js';

/** Whether the literal check lets `name` through to the matcher. */
const passes = (literals: { prefix: string; suffix: string }, name: string) => withLiterals(literals, () => true)(name);

/** Names over the characters the generated patterns use, with path-like and dotted ones among them. */
const names = fc.oneof(
  fc.array(fc.constantFrom('a', 'b', 'c', '-', '1', '.', '/', '*', 'A'), { maxLength: 7 }).map((cs) => cs.join('')),
  fc.array(fc.constantFrom('a', 'b', '-'), { maxLength: 5 }).map((cs) => `./${cs.join('')}`),
);

describe('routing/pattern-literals', () => {
  it('reads the plain text a glob must start and end with', () => {
    expect(globLiterals('linux64-*-mochitest')).to.deep.equal({ prefix: 'linux64-', suffix: '-mochitest' });
    expect(globLiterals('*-opt-*')).to.deep.equal({ prefix: '', suffix: '' });
    expect(globLiterals('{linux64,linux32}-opt-xpcshell')).to.deep.equal({ prefix: '', suffix: '-opt-xpcshell' });
    expect(globLiterals('win64-{opt,debug}-gtest*')).to.deep.equal({ prefix: 'win64-', suffix: '' });
    expect(globLiterals('!linux*')).to.deep.equal({ prefix: '', suffix: '' }); // negated
    expect(globLiterals('./!a')).to.deep.equal({ prefix: '', suffix: '' }); // negated too: picomatch strips the ./ (found by the property below)
  });

  it('reads only anchored plain text from a regular expression, and nothing from one it cannot read safely', () => {
    expect(regexLiterals('^android-api-1[56]-', '')).to.deep.equal({ prefix: 'android-api-1', suffix: '' });
    expect(regexLiterals('^linux64-opt-talos-\\d+$', '')).to.deep.equal({ prefix: 'linux64-opt-talos-', suffix: '' });
    expect(regexLiterals('-(opt|debug)$', '')).to.deep.equal({ prefix: '', suffix: '' }); // alternatives
    expect(regexLiterals('^linux64-(opt|debug)-\\d+$', '')).to.deep.equal({ prefix: 'linux64-', suffix: '' }); // alternatives inside a group
    expect(regexLiterals('^a-(?:x|y)-mochitest$', '')).to.deep.equal({ prefix: 'a-', suffix: '-mochitest' });
    expect(regexLiterals('^a-(x)|y-b$', '')).to.deep.equal({ prefix: '', suffix: '' }); // the | after the group splits the whole
    expect(regexLiterals('^a-[(]|y$', '')).to.deep.equal({ prefix: '', suffix: '' }); // a ( in a class opens no group
    expect(regexLiterals('^a-\\(|y$', '')).to.deep.equal({ prefix: '', suffix: '' }); // nor does an escaped one
    expect(regexLiterals('^WIN', 'i')).to.deep.equal({ prefix: '', suffix: '' }); // case-insensitive
    expect(regexLiterals('^ab?c', '')).to.deep.equal({ prefix: 'a', suffix: '' }); // b is optional
    expect(regexLiterals('[0-9]-nightly$', '')).to.deep.equal({ prefix: '', suffix: '-nightly' });
    expect(regexLiterals('x\\u0041$', '')).to.deep.equal({ prefix: '', suffix: '' }); // an escape, not text
    expect(regexLiterals('^abc$', '')).to.deep.equal({ prefix: '', suffix: '' }); // all plain: left to the regex
    expect(regexLiterals('(?m)^abc-\\d$', '')).to.deep.equal({ prefix: '', suffix: '' }); // RE2 inline flags
    expect(regexLiterals('^x-\\Qa.b$', '')).to.deep.equal({ prefix: '', suffix: '' }); // RE2 quoting: the $ is text
  });

  it('rules out names that cannot match, and leaves the answer to the matcher otherwise', () => {
    const test = withLiterals(globLiterals('linux64-*-mochitest'), picomatch('linux64-*-mochitest'));
    expect(test('linux64-opt-mochitest')).to.equal(true);
    expect(test('linux64-mochitest')).to.equal(false); // both literals, but too short to hold both
    expect(test('win64-opt-mochitest')).to.equal(false);
    const unconstrained = (name: string) => name === 'x';
    expect(withLiterals({ prefix: '', suffix: '' }, unconstrained)).to.equal(unconstrained);
  });

  it('never rules out a name picomatch matches (generated globs and names)', () => {
    const token = fc.constantFrom('a', 'b', '-', '1', '*', '?', '**', '[ab]', '[!a]', '{a,b}', '{a,}', '{1..3}', '+(a)', '@(a|b)', '!(a)', '*(b)', '/', '.', './', '\\*', '!', 'A');
    fc.assert(
      fc.property(fc.array(token, { minLength: 1, maxLength: 6 }), fc.array(names, { minLength: 1, maxLength: 20 }), (tokens, candidates) => {
        const glob = tokens.join('');
        let matcher: (s: string) => boolean;
        try {
          matcher = picomatch(glob, { dot: true, strictBrackets: true });
        } catch {
          return; // not a valid glob: routes.yaml rejects it
        }
        const literals = globLiterals(glob);
        for (const name of candidates) if (matcher(name)) expect(passes(literals, name), `${glob} matches ${JSON.stringify(name)}`).to.equal(true);
      }),
      { numRuns: 3000 },
    );
  });

  it('never rules out a name a route regular expression matches (generated sources and names, RE2 syntax)', () => {
    const token = fc.constantFrom('^', '$', 'a', 'b', 'c', '-', '1', '\\d', '\\x62', '\\x{61}', '\\141', '\\pL', '\\b', '\\$', '\\\\', 'a?', 'b*', 'c+', 'a{0,2}', 'b{2}', 'a{,2}', '(a)', '(?:ab)?', '(?P<n>a)', '(?i)', '(?m)', '(?s:.)', '\\Q', '\\E', '\\z', '\\A', '[ab]', '.', '.*', '|', 'A', '(', ')', '(a|b)', '(?:|c)', '[(]', '\\(', '\\)', '[|]');
    fc.assert(
      fc.property(fc.array(token, { minLength: 1, maxLength: 7 }), fc.constantFrom('' as const, 'i' as const), fc.array(names, { minLength: 1, maxLength: 20 }), (tokens, flags, candidates) => {
        const source = tokens.join('');
        const regex = compileRouteRegex(source, flags);
        if (!regex.ok) return; // routes.yaml rejects it
        const literals = regexLiterals(source, flags);
        for (const name of candidates) if (regex.test(name)) expect(passes(literals, name), `/${source}/${flags} matches ${JSON.stringify(name)}`).to.equal(true);
      }),
      { numRuns: 3000 },
    );
  });
});
