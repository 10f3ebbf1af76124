import { expect } from 'chai';
import { isStranglerError, type StranglerError } from '../../../src/errors.js';
import { parseConfig, type LocatedProblem } from '../../../src/config/load.js';

const FILE = 'routes.yaml';
const BACKENDS = `backends:
  buildbot: { url: http://127.0.0.1:8011, legacy: true }
  taskservice: { url: http://127.0.0.1:8012 }
`;

function parse(text: string) {
  return parseConfig(Buffer.from(text), FILE, new Date(0));
}

/** The problems a broken file is rejected with; fails the test if it is accepted. */
function problemsOf(text: string): LocatedProblem[] {
  try {
    parse(text);
  } catch (error) {
    expect(isStranglerError(error, 'CONFIG_INVALID'), String(error)).to.equal(true);
    return (error as StranglerError).details.problems as LocatedProblem[];
  }
  expect.fail('the config was accepted');
}

function onlyProblem(text: string): LocatedProblem {
  const problems = problemsOf(text);
  expect(problems, JSON.stringify(problems)).to.have.length(1);
  return problems[0]!;
}

describe('config/load: parseConfig', () => {
  it('accepts the documented example, with default and routes in file order', () => {
    const table = parse(`${BACKENDS}default: buildbot
routes:
  - jobType: linux64-*
    backend: taskservice
  - jobType: /^android-api-1[56]-/
    split: { taskservice: 25, buildbot: 75 }
  - jobType: win32-debug
    backend: buildbot
`);
    expect(table.legacy.name).to.equal('buildbot');
    expect(table.defaultBackend.name).to.equal('buildbot');
    expect(table.routes.map((r) => [r.pattern, r.kind])).to.deep.equal([
      ['linux64-*', 'glob'],
      ['/^android-api-1[56]-/', 'regex'],
      ['win32-debug', 'exact'],
    ]);
    expect(table.routes[1]!.targets).to.deep.equal([
      { backend: 'taskservice', weight: 25 },
      { backend: 'buildbot', weight: 75 },
    ]);
    expect(table.source.hash).to.match(/^[0-9a-f]{64}$/);
    expect(Object.isFrozen(table)).to.equal(true);
  });

  it('defaults to the legacy backend when "default" is absent, and allows no routes at all', () => {
    const table = parse(BACKENDS);
    expect(table.defaultBackend.name).to.equal('buildbot');
    expect(table.routes).to.have.length(0);
  });

  it('drops zero weights from a split but keeps the route', () => {
    const table = parse(`${BACKENDS}routes:\n  - jobType: a\n    split: { taskservice: 0, buildbot: 5 }\n`);
    expect(table.routes[0]!.targets).to.deep.equal([{ backend: 'buildbot', weight: 5 }]);
  });

  it('reads track: on a route (false when absent), and rejects anything but a boolean where it is', () => {
    const table = parse(`${BACKENDS}routes:\n  - jobType: a\n    backend: buildbot\n    track: true\n  - jobType: b\n    backend: buildbot\n`);
    expect(table.routes.map((r) => r.track)).to.deep.equal([true, false]);
    const p = onlyProblem(`${BACKENDS}routes:\n  - jobType: a\n    backend: buildbot\n    track: all\n`);
    expect([p.field, p.line]).to.deep.equal(['routes[0].track', BACKENDS.split('\n').length - 1 + 4]);
    expect(p.message).to.match(/boolean/);
  });

  it('rejects YAML syntax errors with line and column', () => {
    const p = onlyProblem('backends:\n  buildbot: { url: http://x, legacy: true\nroutes: []\n');
    expect(p.field).to.equal('(syntax)');
    expect(p.message).to.match(/^YAML syntax: /);
    expect(p.line).to.be.greaterThan(1);
  });

  it('says a YAML syntax error as file:line:column: reason, the location once', () => {
    const messageOf = (text: string) => {
      try {
        parse(text);
      } catch (error) {
        return (error as Error).message;
      }
      expect.fail('accepted');
    };
    expect(messageOf('backends:\n  buildbot: { url: http://x, legacy: true\nroutes: []\n')).to.equal(
      'routes.yaml:3:1: YAML syntax: Flow map in block collection must be sufficiently indented and end with a }',
    );
    expect(messageOf('backends:\n  b: { url: http://x, legacy: true }\nroutes:\n  - jobType: a\n   backend: b\n')).to.equal('routes.yaml:5:1: YAML syntax: Sequence item without - indicator');
    expect(messageOf('backends:\n\tb: { url: http://x }\n')).to.equal('routes.yaml:2:1: YAML syntax: Tabs are not allowed as indentation');
    expect(messageOf('a: 1\n---\nb: 2\n')).to.equal('routes.yaml:2:1: YAML syntax: the file holds more than one document; expected one (no "---" line after the first)');
    expect(messageOf('backends:\n  a: { url: http://x, legacy: true }\n  a: { url: http://y }\n')).to.equal('routes.yaml:3:3: YAML syntax: map keys must be unique; "a" appears again');
    // Each problem once, and no "at line L, column C" or source excerpt after the reason.
    const many = messageOf('a: [1, 2\nb: {c: 3\nd: "e\n');
    expect(many).to.not.match(/at line \d+|\^/);
    const lines = many.split('\n').slice(1).map((l) => l.trim());
    expect(new Set(lines).size).to.equal(lines.length);
  });

  it('rejects an unknown key, pointing at the key and listing the allowed ones', () => {
    const p = onlyProblem(`${BACKENDS}routes:\n  - jobType: a\n    backnd: buildbot\n`);
    expect(p).to.include({ line: 6, column: 5, field: 'routes[0].backnd' });
    expect(p.message).to.equal('unknown key "backnd"; expected one of: jobType, backend, split, stickyBy, shadow, fallback, retries, track, task');
  });

  it('rejects an unknown top-level key', () => {
    const p = onlyProblem(`${BACKENDS}rotues: []\n`);
    expect(p).to.include({ line: 4, column: 1, field: 'rotues' });
  });

  it('rejects a route naming an unknown backend, listing the known ones', () => {
    const p = onlyProblem(`${BACKENDS}routes:\n  - jobType: a\n    backend: taskservis\n`);
    expect(p).to.include({ line: 6, column: 14, field: 'routes[0].backend' });
    expect(p.message).to.equal('unknown backend "taskservis"; expected one of: buildbot, taskservice');
  });

  it('rejects a split naming an unknown backend, pointing at its key', () => {
    const p = onlyProblem(`${BACKENDS}routes:\n  - jobType: a\n    split: { buildbot: 1, nope: 2 }\n`);
    expect(p).to.include({ field: 'routes[0].split.nope', line: 6, column: 27 });
  });

  it('rejects an unknown default backend', () => {
    const p = onlyProblem(`${BACKENDS}default: nope\n`);
    expect(p).to.include({ field: 'default', line: 4, column: 10 });
  });

  it('rejects a file with no legacy backend', () => {
    const p = onlyProblem('backends:\n  a: { url: http://127.0.0.1:1 }\n');
    expect(p.field).to.equal('backends');
    expect(p.message).to.match(/^no legacy backend; expected exactly one backend with "legacy: true"/);
  });

  it('rejects two legacy backends, pointing at the second', () => {
    const p = onlyProblem('backends:\n  a: { url: http://127.0.0.1:1, legacy: true }\n  b: { url: http://127.0.0.1:2, legacy: true }\n');
    expect(p).to.include({ field: 'backends.b.legacy', line: 3 });
    expect(p.message).to.contain('the first is "a"');
  });

  it('rejects weights that add up to 0', () => {
    const p = onlyProblem(`${BACKENDS}routes:\n  - jobType: a\n    split: { buildbot: 0, taskservice: 0 }\n`);
    expect(p.field).to.equal('routes[0].split');
    expect(p.message).to.contain('weights add up to 0');
  });

  it('rejects negative weights', () => {
    const p = onlyProblem(`${BACKENDS}routes:\n  - jobType: a\n    split: { buildbot: -1, taskservice: 2 }\n`);
    expect(p.field).to.equal('routes[0].split.buildbot');
    expect(p.message).to.equal('expected a number >= 0, got number -1');
  });

  it('rejects a bad regular expression', () => {
    const p = onlyProblem(`${BACKENDS}routes:\n  - jobType: /^android-[56/\n    backend: buildbot\n`);
    expect(p).to.include({ field: 'routes[0].jobType', line: 5, column: 14 });
    expect(p.message).to.match(/^bad regular expression: .*expected \/PATTERN\//);
  });

  it('rejects duplicate rules', () => {
    const p = onlyProblem(`${BACKENDS}routes:\n  - jobType: a\n    backend: buildbot\n  - jobType: a\n    backend: taskservice\n`);
    expect(p).to.include({ field: 'routes[1].jobType', line: 7 });
    expect(p.message).to.contain('already routed by routes[0]');
  });

  it('rejects a route with both backend and split, or neither', () => {
    expect(onlyProblem(`${BACKENDS}routes:\n  - jobType: a\n    backend: buildbot\n    split: { buildbot: 1 }\n`).message).to.contain('both "backend" and "split"');
    expect(onlyProblem(`${BACKENDS}routes:\n  - jobType: a\n`).message).to.contain('expected "backend: NAME" or "split:');
  });

  it('rejects wrong types with what was expected and what was found', () => {
    const p = onlyProblem(`${BACKENDS}routes:\n  - jobType: a\n    split: { buildbot: "lots" }\n`);
    expect(p.message).to.equal('expected a number, got the string "lots"');
    expect(onlyProblem('backends: []\n').message).to.equal('expected a mapping, got a list');
  });

  it('rejects a missing backends section with an example of the right form', () => {
    const p = onlyProblem('routes: []\n');
    expect(p.message).to.match(/^missing required field "backends". Example: backends: \{ buildbot:/);
  });

  it('rejects backend URLs that are not http(s) or carry credentials', () => {
    expect(onlyProblem('backends:\n  a: { url: ftp://x, legacy: true }\n').message).to.contain('unsupported scheme "ftp:"');
    expect(onlyProblem('backends:\n  a: { url: "http://u:p@x", legacy: true }\n').message).to.contain('without credentials');
    expect(onlyProblem('backends:\n  a: { url: "not a url", legacy: true }\n').message).to.contain('is not a URL');
  });

  it('reports every problem of a file at once', () => {
    const problems = problemsOf(`${BACKENDS}default: nope\nroutes:\n  - jobType: a\n    backend: zz\n  - jobType: /(/\n    backend: buildbot\n`);
    expect(problems.map((p) => p.field)).to.deep.equal(['default', 'routes[0].backend', 'routes[1].jobType']);
  });

  it('formats the error as file:line:column: field: message', () => {
    try {
      parse(`${BACKENDS}default: nope\n`);
      expect.fail('accepted');
    } catch (error) {
      expect((error as Error).message).to.equal('routes.yaml:4:10: default: unknown backend "nope"; expected one of: buildbot, taskservice');
    }
  });

  it('rejects an empty file, a duplicate key, an alias bomb and an oversized file without hanging', () => {
    expect(onlyProblem('').message).to.contain('the file is empty');
    expect(onlyProblem('backends:\n  a: { url: http://x, legacy: true }\n  a: { url: http://y }\n').field).to.equal('(syntax)');
    const bomb = ['a: &a ["x","x","x","x","x","x","x","x","x"]'];
    for (let i = 1; i < 12; i++) {
      const previous = String.fromCharCode(96 + i);
      bomb.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(9).fill('*' + previous).join(',')}]`);
    }
    expect(onlyProblem(bomb.join('\n') + '\n').message).to.contain('Excessive alias count');
    expect(onlyProblem('#'.repeat(5 * 1024 * 1024)).message).to.match(/expected at most \d+/);
  });

  it('treats "__proto__" as an ordinary unknown key and pollutes nothing', () => {
    const problems = problemsOf(`${BACKENDS}__proto__: { polluted: true }\n`);
    expect(problems.length).to.be.greaterThan(0);
    expect(({} as Record<string, unknown>).polluted).to.equal(undefined);
  });
});
