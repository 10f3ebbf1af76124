/**
 * What the `routes`, `plan` and `report` commands print, as pure functions of
 * routing tables, (for `plan --admin`) the running proxy's traffic and (for
 * `report`) its build comparison, so the tests can check the numbers without
 * a terminal.
 */
import { tasksForceWouldCreate, type WouldCreate } from '../explain.js';
import { movedShare, planChanges, type JobTypeChange, type Shares } from '../routing/plan.js';
import { matchRoute, type Backend, type RoutingTable } from '../routing/table.js';
import { RESULT_NAMES } from '../taskcluster/results.js';
import { duration, VERDICT_ADVICE, type SideBuilds, type SideVerdict } from '../tracking/compare.js';
import { round4, routeView, type BuildsView, type RoutesView, type RouteView } from './views.js';

// ---------------------------------------------------------------- text tables

/** Left-aligned columns, two spaces apart; trailing spaces trimmed. */
export function alignColumns(rows: readonly (readonly string[])[], indent = ''): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => indent + row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ').trimEnd());
}

const pct = (share: number, digits = 0): string => `${(share * 100).toFixed(digits)}%`;

export function describeTargets(r: Pick<RouteView, 'split' | 'targets'>): string {
  if (!r.split) return r.targets[0]?.backend ?? '-';
  return r.targets.map((t) => `${t.backend} ${pct(t.share)}`).join(', ');
}

function describeShadow(r: RouteView): string {
  return r.shadow ? `${r.shadow.backend} ${r.shadow.percent}%${r.shadow.mutating ? ' mutating' : ''}` : '-';
}

/** A rule in one line, for `plan`'s list of changed rules. */
export function describeRule(r: RouteView): string {
  const parts = [describeTargets(r)];
  if (r.stickyBy.length) parts.push(`sticky by ${r.stickyBy.join(', ')}`);
  if (r.shadow) parts.push(`shadow ${describeShadow(r)}`);
  if (r.fallback) parts.push(`fallback ${r.fallback}`);
  if (r.retries) parts.push(`retries ${r.retries}`);
  return parts.join('; ');
}

export function describeShares(shares: Shares): string {
  const entries = Object.entries(shares).filter(([, s]) => s > 0);
  if (entries.length === 1 && entries[0]![1] >= 0.99995) return entries[0]![0];
  return entries.map(([b, s]) => `${b} ${pct(s)}`).join(', ');
}

// ---------------------------------------------------------------- routes

/** The `routes` command's text: the effective table, then default and backends. */
export function formatRoutes(view: RoutesView): string {
  const out: string[] = [`${view.file}  hash ${view.hash.slice(0, 12)}  loaded ${view.loadedAt}`, ''];
  if (view.routes.length === 0) {
    out.push('  no routes: every request goes to the default backend');
  } else {
    const rows = [['#', 'JOB TYPE', 'KIND', 'BACKEND / SPLIT', 'STICKY', 'SHADOW', 'FALLBACK', 'RETRIES']];
    for (const r of view.routes) {
      rows.push([String(r.index), r.jobType, r.kind, describeTargets(r), r.stickyBy.join(', ') || '-', describeShadow(r), r.fallback ?? '-', String(r.retries)]);
    }
    out.push(...alignColumns(rows, '  '));
    for (const r of view.routes) {
      if (r.overriddenBy !== null) out.push(`  note: routes[${r.index}] ${r.jobType} never applies: routes[${r.overriddenBy}] matches it first`);
    }
  }
  out.push('', `default: ${view.default} (job types no rule matches, and requests that name none)`, 'backends:');
  out.push(...alignColumns(view.backends.map((b) => [b.name, b.url, [b.legacy ? 'legacy' : '', b.default ? 'default' : ''].filter(Boolean).join(', ')]), '  '));
  return out.join('\n');
}

// ---------------------------------------------------------------- plan

export interface RuleChange {
  jobType: string;
  change: 'added' | 'removed' | 'changed' | 'reordered';
  indexBefore: number | null;
  indexAfter: number | null;
  before: string | null;
  after: string | null;
}

export interface PlannedJobType extends JobTypeChange {
  /** Share (0 to 1) of all sampled requests that this job type moves; null without a sample. */
  shareOfAllRequests: number | null;
}

