import { expect } from 'chai';
import fc from 'fast-check';
import { compareResponses, type CapturedResponse } from '../../../src/shadow/compare.js';

const answer = (body: string | Buffer | undefined, contentType: string | undefined = 'text/plain; charset=utf-8', status = 200): CapturedResponse => ({
  status,
  contentType,
  body: typeof body === 'string' ? Buffer.from(body) : body,
});
const json = (status: number, value: unknown) => answer(JSON.stringify(value), 'application/json', status);
/** Buildbot 3.7's REST answer: indented JSON with sorted keys, as text/plain. */
const buildbot = (value: unknown) => answer(JSON.stringify(value, null, 4));
const IGNORED = new Set(['buildid', 'masterid', 'started_at', 'complete_at']);
const build = (fields: Record<string, unknown>) => ({ builds: [{ buildid: 1, builderid: 3, complete: true, complete_at: 1700000010, masterid: 1, number: 1, results: 0, started_at: 1700000000, state_string: 'build successful', ...fields }], meta: { total: 1 } });

describe('shadow/compare: compareResponses', () => {
  it('matches equal JSON with ignored fields left out at any depth', () => {
    const a = json(200, { builds: [{ buildid: 1, number: 3, results: 0, started_at: 100 }], meta: { total: 1 } });
    const b = json(200, { builds: [{ buildid: 99, number: 3, results: 0, started_at: 200 }], meta: { total: 1 } });
    expect(compareResponses(a, b, new Set(['buildid', 'started_at']))).to.deep.equal({ match: true, compared: 'json', differences: [] });
  });

  it('names each differing field with both values', () => {
    const a = json(200, { builds: [{ number: 3, results: 0 }], extra: true });
    const b = json(200, { builds: [{ number: 3, results: 2 }] });
    const c = compareResponses(a, b, new Set());
    expect(c.match).to.equal(false);
    expect(c.differences).to.deep.equal([
      { path: 'builds[0].results', primary: 0, shadow: 2 },
      { path: 'extra', primary: true, shadow: undefined },
    ]);
  });

  it('compares status, then bytes for non-JSON, and only status when a body was too large', () => {
    expect(compareResponses(json(200, {}), json(500, {}), new Set()).differences[0]).to.deep.equal({ path: '(status)', primary: 200, shadow: 500 });
    expect(compareResponses(answer('a'), answer('a'), new Set())).to.include({ match: true, compared: 'bytes' });
    expect(compareResponses(answer('a'), answer('b'), new Set())).to.include({ match: false, compared: 'bytes' });
    expect(compareResponses(answer(undefined), answer('b'), new Set())).to.include({ match: true, compared: 'status' });
    expect(compareResponses(answer(undefined), answer('b', 'text/plain', 404), new Set())).to.include({ match: false, compared: 'status' });
  });

  describe('by JSON fields whenever both bodies parse, whatever their content type', () => {
    const cases: Array<{ name: string; primary: CapturedResponse; shadow: CapturedResponse; match: boolean; compared: 'json' | 'bytes'; paths?: string[] }> = [
      { name: "Buildbot's text/plain JSON, only ignored fields differ", primary: buildbot(build({})), shadow: buildbot(build({ buildid: 7, masterid: 2, started_at: 1700000005, complete_at: 1700000012 })), match: true, compared: 'json' },
      { name: "Buildbot's text/plain JSON, a field that is not ignored differs", primary: buildbot(build({})), shadow: buildbot(build({ buildid: 7, results: 2 })), match: false, compared: 'json', paths: ['builds[0].results'] },
      { name: 'a nested ignored field differs', primary: buildbot({ builds: [{ number: 1, properties: { started_at: [1, 'x'] } }] }), shadow: buildbot({ builds: [{ number: 1, properties: { started_at: [2, 'y'] } }] }), match: true, compared: 'json' },
      { name: 'no content type at all', primary: answer(JSON.stringify(build({})), undefined), shadow: answer(JSON.stringify(build({ started_at: 1 })), undefined), match: true, compared: 'json' },
      { name: 'compact application/json against indented text/plain', primary: json(200, build({})), shadow: buildbot(build({ masterid: 9 })), match: true, compared: 'json' },
      { name: 'JSON-RPC answers as application/json', primary: json(200, { id: 1, jsonrpc: '2.0', result: [5, { '3': 12 }] }), shadow: json(200, { id: 1, jsonrpc: '2.0', result: [5, { '3': 13 }] }), match: false, compared: 'json', paths: ['result[1].3'] },
      { name: "a REST error's text/plain JSON", primary: answer('{"error": "not found"}', 'text/plain', 404), shadow: answer('{"error":"not found"}', 'text/plain', 404), match: true, compared: 'json' },
      { name: 'non-JSON text/plain is compared byte for byte', primary: answer('step 1 started\n'), shadow: answer('step 1 started \n'), match: false, compared: 'bytes', paths: ['(body)'] },
      { name: 'HTML that merely looks like text', primary: answer('<html>a</html>', 'text/html'), shadow: answer('<html>b</html>', 'text/html'), match: false, compared: 'bytes', paths: ['(body)'] },
      { name: 'one side JSON, the other not', primary: buildbot(build({})), shadow: answer('Internal Server Error'), match: false, compared: 'bytes', paths: ['(body)'] },
      { name: 'one side empty, the other JSON', primary: answer(''), shadow: buildbot({ builds: [] }), match: false, compared: 'bytes', paths: ['(body)'] },
      { name: 'JSON declared, but broken', primary: answer('{"builds": [', 'application/json'), shadow: answer('{"builds": []', 'application/json'), match: false, compared: 'bytes', paths: ['(body)'] },
      { name: 'both empty (a HEAD)', primary: answer(''), shadow: answer(''), match: true, compared: 'bytes' },
    ];
    for (const c of cases) {
      it(c.name, () => {
        const result = compareResponses(c.primary, c.shadow, IGNORED);
        expect(result, JSON.stringify(result)).to.include({ match: c.match, compared: c.compared });
        if (c.paths) expect(result.differences.map((d) => d.path)).to.deep.equal(c.paths);
        else expect(result.differences).to.deep.equal([]);
      });
    }

    it('says in the difference which body was JSON', () => {
      const result = compareResponses(buildbot({ builds: [] }), answer('oops'), IGNORED);
      expect(result.differences).to.deep.equal([{ path: '(body)', primary: `${buildbot({ builds: [] }).body!.length} bytes of JSON`, shadow: '4 bytes' }]);
    });

    it('still reports a differing status when the documents agree', () => {
      const result = compareResponses(buildbot({ error: 'x' }), answer('{"error":"x"}', 'text/plain', 500), IGNORED);
      expect(result).to.deep.equal({ match: false, compared: 'json', differences: [{ path: '(status)', primary: 200, shadow: 500 }] });
    });
  });

  describe('values as JSON means them', () => {
    it('numbers by value: 1.0 is 1, 1e2 is 100, -0 is 0', () => {
      expect(same('{"n": 1.0, "m": 1e2, "z": -0}', '{"n":1,"m":100,"z":0}')).to.deep.equal({ match: true, compared: 'json', differences: [] });
      expect(same('{"n": 1.5}', '{"n": 1.50}')).to.include({ match: true });
      expect(same('{"n": 1}', '{"n": 1.0000001}')).to.include({ match: false });
    });
    it('whatever the order of keys or the whitespace', () => {
      expect(same('{"a": 1, "b": {"c": [1, 2], "d": null}}', '{"b":{"d":null,"c":[1,2]},"a":1}')).to.include({ match: true, compared: 'json' });
    });
    it('a number is not the string of it, and null is not absent', () => {
      expect(same('{"n": 1}', '{"n": "1"}').differences).to.deep.equal([{ path: 'n', primary: 1, shadow: '1' }]);
      expect(same('{"n": null}', '{}').differences).to.deep.equal([{ path: 'n', primary: null, shadow: undefined }]);
      expect(same('[1, 2]', '{"0": 1, "1": 2}')).to.include({ match: false, compared: 'json' });
    });
    it('arrays in order, with their lengths', () => {
      expect(same('[1, 2]', '[2, 1]').differences.map((d) => d.path)).to.deep.equal(['[0]', '[1]']);
      expect(same('{"a": [1, 2, 3]}', '{"a": [1, 2]}').differences).to.deep.equal([{ path: 'a.length', primary: 3, shadow: 2 }]);
    });
    it('stops at 20 differences', () => {
      const many = (v: number) => JSON.stringify(Array.from({ length: 1000 }, () => v));
      expect(same(many(1), many(2)).differences).to.have.length(20);
    });
  });

  describe('hostile bodies', () => {
    it('a document nested far deeper than the call stack is compared without recursion', () => {
      const depth = 200_000;
      const deep = (leaf: string, space = '') => `${`[${space}`.repeat(depth)}${leaf}${`${space}]`.repeat(depth)}`;
      expect(same(deep('1'), deep('1', ' '))).to.deep.equal({ match: true, compared: 'json', differences: [] });
      const different = same(deep('1'), deep('2'));
      expect(different.match).to.equal(false);
      expect(different.differences).to.have.length(1);
      expect(different.differences[0]!.path.length, 'the path is cut').to.be.at.most(301);
      expect(different.differences[0]!.path.endsWith('…')).to.equal(true);
      const objects = (leaf: number) => `${'{"a":'.repeat(depth)}${leaf}${'}'.repeat(depth)}`;
      expect(same(objects(1), objects(1) + ' ')).to.include({ match: true, compared: 'json' });
      expect(same(objects(1), objects(2))).to.include({ match: false, compared: 'json' });
    });

    it('huge numbers neither crash nor pass for small ones', () => {
      expect(same('{"n": 1e400}', '{"n": 1e999}')).to.include({ match: true, compared: 'json' }); // both beyond a double: Infinity
      expect(same('{"n": 1e400}', '{"n": 1}').differences).to.deep.equal([{ path: 'n', primary: Infinity, shadow: 1 }]);
      expect(same('{"n": -1e400}', '{"n": 1e400}')).to.include({ match: false });
      const digits = '9'.repeat(100_000);
      expect(same(`{"n": ${digits}}`, `{"n": ${digits}.0}`)).to.include({ match: true, compared: 'json' });
      expect(same('{"n": 1e-400}', '{"n": 0}')).to.include({ match: true }); // below a double's smallest: 0
    });

    it('__proto__ and constructor keys are data, compared as such, and pollute nothing', () => {
      const a = '{"__proto__": {"polluted": 1, "isAdmin": true}, "constructor": {"prototype": {"polluted": 1}}}';
      const b = '{"__proto__": {"polluted": 2, "isAdmin": true}, "constructor": {"prototype": {"polluted": 2}}}';
      expect(same(a, b).differences).to.deep.equal([
        { path: '__proto__.polluted', primary: 1, shadow: 2 },
        { path: 'constructor.prototype.polluted', primary: 1, shadow: 2 },
      ]);
      expect(same(a, a + '\n')).to.include({ match: true, compared: 'json' });
      // A key only one side has is absent on the other, not the value Object.prototype would lend it.
      expect(same('{"__proto__": 1, "constructor": 2, "toString": 3}', '{}').differences).to.deep.equal([
        { path: '__proto__', primary: 1, shadow: undefined },
        { path: 'constructor', primary: 2, shadow: undefined },
        { path: 'toString', primary: 3, shadow: undefined },
      ]);
      expect(compareResponses(answer(a), answer(b), new Set(['__proto__', 'constructor']))).to.include({ match: true });
      expect(({} as Record<string, unknown>)['polluted']).to.equal(undefined);
      expect(({} as Record<string, unknown>)['isAdmin']).to.equal(undefined);
      expect(Object.getOwnPropertyNames(Object.prototype)).to.not.include('polluted');
    });

    it('bytes that are not UTF-8 are not JSON: they cannot decode to the same text', () => {
      const a = Buffer.concat([Buffer.from('{"name": "'), Buffer.from([0xff]), Buffer.from('"}')]);
      const b = Buffer.concat([Buffer.from('{"name": "'), Buffer.from([0xfe]), Buffer.from('"}')]);
      expect(compareResponses(answer(a), answer(b), new Set())).to.include({ match: false, compared: 'bytes' });
    });

    it('a very long key is cut in the path', () => {
      const key = 'k'.repeat(100_000);
      const result = same(`{"${key}": 1}`, `{"${key}": 2}`);
      expect(result.match).to.equal(false);
      expect(result.differences[0]!.path).to.have.length(301);
    });

    it('never throws, whatever the bytes (property)', () => {
      const body = fc.oneof(
        fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes)),
        fc.json().map((text) => Buffer.from(text)),
        fc.string({ unit: 'binary', maxLength: 50 }).map((text) => Buffer.from(`{"a": "${text}"}`)),
      );
      fc.assert(
        fc.property(body, body, (a, b) => {
          const result = compareResponses(answer(a), answer(b), IGNORED);
          if (result.compared === 'bytes') expect(result.match).to.equal(a.equals(b));
          else expect(result.compared).to.equal('json');
        }),
        { numRuns: 500 },
      );
    });

    it('any JSON document matches itself re-indented, and its ignored fields never count (property)', () => {
      fc.assert(
        fc.property(fc.jsonValue(), fc.jsonValue(), (value, noise) => {
          const text = JSON.stringify(value);
          expect(same(text, JSON.stringify(value, null, 2)).match).to.equal(true);
          const wrap = (v: unknown, n: unknown) => JSON.stringify({ payload: v, started_at: n, nested: [{ buildid: n, v }] });
          expect(compareResponses(answer(wrap(value, 1)), answer(wrap(value, noise)), IGNORED).match).to.equal(true);
        }),
        { numRuns: 300 },
      );
    });
  });
});

function same(a: string, b: string) {
  return compareResponses(answer(a), answer(b), new Set());
}
