/**
 * Buildbot 3.7's collection semantics. The error answers and the behaviours
 * marked "real" were read off a real Buildbot 3.7.0 master (sqlite) with the
 * same query; the properties hold for any rows and queries.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import {
  ENTITIES,
  applyQuery,
  collectionEnvelope,
  entityOf,
  itemEnvelope,
  legacyQueryOf,
  mergeCollections,
  parseCollectionQuery,
  pythonJsonDumps,
  renderAnswer,
  type CollectionQuery,
  type EntitySpec,
} from '../../../src/buildbot-api/collection.js';
import { MINTED_ID_BASE } from '../../../src/store/store.js';

interface Row {
  buildid: number;
  number: number;
  builderid: number;
  buildrequestid: number;
  workerid: number | null;
  masterid: number;
  started_at: number;
  complete: boolean;
  complete_at: number | null;
  results: number | null;
  state_string: string;
  properties: Record<string, unknown>;
}

function row(buildid: number, over: Partial<Row> = {}): Row {
  return {
    buildid,
    number: buildid,
    builderid: 1,
    buildrequestid: buildid,
    workerid: 1,
    masterid: 1,
    started_at: 1000 + buildid,
    complete: true,
    complete_at: 2000 + buildid,
    results: 0,
    state_string: 'build successful',
    properties: {},
    ...over,
  };
}

const parse = (q: string, entity: EntitySpec = ENTITIES.build, isCollection = true): CollectionQuery => {
  const parsed = parseCollectionQuery(q, entity, { isCollection });
  if (!parsed.ok) throw new Error(`unexpected error for ${q}: ${parsed.error.body}`);
  return parsed.query;
};
const ids = (items: Array<Partial<Row>>) => items.map((r) => r.buildid);

describe('buildbot-api/collection', () => {
  describe('errors, as a real Buildbot 3.7 master answers them', () => {
    const cases: Array<[string, number, string, EntitySpec?, boolean?]> = [
      ['limit=abc', 400, '{"error": "invalid limit"}'],
      ['limit=1.5', 400, '{"error": "invalid limit"}'],
      ['offset=x', 400, '{"error": "invalid offset"}'],
      ['foo=1', 400, `{"error": "unrecognized query parameter 'foo'"}`],
      ['order=nosuch', 400, `{"error": "no such field 'nosuch'"}`],
      ['field=nosuch', 400, `{"error": "no such field 'nosuch'"}`],
      ['field=buildid&order=number', 400, '{"error": "cannot order on un-selected fields"}'],
      ['field=buildid&number=1', 400, '{"error": "cannot filter on un-selected fields"}'],
      ['complete_at=null', 400, '{"error": "invalid filter value for complete_at"}'],
      ['complete=maybe', 400, '{"error": "invalid filter value for complete"}'],
      ['buildid=abc', 400, '{"error": "invalid filter value for buildid"}'],
      ['buildid__lt=1.5', 400, '{"error": "invalid filter value for buildid__lt"}'],
      ['properties=x', 400, '{"error": "invalid filter value for properties"}'],
      ['sourcestamps=1', 400, '{"error": "invalid filter value for sourcestamps"}', ENTITIES.buildset],
      ['field=', 500, `{"error": "IndexError('string index out of range')"}`],
      ['buildid=1', 400, '{"error": "this is not a collection"}', ENTITIES.build, false],
      ['%C3%A9=1', 400, `{"error": "unrecognized query parameter '\\u00e9'"}`],
      // The first bad parameter answers.
      ['foo=1&limit=abc', 400, `{"error": "unrecognized query parameter 'foo'"}`],
      ['limit=abc&foo=1', 400, '{"error": "invalid limit"}'],
    ];
    for (const [q, status, body, entity, isCollection] of cases) {
      it(`${q} → ${status} ${body}`, () => {
        const parsed = parseCollectionQuery(q, entity ?? ENTITIES.build, { isCollection: isCollection ?? true });
        expect(parsed.ok).to.equal(false);
        if (parsed.ok) return;
        expect(parsed.error).to.include({ status, body, contentType: 'text/plain; charset=utf-8' });
      });
    }

    it('accepts what Buildbot accepts: ignored `__` names, Python ints, boolean words, `field` on a single item', () => {
      for (const q of ['foo__eq=1', 'number__foo=1', 'buildid__lt=5&buildid__lt=6', 'limit=%201', 'buildid=%201', 'limit=1_0', 'complete=yes', 'complete=OFF', 'limit=-1', 'offset=-1']) {
        expect(parseCollectionQuery(q, ENTITIES.build).ok, q).to.equal(true);
      }
      expect(parse('foo__eq=1&buildid__lt=5&buildid__lt=6').filters).to.deep.equal([]);
      expect(parse('limit=1_0').limit).to.equal(10);
      expect(parse('field=buildid', ENTITIES.build, false).fields).to.deep.equal(['buildid']);
      expect(parse('complete=yes&complete=0').filters).to.deep.equal([{ field: 'complete', op: 'eq', values: [true, false] }]);
      expect(parse('property=*&property=owner').properties).to.deep.equal(['*', 'owner']);
    });

    it('reads identifiers as Buildbot does', () => {
      expect(parseCollectionQuery('name=task', ENTITIES.step).ok).to.equal(true);
      expect(parseCollectionQuery('name=9task', ENTITIES.step).ok).to.equal(false);
      expect(parseCollectionQuery(`name=${'a'.repeat(51)}`, ENTITIES.step).ok).to.equal(false);
      expect(parseCollectionQuery('type=tt', ENTITIES.log).ok).to.equal(false);
    });

    it('applyQuery with request parameters answers the error or the page', () => {
      const bad = applyQuery([row(1)], new URLSearchParams('limit=abc'), 'builds');
      expect(bad).to.include({ ok: false, status: 400, message: 'invalid limit', total: 0 });
      const good = applyQuery([row(1), row(2)], 'limit=1', 'builds');
      expect(good).to.deep.include({ ok: true, total: 2 });
      expect(good.items).to.have.length(1);
      expect(() => entityOf('widgets')).to.throw(TypeError);
    });
  });

  describe('filters', () => {
    const rows = [
      row(1, { results: 0, state_string: 'build successful' }),
      row(2, { results: 2, state_string: 'failed' }),
      row(3, { results: null, complete: false, complete_at: null, state_string: 'building' }),
      row(4, { results: 4, state_string: 'exception (malformed-payload)' }),
    ];
    const q = (s: string) => ids(applyQuery(rows, parse(s), ENTITIES.build).items);

    it('bare field is eq; a repeated one is any of; ne, lt, le, gt, ge, in, notin', () => {
      expect(q('results=2')).to.deep.equal([2]);
      expect(q('results=2&results=4')).to.deep.equal([2, 4]);
      expect(q('results__in=0&results__in=4')).to.deep.equal([1, 4]);
      expect(q('results__notin=0&results__notin=4')).to.deep.equal([2]);
      expect(q('results__lt=2')).to.deep.equal([1]);
      expect(q('results__le=2')).to.deep.equal([1, 2]);
      expect(q('results__gt=2')).to.deep.equal([4]);
      expect(q('results__ge=2')).to.deep.equal([2, 4]);
      expect(q('complete=false')).to.deep.equal([3]);
      expect(q('results=0&complete=true')).to.deep.equal([1]);
    });

    it('a null matches no filter on a SQL column, not even ne (real: complete_at__ne=5 leaves out unfinished builds)', () => {
      expect(q('results__ne=0')).to.deep.equal([2, 4]);
      expect(q('complete_at__ne=5')).to.deep.equal([1, 2, 4]);
      expect(q('results__notin=9&results__notin=8')).to.deep.equal([1, 2, 4]);
    });

    it("contains on a SQL column is LIKE '%v%': ASCII case-insensitive, % and _ wildcards (real: BUILD and b%ld match building)", () => {
      expect(q('state_string__contains=BUILD')).to.deep.equal([1, 3]);
      expect(q('state_string__contains=b%25ld')).to.deep.equal([1, 3]);
      expect(q('state_string__contains=f_iled')).to.deep.equal([2]);
      expect(q('state_string__contains=ui&state_string__contains=mal')).to.deep.equal([1, 3, 4]);
      expect(ids(applyQuery(rows, parse('state_string__contains=BUILD'), ENTITIES.build, { caseSensitiveLike: true }).items)).to.deep.equal([]);
      expect(q('results__contains=4')).to.deep.equal([4]);
    });

    it('on Python-filtered kinds (steps): substring contains, and ne matches a null', () => {
      const steps = [
        { stepid: 1, number: 0, name: 'task', buildid: 1, started_at: 5, complete: false, complete_at: null, results: null, state_string: 'Running', urls: [], hidden: false },
        { stepid: 2, number: 1, name: 'task', buildid: 1, started_at: 5, complete: true, complete_at: 9, results: 0, state_string: 'finished', urls: [], hidden: false },
      ];
      const s = (query: string) => applyQuery(steps, parse(query, ENTITIES.step), ENTITIES.step).items.map((x) => x.stepid);
      expect(s('results__ne=0')).to.deep.equal([1]);
      expect(s('state_string__contains=run')).to.deep.equal([]);
      expect(s('state_string__contains=Run')).to.deep.equal([1]);
      expect(s('results__lt=5')).to.deep.equal([2]);
    });
  });

  describe('order, paging, fields', () => {
    const rows = [row(3, { complete_at: null, number: 7 }), row(1, { number: 7 }), row(2, { complete_at: null, number: 5 })];

    it('no order: the key field ascending, as a table scan', () => {
      expect(ids(applyQuery(rows, parse(''), ENTITIES.build).items)).to.deep.equal([1, 2, 3]);
    });

    it('nulls first ascending, last descending; several keys; ties by the key field (real: order=complete_at&order=-buildrequestid)', () => {
      expect(ids(applyQuery(rows, parse('order=complete_at'), ENTITIES.build).items)).to.deep.equal([2, 3, 1]);
      expect(ids(applyQuery(rows, parse('order=-complete_at'), ENTITIES.build).items)).to.deep.equal([1, 2, 3]);
      expect(ids(applyQuery(rows, parse('order=complete_at&order=-buildid'), ENTITIES.build).items)).to.deep.equal([3, 2, 1]);
      expect(ids(applyQuery(rows, parse('order=-number&order=complete_at'), ENTITIES.build).items)).to.deep.equal([3, 1, 2]);
    });

    it('total counts the filtered rows before offset and limit; SQL paging: a negative limit is none, a negative offset 0', () => {
      const page = (s: string) => applyQuery(rows, parse(s), ENTITIES.build);
      expect(page('limit=1&offset=1')).to.deep.include({ total: 3 });
      expect(ids(page('limit=1&offset=1').items)).to.deep.equal([2]);
      expect(ids(page('limit=0').items)).to.deep.equal([]);
      expect(ids(page('limit=-1').items)).to.deep.equal([1, 2, 3]);
      expect(ids(page('offset=-1&limit=1').items)).to.deep.equal([1]);
      expect(ids(page('offset=5').items)).to.deep.equal([]);
    });

    it('Python paging (steps, logs): negative values count from the end, as a slice', () => {
      const logs = [1, 2, 3].map((logid) => ({ logid, name: 'stdio', slug: 'stdio', stepid: 1, complete: true, num_lines: 0, type: 't' }));
      expect(applyQuery(logs, parse('offset=-1', ENTITIES.log), ENTITIES.log).items.map((l) => l.logid)).to.deep.equal([3]);
      expect(applyQuery(logs, parse('limit=-1', ENTITIES.log), ENTITIES.log).items.map((l) => l.logid)).to.deep.equal([1, 2]);
    });

    it('field selection keeps the named fields only', () => {
      expect(applyQuery([row(1)], parse('field=buildid&field=number'), ENTITIES.build).items).to.deep.equal([{ buildid: 1, number: 1 }]);
    });
  });

  describe('envelopes and rendering', () => {
    it("is Buildbot's: plural list and meta.total; one item in a list with empty meta", () => {
      expect(collectionEnvelope('builds', [1], 5)).to.deep.equal({ builds: [1], meta: { total: 5 } });
      expect(itemEnvelope('builds', 1)).to.deep.equal({ builds: [1], meta: {} });
    });

    it("renders as Python's json.dumps: sorted keys, ASCII only, compact for application/json, indented otherwise", () => {
      const value = { builds: [{ b: 1, a: 'é\u007f', c: [], d: {} }], meta: { total: 1 } };
      const compact = renderAnswer(value, 'application/json');
      expect(compact).to.deep.equal({ status: 200, contentType: 'application/json; charset=utf-8', body: '{"builds":[{"a":"\\u00e9\\u007f","b":1,"c":[],"d":{}}],"meta":{"total":1}}' });
      const pretty = renderAnswer(value, undefined);
      expect(pretty.contentType).to.equal('text/plain; charset=utf-8');
      expect(pretty.body).to.equal('{\n  "builds": [\n    {\n      "a": "\\u00e9\\u007f",\n      "b": 1,\n      "c": [],\n      "d": {}\n    }\n  ],\n  "meta": {\n    "total": 1\n  }\n}');
      expect(pythonJsonDumps({ error: 'x' }, 'default')).to.equal('{"error": "x"}');
    });
  });

  describe('properties', () => {
    const rowArb = (minId: number, maxId: number) =>
      fc.uniqueArray(
        fc.record({
          buildid: fc.integer({ min: minId, max: maxId }),
          number: fc.integer({ min: 0, max: 5 }),
          results: fc.option(fc.integer({ min: 0, max: 6 }), { nil: null }),
          complete_at: fc.option(fc.integer({ min: 0, max: 4 }), { nil: null }),
          state_string: fc.constantFrom('build successful', 'failed', 'building', 'Building', 'exception (x_y)'),
          complete: fc.boolean(),
        }),
        { selector: (r) => r.buildid, maxLength: 25 },
      );
    const FILTERS = ['', 'results=0', 'results=2&results=4', 'results__ne=0', 'results__lt=3', 'complete=true', 'complete=0', 'state_string__contains=ui', 'state_string__contains=B', 'complete_at__gt=1', 'number__in=1&number__in=2', 'number__notin=3', 'state_string=failed'];
    const ORDERS = ['number', '-number', 'results', '-results', 'complete_at', '-complete_at', 'state_string', '-state_string', 'complete', '-buildid', 'buildid'];
    const queryArb = fc
      .record({
        filter: fc.constantFrom(...FILTERS),
        order: fc.array(fc.constantFrom(...ORDERS), { maxLength: 3 }),
        limit: fc.option(fc.integer({ min: 0, max: 30 }), { nil: null }),
        offset: fc.option(fc.integer({ min: 0, max: 30 }), { nil: null }),
        selectFields: fc.boolean(),
      })
      .map(({ filter, order, limit, offset, selectFields }) => {
        const params = new URLSearchParams(filter);
        for (const o of order) params.append('order', o);
        if (limit !== null) params.set('limit', String(limit));
        if (offset !== null) params.set('offset', String(offset));
        if (selectFields) for (const f of ['buildid', 'number', 'results', 'complete_at', 'state_string', 'complete']) params.append('field', f);
        return params;
      });
    const E = ENTITIES.build;

    it('total does not depend on limit or offset, and a page is the slice of the unpaged answer', () => {
      fc.assert(
        fc.property(rowArb(1, 60), queryArb, (rows, params) => {
          const query = parse(params.toString());
          const paged = applyQuery(rows, query, E);
          const whole = applyQuery(rows, { ...query, limit: null, offset: null }, E);
          expect(paged.total).to.equal(whole.total);
          const start = query.offset ?? 0;
          expect(paged.items).to.deep.equal(whole.items.slice(start, query.limit === null ? undefined : start + query.limit));
        }),
        { numRuns: 300 },
      );
    });

    it('order is stable and total: the same rows in any input order give the same answer, sorted by the keys', () => {
      fc.assert(
        fc.property(rowArb(1, 60), queryArb, fc.func(fc.integer()), (rows, params, shuffleKey) => {
          const query = { ...parse(params.toString()), fields: null };
          const shuffled = [...rows].sort((a, b) => shuffleKey(a.buildid) - shuffleKey(b.buildid));
          const a = applyQuery(rows, query, E).items;
          expect(applyQuery(shuffled, query, E).items).to.deep.equal(a);
          const keys = (query.order ?? []).map((o): [string, number] => (o.startsWith('-') ? [o.slice(1), -1] : [o, 1]));
          for (let i = 1; i < a.length; i++) {
            for (const [k, dir] of keys) {
              const x = (a[i - 1] as Record<string, unknown>)[k] as number | string | boolean | null;
              const y = (a[i] as Record<string, unknown>)[k] as number | string | boolean | null;
              if (x === y) continue;
              const before = x === null ? true : y === null ? false : x < y;
              expect(dir === 1 ? before : !before, `${k} at ${i}`).to.equal(true);
              break;
            }
          }
        }),
        { numRuns: 300 },
      );
    });

    it("merging the proxy's rows with the legacy master's page equals querying both sides' rows together", () => {
      fc.assert(
        fc.property(rowArb(1, 999), rowArb(MINTED_ID_BASE, MINTED_ID_BASE + 999), queryArb, (theirsAll, ours, params) => {
          const query = parse(params.toString());
          const legacyParams = legacyQueryOf(params, query);
          expect(legacyParams.has('offset')).to.equal(false);
          const theirs = applyQuery(theirsAll, parse(legacyParams.toString()), E);
          const merged = mergeCollections(ours, theirs, query, E);
          const expected = applyQuery([...theirsAll, ...ours], query, E);
          expect(merged.items).to.deep.equal(expected.items);
          expect(merged.total).to.equal(expected.total);
          // The same through request parameters.
          const viaParams = mergeCollections(ours, theirs, params, 'builds');
          expect(viaParams).to.deep.include({ ok: true, total: expected.total });
          expect(viaParams.items).to.deep.equal(expected.items);
        }),
        { numRuns: 400 },
      );
    });
  });
});