export interface PlanReport {
  mode: 'files' | 'admin';
  current: { source: string; hash: string };
  next: { source: string; hash: string };
  /** The job types looked at, and where they came from. */
  jobTypesConsidered: number;
  considered: string;
  /** Glob and regex rules of either file: the job types they match are only known when named. */
  patternRules: string[];
  /** The running proxy's traffic the shares are weighed by; null offline. */
  sample: { window: string; requests: number } | null;
  changes: PlannedJobType[];
  /** Requests naming no job type follow the default backend: moved when it changes. */
  noJobType: { requests: number; before: string; after: string; moved: number } | null;
  /** Share (0 to 1) of the sampled requests that would change backend; null without a sample. */
  movedShareOfTraffic: number | null;
  movedRequests: number | null;
  rules: RuleChange[];
  /** Backends added, removed or moved; default or legacy changed. */
  notes: string[];
  /** For each changed job type that NEW sends to a Taskcluster queue: the task a force would create there. */
  queueTasks: WouldCreate[];
  /** True when anything that routing depends on differs: the command exits 3. */
  changed: boolean;
}

export interface PlanInput {
  mode: 'files' | 'admin';
  current: RoutingTable;
  next: RoutingTable;
  currentSource: string;
  nextSource: string;
  /** Job types known beyond the files' exact names (the running proxy's, and --job-type). */
  extraJobTypes: readonly string[];
  considered: string;
  /** Requests per traffic label (job types, and "none"/"other"/"multiple"); undefined offline. */
  traffic?: ReadonlyMap<string, number>;
  trafficWindow?: string;
  /** Traffic labels that are not job types (no job type, past the label limit, several builders). */
  nonJobTypeLabels?: ReadonlySet<string>;
}

/** What a rule does, independent of how it is written: split targets by name, weights as shares (1:3 is 25:75). */
function ruleKey(r: RouteView): string {
  const targets = [...r.targets].sort((a, b) => a.backend.localeCompare(b.backend)).map((t) => `${t.backend}=${t.share}`);
  const shadow = r.shadow ? { ...r.shadow, ignoreFields: [...r.shadow.ignoreFields].sort() } : null;
  return JSON.stringify([r.split, targets, r.stickyBy, shadow, r.fallback, r.retries]);
}

export function ruleChanges(current: RoutingTable, next: RoutingTable): RuleChange[] {
  const before = new Map(current.routes.map((r) => [r.pattern, routeView(current, r)]));
  const after = new Map(next.routes.map((r) => [r.pattern, routeView(next, r)]));
  const out: RuleChange[] = [];
  for (const [pattern, b] of before) {
    const a = after.get(pattern);
    if (!a) out.push({ jobType: pattern, change: 'removed', indexBefore: b.index, indexAfter: null, before: describeRule(b), after: null });
    else if (ruleKey(a) !== ruleKey(b)) out.push({ jobType: pattern, change: 'changed', indexBefore: b.index, indexAfter: a.index, before: describeRule(b), after: describeRule(a) });
  }
  for (const [pattern, a] of after) if (!before.has(pattern)) out.push({ jobType: pattern, change: 'added', indexBefore: null, indexAfter: a.index, before: null, after: describeRule(a) });
  // Order matters (first match wins): rules kept in both files whose relative order changed.
  const kept = next.routes.map((r) => r.pattern).filter((p) => before.has(p));
  const keptBefore = current.routes.map((r) => r.pattern).filter((p) => after.has(p));
  kept.forEach((p, i) => {
    if (keptBefore[i] !== p && !out.some((c) => c.jobType === p)) {
      out.push({ jobType: p, change: 'reordered', indexBefore: before.get(p)!.index, indexAfter: after.get(p)!.index, before: describeRule(before.get(p)!), after: describeRule(after.get(p)!) });
    }
  });
  return out.sort((x, y) => (x.indexAfter ?? x.indexBefore ?? 0) - (y.indexAfter ?? y.indexBefore ?? 0));
}

