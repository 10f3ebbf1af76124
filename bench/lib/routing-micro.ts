/**
 * In-process micro-benchmark of the routing decision:
 * `decide(table, { jobTypes: [name] })` over tables of 10, 1,000 and 10,000
 * routes (exact names only, and a realistic mix of exact names, globs and
 * regexes), built by `parseConfig` from generated YAML, over a skewed stream
 * of 2,000 distinct job types (Zipf), so the per-table memo in `matchRoute`
 * sees the hit pattern it sees in production.
 *
 * Three streams per table, all with the same skew: 'all' (the same 2,000 job
 * types for every table; a big table routes more of them than a small one),
 * 'matched' (only the job types this table routes) and 'unmatched' (only those
 * that go to the default backend). A matched decision builds a bigger answer
 * than a default one, so 'all' mixes table size with match rate; 'matched'
 * and 'unmatched' compare like with like.
 *
 * Steady state: every table is warmed up (JIT, memo); then, per round, each
 * table (in a shuffled order) times one pass over each stream. ns/decision is
 * the median over rounds; the 10,000-vs-10 ratios are medians of per-round
 * ratios (the two tables of a round ran milliseconds apart).
 * Cold: the memo emptied, distinct names decided once each (the pattern scan
 * every new job type pays once), for at most coldBudgetMs per table.
 *
 *   node --import tsx bench/lib/routing-micro.ts '{"sizes":[10,1000,10000],"rounds":25,"length":200000}'
 * Prints one JSON line.
 */
import { parseConfig } from '../../src/config/load.js';
import { decide } from '../../src/routing/decide.js';
import { forgetMemos, matchRoute, type RoutingTable } from '../../src/routing/table.js';
import { generateRoutes, jobTypeWorkload, routesYaml, rng, shuffle, type RouteMix } from './routes.js';

interface Options {
  sizes: number[];
  mixes: RouteMix[];
  rounds: number;
  length: number;
  distinct: number;
  coldBudgetMs: number;
}

const given = JSON.parse(process.argv[2] ?? '{}') as Partial<Options>;
const opts: Options = { sizes: [10, 1000, 10000], mixes: ['exact', 'mix'], rounds: 25, length: 200_000, distinct: 2000, coldBudgetMs: 1500, ...given };

const median = (xs: number[]): number => {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
};

const { names, sequence } = jobTypeWorkload(opts.distinct, opts.length);
const backends = { buildbot: { url: 'http://127.0.0.1:8011', legacy: true }, taskservice: { url: 'http://127.0.0.1:8012' } };

/** A stream of `length` draws over `subset` (indexes into `names`), keeping the workload's skew (Zipf by rank). */
function substream(subset: number[], length: number, seed: number): Uint16Array {
  const out = new Uint16Array(subset.length ? length : 0);
  if (!subset.length) return out;
  const w = jobTypeWorkload(subset.length, length, seed);
  // jobTypeWorkload ranks its own shuffled names; only the rank sequence is used here.
  for (let i = 0; i < length; i++) out[i] = subset[w.sequence[i]!]!;
  return out;
}

type StreamKey = 'all' | 'matched' | 'unmatched';
interface Case {
  key: string;
  mix: RouteMix;
  size: number;
  table: RoutingTable;
  parseMs: number;
  yamlBytes: number;
  matched: number;
  streams: Record<StreamKey, Uint16Array>;
  rounds: Record<StreamKey, number[]>;
  lookupRounds: number[];
  coldNs: number;
  coldNames: number;
}

const cases: Case[] = [];
for (const mix of opts.mixes) {
  for (const size of opts.sizes) {
    const yaml = routesYaml({ backends, routes: generateRoutes({ count: size, mix }) });
    const t0 = performance.now();
    const table = parseConfig(Buffer.from(yaml), `generated-${mix}-${size}.yaml`);
    const parseMs = performance.now() - t0;
    const matchedIdx: number[] = [];
    const unmatchedIdx: number[] = [];
    names.forEach((n, i) => (decide(table, { jobTypes: [n] }).route ? matchedIdx : unmatchedIdx).push(i));
    forgetMemos(table);
    const sub = Math.max(20_000, Math.floor(opts.length / 2));
    cases.push({
      key: `${mix}-${size}`, mix, size, table, parseMs, yamlBytes: yaml.length, matched: matchedIdx.length,
      streams: { all: sequence, matched: substream(matchedIdx, sub, 11), unmatched: substream(unmatchedIdx, sub, 13) },
      rounds: { all: [], matched: [], unmatched: [] },
      lookupRounds: [],
      coldNs: NaN, coldNames: 0,
    });
  }
}

