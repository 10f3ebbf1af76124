/**
 * The build comparison: counts, pass rate, percentiles, the time series and
 * the verdict rules, with the thresholds tested at their edges; properties
 * over arbitrary outcomes check that the counts add up and that no verdict
 * is given below the minimum number of builds.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { isStranglerError } from '../../../src/errors.js';
import { RESULT_NAMES, type ResultCode } from '../../../src/taskcluster/results.js';
import {
  compareBuilds,
  DEFAULT_MIN_BUILDS,
  duration,
  DURATION_MARGIN,
  parseWindow,
  PASS_RATE_MARGIN_POINTS,
  percentile,
  type BuildComparison,
  type CompareOptions,
} from '../../../src/tracking/compare.js';
import { isInfrastructureException, passes, type BuildOutcome } from '../../../src/tracking/outcome.js';

const T0 = Date.parse('2030-01-01T00:00:00Z');
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const WINDOW: CompareOptions = { legacy: 'buildbot', since: T0, until: T0 + DAY };
const [SUCCESS, WARNINGS, FAILURE, SKIPPED, EXCEPTION, RETRY, CANCELLED] = [0, 1, 2, 3, 4, 5, 6] as const;

let serial = 0;
/** `count` builds of one kind, finishing an hour into the window unless `finishedAt` says otherwise. */
function builds(count: number, o: { backend?: string; jobType?: string; result?: ResultCode; seconds?: number; waitSeconds?: number | null; finishedAt?: number } = {}): BuildOutcome[] {
  return Array.from({ length: count }, () => {
    const finishedAt = o.finishedAt ?? T0 + HOUR;
    const startedAt = finishedAt - (o.seconds ?? 100) * 1000;
    return {
      backend: o.backend ?? 'buildbot',
      buildKey: `k${serial++}`,
      jobType: o.jobType ?? 'linux64-opt',
      result: o.result ?? SUCCESS,
      submittedAt: o.waitSeconds === null ? null : startedAt - (o.waitSeconds ?? 5) * 1000,
      startedAt,
      finishedAt,
      origin: 'proxy',
      recordedAt: finishedAt + 1000,
    };
  });
}

/** `passed` of `counted` builds passing, on a backend, each taking `seconds`. */
function side(backend: string, passed: number, counted: number, seconds = 100): BuildOutcome[] {
  return [...builds(passed, { backend, seconds }), ...builds(counted - passed, { backend, result: FAILURE, seconds })];
}

function only(c: BuildComparison, jobType = 'linux64-opt') {
  const j = c.jobTypes.find((x) => x.jobType === jobType);
  if (!j) throw new Error(`no ${jobType} in ${JSON.stringify(c.jobTypes.map((x) => x.jobType))}`);
  return j;
}