export function buildPlan(input: PlanInput): PlanReport {
  const { current, next } = input;
  const nonJobTypes = input.nonJobTypeLabels ?? new Set<string>();
  const jobTypes = new Set<string>([...current.exactRoutes.keys(), ...next.exactRoutes.keys(), ...input.extraJobTypes]);
  if (input.traffic) for (const label of input.traffic.keys()) if (!nonJobTypes.has(label)) jobTypes.add(label);
  for (const label of nonJobTypes) jobTypes.delete(label);
  const traffic = input.traffic ?? new Map<string, number>();
  const plan = planChanges(current, next, jobTypes, traffic);
  const sampled = plan.sampledRequests;
  const hasSample = input.traffic !== undefined;

  let noJobType: PlanReport['noJobType'] = null;
  const noneRequests = nonJobTypes.has('none') ? (traffic.get('none') ?? 0) : 0;
  if (current.defaultBackend.name !== next.defaultBackend.name) {
    noJobType = {
      requests: noneRequests,
      before: current.defaultBackend.name,
      after: next.defaultBackend.name,
      moved: movedShare({ [current.defaultBackend.name]: 1 }, { [next.defaultBackend.name]: 1 }),
    };
  }
  // Recomputed from the changes (rather than plan.movedShareOfTraffic) so that requests naming no job type count too.
  const movedRequests = plan.changes.reduce((sum, c) => sum + c.moved * c.requests, 0) + (noJobType ? noJobType.moved * noJobType.requests : 0);
  const patternRules = [...new Set([...current.patternRoutes, ...next.patternRoutes].map((r) => r.pattern))];
  const rules = ruleChanges(current, next);
  return {
    mode: input.mode,
    current: { source: input.currentSource, hash: current.source.hash },
    next: { source: input.nextSource, hash: next.source.hash },
    jobTypesConsidered: jobTypes.size,
    considered: input.considered,
    patternRules,
    sample: hasSample ? { window: input.trafficWindow ?? '', requests: sampled } : null,
    changes: plan.changes.map((c) => ({ ...c, shareOfAllRequests: hasSample && sampled > 0 ? round4((c.moved * c.requests) / sampled) : hasSample ? 0 : null })),
    noJobType,
    movedShareOfTraffic: !hasSample ? null : sampled === 0 ? 0 : round4(movedRequests / sampled),
    movedRequests: hasSample ? Math.round(movedRequests * 100) / 100 : null,
    rules,
    notes: plan.notes,
    queueTasks: plan.changes.flatMap((c) => tasksForceWouldCreate(matchRoute(next, c.jobType), queuesWithShare(next, c.after), [c.jobType])),
    changed: plan.changes.length > 0 || plan.notes.length > 0 || rules.length > 0,
  };
}

function queuesWithShare(table: RoutingTable, shares: Shares): Backend[] {
  return Object.entries(shares)
    .filter(([, share]) => share > 0)
    .map(([name]) => table.backends.get(name))
    .filter((b): b is Backend => b?.kind === 'taskcluster');
}

