/**
 * The build comparison: per job type, how the legacy master and each new
 * backend did over a time window (builds by result, pass rate, duration and
 * wait), and a verdict per new backend against the legacy one. Pure: the
 * admin API reads the outcomes from the store and hands them in; the status
 * page and `strangler-proxy report` show what comes out.
 * docs/build-comparison.md says the same for people; keep both in step.
 */
import { StranglerError } from '../errors.js';
import { RESULT_NAMES } from '../taskcluster/results.js';
import { isInfrastructureException, passes, type BuildOutcome } from './outcome.js';

/** Counted builds each side needs before a verdict says more than "not enough builds". */
export const DEFAULT_MIN_BUILDS = 10;
/** A pass rate lower (higher) by more than this many percentage points makes the new side worse (better). */
export const PASS_RATE_MARGIN_POINTS = 5;
/** A duration p50 longer (shorter) by more than this share of the legacy one makes the new side worse (better). */
export const DURATION_MARGIN = 0.2;
/** Points in each side's time series. */
export const DEFAULT_BUCKETS = 24;
export const DEFAULT_WINDOW = '24h';
/** The longest window: a week is what the page offers; a quarter is plenty for a report. */
export const MAX_WINDOW_MS = 90 * 86_400_000;

export type ResultName = (typeof RESULT_NAMES)[number];
export type Side = 'legacy' | 'new';
export type Verdict = 'not-enough-builds' | 'worse' | 'better' | 'as-good';

/** What each verdict tells a release engineer: whether the job type is ready to move to the new side. */
export const VERDICT_ADVICE: Record<Verdict, string> = {
  better: 'better — ready to move',
  'as-good': 'as good — ready to move',
  worse: 'worse — move back',
  'not-enough-builds': 'not enough builds yet',
};

export interface CompareOptions {
  /** The legacy backend's name (`legacy: true` in routes.yaml): every other backend is a new side. */
  legacy: string;
  /** Epoch ms, inclusive: the window's start. */
  since: number;
  /** Epoch ms, exclusive: the window's end (now, usually). */
  until: number;
  minBuilds?: number;
  passRateMarginPoints?: number;
  durationMargin?: number;
  buckets?: number;
}

/** One slice of the window: what the charts draw. */
export interface SeriesPoint {
  start: string;
  end: string;
  /** Builds that finished in the slice, whatever their result. */
  builds: number;
  counted: number;
  passRate: number | null;
  /** Seconds; null when no counted build finished in the slice. */
  durationP50: number | null;
}

/** One backend's builds of one job type in the window. */
export interface SideBuilds {
  backend: string;
  side: Side;
  /** Builds that finished in the window, whatever their result. */
  builds: number;
  /** Those builds by Buildbot's result name. */
  results: Record<ResultName, number>;
  /** The builds a pass rate counts: success, warnings, failure, exception (outcome.ts passes()). */
  counted: number;
  /** Counted builds that passed: success and warnings. */
  passed: number;
  /** passed / counted, 0 to 1; null when none counted. */
  passRate: number | null;
  /** exception and retry: the infrastructure broke rather than the job. */
  infrastructureExceptions: number;
  /** Seconds from start to finish of the counted builds; null when none. */
  durationP50: number | null;
  durationP95: number | null;
  /** Seconds from submission to start, of every build whose submission time is known; null when none. */
  waitP95: number | null;
  series: SeriesPoint[];
}

/** The new side against the legacy one: positive means the new side's figure is larger. */
export interface Differences {
  /** Pass rate, in percentage points (new − legacy); null when a side counted none. */
  passRatePoints: number | null;
  /** Duration p50 as a share of the legacy one (new / legacy − 1: 0.25 is 25 % longer); null when unknown or the legacy one is 0. */
  durationP50Change: number | null;
  /** Seconds (new − legacy); null when a side has none. */
  durationP50Seconds: number | null;
  durationP95Seconds: number | null;
  waitP95Seconds: number | null;
  infrastructureExceptions: number;
}

