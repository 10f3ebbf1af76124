/**
 * The build comparison on a real Prometheus: Debian's Prometheus scrapes a
 * real ProxyMetrics registry (served on loopback by this test) every second
 * and evaluates deploy/prometheus/alerts.yml, recording rules included, with
 * only the `for:` durations cut to 1 s (the 6-hour windows stay: the test's
 * few minutes of data all fall inside them). Every query of the dashboard's
 * "Builds" rows is run through Prometheus's HTTP API, and the build alerts are
 * made to fire and to stay quiet.
 *
 * What stands in for what: no build runs here. The test feeds finished builds
 * into the real metrics code (ProxyMetrics.buildFinished, the call the tracker
 * makes for each build it records), with results, durations, waits and lags
 * it chose, and gives the in-flight gauge a fixed source (as the tracker's
 * countBuildsInFlightWith does), and counts tracking errors as the tracker
 * does. The lead's test/e2e/build-tracking.test.ts runs real builds on a real
 * Buildbot master and the stand-in queue and checks that the tracker counts
 * them; this one checks that, given those counts, the dashboard and the alerts
 * say the right thing. Routes come from a real routes.yaml through the real
 * parser, so strangler_backend_info says which backend is legacy exactly as in
 * a running proxy ("master" is legacy, "taskservice" new: no name gives it away).
 *
 * One thing the test does that the proxy does not: it creates every series it
 * will feed at 0 before Prometheus first scrapes (prom-client's inc by 0 and
 * Histogram.zero). increase() cannot see the first event of a series that
 * appears at 1 (docs/metrics.md says so), and every series starting at 0 in
 * the same scrape gets the same extrapolation: that is what makes ratios and
 * quantiles come out exactly as fed, so the expected values below are computed
 * from the builds fed, not bounded loosely. Counts themselves (increase()
 * extrapolates to the window's end) are checked within that extrapolation.
 *
 * The phases, in order, each on top of the previous ones: healthy (both sides
 * pass and take alike: every build alert quiet although the minimum-builds
 * guards hold); the new side fails more (the pass-rate alert fires, for that
 * job type only); the new side runs slower (the duration alert fires, for p50
 * and p95); tracking fails and lags (the tracking alerts fire). Throughout, a
 * job type with 10 builds a side, all failing and slow on the new side, stays
 * under the minimum and fires nothing.
 *
 * Needs Debian's prometheus package, like test/e2e/prometheus.test.ts.
 */
import { expect } from 'chai';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseConfig } from '../../src/config/load.js';
import { BUILD_DURATION_BUCKETS, BUILD_WAIT_BUCKETS, ProxyMetrics } from '../../src/metrics/metrics.js';
import { RESULT_NAMES } from '../../src/taskcluster/results.js';
import { alertRules, dashboardQueries, readAlertsText, readDashboard, readsBuildMetrics, recordingRules, substituteGrafanaVariables, type AlertRule, type DashboardQuery } from '../support/deploy.js';
import { firing, promtool, requirePrometheus, rulesForTest, startPrometheus, waitForAlerts, type PromAlert, type PromSample, type TestPrometheus } from '../support/prometheus.js';
import { routesYaml, waitFor } from '../support/proxy.js';

const LEGACY = 'master';
const NEW = 'taskservice';
/** The new side fails more of these in the second phase. */
const PASS_JOB = 'linux64-opt';
/** The new side runs these slower in the third phase. */
const SLOW_JOB = 'win64-debug';
/** 10 builds a side, the new side's all failing and slow: under the alerts' minimum of 30. */
const FEW_JOB = 'android-lint';
/** Builds recorded late on the new side in the last phase; the legacy side runs none. */
const LAG_JOB = 'mac-nightly';
const JOB_TYPES = [PASS_JOB, SLOW_JOB, FEW_JOB, LAG_JOB];
const BACKENDS = [LEGACY, NEW];

/** The dashboard's default build window, and the alerts' window. */
const BUILD_WINDOW = '6h';
/** $__rate_interval as Grafana fills it in with a 15 s scrape interval; the tracking panels' data is fed within it. */
const RATE_INTERVAL = '1m';
/** Ratios and quantiles: exact but for floating point. */
const EXACT = 1e-9;