export function formatPlan(p: PlanReport): string {
  const out: string[] = [`plan: ${p.current.source} (${p.current.hash.slice(0, 12)}) -> ${p.next.source} (${p.next.hash.slice(0, 12)})`, ''];
  const window = p.sample ? (p.sample.window === 'all' ? 'since the proxy started' : `in the last ${p.sample.window === '1h' ? 'hour' : p.sample.window}`) : '';

  if (p.changes.length === 0) {
    out.push(`no job type changes backend or weight (of ${p.jobTypesConsidered} considered)`);
  } else {
    out.push(`${p.changes.length} job type${p.changes.length === 1 ? '' : 's'} would change backend or weight:`);
    const rows = [['JOB TYPE', 'BEFORE', 'AFTER', 'RULE BEFORE -> AFTER', 'MOVES', p.sample ? `REQUESTS (${p.sample.window})` : 'REQUESTS']];
    for (const c of p.changes) {
      const rule = `${c.ruleBefore ?? '(default)'} -> ${c.ruleAfter === c.ruleBefore ? '(same)' : (c.ruleAfter ?? '(default)')}`;
      const requests = !p.sample ? 'n/a' : `${c.requests}${c.shareOfAllRequests ? ` (moves ${pct(c.shareOfAllRequests, 1)} of all)` : ''}`;
      rows.push([c.jobType, describeShares(c.before), describeShares(c.after), rule, pct(c.moved, 1), requests]);
    }
    out.push(...alignColumns(rows, '  '));
  }
  if (p.noJobType) {
    out.push(`requests that name no job type: ${p.noJobType.before} -> ${p.noJobType.after}${p.sample ? ` (${p.noJobType.requests} ${window})` : ''}`);
  }

  if (p.rules.length) {
    out.push('', 'rules:');
    const sign = { added: '+', removed: '-', changed: '~', reordered: '^' } as const;
    for (const r of p.rules) {
      const where = r.change === 'removed' ? `routes[${r.indexBefore}]` : r.change === 'added' || r.indexBefore === r.indexAfter ? `routes[${r.indexAfter}]` : `routes[${r.indexBefore}] -> routes[${r.indexAfter}]`;
      const what = r.change === 'added' ? r.after : r.change === 'removed' ? `${r.before} (removed)` : r.change === 'reordered' ? `${r.after} (order changed: first match wins)` : `${r.before} -> ${r.after}`;
      out.push(`  ${sign[r.change]} ${where} ${r.jobType}: ${what}`);
    }
  }
  if (p.notes.length) out.push('', 'backends and default:', ...p.notes.map((n) => `  ${n}`));
  for (const w of p.queueTasks) {
    out.push('', `a force of ${w.builder} would create this task on ${w.backend} (a sample force: revision, ids and times are placeholders):`);
    out.push(w.task ? JSON.stringify(w.task, null, 2).replace(/^/gm, '    ') : `    none: ${w.error}`);
  }

  out.push('');
  if (!p.sample) {
    out.push('traffic: none (two files, no running proxy): the share of requests that would move is not known; plan --admin URL NEW.yaml weighs it by live traffic');
  } else if (p.sample.requests === 0) {
    out.push(`traffic: the running proxy saw no requests ${window}; the share of requests that would move is 0 of 0`);
  } else {
    out.push(`traffic: ${p.sample.requests} requests ${window}; ${pct(p.movedShareOfTraffic ?? 0, 1)} of them (${p.movedRequests} requests) would change backend`);
  }
  out.push(`job types considered: ${p.jobTypesConsidered} (${p.considered})`);
  if (p.patternRules.length) {
    const which = p.mode === 'files' ? 'only those named with --job-type NAME are considered' : "only those the running proxy knows (traffic, exact routes, the legacy master's builders) and --job-type NAME are considered";
    out.push(`job types matched only by glob or regex rules (${p.patternRules.join(', ')}) cannot be enumerated: ${which}`);
  }
  out.push(p.changed ? 'result: changes (exit 3)' : 'result: no change (exit 0)');
  return out.join('\n');
}

// ---------------------------------------------------------------- report

const oneDecimal = (x: number): string => x.toFixed(1).replace(/\.0$/, '');
const sign = (x: number): string => (x > 0 ? '+' : x < 0 ? '-' : '');
const share = (x: number | null): string => (x === null ? '-' : `${oneDecimal(x * 100)} %`);
const orDash = (x: number | null, text: (x: number) => string): string => (x === null ? '-' : text(x));
const utc = (iso: string): string => `${iso.slice(0, 16).replace('T', ' ')} UTC`;