describe('tracking/compare', () => {
  describe('parseWindow', () => {
    for (const [text, ms] of [
      ['1m', 60_000],
      ['30m', 1_800_000],
      ['1h', HOUR],
      ['24h', DAY],
      ['7d', 7 * DAY],
      ['90d', 90 * DAY],
      ['2160h', 90 * DAY],
    ] as const) {
      it(`reads ${text}`, () => expect(parseWindow(text)).to.equal(ms));
    }
    for (const text of ['', '0h', '1', 'h', '1.5h', '1H', ' 1h', '1h ', '1w', '1s', '91d', '01h', '-1h', '1e3h', '24 h', '1d1h', '99999d', '__proto__']) {
      it(`refuses ${JSON.stringify(text)} with a BAD_REQUEST saying what is expected`, () => {
        let caught: unknown;
        try {
          parseWindow(text);
        } catch (error) {
          caught = error;
        }
        expect(isStranglerError(caught, 'BAD_REQUEST'), String(caught)).to.equal(true);
        expect((caught as Error).message).to.contain('e.g. 1h, 24h or 7d').and.contain(JSON.stringify(text));
      });
    }
  });

  describe('percentile', () => {
    for (const [values, p, expected] of [
      [[], 0.5, null],
      [[7], 0.5, 7],
      [[7], 0.95, 7],
      [[1, 2, 3, 4], 0.5, 2.5],
      [[1, 2, 3], 0.5, 2],
      [[10, 20], 0.95, 19.5],
      [Array.from({ length: 20 }, (_, i) => i + 1), 0.95, 19.05],
      [Array.from({ length: 101 }, (_, i) => i), 0.95, 95],
      [[3, 5, 9], 0, 3],
      [[3, 5, 9], 1, 9],
    ] as const) {
      it(`p${p * 100} of [${values.length > 5 ? `${values.length} values` : values.join(', ')}] is ${expected}`, () => {
        const got = percentile(values, p);
        if (expected === null) expect(got).to.equal(null);
        else expect(got).to.be.closeTo(expected, 1e-9);
      });
    }
  });

  describe('what a pass rate counts (outcome.ts)', () => {
    const table: [ResultCode, boolean | undefined, boolean][] = [
      [SUCCESS, true, false],
      [WARNINGS, true, false],
      [FAILURE, false, false],
      [SKIPPED, undefined, false],
      [EXCEPTION, false, true],
      [RETRY, undefined, true],
      [CANCELLED, undefined, false],
    ];
    for (const [code, pass, infra] of table) {
      it(`${RESULT_NAMES[code]}: ${pass === undefined ? 'not counted' : pass ? 'passes' : 'does not pass'}${infra ? ', an infrastructure exception' : ''}`, () => {
        expect(passes(code)).to.equal(pass);
        expect(isInfrastructureException(code)).to.equal(infra);
      });
    }
  });

  describe('one side', () => {
    it('counts builds by result name, the counted and passed ones, the pass rate and infrastructure exceptions', () => {
      const outcomes = [
        ...builds(5, { result: SUCCESS }),
        ...builds(2, { result: WARNINGS }),
        ...builds(2, { result: FAILURE }),
        ...builds(1, { result: EXCEPTION }),
        ...builds(3, { result: SKIPPED }),
        ...builds(4, { result: RETRY }),
        ...builds(6, { result: CANCELLED }),
      ];
      const legacy = only(compareBuilds(outcomes, WINDOW)).sides[0]!;
      expect(legacy).to.deep.include({ backend: 'buildbot', side: 'legacy', builds: 23, counted: 10, passed: 7, passRate: 0.7, infrastructureExceptions: 5 });
      expect(legacy.results).to.deep.equal({ success: 5, warnings: 2, failure: 2, skipped: 3, exception: 1, retry: 4, cancelled: 6 });
    });

    it('takes durations from the counted builds only, waits from every build with a known submission time', () => {
      const outcomes = [
        ...builds(1, { result: SUCCESS, seconds: 10, waitSeconds: 1 }),
        ...builds(1, { result: FAILURE, seconds: 20, waitSeconds: 2 }),
        ...builds(1, { result: EXCEPTION, seconds: 30, waitSeconds: null }),
        ...builds(1, { result: WARNINGS, seconds: 40, waitSeconds: 4 }),
        // Not counted: a cancelled build stopped early, a skipped one did nothing; they waited all the same.
        ...builds(1, { result: CANCELLED, seconds: 1, waitSeconds: 100 }),
        ...builds(1, { result: SKIPPED, seconds: 0, waitSeconds: 3 }),
      ];
      const legacy = only(compareBuilds(outcomes, WINDOW)).sides[0]!;
      expect(legacy.durationP50).to.equal(25);
      expect(legacy.durationP95).to.be.closeTo(38.5, 1e-9);
      // waits 1, 2, 3, 4, 100: rank 0.95 * 4 = 3.8, between 4 and 100.
      expect(legacy.waitP95).to.be.closeTo(4 + 96 * 0.8, 1e-9);
    });

    it('has no pass rate, durations or waits without builds to take them from', () => {
      const legacy = only(compareBuilds([...builds(2, { result: CANCELLED, waitSeconds: null }), ...builds(1, { backend: 'queue' })], WINDOW)).sides[0]!;
      expect(legacy).to.deep.include({ builds: 2, counted: 0, passed: 0, passRate: null, durationP50: null, durationP95: null, waitP95: null });
    });

    it('draws a series of N slices over the window: builds, pass rate and duration p50 per slice, null where empty', () => {
      const outcomes = [
        ...builds(1, { finishedAt: T0, seconds: 10 }),
        ...builds(1, { finishedAt: T0 + HOUR - 1, result: FAILURE, seconds: 30 }),
        ...builds(1, { finishedAt: T0 + HOUR, seconds: 50 }),
        ...builds(1, { finishedAt: T0 + HOUR, result: CANCELLED, seconds: 5 }),
        ...builds(1, { finishedAt: T0 + DAY - 1, result: FAILURE, seconds: 70 }),
        // Outside [since, until): ignored everywhere.
        ...builds(1, { finishedAt: T0 - 1 }),
        ...builds(1, { finishedAt: T0 + DAY }),
      ];
      const c = compareBuilds(outcomes, { ...WINDOW, buckets: 24 });
      expect(c.window).to.deep.equal({ since: '2030-01-01T00:00:00.000Z', until: '2030-01-02T00:00:00.000Z', seconds: 86_400, buckets: 24, bucketSeconds: 3600 });
      const { series, builds: total } = only(c).sides[0]!;
      expect(total).to.equal(5);
      expect(series).to.have.length(24);
      expect(series[0]).to.deep.equal({ start: '2030-01-01T00:00:00.000Z', end: '2030-01-01T01:00:00.000Z', builds: 2, counted: 2, passRate: 0.5, durationP50: 20 });
      expect(series[1]).to.deep.equal({ start: '2030-01-01T01:00:00.000Z', end: '2030-01-01T02:00:00.000Z', builds: 2, counted: 1, passRate: 1, durationP50: 50 });
      expect(series[2]).to.deep.equal({ start: '2030-01-01T02:00:00.000Z', end: '2030-01-01T03:00:00.000Z', builds: 0, counted: 0, passRate: null, durationP50: null });
      expect(series[23]).to.deep.include({ end: '2030-01-02T00:00:00.000Z', builds: 1, passRate: 0, durationP50: 70 });
    });
  });

  describe('sides', () => {
    it('puts the legacy side first, even without builds, then the new backends by name, each with a verdict', () => {
      const c = compareBuilds([...builds(1, { backend: 'zeta' }), ...builds(1, { backend: 'alpha' })], WINDOW);
      const j = only(c);
      expect(j.sides.map((s) => [s.backend, s.side, s.builds])).to.deep.equal([
        ['buildbot', 'legacy', 0],
        ['alpha', 'new', 1],
        ['zeta', 'new', 1],
      ]);
      expect(j.verdicts.map((v) => [v.backend, v.verdict])).to.deep.equal([
        ['alpha', 'not-enough-builds'],
        ['zeta', 'not-enough-builds'],
      ]);
      expect(c.summary).to.deep.equal({ worse: 0, 'not-enough-builds': 2, 'as-good': 0, better: 0 });
    });

    it('gives no verdict to a job type only the legacy master ran; lists job types by name', () => {
      const c = compareBuilds([...builds(3, { jobType: 'win32-debug' }), ...builds(3, { jobType: 'android' })], WINDOW);
      expect(c.jobTypes.map((j) => [j.jobType, j.sides.length, j.verdicts.length])).to.deep.equal([
        ['android', 1, 0],
        ['win32-debug', 1, 0],
      ]);
      expect(c.rules).to.deep.equal({ minBuilds: DEFAULT_MIN_BUILDS, passRateMarginPoints: PASS_RATE_MARGIN_POINTS, durationMargin: DURATION_MARGIN });
    });

    it('refuses options that make no sense', () => {
      expect(() => compareBuilds([], { ...WINDOW, minBuilds: 0 })).to.throw(RangeError, /minBuilds/);
      expect(() => compareBuilds([], { ...WINDOW, buckets: 1.5 })).to.throw(RangeError, /buckets/);
      expect(() => compareBuilds([], { ...WINDOW, until: T0 })).to.throw(RangeError, /window/);
    });
  });

  describe('verdicts at the thresholds', () => {
    /** Legacy: 20 counted, 90 % passing, 100 s each. */
    const legacy = side('buildbot', 18, 20, 100);
    const verdictOf = (fresh: BuildOutcome[], options: Partial<CompareOptions> = {}) => only(compareBuilds([...legacy, ...fresh], { ...WINDOW, ...options })).verdicts[0]!;
    const cases: [string, BuildOutcome[], string, Partial<CompareOptions>?][] = [
      ['the same pass rate and duration', side('queue', 18, 20), 'as-good'],
      ['pass rate exactly 5 points lower (85 % against 90 %)', side('queue', 17, 20), 'as-good'],
      ['pass rate 5.1 points lower', side('queue', 849, 1000), 'worse'],
      ['pass rate 7.5 points lower', side('queue', 33, 40), 'worse'],
      ['pass rate exactly 5 points higher (95 %)', side('queue', 19, 20), 'as-good'],
      ['pass rate 5.1 points higher', side('queue', 951, 1000), 'better'],
      ['duration p50 exactly 20 % longer (120 s)', side('queue', 18, 20, 120), 'as-good'],
      ['duration p50 20.01 % longer', side('queue', 18, 20, 120.01), 'worse'],
      ['duration p50 exactly 20 % shorter (80 s)', side('queue', 18, 20, 80), 'as-good'],
      ['duration p50 20.01 % shorter', side('queue', 18, 20, 79.99), 'better'],
      ['a better pass rate but 30 % longer: worse wins', side('queue', 20, 20, 130), 'worse'],
      ['a worse pass rate but twice as fast: worse wins', side('queue', 10, 20, 50), 'worse'],
      ['9 counted builds on the new side', side('queue', 9, 9), 'not-enough-builds'],
      ['9 counted and 30 cancelled builds on the new side', [...side('queue', 9, 9), ...builds(30, { backend: 'queue', result: CANCELLED })], 'not-enough-builds'],
      ['exactly 10 counted builds on the new side, all failing', side('queue', 0, 10), 'worse'],
      ['7.5 points lower with a margin of 10 points', side('queue', 33, 40), 'as-good', { passRateMarginPoints: 10 }],
      ['25 % longer with a margin of 30 %', side('queue', 18, 20, 125), 'as-good', { durationMargin: 0.3 }],
      ['5 counted builds with minBuilds 5', side('queue', 0, 5), 'worse', { minBuilds: 5 }],
      ['20 counted builds with minBuilds 21', side('queue', 0, 20), 'not-enough-builds', { minBuilds: 21 }],
    ];
    for (const [what, fresh, expected, options] of cases) {
      it(`${what}: ${expected}`, () => {
        const v = verdictOf(fresh, options);
        expect(v.verdict, v.reasons.join('; ')).to.equal(expected);
        expect(v.reasons).to.not.be.empty;
      });
    }

    it('gives not-enough-builds when the legacy side has too few, whatever the new side does', () => {
      const v = only(compareBuilds([...side('buildbot', 9, 9), ...side('queue', 0, 100)], WINDOW)).verdicts[0]!;
      expect(v.verdict).to.equal('not-enough-builds');
      expect(v.reasons).to.deep.equal(['queue has 100 and buildbot 9 counted builds in the window; a verdict needs at least 10 on each side']);
    });

    it('says why in words and gives the differences as numbers', () => {
      const fresh = [...side('queue', 33, 40, 130), ...builds(2, { backend: 'queue', result: RETRY })];
      const v = verdictOf(fresh);
      expect(v.verdict).to.equal('worse');
      expect(v.reasons).to.deep.equal([
        'pass rate 82.5 % on queue against 90 % on buildbot: 7.5 points lower (more than 5)',
        'duration p50 2 min 10 s against 1 min 40 s: 30 % longer (more than 20 %)',
      ]);
      expect(v.differences).to.deep.equal({ passRatePoints: -7.5, durationP50Change: 0.3, durationP50Seconds: 30, durationP95Seconds: 30, waitP95Seconds: 0, infrastructureExceptions: 2 });
      expect(verdictOf(side('queue', 18, 20)).reasons).to.deep.equal(['pass rate 90 % on queue against 90 % on buildbot: within 5 points', 'duration p50 1 min 40 s against 1 min 40 s: within 20 %']);
      expect(verdictOf(side('queue', 20, 20, 50)).reasons).to.deep.equal([
        'pass rate 100 % on queue against 90 % on buildbot: 10 points higher (more than 5)',
        'duration p50 50 s against 1 min 40 s: 50 % shorter (more than 20 %)',
      ]);
    });
  });

  it('writes durations for people', () => {
    expect([0.25, 5, 42.5, 60, 125, 3600, 3725, 7260].map(duration)).to.deep.equal(['250 ms', '5 s', '42.5 s', '1 min', '2 min 5 s', '1 h', '1 h 2 min', '2 h 1 min']);
    expect(duration(null)).to.equal('–');
  });

  describe('properties', () => {
    const outcome = fc.record({
      backend: fc.constantFrom('buildbot', 'queue', 'taskservice'),
      jobType: fc.constantFrom('a', 'b', 'c'),
      result: fc.integer({ min: 0, max: 6 }) as fc.Arbitrary<ResultCode>,
      // Some fall outside the window on either side.
      finishedAt: fc.integer({ min: T0 - HOUR, max: T0 + DAY + HOUR }),
      seconds: fc.integer({ min: 0, max: 10_000 }),
      wait: fc.option(fc.integer({ min: 0, max: 1000 })),
    });
    const toOutcomes = (list: { backend: string; jobType: string; result: ResultCode; finishedAt: number; seconds: number; wait: number | null }[]): BuildOutcome[] =>
      list.flatMap((o) => builds(1, { backend: o.backend, jobType: o.jobType, result: o.result, finishedAt: o.finishedAt, seconds: o.seconds, waitSeconds: o.wait }));
    const options = fc.record({ minBuilds: fc.integer({ min: 1, max: 30 }), buckets: fc.integer({ min: 1, max: 48 }) });

    it('counts add up: by result, counted, passed, infrastructure exceptions, the series, every build in the window once', () => {
      fc.assert(
        fc.property(fc.array(outcome, { maxLength: 300 }), options, (list, opts) => {
          const outcomes = toOutcomes(list);
          const c = compareBuilds(outcomes, { ...WINDOW, ...opts });
          const inWindow = outcomes.filter((o) => o.finishedAt >= WINDOW.since && o.finishedAt < WINDOW.until);
          let total = 0;
          for (const j of c.jobTypes) {
            for (const s of j.sides) {
              const r = s.results;
              expect(Object.values(r).reduce((a, b) => a + b, 0)).to.equal(s.builds);
              expect(s.counted).to.equal(r.success + r.warnings + r.failure + r.exception);
              expect(s.passed).to.equal(r.success + r.warnings);
              expect(s.infrastructureExceptions).to.equal(r.exception + r.retry);
              expect(s.series).to.have.length(opts.buckets);
              expect(s.series.reduce((a, p) => a + p.builds, 0)).to.equal(s.builds);
              expect(s.series.reduce((a, p) => a + p.counted, 0)).to.equal(s.counted);
              expect(s.builds).to.equal(inWindow.filter((o) => o.jobType === j.jobType && o.backend === s.backend).length);
              if (s.passRate !== null) expect(s.passRate).to.be.within(0, 1);
              total += s.builds;
            }
            expect(j.verdicts).to.have.length(j.sides.length - 1);
          }
          expect(total).to.equal(inWindow.length);
          expect(Object.values(c.summary).reduce((a, b) => a + b, 0)).to.equal(c.jobTypes.reduce((a, j) => a + j.verdicts.length, 0));
        }),
        { numRuns: 200 },
      );
    });

    it('never says better or worse while either side has fewer counted builds than minBuilds; otherwise follows the rules', () => {
      fc.assert(
        fc.property(fc.array(outcome, { maxLength: 300 }), options, (list, opts) => {
          const c = compareBuilds(toOutcomes(list), { ...WINDOW, ...opts });
          for (const j of c.jobTypes) {
            const legacy = j.sides[0]!;
            for (const v of j.verdicts) {
              const fresh = j.sides.find((s) => s.backend === v.backend)!;
              const enough = legacy.counted >= opts.minBuilds && fresh.counted >= opts.minBuilds;
              if (!enough) {
                expect(v.verdict).to.equal('not-enough-builds');
                continue;
              }
              const { passRatePoints: points, durationP50Change: change } = v.differences;
              const worse = points! < -PASS_RATE_MARGIN_POINTS || (change !== null && change > DURATION_MARGIN);
              const better = points! > PASS_RATE_MARGIN_POINTS || (change !== null && change < -DURATION_MARGIN);
              expect(v.verdict).to.equal(worse ? 'worse' : better ? 'better' : 'as-good');
            }
          }
        }),
        { numRuns: 200 },
      );
    });
  });
});