export interface SideVerdict {
  /** The new backend judged against the legacy one. */
  backend: string;
  verdict: Verdict;
  /** Why, in words, one sentence each. */
  reasons: string[];
  differences: Differences;
}

export interface JobTypeBuilds {
  jobType: string;
  /** The legacy backend first (even without builds), then every new backend with builds of this job type, by name. */
  sides: SideBuilds[];
  /** One per new backend in `sides`; empty when only the legacy master ran this job type in the window. */
  verdicts: SideVerdict[];
}

export interface BuildComparison {
  window: { since: string; until: string; seconds: number; buckets: number; bucketSeconds: number };
  legacy: string;
  rules: { minBuilds: number; passRateMarginPoints: number; durationMargin: number };
  /** How many verdicts of each kind, over every job type. */
  summary: Record<Verdict, number>;
  /** By name. */
  jobTypes: JobTypeBuilds[];
}

/**
 * A window written as a count and a unit: `m` minutes, `h` hours, `d` days
 * (`30m`, `1h`, `24h`, `7d`), up to {@link MAX_WINDOW_MS}. Anything else is a
 * BAD_REQUEST saying what is expected.
 *
 * @example parseWindow('24h') // 86_400_000
 */
export function parseWindow(text: string): number {
  const match = /^([1-9][0-9]{0,4})([mhd])$/.exec(text);
  const ms = match ? Number(match[1]) * { m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] as 'm' | 'h' | 'd'] : NaN;
  if (!(ms <= MAX_WINDOW_MS)) {
    throw new StranglerError('BAD_REQUEST', `a window is a whole number and a unit, m (minutes), h (hours) or d (days), at most 90d, e.g. 1h, 24h or 7d; got ${JSON.stringify(text.slice(0, 30))}`, {
      details: { field: 'window' },
    });
  }
  return ms;
}

/**
 * The p-th quantile (0 to 1) of values sorted ascending, interpolating
 * linearly between the two nearest ranks (as numpy's default and
 * spreadsheets' PERCENTILE.INC do): the p50 of an even count is the mean of
 * the middle two. Null for no values.
 *
 * @example percentile([1, 2, 3, 4], 0.5) // 2.5
 */
export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = (sorted.length - 1) * p;
  const low = Math.floor(rank);
  const high = Math.ceil(rank);
  return sorted[low]! + (sorted[high]! - sorted[low]!) * (rank - low);
}

/**
 * Compares the builds that finished in `[since, until)` (outcomes outside
 * are ignored), per job type, each new backend against `legacy`.
 *
 * @example
 *   const now = Date.now();
 *   compareBuilds(await store.outcomes({ since: now - parseWindow('24h'), until: now }), { legacy: 'buildbot', since: now - parseWindow('24h'), until: now });
 */