const BUILD_ALERTS = ['StranglerNewSideBuildPassRateBelowLegacy', 'StranglerNewSideBuildsSlowerThanLegacy', 'StranglerBuildTrackingFailing', 'StranglerBuildTrackingLagging'];

type Result = (typeof RESULT_NAMES)[number];

interface Build {
  jobType: string;
  backend: string;
  result: Result;
  durationSeconds: number;
  waitSeconds: number;
  lagSeconds: number;
}

/**
 * n builds of a job type on a backend, by result, with durations and waits
 * from the given functions of their index.
 */
function builds(jobType: string, backend: string, results: Partial<Record<Result, number>>, duration: (i: number) => number, wait: (i: number) => number, lagSeconds = 2): Build[] {
  const out: Build[] = [];
  for (const [result, n] of Object.entries(results) as Array<[Result, number]>) {
    for (let k = 0; k < n; k++) out.push({ jobType, backend, result, durationSeconds: 0, waitSeconds: 0, lagSeconds });
  }
  return out.map((b, i) => ({ ...b, durationSeconds: duration(i), waitSeconds: wait(i) }));
}

/** 44 builds, 40 of them counted by a pass rate (36 pass: 90 %), 400 to 615 s long, waiting 30 to 73 s. */
const healthy = (jobType: string, backend: string) =>
  builds(jobType, backend, { success: 34, warnings: 2, failure: 3, exception: 1, cancelled: 2, retry: 1, skipped: 1 }, (i) => 400 + 5 * i, (i) => 30 + i);

/** What the test fed, for its expected values. */
class Fed {
  readonly all: Build[] = [];
  add(list: Build[]): void {
    this.all.push(...list);
  }
  private side(jobType: string, side: 'legacy' | 'new'): Build[] {
    return this.all.filter((b) => b.jobType === jobType && (b.backend === LEGACY) === (side === 'legacy'));
  }
  /** (success + warnings) / (success + warnings + failure + exception). */
  passRate(jobType: string, side: 'legacy' | 'new'): number {
    const counted = this.side(jobType, side).filter((b) => ['success', 'warnings', 'failure', 'exception'].includes(b.result));
    return counted.filter((b) => b.result === 'success' || b.result === 'warnings').length / counted.length;
  }
  counted(jobType: string, side: 'legacy' | 'new'): number {
    return this.side(jobType, side).filter((b) => ['success', 'warnings', 'failure', 'exception'].includes(b.result)).length;
  }
  duration(q: number, jobType: string, side: 'legacy' | 'new'): number {
    return histogramQuantile(q, BUILD_DURATION_BUCKETS, this.side(jobType, side).map((b) => b.durationSeconds));
  }
  wait(q: number, jobType: string, side: 'legacy' | 'new'): number {
    return histogramQuantile(q, BUILD_WAIT_BUCKETS, this.side(jobType, side).map((b) => b.waitSeconds));
  }
}

/**
 * The q-quantile Prometheus's histogram_quantile gives for these observations
 * in buckets with these upper bounds (and +Inf): the bucket that holds the
 * rank, and linear interpolation within it from the bound below (0 below the
 * first). Written from Prometheus's documented behaviour (promql/quantile.go,
 * bucketQuantile), to say what the panels must show without asking Prometheus.
 */
function histogramQuantile(q: number, bounds: readonly number[], values: number[]): number {
  const cumulative = bounds.map((le) => values.filter((v) => v <= le).length);
  const rank = q * values.length;
  const b = cumulative.findIndex((count) => count >= rank);
  if (b === -1) return bounds[bounds.length - 1]!; // in the +Inf bucket: the highest finite bound
  const start = b === 0 ? 0 : bounds[b - 1]!;
  const below = b === 0 ? 0 : cumulative[b - 1]!;
  return start + (bounds[b]! - start) * ((rank - below) / (cumulative[b]! - below));
}