/** The `report` command's table: both sides of each job type, the differences, the verdicts and why. */
export function formatBuildsTable(view: BuildsView): string {
  const s = view.summary;
  const legacyOnly = view.jobTypes.filter((j) => j.verdicts.length === 0).length;
  const out = [
    `builds finished in the last ${view.window.name} (${utc(view.window.since)} to ${utc(view.window.until)})${view.jobType === null ? '' : ` of ${view.jobType}`}; legacy: ${view.legacy}; a verdict needs ${view.rules.minBuilds} counted builds a side`,
    `ready to move: ${s.better + s['as-good']}  move back: ${s.worse}  not enough builds yet: ${s['not-enough-builds']}  only on ${view.legacy}: ${legacyOnly}`,
    '',
  ];
  if (view.jobTypes.length === 0) {
    out.push('  no builds finished in this window');
    return out.join('\n');
  }
  const rows = [['JOB TYPE', 'BACKEND', 'SIDE', 'BUILDS', 'COUNTED', 'PASS RATE', 'DIFF', 'INFRA EXC', 'P50', 'DIFF', 'P95', 'WAIT P95', 'VERDICT']];
  for (const j of view.jobTypes) {
    j.sides.forEach((side, i) => {
      const d = j.verdicts.find((v) => v.backend === side.backend);
      const diff = d?.differences;
      rows.push([
        i === 0 ? j.jobType : '',
        side.backend,
        side.side,
        String(side.builds),
        String(side.counted),
        share(side.passRate),
        orDash(diff?.passRatePoints ?? null, (x) => `${sign(x)}${oneDecimal(Math.abs(x))} pts`),
        String(side.infrastructureExceptions),
        duration(side.durationP50).replace('–', '-'),
        orDash(diff?.durationP50Change ?? null, (x) => `${sign(x)}${oneDecimal(Math.abs(x) * 100)} %`),
        duration(side.durationP95).replace('–', '-'),
        duration(side.waitP95).replace('–', '-'),
        d === undefined ? (i === 0 ? 'reference' : '-') : VERDICT_ADVICE[d.verdict].replace(' — ', ': '),
      ]);
    });
  }
  out.push(...alignColumns(rows, '  '));
  const judged = view.jobTypes.flatMap((j) => j.verdicts.map((v) => ({ jobType: j.jobType, v })));
  if (judged.length) {
    out.push('', 'why:');
    for (const { jobType, v } of judged) out.push(`  ${jobType} on ${v.backend}: ${VERDICT_ADVICE[v.verdict].replace(' — ', ': ')}`, ...v.reasons.map((r) => `    ${r}`));
  }
  return out.join('\n');
}

/** One CSV field (RFC 4180): quoted when it holds a quote, comma or line break, quotes doubled. */
export function csvField(value: string | number | null): string {
  const text = value === null ? '' : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/**
 * SECURITY: job types come from clients. A cell starting with = + - @ or a
 * tab is a formula to a spreadsheet opening the file, so such a name gets a
 * leading apostrophe (OWASP's advice for CSV injection).
 */
function textCell(text: string): string {
  return /^[=+\-@\t\r]/.test(text) ? `'${text}` : text;
}

const CSV_COLUMNS = [
  'window_start',
  'window_end',
  'job_type',
  'backend',
  'side',
  'builds',
  ...RESULT_NAMES,
  'counted',
  'passed',
  'pass_rate',
  'infrastructure_exceptions',
  'duration_p50_seconds',
  'duration_p95_seconds',
  'wait_p95_seconds',
  'verdict',
  'pass_rate_points_difference',
  'duration_p50_change',
  'duration_p50_seconds_difference',
  'duration_p95_seconds_difference',
  'wait_p95_seconds_difference',
  'infrastructure_exceptions_difference',
  'reasons',
] as const;

/** The `report` command's CSV: a header, then one row per job type and backend; CRLF line ends (RFC 4180). */
export function formatBuildsCsv(view: BuildsView): string {
  const row = (jobType: string, side: SideBuilds, v: SideVerdict | undefined): (string | number | null)[] => {
    const d = v?.differences;
    return [
      view.window.since,
      view.window.until,
      textCell(jobType),
      textCell(side.backend),
      side.side,
      side.builds,
      ...RESULT_NAMES.map((name) => side.results[name]),
      side.counted,
      side.passed,
      side.passRate,
      side.infrastructureExceptions,
      side.durationP50,
      side.durationP95,
      side.waitP95,
      v?.verdict ?? null,
      d?.passRatePoints ?? null,
      d?.durationP50Change ?? null,
      d?.durationP50Seconds ?? null,
      d?.durationP95Seconds ?? null,
      d?.waitP95Seconds ?? null,
      d?.infrastructureExceptions ?? null,
      v?.reasons.join('; ') ?? null,
    ];
  };
  const lines = [CSV_COLUMNS.join(',')];
  for (const j of view.jobTypes) for (const side of j.sides) lines.push(row(j.jobType, side, j.verdicts.find((v) => v.backend === side.backend)).map(csvField).join(','));
  return lines.map((line) => `${line}\r\n`).join('');
}
