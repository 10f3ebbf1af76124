/**
 * Generated routes.yaml files and job-type workloads for the bench: Buildbot
 * builder names of the usual shape (`linux64-opt-mochitest-3`), exact routes,
 * globs, regexes and splits in a realistic mix, deterministic for a seed.
 */

export const PLATFORMS = [
  'linux64', 'linux32', 'linux64-shippable', 'win32', 'win64', 'win64-aarch64', 'macosx64', 'macosx1100-aarch64',
  'android-api-15', 'android-api-16', 'android-aarch64', 'android-x86',
] as const;
export const BUILDS = ['opt', 'debug', 'asan', 'pgo', 'tsan', 'ccov'] as const;
export const FAMILIES: ReadonlyArray<readonly [string, number]> = [
  ['mochitest', 20], ['mochitest-browser-chrome', 16], ['mochitest-devtools', 8], ['reftest', 10], ['xpcshell', 8],
  ['wpt', 24], ['crashtest', 4], ['jsreftest', 6], ['gtest', 2], ['cppunit', 2], ['marionette', 4], ['talos', 12],
  ['raptor', 16], ['awsy', 3], ['build', 1], ['lint', 1], ['jittest', 6], ['telemetry', 2], ['web-platform-reftest', 6],
];

/** Suites such as `mochitest-3` (or `build` for one-chunk families): ~150 of them. */
export const SUITES: readonly string[] = FAMILIES.flatMap(([family, chunks]) =>
  chunks === 1 ? [family] : Array.from({ length: chunks }, (_, i) => `${family}-${i + 1}`),
);

/** Every platform × build × suite: ~11,000 builder names. */
export function universe(): string[] {
  const names: string[] = [];
  for (const suite of SUITES) for (const build of BUILDS) for (const platform of PLATFORMS) names.push(`${platform}-${build}-${suite}`);
  return names;
}

/** A small, fast, seeded PRNG (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function shuffle<T>(items: readonly T[], random: () => number): T[] {
  const a = items.slice();
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Glob patterns in the styles operators write, most specific first; all distinct. */
function globCandidates(): string[] {
  const out = new Set<string>();
  for (const platform of PLATFORMS) for (const build of BUILDS) out.add(`${platform}-${build}-*`);
  for (const [family] of FAMILIES) for (const build of BUILDS) out.add(`*-${build}-${family}-*`);
  for (const suite of SUITES) for (const platform of PLATFORMS) out.add(`${platform}-*-${suite}`);
  for (const suite of SUITES) for (const build of BUILDS) out.add(`{linux64,linux32}-${build}-${suite}`);
  for (const suite of SUITES) for (const build of BUILDS) out.add(`*-${build}-${suite}`);
  for (const suite of SUITES) for (const platform of PLATFORMS) out.add(`${platform}-{opt,debug}-${suite}*`);
  return [...out];
}

/** Regular expressions in the styles operators write; all distinct. */
function regexCandidates(): string[] {
  const out = new Set<string>();
  for (const [family] of FAMILIES) for (const build of BUILDS) for (const platform of PLATFORMS) out.add(`/^${escapeRegex(platform)}-${build}-${escapeRegex(family)}-\\d+$/`);
  for (const [family] of FAMILIES) for (const platform of PLATFORMS) out.add(`/^${escapeRegex(platform)}-(opt|debug|pgo)-${escapeRegex(family)}(-\\d+)?$/i`);
  return [...out];
}

export type RouteMix = 'exact' | 'mix';

export interface GeneratedRoute {
  pattern: string;
  kind: 'exact' | 'glob' | 'regex';
  /** `backend: NAME`, or a split when `split` is set. */
  backend?: string;
  split?: Record<string, number>;
  shadow?: { backend: string; percent: number };
}

export interface RoutesOptions {
  count: number;
  mix: RouteMix;
  seed?: number;
  /** Backend names: `legacy` is the legacy (and default) one, `next` the new side. */
  legacy?: string;
  next?: string;
  /** Exact routes that must be in the file, placed near the end (after most patterns). */
  pinned?: readonly GeneratedRoute[];
}