const ROUTES = routesYaml(
  { [LEGACY]: { url: 'http://127.0.0.1:9', legacy: true }, [NEW]: { url: 'http://127.0.0.1:9' } },
  `routes:
  - jobType: ${PASS_JOB}
    split: { ${NEW}: 50, ${LEGACY}: 50 }
  - jobType: ${SLOW_JOB}
    split: { ${NEW}: 50, ${LEGACY}: 50 }
  - jobType: ${FEW_JOB}
    split: { ${NEW}: 50, ${LEGACY}: 50 }
  - jobType: ${LAG_JOB}
    backend: ${NEW}
`,
);

/** The registry on loopback, as the admin port serves it. */
async function serveMetrics(metrics: ProxyMetrics): Promise<{ url: string; close: () => Promise<void> }> {
  const server: Server = createServer((req, res) => {
    if (req.url !== '/metrics') return void res.writeHead(404).end();
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
      (error: unknown) => res.writeHead(500).end(String(error)),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/metrics`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

describe('e2e: Prometheus and the build comparison: dashboard rows "Builds: new vs legacy" and the build alerts', function () {
  const metrics = new ProxyMetrics();
  const table = parseConfig(Buffer.from(ROUTES), 'routes.yaml');
  const fed = new Fed();
  let served: { url: string; close: () => Promise<void> } | undefined;
  let prom: TestPrometheus | undefined;
  let p: TestPrometheus;
  let rules: AlertRule[];
  let queries: DashboardQuery[];
  let trackingErrors: NodeJS.Timeout | undefined;
  /** When Prometheus was seen holding the zeroed series: their first sample is no later. */
  let zeroesSeenAt = 0;

  const feed = (list: Build[]) => {
    // One synchronous loop: a scrape (answered on this event loop) sees a phase whole or not at all.
    for (const b of list) {
      metrics.buildFinished({ jobTypeLabel: metrics.jobTypeLabel(table, b.jobType), backend: b.backend, result: b.result, durationSeconds: b.durationSeconds, waitSeconds: b.waitSeconds, lagSeconds: b.lagSeconds });
    }
    fed.add(list);
  };
  const rule = (name: string) => {
    const found = rules.find((r) => r.alert === name);
    if (!found) throw new Error(`no alert ${name} in deploy/prometheus/alerts.yml`);
    return found;
  };
  /** Waits until Prometheus has scraped every build fed so far, and its rules have run on them. */
  const scraped = async () => {
    const total = fed.all.length;
    await waitFor(async () => (await p.query('sum(strangler_builds_finished_total)'))[0]?.value === total || undefined, 15_000, `Prometheus to have scraped the ${total} builds fed`);
    const newest = fed.all[fed.all.length - 1]!;
    const side = newest.backend === LEGACY ? 'legacy' : 'new';
    // The recorded count of the newest build's side has reached what was fed (increase() only extrapolates upwards).
    const recorded = `job_type_side:strangler_builds_counted:increase6h{job_type="${newest.jobType}", side="${side}"} >= ${fed.counted(newest.jobType, side)}`;
    await waitFor(async () => (await p.query(recorded)).length === 1 || undefined, 15_000, `the recording rules to count them (${recorded})`);
  };
  /** A dashboard query as Grafana sends it (per job type for the repeated row), its series. */
  const panel = async (title: string, refId: string, jobType?: string): Promise<PromSample[]> => {
    const q = queries.find((x) => x.panel === title && x.refId === refId);
    if (!q) throw new Error(`no dashboard query "${title}" ${refId}`);
    return p.query(substituteGrafanaVariables(q.expr, RATE_INTERVAL, q.repeat === 'job_type' ? (jobType ?? '.*') : '.*', BUILD_WINDOW));
  };
  /** The one value of a job type in a panel query's answer. */
  const valueOf = async (title: string, refId: string, jobType: string): Promise<number> => {
    const series = (await panel(title, refId, jobType)).filter((s) => s.metric['job_type'] === jobType);
    expect(series, `"${title}" ${refId} for ${jobType}`).to.have.length(1);
    return series[0]!.value;
  };
  const buildAlertExpressions = async () => {
    const out: Record<string, string[]> = {};
    for (const name of BUILD_ALERTS) out[name] = (await p.query(rule(name).expr)).map((s) => Object.entries(s.metric).map(([k, v]) => `${k}=${v}`).sort().join(','));
    return out;
  };
  const buildAlertsNow = (alerts: PromAlert[]) => alerts.filter((a) => BUILD_ALERTS.includes(a.labels['alertname']!)).map((a) => `${a.labels['alertname']} ${a.labels['job_type'] ?? a.labels['backend']} ${a.state}`);

  before(async function () {
    this.timeout(60_000);
    requirePrometheus(this);
    rules = alertRules();
    queries = dashboardQueries(readDashboard()).filter((q) => readsBuildMetrics(q.expr));
    metrics.tableLoaded(table);
    // Every series the test feeds, at 0 before the first scrape (see the header).
    for (const jobType of JOB_TYPES) {
      for (const backend of BACKENDS) {
        const labels = { job_type: metrics.jobTypeLabel(table, jobType), backend };
        for (const result of RESULT_NAMES) metrics.buildsFinished.inc({ ...labels, result }, 0);
        metrics.buildDuration.zero(labels);
        metrics.buildWait.zero(labels);
      }
    }
    for (const backend of BACKENDS) metrics.buildTrackingLag.zero({ backend });
    // Builds submitted and not finished, as the tracker would count them.
    metrics.countBuildsInFlightWith(() => [
      { jobType: PASS_JOB, backend: LEGACY, count: 3 },
      { jobType: PASS_JOB, backend: NEW, count: 2 },
      { jobType: SLOW_JOB, backend: NEW, count: 1 },
    ]);
    served = await serveMetrics(metrics);
    prom = await startPrometheus({ scrapeUrl: served.url, rules: rulesForTest(readAlertsText()) });
    p = prom;
    const zeroed = JOB_TYPES.length * BACKENDS.length * RESULT_NAMES.length;
    await waitFor(async () => (await p.query('count(strangler_builds_finished_total == 0)'))[0]?.value === zeroed || undefined, 15_000, `the ${zeroed} zeroed build series in Prometheus`);
    zeroesSeenAt = Date.now();
  });

  after(async function () {
    this.timeout(30_000);
    clearInterval(trackingErrors);
    const pid = prom?.pid;
    await prom?.stop();
    await served?.close();
    if (pid !== undefined) {
      let alive = true;
      try {
        process.kill(pid, 0);
      } catch {
        alive = false;
      }
      expect(alive, `prometheus pid ${pid} still alive`).to.equal(false);
    }
  });

  it('healthy: both sides pass and take alike; the panels show it exactly, and no build alert fires although the minimum is met', async function () {
    this.timeout(60_000);
    for (const jobType of [PASS_JOB, SLOW_JOB]) for (const backend of BACKENDS) feed(healthy(jobType, backend));
    feed(builds(FEW_JOB, LEGACY, { success: 10 }, () => 600, () => 30));
    feed(builds(FEW_JOB, NEW, { failure: 10 }, () => 7200, () => 3000));
    await scraped();

    for (const jobType of [PASS_JOB, SLOW_JOB]) {
      expect(await valueOf('$job_type: build pass rate', 'A', jobType), `${jobType} legacy pass rate`).to.be.closeTo(0.9, EXACT);
      expect(await valueOf('$job_type: build pass rate', 'B', jobType), `${jobType} new pass rate`).to.be.closeTo(0.9, EXACT);
      expect(await valueOf('$job_type: pass rate, new − legacy', 'A', jobType), `${jobType} pass rate difference`).to.be.closeTo(0, EXACT);
      expect(await valueOf('$job_type: build duration p50 / p95', 'A', jobType), `${jobType} legacy p50`).to.be.closeTo(fed.duration(0.5, jobType, 'legacy'), EXACT);
      expect(await valueOf('$job_type: build duration p50 / p95', 'D', jobType), `${jobType} new p95`).to.be.closeTo(fed.duration(0.95, jobType, 'new'), EXACT);
      expect(await valueOf('$job_type: build duration, new − legacy', 'A', jobType), `${jobType} p50 difference`).to.be.closeTo(0, EXACT);
      expect(await valueOf('$job_type: build duration, new − legacy', 'B', jobType), `${jobType} p95 difference`).to.be.closeTo(0, EXACT);
      expect(await valueOf('$job_type: wait p95, new − legacy', 'A', jobType), `${jobType} wait p95 difference`).to.be.closeTo(0, EXACT);
    }
    // The few builds are as different as can be: it is the minimum that keeps the alerts quiet.
    expect(await valueOf('$job_type: pass rate, new − legacy', 'A', FEW_JOB), `${FEW_JOB} pass rate difference`).to.be.closeTo(-1, EXACT);
    expect(await valueOf('$job_type: build duration, new − legacy', 'A', FEW_JOB), `${FEW_JOB} p50 difference`).to.be.closeTo(fed.duration(0.5, FEW_JOB, 'new') - fed.duration(0.5, FEW_JOB, 'legacy'), EXACT);

    // The minimum of 30 builds a side holds for both job types: quiet because they are alike.
    const guards = await p.query('job_type_side:strangler_builds_counted:increase6h >= 30');
    expect(guards.map((s) => `${s.metric['job_type']} ${s.metric['side']}`).sort()).to.deep.equal([`${PASS_JOB} legacy`, `${PASS_JOB} new`, `${SLOW_JOB} legacy`, `${SLOW_JOB} new`]);
    expect(await buildAlertExpressions(), 'build alert expressions while healthy').to.deep.equal(Object.fromEntries(BUILD_ALERTS.map((name) => [name, []])));
    expect(buildAlertsNow(await p.alerts()), 'build alerts while healthy').to.deep.equal([]);
  });

  it('the new side fails more: the pass-rate alert fires for that job type only, with the gap fed', async function () {
    this.timeout(60_000);
    // 40 more counted builds a side: the legacy side at 90 % again, the new one at 50 %; 56 of 80 in all: 70 %.
    feed(healthy(PASS_JOB, LEGACY));
    feed(builds(PASS_JOB, NEW, { success: 18, warnings: 2, failure: 16, exception: 4 }, (i) => 400 + 5 * i, (i) => 30 + i));
    await scraped();
    const legacyRate = fed.passRate(PASS_JOB, 'legacy');
    const newRate = fed.passRate(PASS_JOB, 'new');
    expect([legacyRate, newRate], 'what was fed').to.deep.equal([0.9, 0.7]);

    const alert = rule('StranglerNewSideBuildPassRateBelowLegacy');
    const fired = await waitForAlerts(p, (a) => firing(a, alert.alert, { job_type: PASS_JOB }), `${alert.alert} firing for ${PASS_JOB}`);
    expect(Number(fired.value), 'the alert value: the gap, legacy minus new').to.be.closeTo(legacyRate - newRate, EXACT);
    expect(fired.annotations['description']).to.include(`${PASS_JOB} builds passed 70% of the time on the new side and 90% on the legacy side`);
    expect((await p.query(alert.expr)).map((s) => s.metric['job_type']), `${alert.alert} expression`).to.deep.equal([PASS_JOB]);

    expect(await valueOf('$job_type: pass rate, new − legacy', 'A', PASS_JOB), 'the difference panel').to.be.closeTo(newRate - legacyRate, EXACT);
    expect(await valueOf('$job_type: build pass rate', 'B', PASS_JOB), 'the new side in the pass-rate panel').to.be.closeTo(newRate, EXACT);
    expect(await valueOf('Builds per job type: new vs legacy over $build_window', 'E', PASS_JOB), 'the table').to.be.closeTo(newRate - legacyRate, EXACT);
    // Failing, not slower: the duration alert stays quiet.
    expect(await p.query(rule('StranglerNewSideBuildsSlowerThanLegacy').expr), 'duration alert expression').to.deep.equal([]);
  });

  it('the new side runs slower: the duration alert fires for p50 and p95, with the quantiles fed', async function () {
    this.timeout(60_000);
    feed(healthy(SLOW_JOB, LEGACY));
    // 60 builds of 2000 to 2590 s, all passing, that also waited 300 to 359 s for a worker.
    feed(builds(SLOW_JOB, NEW, { success: 60 }, (i) => 2000 + 10 * i, (i) => 300 + i));
    await scraped();
    const alert = rule('StranglerNewSideBuildsSlowerThanLegacy');
    const fired = await waitForAlerts(
      p,
      (a) => {
        const p50 = firing(a, alert.alert, { job_type: SLOW_JOB, quantile: '0.5' });
        const p95 = firing(a, alert.alert, { job_type: SLOW_JOB, quantile: '0.95' });
        return p50 && p95 ? { p50, p95 } : undefined;
      },
      `${alert.alert} firing for ${SLOW_JOB}, p50 and p95`,
    );
    for (const [q, a] of [[0.5, fired.p50], [0.95, fired.p95]] as const) {
      const fresh = fed.duration(q, SLOW_JOB, 'new');
      const legacy = fed.duration(q, SLOW_JOB, 'legacy');
      // What the alert asks, on the values fed: 1.5 times and 5 minutes more.
      expect(fresh, `p${q * 100} fed`).to.be.greaterThan(Math.max(1.5 * legacy, legacy + 300));
      expect(Number(a.value), `the alert's p${q * 100} value`).to.be.closeTo(fresh, fresh * EXACT);
      expect(await valueOf('$job_type: build duration, new − legacy', q === 0.5 ? 'A' : 'B', SLOW_JOB), `p${q * 100} difference panel`).to.be.closeTo(fresh - legacy, fresh * EXACT);
      expect(await valueOf('Builds per job type: new vs legacy over $build_window', q === 0.5 ? 'H' : 'K', SLOW_JOB), `p${q * 100} difference in the table`).to.be.closeTo(fresh - legacy, fresh * EXACT);
    }
    const waitDifference = fed.wait(0.95, SLOW_JOB, 'new') - fed.wait(0.95, SLOW_JOB, 'legacy');
    expect(waitDifference, 'the wait fed').to.be.greaterThan(0);
    expect(await valueOf('$job_type: wait p95, new − legacy', 'A', SLOW_JOB), 'wait p95 difference panel').to.be.closeTo(waitDifference, waitDifference * EXACT);
    expect(await valueOf('Builds per job type: new vs legacy over $build_window', 'N', SLOW_JOB), 'wait p95 difference in the table').to.be.closeTo(waitDifference, waitDifference * EXACT);
    // All passing on the slow side: only PASS_JOB fails the pass-rate comparison.
    expect((await p.query(rule('StranglerNewSideBuildPassRateBelowLegacy').expr)).map((s) => s.metric['job_type'])).to.deep.equal([PASS_JOB]);
    expect((await p.query(alert.expr)).map((s) => `${s.metric['job_type']} ${s.metric['quantile']}`).sort()).to.deep.equal([`${SLOW_JOB} 0.5`, `${SLOW_JOB} 0.95`]);
  });

  it('tracking fails steadily and records builds late: both tracking alerts fire', async function () {
    this.timeout(60_000);
    // A round every 200 ms fails to poll the new backend, from now to the end of the suite.
    trackingErrors = setInterval(() => metrics.buildTrackingErrors.inc({ backend: NEW, operation: 'poll' }), 200);
    // 40 builds recorded 50 minutes after they finished: a fifth of the new backend's records.
    feed(builds(LAG_JOB, NEW, { success: 40 }, () => 900, () => 60, 3000));
    await scraped();
    const failing = rule('StranglerBuildTrackingFailing');
    const lagging = rule('StranglerBuildTrackingLagging');
    await waitForAlerts(p, (a) => (firing(a, failing.alert, { backend: NEW, operation: 'poll' }) && firing(a, lagging.alert, { backend: NEW })) || undefined, `${failing.alert} and ${lagging.alert} firing for ${NEW}`);
    expect((await p.query(lagging.expr)).map((s) => s.metric['backend']), 'lagging backends').to.deep.equal([NEW]);
    // The new side alone runs LAG_JOB: nothing to compare it with, whatever it does.
    expect((await p.query(rule('StranglerNewSideBuildPassRateBelowLegacy').expr)).map((s) => s.metric['job_type'])).to.deep.equal([PASS_JOB]);
  });

  it('answers every build query of the dashboard with series, the in-flight gauge as fed', async function () {
    this.timeout(30_000);
    expect(queries.length, 'build queries in the dashboard').to.be.at.least(30);
    // A build recorded on each backend just now, for the tracking-lag panel's rate over $__rate_interval.
    feed(builds(FEW_JOB, LEGACY, { success: 1 }, () => 600, () => 30));
    feed(builds(FEW_JOB, NEW, { failure: 1 }, () => 7200, () => 3000));
    await scraped();
    const problems: string[] = [];
    for (const q of queries) {
      const expr = substituteGrafanaVariables(q.expr, RATE_INTERVAL, q.repeat === 'job_type' ? PASS_JOB : '.*', BUILD_WINDOW);
      if (expr.includes('$')) {
        problems.push(`${q.panel} ${q.refId}: unsubstituted variable in ${expr}`);
        continue;
      }
      const series = await p.query(expr).catch((error: Error) => error);
      if (series instanceof Error) problems.push(`${q.panel} ${q.refId}: ${series.message}`);
      else if (series.length === 0) problems.push(`${q.panel} ${q.refId}: no series for ${expr}`);
      else if (series.some((s) => !Number.isFinite(s.value))) problems.push(`${q.panel} ${q.refId}: not a number in ${JSON.stringify(series)}`);
    }
    expect(problems).to.deep.equal([]);
    // Gauges are not extrapolated: exactly the tracker's counts, by side and by backend.
    expect(await valueOf('$job_type: builds in flight', 'A', PASS_JOB), 'legacy in flight').to.equal(3);
    expect(await valueOf('$job_type: builds in flight', 'B', PASS_JOB), 'new in flight').to.equal(2);
    const byBackend = Object.fromEntries((await panel('Builds in flight, by backend', 'A')).map((s) => [s.metric['backend'], s.value]));
    expect(byBackend).to.deep.equal({ [LEGACY]: 3, [NEW]: 3 });
    // Counts come from increase(), which extrapolates from the last sample to the query's time, less than
    // 1.1 scrape intervals (1 s) later, in proportion to the time sampled: at least what was fed, and at
    // most that share more (the samples span at least the time since the zeroes were seen, less a scrape).
    const sampledSeconds = (Date.now() - zeroesSeenAt) / 1000 - 2;
    for (const [refId, side] of [['A', 'legacy'], ['B', 'new']] as const) {
      const counted = await valueOf('Builds per job type: new vs legacy over $build_window', refId, PASS_JOB);
      expect(counted, `${side} builds counted`).to.be.within(fed.counted(PASS_JOB, side), fed.counted(PASS_JOB, side) * (1 + 1.1 / sampledSeconds));
    }
    const byResult = await panel('Builds finished by result, per side', 'B');
    expect(byResult.map((s) => s.metric['result']).sort(), 'results on the new side').to.deep.equal([...RESULT_NAMES].sort());
  });

  it('kept the job type under the minimum quiet throughout, and evaluated every rule without error', async () => {
    const expressions = await buildAlertExpressions();
    for (const [name, series] of Object.entries(expressions)) expect(series.filter((s) => s.includes(`job_type=${FEW_JOB}`)), name).to.deep.equal([]);
    expect((await p.alerts()).filter((a) => a.labels['job_type'] === FEW_JOB), `alerts for ${FEW_JOB}`).to.deep.equal([]);
    const evaluated = await p.rules();
    expect(evaluated.map((r) => r.name)).to.have.members([...recordingRules().map((r) => r.record), ...rules.map((r) => r.alert)]);
    expect(evaluated.filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.health} ${r.lastError ?? ''}`), 'rules with evaluation errors').to.deep.equal([]);
  });

  it('promtool check metrics finds nothing wrong with the registry the builds were fed into', async () => {
    const text = await metrics.registry.metrics();
    for (const name of ['strangler_builds_finished_total', 'strangler_build_duration_seconds_bucket', 'strangler_build_wait_seconds_bucket', 'strangler_builds_in_flight', 'strangler_build_tracking_lag_seconds_bucket', 'strangler_build_tracking_errors_total']) {
      expect(text, name).to.include(`${name}{`);
    }
    const result = promtool(['check', 'metrics'], text);
    expect({ status: result.status, stdout: result.stdout, stderr: result.stderr }).to.deep.equal({ status: 0, stdout: '', stderr: '' });
  });
});
