import { expect } from 'chai';
import fc from 'fast-check';
import { builderFromPath, buildersFromForceBody, isForceCall } from '../../../src/routing/extract.js';

describe('routing/extract: builderFromPath', () => {
  it('reads builder names and ids from the REST paths that carry them', () => {
    expect(builderFromPath('/api/v2/builders/linux64-opt')).to.deep.equal({ kind: 'name', name: 'linux64-opt' });
    expect(builderFromPath('/api/v2/builders/linux64-opt/builds/3/steps/2/logs/stdio/raw')).to.deep.equal({ kind: 'name', name: 'linux64-opt' });
    expect(builderFromPath('/api/v2/builders/12/builds')).to.deep.equal({ kind: 'id', id: 12 });
    expect(builderFromPath('/api/v2/masters/1/builders/7/workers')).to.deep.equal({ kind: 'id', id: 7 });
    expect(builderFromPath('/api/v2/builders/a%2Db')).to.deep.equal({ kind: 'name', name: 'a-b' });
  });

  it('finds nothing where no builder is named, or the segment is not a builder name', () => {
    for (const p of ['/', '/api/v2/builders', '/api/v2/builders/', '/api/v2/builds/5', '/ws', '/api/v2/builders/%E0%A4%A', '/api/v2/builders/has space', '/api/v1/builders/x', '/api/v2/builders/..']) {
      expect(builderFromPath(p), p).to.equal(undefined);
    }
  });

  it('on any path, never throws and only ever answers a valid name or id', () => {
    const wellFormed = (ref: ReturnType<typeof builderFromPath>) =>
      ref === undefined || (ref.kind === 'id' ? Number.isSafeInteger(ref.id) : /^[a-zA-Z_-][.a-zA-Z0-9_-]*$/.test(ref.name));
    fc.assert(fc.property(fc.string({ unit: 'binary' }), (tail) => wellFormed(builderFromPath('/api/v2/builders/' + tail))));
    fc.assert(fc.property(fc.webPath(), (p) => wellFormed(builderFromPath(p))));
  });

  it('answers as a plain split-and-decode reading of the path would, on any path', () => {
    // The reading the hand-written scanner must agree with (it avoids the split and the decode per request).
    const oracle = (pathname: string) => {
      if (!pathname.startsWith('/api/v2/')) return undefined;
      const segments = pathname.split('/');
      const at = segments[3] === 'masters' && segments[5] === 'builders' ? 5 : 3;
      if (segments[at] !== 'builders' || !segments[at + 1]) return undefined;
      let segment: string;
      try {
        segment = decodeURIComponent(segments[at + 1]!);
      } catch {
        return undefined;
      }
      if (/^[0-9]{1,15}$/.test(segment)) return { kind: 'id', id: Number(segment) };
      return /^[a-zA-Z_-][.a-zA-Z0-9_-]{0,199}$/.test(segment) ? { kind: 'name', name: segment } : undefined;
    };
    const segment = fc.oneof(fc.constantFrom('api', 'v2', 'masters', 'builders', '1', '', 'linux64-opt', '%41b', '%zz', '12'), fc.string());
    const paths = fc.oneof(fc.webPath(), fc.array(segment, { maxLength: 7 }).map((parts) => '/api/v2/' + parts.join('/')));
    fc.assert(
      fc.property(paths, (p) => {
        expect(builderFromPath(p), p).to.deep.equal(oracle(p));
      }),
      { numRuns: 3000 },
    );
  });
});

describe('routing/extract: isForceCall', () => {
  it('is a POST to a force scheduler', () => {
    expect(isForceCall('POST', '/api/v2/forceschedulers/force')).to.equal(true);
    expect(isForceCall('GET', '/api/v2/forceschedulers/force')).to.equal(false);
    expect(isForceCall('POST', '/api/v2/forceschedulers')).to.equal(false);
    expect(isForceCall('POST', '/api/v2/forceschedulers/force/x')).to.equal(false);
  });
});

describe('routing/extract: buildersFromForceBody', () => {
  const body = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value));

  it('reads builderNames and builderid', () => {
    expect(buildersFromForceBody(body({ jsonrpc: '2.0', method: 'force', id: 1, params: { builderNames: ['a', 'b', 'a'], revision: 'abc' } }))).to.deep.equal({
      kind: 'names',
      names: ['a', 'b'],
      params: { builderNames: ['a', 'b', 'a'], revision: 'abc' },
    });
    expect(buildersFromForceBody(body({ method: 'force', id: 1, params: { builderid: 4 } }))).to.deep.include({ kind: 'id', id: 4 });
    expect(buildersFromForceBody(body({ method: 'force', id: 1, params: { builderid: '4' } }))).to.deep.include({ kind: 'id', id: 4 });
  });

  it('names nothing for a force without builders or another method', () => {
    expect(buildersFromForceBody(body({ method: 'force', id: 1, params: { reason: 'x' } }))).to.deep.equal({ kind: 'none', params: { reason: 'x' } });
    expect(buildersFromForceBody(body({ method: 'stop', id: 1 }))).to.deep.equal({ kind: 'none' });
  });

  it('gives up on anything malformed, hostile or of the wrong type', () => {
    const cases: unknown[] = [
      'not json',
      '[1,2]',
      'null',
      { method: 'force', params: 'x' },
      { method: 'force', params: { builderNames: 'linux64-opt' } },
      { method: 'force', params: { builderNames: [] } },
      { method: 'force', params: { builderNames: [1] } },
      { method: 'force', params: { builderNames: ['ok', { a: 1 }] } },
      { method: 'force', params: { builderid: -1 } },
      { method: 'force', params: { builderid: 1.5 } },
      '{"method":"force","params":' + '['.repeat(100_000) + ']'.repeat(100_000) + '}',
      Buffer.from([0xff, 0xfe, 0x7b]).toString('latin1'),
    ];
    for (const c of cases) expect(buildersFromForceBody(body(c)).kind, JSON.stringify(c).slice(0, 60)).to.equal('unparsed');
  });

  it('reads only own properties: a "__proto__" in the body changes nothing', () => {
    const result = buildersFromForceBody(body('{"method":"force","params":{"__proto__":{"builderNames":["evil"]}}}'));
    expect(result.kind).to.equal('none');
    expect(({} as Record<string, unknown>).builderNames).to.equal(undefined);
  });

  it('on arbitrary JSON, never throws and only names valid builders', () => {
    const kinds = ['names', 'id', 'none', 'unparsed'];
    const valid = (r: ReturnType<typeof buildersFromForceBody>) =>
      kinds.includes(r.kind) && (r.kind !== 'names' || r.names.every((n) => /^[a-zA-Z_-][.a-zA-Z0-9_-]*$/.test(n)));
    fc.assert(fc.property(fc.json(), (text) => valid(buildersFromForceBody(Buffer.from(text)))));
    fc.assert(fc.property(fc.anything(), (params) => valid(buildersFromForceBody(body({ method: 'force', params })))));
  });
});
