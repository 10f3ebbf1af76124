/**
 * The Grafana dashboard and the alerting rules, checked without Prometheus:
 * shape (what Grafana needs to import the dashboard as is), the variables
 * every query must use, metric names that exist in the catalogue, and a
 * runbook section in docs/alerts.md behind every alert, and legacy told from
 * new by strangler_backend_info rather than by a backend's name. Whether the
 * queries return data is test/e2e/prometheus.test.ts's job.
 */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { ProxyMetrics } from '../../../src/metrics/metrics.js';
import {
  ALERTS_PATH,
  alertRules,
  allPanels,
  baseMetricName,
  dashboardQueries,
  metricNamesIn,
  readDashboard,
  recordedNamesIn,
  recordingRules,
  runbookSections,
  type Dashboard,
} from '../../support/deploy.js';

const DATASOURCE = { type: 'prometheus', uid: '${datasource}' };

/** Label matchers on `backend`, `from` or `to` naming a backend: the deploy files must work whatever the backends are called. */
function backendNameMatchers(expr: string): string[] {
  return [...expr.matchAll(/\b(backend|from|to)\s*(=~|!~|!=|=)\s*"([^"]*)"/g)].map((m) => m[0]);
}

/** The join the rules use to keep one side's series: legacy or new as strangler_backend_info says, one series per backend. */
const SIDE_JOIN = /and on \(backend\) max by \(backend\) \(max_over_time\(strangler_backend_info\{legacy="(true|false)"\}\[10m\]\)\)/g;
/** The dashboard's side join: the same, at each point (a dashboard has no `for:` clock to protect). */
const DASHBOARD_SIDE_JOIN = /and on \(backend\) max by \(backend\) \(strangler_backend_info\{legacy="(true|false)"\}\)/g;
/** The metrics the build comparison counts over the build window: builds by result, and the duration and wait histograms. */
const BUILD_COMPARISON = /\b(strangler_builds_finished_total|strangler_build_duration_seconds_bucket|strangler_build_wait_seconds_bucket)\{/;

async function catalogue(): Promise<Map<string, string[]>> {
  const metrics = new ProxyMetrics({ defaultMetrics: false });
  const out = new Map<string, string[]>();
  for (const m of await metrics.registry.getMetricsAsJSON()) {
    // prom-client keeps label names on the metric instance; its typings do not expose them.
    const instance = metrics.registry.getSingleMetric(m.name) as unknown as { labelNames?: readonly string[] } | undefined;
    out.set(m.name, [...(instance?.labelNames ?? [])]);
  }
  return out;
}

describe('deploy/grafana/strangler-dashboard.json', () => {
  let dashboard: Dashboard;
  let known: Map<string, string[]>;

  before(async () => {
    dashboard = readDashboard();
    known = await catalogue();
  });

  it('has a Prometheus data-source variable and a multi-value job-type variable with All', () => {
    const vars = dashboard.templating.list;
    const ds = vars.find((v) => v['name'] === 'datasource');
    expect(ds, 'variable "datasource"').to.include({ type: 'datasource', query: 'prometheus' });
    const jobType = vars.find((v) => v['name'] === 'job_type');
    expect(jobType, 'variable "job_type"').to.include({ type: 'query', query: 'label_values(strangler_requests_total, job_type)', multi: true, includeAll: true });
    expect(jobType!['datasource']).to.deep.equal(DATASOURCE);
    // All as ".*": a job type that appeared after the variable was loaded is still shown.
    expect(jobType!['allValue']).to.equal('.*');
  });

  it('gives every panel and every query the ${datasource} Prometheus data source', () => {
    const problems: string[] = [];
    for (const p of allPanels(dashboard)) {
      if (p.type === 'row') continue;
      if (JSON.stringify(p.datasource) !== JSON.stringify(DATASOURCE)) problems.push(`panel "${p.title}": datasource ${JSON.stringify(p.datasource)}`);
      if (!p.targets?.length) problems.push(`panel "${p.title}": no queries`);
      for (const t of p.targets ?? []) {
        if (t.datasource !== undefined && JSON.stringify(t.datasource) !== JSON.stringify(DATASOURCE)) problems.push(`panel "${p.title}" ${t.refId}: datasource ${JSON.stringify(t.datasource)}`);
        if (!t.expr?.trim()) problems.push(`panel "${p.title}" ${t.refId}: empty expr`);
      }
      const refIds = (p.targets ?? []).map((t) => t.refId);
      if (new Set(refIds).size !== refIds.length || refIds.includes(undefined)) problems.push(`panel "${p.title}": refIds ${JSON.stringify(refIds)}`);
    }
    expect(problems).to.deep.equal([]);
  });

  it('gives panels unique ids and a grid position', () => {
    const panels = allPanels(dashboard);
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size, 'unique panel ids').to.equal(ids.length);
    for (const p of panels) expect(p, `panel "${p.title}"`).to.have.property('gridPos');
  });

  it('uses $__rate_interval for every range ($build_window for builds) and filters every job-typed metric by $job_type', () => {
    const problems: string[] = [];
    for (const q of dashboardQueries(dashboard)) {
      // Builds are few: the comparison counts them over the build window, never over a rate interval of a minute.
      const range = BUILD_COMPARISON.test(q.expr) ? '$build_window' : '$__rate_interval';
      for (const m of q.expr.matchAll(/\[([^\]]*)\]/g)) if (m[1] !== range) problems.push(`${q.panel} ${q.refId}: range [${m[1]}], expected [${range}]`);
      for (const m of q.expr.matchAll(/\b(strangler_[a-z0-9_]+)(\{[^}]*\})?/g)) {
        const labels = known.get(baseMetricName(m[1]!, new Set(known.keys())));
        if (labels?.includes('job_type') && !(m[2] ?? '').includes('job_type=~"$job_type"')) problems.push(`${q.panel} ${q.refId}: ${m[1]} not filtered by job_type=~"$job_type"`);
      }
    }
    expect(problems).to.deep.equal([]);
  });

  it('reads only metrics of the catalogue', () => {
    const names = new Set(known.keys());
    const unknown = dashboardQueries(dashboard).flatMap((q) => metricNamesIn(q.expr).filter((n) => !names.has(baseMetricName(n, names))).map((n) => `${q.panel}: ${n}`));
    expect(unknown).to.deep.equal([]);
  });

  it('has the panels the migration needs', () => {
    const queries = dashboardQueries(dashboard);
    const uses = (pattern: RegExp) => queries.filter((q) => pattern.test(q.expr));
    expect(uses(/rate\(strangler_requests_total\{/), 'request rate').to.not.be.empty;
    expect(uses(/code=~"5\.\."/), 'error ratio').to.not.be.empty;
    for (const q of ['0.5', '0.95', '0.99']) expect(uses(new RegExp(`histogram_quantile\\(${q.replace('.', '\\.')}, sum by \\(le, backend\\)`)), `p${q} by backend`).to.not.be.empty;
    for (const metric of [
      'strangler_migration_job_types_ratio',
      'strangler_migration_job_types\\b',
      'strangler_route_weight',
      'strangler_routing_decisions_total',
      'strangler_upstream_errors_total',
      'strangler_config_reloads_total',
      'strangler_config_last_reload_success_timestamp_seconds',
      'strangler_config_info',
      'strangler_backend_up',
      'strangler_backend_info',
      'strangler_shadow_requests_total',
      'strangler_shadow_requests_in_flight',
      'strangler_backend_circuit_state',
      'strangler_fallbacks_total',
      'strangler_retries_total',
      'strangler_unavailable_total',
    ]) {
      expect(uses(new RegExp(metric)), metric).to.not.be.empty;
    }
    expect(uses(/by \(backend, kind\)/), 'upstream errors by kind').to.not.be.empty;
    // Traffic safety: shadow results by result, circuits per backend, fallbacks by route of escape and cause.
    expect(uses(/sum by \(result\) \(rate\(strangler_shadow_requests_total\{/), 'shadow copies by result').to.not.be.empty;
    expect(uses(/max by \(backend\) \([\s\S]*strangler_backend_circuit_state/), 'circuit state per backend').to.not.be.empty;
    expect(uses(/sum by \(from, to, cause\) \(rate\(strangler_fallbacks_total\[/), 'fallbacks by from, to and cause').to.not.be.empty;
    // Legacy against new by the info metric's label, for the migration's share of traffic.
    for (const legacy of ['true', 'false']) expect(uses(new RegExp(`strangler_backend_info\\{legacy="${legacy}"\\}`)), `legacy="${legacy}" side`).to.not.be.empty;
    // Backends side by side: the request, error and latency panels split by backend, overall and per job type.
    const byBackend = queries.filter((q) => q.legendFormat.includes('{{backend}}'));
    expect(byBackend.filter((q) => q.legendFormat.includes('{{job_type}}')), 'per job type, by backend').to.have.length.of.at.least(3);
    const repeated = allPanels(dashboard).find((p) => p.type === 'row' && p.repeat === 'job_type');
    expect(repeated?.panels, 'a row repeated per job type').to.have.length.of.at.least(3);
  });

  it('names no backend: legacy and new come from strangler_backend_info', () => {
    const named = dashboardQueries(dashboard).flatMap((q) => backendNameMatchers(q.expr).map((m) => `${q.panel} ${q.refId}: ${m}`));
    expect(named).to.deep.equal([]);
  });

  it('has a build window variable whose default is the alerts\' 6 hours', () => {
    const window = dashboard.templating.list.find((v) => v['name'] === 'build_window');
    expect(window, 'variable "build_window"').to.include({ type: 'custom', multi: false, includeAll: false });
    expect(String(window!['query']).split(',')).to.include.members(['1h', '6h', '1d', '7d']);
    expect((window!['current'] as { value: string }).value).to.equal('6h');
  });

  it('compares the builds of the two sides per job type: pass rate, duration p50 and p95, wait p95, and each difference', () => {
    const queries = dashboardQueries(dashboard).filter((q) => BUILD_COMPARISON.test(q.expr) || /strangler_builds_in_flight/.test(q.expr));
    const problems: string[] = [];
    // Each side by the join on strangler_backend_info, every counted series of it: none mixes the sides.
    for (const q of queries.filter((x) => !/\bby \(backend\b/.test(x.expr))) {
      const terms = (q.expr.match(/\bincrease\(|\bstrangler_builds_in_flight\{/g) ?? []).length;
      const joins = [...q.expr.matchAll(DASHBOARD_SIDE_JOIN)].length;
      if (terms !== joins) problems.push(`${q.panel} ${q.refId}: ${terms} counted terms, ${joins} joins on strangler_backend_info`);
    }
    expect(problems, 'side joins').to.deep.equal([]);
    const sides = (q: { expr: string }) => [...new Set([...q.expr.matchAll(DASHBOARD_SIDE_JOIN)].map((m) => m[1]))].sort().join(',');
    const find = (what: string, pattern: RegExp) => {
      const found = queries.filter((q) => pattern.test(q.expr));
      return { what, legacy: found.filter((q) => sides(q) === 'true'), fresh: found.filter((q) => sides(q) === 'false'), difference: found.filter((q) => sides(q) === 'false,true' && /\n-\n/.test(q.expr)) };
    };
    const passRate = /result=~"success\|warnings"\}[\s\S]*\/[\s\S]*result=~"success\|warnings\|failure\|exception"\}/;
    for (const f of [
      find('pass rate', passRate),
      find('duration p50', /histogram_quantile\(0\.5, sum by \(le, job_type\) \(\s*increase\(strangler_build_duration_seconds_bucket/),
      find('duration p95', /histogram_quantile\(0\.95, sum by \(le, job_type\) \(\s*increase\(strangler_build_duration_seconds_bucket/),
      find('wait p95', /histogram_quantile\(0\.95, sum by \(le, job_type\) \(\s*increase\(strangler_build_wait_seconds_bucket/),
    ]) {
      // In the table of every job type, and in the row repeated per job type.
      for (const [side, found] of [['legacy', f.legacy], ['new', f.fresh], ['new minus legacy', f.difference]] as const) {
        if (!found.some((q) => q.repeat === 'job_type')) problems.push(`${f.what} of the ${side} side: no panel in the row repeated per job type`);
        if (!found.some((q) => q.repeat === undefined)) problems.push(`${f.what} of the ${side} side: not in the table of every job type`);
      }
    }
    expect(problems, 'comparisons').to.deep.equal([]);
    const table = allPanels(dashboard).find((p) => p.type === 'table' && (p.targets ?? []).some((t) => BUILD_COMPARISON.test(t.expr ?? '')));
    expect(table, 'a table of the build comparison').to.not.equal(undefined);
    for (const t of table!.targets!) expect(t, `table query ${t.refId}`).to.include({ instant: true, format: 'table' });
    const uses = (pattern: RegExp) => dashboardQueries(dashboard).filter((q) => pattern.test(q.expr));
    expect(uses(/sum by \(result\) \(\s*increase\(strangler_builds_finished_total\{/), 'builds finished by result').to.not.be.empty;
    expect(uses(/strangler_builds_in_flight/), 'builds in flight').to.not.be.empty;
    expect(uses(/strangler_build_tracking_lag_seconds_bucket/), 'tracking lag').to.not.be.empty;
    expect(uses(/sum by \(backend, operation\) \(rate\(strangler_build_tracking_errors_total\[/), 'tracking errors').to.not.be.empty;
  });
});

describe('deploy/prometheus/alerts.yml', () => {
  let known: Map<string, string[]>;
  before(async () => {
    known = await catalogue();
  });

  it('has the eight alerts, each with severity, summary, description and a runbook section', () => {
    const rules = alertRules();
    expect(rules.map((r) => r.alert)).to.have.members([
      'StranglerNewBackendErrorRatioAboveLegacy',
      'StranglerNewBackendLatencyRegression',
      'StranglerBackendDown',
      'StranglerConfigReloadFailed',
      'StranglerNewSideBuildPassRateBelowLegacy',
      'StranglerNewSideBuildsSlowerThanLegacy',
      'StranglerBuildTrackingFailing',
      'StranglerBuildTrackingLagging',
    ]);
    const sections = runbookSections();
    const problems: string[] = [];
    for (const r of rules) {
      if (!r.labels?.['severity']) problems.push(`${r.alert}: no severity label`);
      for (const a of ['summary', 'description', 'runbook_url']) if (!r.annotations?.[a]?.trim()) problems.push(`${r.alert}: no ${a}`);
      const anchor = /\/docs\/alerts\.md#([a-z0-9_-]+)$/.exec(r.annotations?.['runbook_url'] ?? '')?.[1];
      if (!anchor) {
        problems.push(`${r.alert}: runbook_url does not point into docs/alerts.md`);
        continue;
      }
      const section = sections.get(anchor);
      if (!section) problems.push(`${r.alert}: docs/alerts.md has no section #${anchor}`);
      else {
        if (section.heading !== r.alert) problems.push(`${r.alert}: #${anchor} is the section of ${section.heading}`);
        for (const part of ['What it means', 'What to check', 'What to do']) if (!section.body.includes(`**${part}.**`)) problems.push(`${r.alert}: runbook lacks "${part}"`);
      }
    }
    expect(problems).to.deep.equal([]);
  });

  it('has no runbook section for an alert that does not exist', () => {
    const names = new Set(alertRules().map((r) => r.alert));
    const stale = [...runbookSections().values()].map((s) => s.heading).filter((h) => h.startsWith('Strangler') && !names.has(h));
    expect(stale).to.deep.equal([]);
  });

  it('reads only metrics of the catalogue, and only series its recording rules record', () => {
    const names = new Set(known.keys());
    const rules = [...alertRules().map((r) => ({ name: r.alert, expr: r.expr })), ...recordingRules().map((r) => ({ name: r.record, expr: r.expr }))];
    const unknown = rules.flatMap((r) => metricNamesIn(r.expr).filter((n) => !names.has(baseMetricName(n, names))).map((n) => `${r.name}: ${n}`));
    expect(unknown).to.deep.equal([]);
    const recorded = new Set(recordingRules().map((r) => r.record));
    const unrecorded = rules.flatMap((r) => recordedNamesIn(r.expr).filter((n) => !recorded.has(n)).map((n) => `${r.name}: ${n}`));
    expect(unrecorded, 'recorded series no rule records').to.deep.equal([]);
  });

  it('records each side of a build comparison by joining every increase on strangler_backend_info, the side label matching the legacy flag', () => {
    const problems: string[] = [];
    const sided = recordingRules().filter((r) => r.labels?.['side'] !== undefined);
    expect(sided.length, 'recording rules with a side label').to.be.at.least(6);
    for (const r of sided) {
      const side = r.labels!['side'];
      const want = side === 'legacy' ? 'true' : side === 'new' ? 'false' : undefined;
      if (!want) problems.push(`${r.record}: side "${side}"`);
      const increases = r.expr.match(/\bincrease\(/g)?.length ?? 0;
      const joins = [...r.expr.matchAll(SIDE_JOIN)].map((m) => m[1]);
      if (increases === 0 || joins.length !== increases) problems.push(`${r.record}{side="${side}"}: ${increases} increase() terms, ${joins.length} joins`);
      if (joins.some((j) => j !== want)) problems.push(`${r.record}{side="${side}"}: joins legacy=${JSON.stringify(joins)}`);
      // A series the rule reads back is of its own side.
      for (const m of r.expr.matchAll(/\{side="([a-z]+)"\}/g)) if (m[1] !== side) problems.push(`${r.record}{side="${side}"}: reads side="${m[1]}"`);
      // The other side's rule is this one with the flag turned over: the two cannot drift apart.
      const twinSide = side === 'legacy' ? 'new' : 'legacy';
      const twin = sided.find((o) => o.record === r.record && o.labels!['side'] === twinSide);
      const turned = r.expr.replaceAll(`legacy="${want}"`, `legacy="${want === 'true' ? 'false' : 'true'}"`).replaceAll(`side="${side}"`, `side="${twinSide}"`);
      if (twin?.expr !== turned) problems.push(`${r.record}{side="${side}"}: no side="${twinSide}" rule that is the same with the flag turned over`);
    }
    expect(problems).to.deep.equal([]);
  });

  it('names no backend, in expressions or annotations: legacy and new come from strangler_backend_info', () => {
    const problems: string[] = [];
    for (const r of recordingRules()) for (const m of backendNameMatchers(r.expr)) problems.push(`${r.record}: ${m}`);
    for (const r of alertRules()) {
      for (const m of backendNameMatchers(r.expr)) problems.push(`${r.alert}: ${m}`);
      // The old convention's name, as a backend (the prose may say "the Buildbot master").
      for (const [k, v] of Object.entries({ expr: r.expr, ...r.annotations })) if (/\bbuildbot\b/.test(v)) problems.push(`${r.alert} ${k}: mentions "buildbot"`);
    }
    expect(problems).to.deep.equal([]);
  });

  it('keeps each side of a new-vs-legacy comparison by joining every rate on strangler_backend_info', () => {
    const problems: string[] = [];
    for (const r of alertRules().filter((x) => x.alert.startsWith('StranglerNewBackend'))) {
      // Every rate() is followed by the join that keeps one side: none compares all backends with all.
      const rates = r.expr.match(/\brate\(/g)?.length ?? 0;
      const joins = [...r.expr.matchAll(SIDE_JOIN)].map((m) => m[1]);
      if (rates === 0 || joins.length !== rates) problems.push(`${r.alert}: ${rates} rate() terms, ${joins.length} joins on strangler_backend_info`);
      if (!joins.includes('true') || !joins.includes('false')) problems.push(`${r.alert}: does not read both sides (legacy="true" and legacy="false")`);
      // Any other use of the info metric would be outside the documented join.
      const infoUses = r.expr.match(/strangler_backend_info/g)?.length ?? 0;
      if (infoUses !== joins.length) problems.push(`${r.alert}: strangler_backend_info used ${infoUses} times, ${joins.length} of them in the documented join`);
    }
    expect(problems).to.deep.equal([]);
  });

  it("has unit tests whose legacy backend is not called buildbot, and a new backend that is", () => {
    // What deploy/prometheus/alerts.test.yml feeds promtool: the rules must not lean on names.
    const tests = parse(readFileSync(new URL('alerts.test.yml', ALERTS_PATH), 'utf8')) as { tests: Array<{ input_series: Array<{ series: string }> }> };
    const info = tests.tests.flatMap((t) => t.input_series.map((s) => s.series)).filter((s) => s.startsWith('strangler_backend_info{'));
    const flag = (series: string) => ({ backend: /backend="([^"]*)"/.exec(series)?.[1], legacy: /legacy="([^"]*)"/.exec(series)?.[1] });
    expect(info.map(flag).some((f) => f.legacy === 'true' && f.backend !== 'buildbot'), 'a legacy backend not named buildbot').to.equal(true);
    expect(info.map(flag).some((f) => f.legacy === 'false' && f.backend === 'buildbot'), 'a new backend named buildbot').to.equal(true);
  });
});