export function compareBuilds(outcomes: readonly BuildOutcome[], options: CompareOptions): BuildComparison {
  const rules = {
    minBuilds: options.minBuilds ?? DEFAULT_MIN_BUILDS,
    passRateMarginPoints: options.passRateMarginPoints ?? PASS_RATE_MARGIN_POINTS,
    durationMargin: options.durationMargin ?? DURATION_MARGIN,
  };
  const buckets = options.buckets ?? DEFAULT_BUCKETS;
  const { since, until, legacy } = options;
  if (!Number.isInteger(rules.minBuilds) || rules.minBuilds < 1) throw new RangeError(`minBuilds must be a whole number from 1, got ${rules.minBuilds}`);
  if (!Number.isInteger(buckets) || buckets < 1) throw new RangeError(`buckets must be a whole number from 1, got ${buckets}`);
  if (!(until > since)) throw new RangeError(`the window must end after it starts (since ${since}, until ${until})`);

  const byJobType = new Map<string, Map<string, BuildOutcome[]>>();
  for (const o of outcomes) {
    if (o.finishedAt < since || o.finishedAt >= until) continue;
    let byBackend = byJobType.get(o.jobType);
    if (byBackend === undefined) byJobType.set(o.jobType, (byBackend = new Map()));
    const list = byBackend.get(o.backend);
    if (list) list.push(o);
    else byBackend.set(o.backend, [o]);
  }

  const window = { since, until, buckets };
  const summary: Record<Verdict, number> = { worse: 0, 'not-enough-builds': 0, 'as-good': 0, better: 0 };
  const jobTypes = [...byJobType.keys()].sort().map((jobType): JobTypeBuilds => {
    const byBackend = byJobType.get(jobType)!;
    const newNames = [...byBackend.keys()].filter((b) => b !== legacy).sort();
    const old = sideBuilds(legacy, 'legacy', byBackend.get(legacy) ?? [], window);
    const sides = [old, ...newNames.map((b) => sideBuilds(b, 'new', byBackend.get(b)!, window))];
    const verdicts = sides.slice(1).map((s) => judge(old, s, rules));
    for (const v of verdicts) summary[v.verdict]++;
    return { jobType, sides, verdicts };
  });

  return {
    window: { since: new Date(since).toISOString(), until: new Date(until).toISOString(), seconds: (until - since) / 1000, buckets, bucketSeconds: (until - since) / buckets / 1000 },
    legacy,
    rules,
    summary,
    jobTypes,
  };
}

/** Seconds from start to finish; a clock that went backwards reads as 0. */
const durationOf = (o: BuildOutcome): number => Math.max(0, o.finishedAt - o.startedAt) / 1000;

/** The counted builds' durations, sorted: a skipped, retried or cancelled build did not run its job to its end, so its length says nothing of the job's. */
const countedDurations = (list: readonly BuildOutcome[]): number[] =>
  list
    .filter((o) => passes(o.result) !== undefined)
    .map(durationOf)
    .sort((a, b) => a - b);

function passCounts(list: readonly BuildOutcome[]): { counted: number; passed: number; passRate: number | null } {
  let counted = 0;
  let passed = 0;
  for (const o of list) {
    const pass = passes(o.result);
    if (pass === undefined) continue;
    counted++;
    if (pass) passed++;
  }
  return { counted, passed, passRate: counted === 0 ? null : passed / counted };
}

function sideBuilds(backend: string, side: Side, list: readonly BuildOutcome[], window: { since: number; until: number; buckets: number }): SideBuilds {
  const results = Object.fromEntries(RESULT_NAMES.map((name) => [name, 0])) as Record<ResultName, number>;
  for (const o of list) results[RESULT_NAMES[o.result]]++;
  const durations = countedDurations(list);
  const waits = list
    .filter((o) => o.submittedAt !== null)
    .map((o) => Math.max(0, o.startedAt - o.submittedAt!) / 1000)
    .sort((a, b) => a - b);

  const span = window.until - window.since;
  const slices: BuildOutcome[][] = Array.from({ length: window.buckets }, () => []);
  for (const o of list) slices[Math.min(window.buckets - 1, Math.floor(((o.finishedAt - window.since) * window.buckets) / span))]!.push(o);
  const edge = (i: number) => new Date(window.since + Math.round((span * i) / window.buckets)).toISOString();
  const series = slices.map((slice, i): SeriesPoint => {
    const { counted, passRate } = passCounts(slice);
    return { start: edge(i), end: edge(i + 1), builds: slice.length, counted, passRate, durationP50: percentile(countedDurations(slice), 0.5) };
  });

  return {
    backend,
    side,
    builds: list.length,
    results,
    ...passCounts(list),
    infrastructureExceptions: list.filter((o) => isInfrastructureException(o.result)).length,
    durationP50: percentile(durations, 0.5),
    durationP95: percentile(durations, 0.95),
    waitP95: percentile(waits, 0.95),
    series,
  };
}