let sink = 0;
/** One pass over a stream; ns per decision. */
function pass(table: RoutingTable, stream: Uint16Array): number {
  if (stream.length === 0) return NaN;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < stream.length; i++) {
    const decision = decide(table, { jobTypes: [names[stream[i]!]!] });
    sink += decision.reason.length;
  }
  return Number(process.hrtime.bigint() - t0) / stream.length;
}

/** matchRoute() alone (the table lookup, memo included), over a stream; ns per lookup. */
function lookups(table: RoutingTable, stream: Uint16Array): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < stream.length; i++) if (matchRoute(table, names[stream[i]!]!) !== undefined) sink++;
  return Number(process.hrtime.bigint() - t0) / stream.length;
}

/** Memo emptied, distinct names decided once each (for at most `budgetMs`); ns per decision. */
function cold(c: Case, budgetMs: number): void {
  forgetMemos(c.table);
  const t0 = process.hrtime.bigint();
  const until = performance.now() + budgetMs;
  let n = 0;
  for (const name of names) {
    sink += decide(c.table, { jobTypes: [name] }).reason.length;
    n++;
    if ((n & 15) === 0 && performance.now() > until) break;
  }
  c.coldNs = Number(process.hrtime.bigint() - t0) / n;
  c.coldNames = n;
}

const KEYS: StreamKey[] = ['all', 'matched', 'unmatched'];
const warm = () => {
  for (const c of cases) {
    for (const k of KEYS) pass(c.table, c.streams[k]);
    lookups(c.table, c.streams.all);
  }
};
warm(); // JIT
for (const c of cases) cold(c, opts.coldBudgetMs);
warm(); // the memo as production has it
warm();
const order = rng(99);
for (let r = 0; r < opts.rounds; r++) {
  for (const c of shuffle(cases, order)) {
    for (const k of KEYS) c.rounds[k].push(pass(c.table, c.streams[k]));
    c.lookupRounds.push(lookups(c.table, c.streams.all));
  }
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;
const counts = new Map<number, number>();
for (const i of sequence) counts.set(i, (counts.get(i) ?? 0) + 1);
const result = {
  decisionsPerPass: sequence.length,
  distinctJobTypes: opts.distinct,
  distinctInStream: counts.size,
  top10Share: [...counts.values()].sort((a, b) => b - a).slice(0, 10).reduce((s, x) => s + x, 0) / sequence.length,
  rounds: opts.rounds,
  cases: cases.map((c) => ({
    key: c.key,
    mix: c.mix,
    routes: c.size,
    exactRoutes: c.table.exactRoutes.size,
    patternRoutes: c.table.patternRoutes.length,
    yamlBytes: c.yamlBytes,
    parseMs: Math.round(c.parseMs * 10) / 10,
    matchedJobTypes: c.matched,
    /** The realistic stream: the same 2,000 job types for every table. */
    nsPerDecision: median(c.rounds.all),
    nsPerDecisionMin: Math.min(...c.rounds.all),
    /** Only job types this table routes (a route matched), same skew. */
    nsPerMatchedDecision: median(c.rounds.matched),
    /** Only job types no route matches (the default backend), same skew. */
    nsPerUnmatchedDecision: median(c.rounds.unmatched),
    /** matchRoute() alone over the 'all' stream: the table lookup without building the decision. */
    nsPerLookup: median(c.lookupRounds),
    /** First sight of a job type (memo empty): the scan over the patterns. */
    nsPerColdDecision: c.coldNs,
    coldSample: c.coldNames,
  })),
  ratios: {} as Record<string, { largest: number; smallest: number; ratio: number; matched: number; unmatched: number; likeForLike: number; lookup: number; perRound: number[] }>,
  sink: sink % 7,
};
for (const mix of opts.mixes) {
  const small = cases.find((c) => c.mix === mix && c.size === Math.min(...opts.sizes))!;
  const large = cases.find((c) => c.mix === mix && c.size === Math.max(...opts.sizes))!;
  const ratioOf = (k: StreamKey) => median(large.rounds[k].map((x, i) => x / small.rounds[k][i]!));
  const perRound = large.rounds.all.map((x, i) => x / small.rounds.all[i]!);
  const matched = ratioOf('matched');
  const unmatched = ratioOf('unmatched');
  result.ratios[mix] = {
    largest: large.size, smallest: small.size, ratio: median(perRound), matched, unmatched,
    likeForLike: Math.max(...[matched, unmatched].filter(Number.isFinite)),
    lookup: median(large.lookupRounds.map((x, i) => x / small.lookupRounds[i]!)),
    perRound: perRound.map(round3),
  };
}
process.stdout.write(JSON.stringify(result) + '\n');