/**
 * `count` routes. 'exact': exact names only. 'mix': 70 % exact names, 20 %
 * globs, 10 % regexes, shuffled together as real files are, 1 in 50 of them a
 * split. Patterns are quoted as YAML double-quoted strings.
 */
export function generateRoutes(options: RoutesOptions): GeneratedRoute[] {
  const random = rng(options.seed ?? 20261124);
  const legacy = options.legacy ?? 'buildbot';
  const next = options.next ?? 'taskservice';
  const pinned = options.pinned ?? [];
  const taken = new Set(pinned.map((r) => r.pattern));
  const want = Math.max(0, options.count - pinned.length);
  const nGlob = options.mix === 'mix' ? Math.round(want * 0.2) : 0;
  const nRegex = options.mix === 'mix' ? Math.round(want * 0.1) : 0;
  const nExact = want - nGlob - nRegex;
  const pick = (candidates: string[], n: number, kind: GeneratedRoute['kind']): GeneratedRoute[] => {
    const out: GeneratedRoute[] = [];
    for (const pattern of shuffle(candidates, random)) {
      if (out.length >= n) break;
      if (taken.has(pattern)) continue;
      taken.add(pattern);
      out.push({ pattern, kind });
    }
    if (out.length < n) throw new Error(`only ${out.length} distinct ${kind} routes available, ${n} wanted`);
    return out;
  };
  const routes = shuffle([...pick(universe(), nExact, 'exact'), ...pick(globCandidates(), nGlob, 'glob'), ...pick(regexCandidates(), nRegex, 'regex')], random);
  routes.forEach((route, i) => {
    if (options.mix === 'mix' && i % 50 === 7) route.split = { [next]: 25, [legacy]: 75 };
    else route.backend = random() < 0.5 ? next : legacy;
  });
  // The pinned routes go near the end: every pattern before them is tried once per new job type.
  const at = Math.max(0, routes.length - Math.max(1, Math.floor(routes.length / 20)));
  routes.splice(at, 0, ...pinned);
  return routes;
}

export interface ConfigOptions {
  backends: Record<string, { url: string; legacy?: boolean }>;
  routes: readonly GeneratedRoute[];
  defaultBackend?: string;
}

export function routesYaml(options: ConfigOptions): string {
  const lines: string[] = ['# generated by bench/lib/routes.ts', 'backends:'];
  for (const [name, b] of Object.entries(options.backends)) lines.push(`  ${name}: { url: ${b.url}${b.legacy ? ', legacy: true' : ''} }`);
  if (options.defaultBackend) lines.push(`default: ${options.defaultBackend}`);
  lines.push('routes:');
  for (const r of options.routes) {
    lines.push(`  - jobType: ${JSON.stringify(r.pattern)}`);
    if (r.split) lines.push(`    split: { ${Object.entries(r.split).map(([k, v]) => `${k}: ${v}`).join(', ')} }`);
    else lines.push(`    backend: ${r.backend}`);
    if (r.shadow) lines.push(`    shadow: { backend: ${r.shadow.backend}, percent: ${r.shadow.percent} }`);
  }
  return lines.join('\n') + '\n';
}

/**
 * `distinct` job types from the universe, and a sequence of `length` draws
 * among them with a Zipf(s) skew: a few builders get most of the traffic, as
 * in a real CI, and the long tail still shows up.
 */
export function jobTypeWorkload(distinct: number, length: number, seed = 7, s = 1.1): { names: string[]; sequence: Uint16Array } {
  const random = rng(seed);
  const names = shuffle(universe(), random).slice(0, distinct);
  const cdf = new Float64Array(distinct);
  let total = 0;
  for (let k = 0; k < distinct; k++) cdf[k] = total += 1 / Math.pow(k + 1, s);
  const sequence = new Uint16Array(length);
  for (let i = 0; i < length; i++) {
    const u = random() * total;
    let lo = 0;
    let hi = distinct - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    sequence[i] = lo;
  }
  return { names, sequence };
}