/**
 * Differences are rounded to 9 decimals before they are compared, so that a
 * difference exactly at a threshold (90 % against 85 %, 12 s against 10 s)
 * reads as at it, not a float's hair past it.
 */
const round9 = (x: number): number => Math.round(x * 1e9) / 1e9;
const minus = (a: number | null, b: number | null): number | null => (a === null || b === null ? null : round9(a - b));

function judge(old: SideBuilds, fresh: SideBuilds, rules: BuildComparison['rules']): SideVerdict {
  const passRatePoints = old.passRate === null || fresh.passRate === null ? null : round9((fresh.passRate - old.passRate) * 100);
  const durationP50Change = old.durationP50 === null || fresh.durationP50 === null || old.durationP50 === 0 ? null : round9(fresh.durationP50 / old.durationP50 - 1);
  const differences: Differences = {
    passRatePoints,
    durationP50Change,
    durationP50Seconds: minus(fresh.durationP50, old.durationP50),
    durationP95Seconds: minus(fresh.durationP95, old.durationP95),
    waitP95Seconds: minus(fresh.waitP95, old.waitP95),
    infrastructureExceptions: fresh.infrastructureExceptions - old.infrastructureExceptions,
  };
  const verdict = (v: Verdict, reasons: string[]): SideVerdict => ({ backend: fresh.backend, verdict: v, reasons, differences });

  if (old.counted < rules.minBuilds || fresh.counted < rules.minBuilds) {
    return verdict('not-enough-builds', [
      `${fresh.backend} has ${fresh.counted} and ${old.backend} ${old.counted} counted builds in the window; a verdict needs at least ${rules.minBuilds} on each side`,
    ]);
  }
  const points = passRatePoints!;
  const margin = rules.passRateMarginPoints;
  const share = rules.durationMargin;
  const passText = `pass rate ${percent(fresh.passRate)} on ${fresh.backend} against ${percent(old.passRate)} on ${old.backend}`;
  const durationText = `duration p50 ${duration(fresh.durationP50)} against ${duration(old.durationP50)}`;
  const worse: string[] = [];
  if (points < -margin) worse.push(`${passText}: ${fixed(-points)} points lower (more than ${margin})`);
  if (durationP50Change !== null && durationP50Change > share) worse.push(`${durationText}: ${fixed(durationP50Change * 100)} % longer (more than ${fixed(share * 100)} %)`);
  if (worse.length) return verdict('worse', worse);

  const better: string[] = [];
  if (points > margin) better.push(`${passText}: ${fixed(points)} points higher (more than ${margin})`);
  if (durationP50Change !== null && durationP50Change < -share) better.push(`${durationText}: ${fixed(-durationP50Change * 100)} % shorter (more than ${fixed(share * 100)} %)`);
  if (better.length) return verdict('better', better);

  return verdict('as-good', [
    `${passText}: within ${margin} points`,
    durationP50Change === null ? `${durationText}: not comparable (the legacy p50 is 0)` : `${durationText}: within ${fixed(share * 100)} %`,
  ]);
}

const fixed = (x: number): string => x.toFixed(1).replace(/\.0$/, '');
const percent = (share: number | null): string => (share === null ? '–' : `${fixed(share * 100)} %`);

/** Seconds for people: `850 ms`, `42 s`, `12 min 5 s`, `2 h 3 min`. */
export function duration(seconds: number | null): string {
  if (seconds === null) return '–';
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${fixed(seconds)} s`;
  const s = Math.round(seconds);
  if (s < 3600) return `${Math.floor(s / 60)} min${s % 60 ? ` ${s % 60} s` : ''}`;
  return `${Math.floor(s / 3600)} h${Math.floor((s % 3600) / 60) ? ` ${Math.floor((s % 3600) / 60)} min` : ''}`;
}
