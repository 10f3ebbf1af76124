/**
 * Reads the deployable monitoring files, for the tests that check them
 * (statically in test/unit/metrics/deploy.test.ts, against a real Prometheus
 * in test/e2e/prometheus.test.ts): the Grafana dashboard's queries, the
 * alerting rules, and the runbook sections of docs/alerts.md.
 */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';

const ROOT = new URL('../../', import.meta.url);
export const DASHBOARD_PATH = new URL('deploy/grafana/strangler-dashboard.json', ROOT);
export const ALERTS_PATH = new URL('deploy/prometheus/alerts.yml', ROOT);
export const ALERTS_DOC_PATH = new URL('docs/alerts.md', ROOT);

export interface Panel {
  id?: number;
  type: string;
  title: string;
  datasource?: unknown;
  repeat?: string;
  collapsed?: boolean;
  panels?: Panel[];
  targets?: Target[];
}

export interface Target {
  refId?: string;
  expr?: string;
  legendFormat?: string;
  datasource?: unknown;
}

export interface Dashboard {
  title: string;
  uid?: string;
  panels: Panel[];
  templating: { list: Array<Record<string, unknown>> };
}

export function readDashboard(): Dashboard {
  return JSON.parse(readFileSync(DASHBOARD_PATH, 'utf8')) as Dashboard;
}

/** Every panel, rows' children included (a collapsed row holds its panels inside itself). */
export function allPanels(dashboard: Dashboard): Panel[] {
  const out: Panel[] = [];
  const walk = (panels: Panel[]) => {
    for (const p of panels) {
      out.push(p);
      if (p.panels) walk(p.panels);
    }
  };
  walk(dashboard.panels);
  return out;
}

export interface DashboardQuery {
  panel: string;
  refId: string;
  expr: string;
  legendFormat: string;
  /** The variable the panel is repeated by (itself or through its row): Grafana then fills in one value per copy. */
  repeat: string | undefined;
}

export function dashboardQueries(dashboard: Dashboard): DashboardQuery[] {
  const out: DashboardQuery[] = [];
  const walk = (panels: Panel[], inherited: string | undefined) => {
    // An expanded row's panels follow it at the top level; a collapsed row holds them in `panels`.
    let rowRepeat: string | undefined = inherited;
    for (const p of panels) {
      if (p.type === 'row') {
        rowRepeat = p.repeat;
        walk(p.panels ?? [], p.repeat);
        if (p.collapsed) rowRepeat = inherited;
        continue;
      }
      const repeat = p.repeat ?? rowRepeat;
      for (const t of p.targets ?? []) out.push({ panel: p.title, refId: t.refId ?? '?', expr: t.expr ?? '', legendFormat: t.legendFormat ?? '', repeat });
    }
  };
  walk(dashboard.panels, undefined);
  return out;
}

/**
 * A dashboard expression as Grafana would send it: `$__rate_interval` becomes
 * `rateInterval`, the job-type variable `jobType` (default: its All value
 * `.*`), the build comparison's window `buildWindow` (default: the
 * dashboard's, 6h, the alerts' window). Whatever `$` remains is a variable
 * Grafana would have filled in and this did not.
 */
export function substituteGrafanaVariables(expr: string, rateInterval: string, jobType = '.*', buildWindow = '6h'): string {
  return expr
    .replaceAll('$__rate_interval', rateInterval)
    .replaceAll('${__rate_interval}', rateInterval)
    .replaceAll('$__interval', rateInterval)
    .replaceAll('$__range', rateInterval)
    .replaceAll('${build_window}', buildWindow)
    .replaceAll('$build_window', buildWindow)
    .replaceAll('${job_type}', jobType)
    .replaceAll('$job_type', jobType);
}

/**
 * Whether a query reads the build metrics (strangler_builds_*, strangler_build_*):
 * the rows "Builds: new vs legacy", proven against a real Prometheus by
 * test/e2e/prometheus-builds.test.ts, which feeds builds; the request traffic
 * of test/e2e/prometheus.test.ts has none.
 */
export function readsBuildMetrics(expr: string): boolean {
  return metricNamesIn(expr).some((name) => /^strangler_builds?_/.test(name));
}

export interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface RuleFile {
  groups: Array<{ name: string; rules: Array<AlertRule | RecordingRule> }>;
}

export function readAlertsText(): string {
  return readFileSync(ALERTS_PATH, 'utf8');
}

export function alertRules(text: string = readAlertsText()): AlertRule[] {
  const file = parse(text) as RuleFile;
  return file.groups.flatMap((g) => g.rules).filter((r): r is AlertRule => 'alert' in r);
}

export interface RecordingRule {
  record: string;
  expr: string;
  labels?: Record<string, string>;
}

/** The recording rules, in file order (a name may be recorded by several rules, one per label set). */
export function recordingRules(text: string = readAlertsText()): RecordingRule[] {
  const file = parse(text) as RuleFile;
  return file.groups.flatMap((g) => g.rules).filter((r): r is RecordingRule => 'record' in r);
}

/** GitHub's anchor for a markdown heading: lower case, punctuation dropped, spaces to dashes. */
export function githubAnchor(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

/** The `## ` sections of docs/alerts.md by anchor, each with its text. */
export function runbookSections(): Map<string, { heading: string; body: string }> {
  const text = readFileSync(ALERTS_DOC_PATH, 'utf8');
  const out = new Map<string, { heading: string; body: string }>();
  const parts = text.split(/^## /m).slice(1);
  for (const part of parts) {
    const newline = part.indexOf('\n');
    const heading = part.slice(0, newline);
    out.set(githubAnchor(heading), { heading, body: part.slice(newline + 1) });
  }
  return out;
}

/**
 * The `strangler_*` metric names an expression reads, histogram series (_bucket, _count, _sum) included as written;
 * not the middle of a recorded series' name (`job_type_side:strangler_builds_counted:increase6h`).
 */
export function metricNamesIn(expr: string): string[] {
  return [...new Set([...expr.matchAll(/(?<![\w:])strangler_[a-z0-9_]+(?![\w:])/g)].map((m) => m[0]))];
}

/** The recorded series (`level:metric:operations`) an expression reads. */
export function recordedNamesIn(expr: string): string[] {
  return [...new Set([...expr.matchAll(/(?<![\w:])[a-z_][a-z0-9_]*:[a-z0-9_:]*[a-z0-9_](?![\w:])/g)].map((m) => m[0]))];
}

/** A series name back to the metric that produces it: strangler_x_seconds_bucket -> strangler_x_seconds. */
export function baseMetricName(series: string, known: ReadonlySet<string>): string {
  if (known.has(series)) return series;
  for (const suffix of ['_bucket', '_count', '_sum']) {
    if (series.endsWith(suffix) && known.has(series.slice(0, -suffix.length))) return series.slice(0, -suffix.length);
  }
  return series;
}
