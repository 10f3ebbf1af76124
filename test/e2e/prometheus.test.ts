/**
 * The monitoring, end to end: a real Prometheus scrapes the real proxy in
 * front of two upstreams ("master", the legacy one, deliberately not called
 * "buildbot": the rules must know it by strangler_backend_info alone; and
 * "taskservice") and evaluates deploy/prometheus/alerts.yml. Every query of
 * the Grafana dashboard and every alert expression is run through
 * Prometheus's HTTP API against that data; then the new backend is made slow,
 * failing and down, and the matching alerts must fire (and not before).
 *
 * Traffic is shaped so that the comparisons have something to compare:
 * android-api-15-test is split 50/50, so the same job type has series on both
 * backends; linux64-opt is moved entirely to taskservice (the error alert then
 * compares with the legacy backend's overall error ratio); master answers 500
 * to every win32-debug request, so its overall error ratio is far from its
 * ratio for the split job type and the test can tell which one an alert used;
 * a trickle of requests that the upstreams answer by cutting the connection
 * gives both backends upstream-error series, below the alerts'
 * minimum-traffic guards, and retries (their routes allow one).
 *
 * The traffic-safety panels get traffic of their own from the start: routes
 * whose copies go to a shadow backend and match, mismatch, fail (the shadow
 * is "canary", a third backend nothing listens on), are dropped (slow copies
 * fill settings.shadow.maxInFlight) or are skipped (a force; a streamed
 * body); a route on canary with a fallback (refused twice, then its circuit
 * is open and the fallback takes every request) and one without (answered
 * 503 unavailable, a trickle under the alerts' guards).
 *
 * The build comparison (the dashboard's "Builds" rows, the build alerts and
 * their recording rules) needs builds, which this traffic has none of:
 * test/e2e/prometheus-builds.test.ts proves those. Here its rules are only
 * loaded and evaluated with the others, without error and without firing.
 *
 * Needs Debian's prometheus package (prometheus and promtool): without it the
 * suite fails with the install command, or is skipped when
 * STRANGLER_SKIP_PROMETHEUS=1.
 */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import {
  ALERTS_PATH,
  alertRules,
  dashboardQueries,
  metricNamesIn,
  readAlertsText,
  readDashboard,
  readsBuildMetrics,
  recordingRules,
  substituteGrafanaVariables,
  type AlertRule,
  type RuleFile,
} from '../support/deploy.js';
import { firing, promtool, requirePrometheus, rulesForTest, startPrometheus, waitForAlerts, type TestPrometheus } from '../support/prometheus.js';
import { routesYaml, startTestProxy, waitFor, type TestProxy } from '../support/proxy.js';
import { freePort, startUpstream, type Received, type TestUpstream } from '../support/upstream.js';

const SPLIT_JOB = 'android-api-15-test';
const MOVED_JOB = 'linux64-opt';
/** The legacy backend (`legacy: true`), by a name that says nothing: not "buildbot". */
const LEGACY = 'master';
const NEW = 'taskservice';
/** A second new backend that nothing listens on: shadow copies to it fail, requests to it are refused. */
const DEAD = 'canary';
/** The two backends that serve traffic, which every per-backend panel must show. */
const BACKENDS = [LEGACY, NEW];

/** Shadow copies of these take this long on the new backend: with settings.shadow.maxInFlight 4, bursts of them get copies dropped. */
const SLOW_SHADOW_JOB = 'shadow-slow';
const SLOW_SHADOW_MS = 800;

const ROUTES = `routes:
  - jobType: linux64-debug
    backend: ${NEW}
    retries: 1
  - jobType: linux64-*
    backend: ${NEW}
  - jobType: /^android-api-1[56]-/
    split: { ${NEW}: 50, ${LEGACY}: 50 }
  - jobType: win32-debug
    backend: ${LEGACY}
    retries: 1
  - jobType: shadow-match
    backend: ${LEGACY}
    shadow: { backend: ${NEW}, ignoreFields: [servedBy] }
  - jobType: shadow-mismatch
    backend: ${LEGACY}
    shadow: ${NEW}
  - jobType: shadow-error
    backend: ${LEGACY}
    shadow: ${DEAD}
  - jobType: ${SLOW_SHADOW_JOB}
    backend: ${LEGACY}
    shadow: ${NEW}
  - jobType: fallback-job
    backend: ${DEAD}
    fallback: ${LEGACY}
  - jobType: unavailable-job
    backend: ${DEAD}
settings:
  shadow: { maxInFlight: 4 }
`;

/**
 * Probes every 200 ms, down after 3 failures in a row: a stopped backend
 * refuses at once, so "backend down" within a second. The generous timeout
 * keeps a busy machine's stalled event loop from failing probes to backends
 * that are up (which would fire alerts in the healthy phase).
 */
const HEALTH = 'health: { intervalMs: 200, timeoutMs: 1000, unhealthyThreshold: 3, healthyThreshold: 1 }';
/**
 * canary: no health probes (so no strangler_backend_up series and no "backend
 * down" alert for it), and a circuit that opens after 2 failures and stays
 * open for the whole test.
 */
const DEAD_EXTRA = 'health: { intervalMs: 0 }, circuit: { failureThreshold: 2, coolDownMs: 600000 }';

function config(legacyUrl: string, newUrl: string, deadUrl: string): string {
  return routesYaml(
    { [LEGACY]: { url: legacyUrl, legacy: true, extra: HEALTH }, [NEW]: { url: newUrl, extra: HEALTH }, [DEAD]: { url: deadUrl, extra: DEAD_EXTRA } },
    ROUTES,
  );
}

/**
 * What Grafana puts in for $__rate_interval with its default 15 s scrape
 * interval setting (4 x 15 s); it covers all the traffic sent before the
 * dashboard check.
 */
const RATE_INTERVAL = '1m';

interface UpstreamMode {
  delayMs: number;
  /** Per job type: extra delay for shadow copies (requests carrying X-Strangler-Shadow). */
  shadowDelayMs: Record<string, number>;
  /** Per job type: answer `failStatus` to every n-th request of it (1: all), 200 to the others. */
  failEvery: Record<string, number>;
  failStatus: number;
}

/** The job type as the proxy saw it: the X-Job-Type header (passed through) or the builder name in the path. */
function jobTypeOf(received: Received): string | undefined {
  const header = received.headers['x-job-type'];
  if (typeof header === 'string') return header;
  return /^\/api\/v2\/builders\/([^/?]+)/.exec(received.url)?.[1];
}

/**
 * The upstreams' behaviour, changed by the test as it goes: answer after
 * `delayMs` (shadow copies of the job types of `shadowDelayMs` later still),
 * failing the job types of `failEvery`; a path ending in /reset has
 * its connection cut instead (an upstream error of kind "reset"). Health
 * probes never get here: the upstream helper answers them itself, so a
 * failing phase leaves the backend "up".
 */
function behave(name: string, mode: UpstreamMode) {
  const seen = new Map<string, number>();
  return async (req: IncomingMessage, res: ServerResponse, received: Received) => {
    if (received.url.endsWith('/reset')) return void req.socket.destroy();
    const jobType = jobTypeOf(received) ?? 'none';
    const delay = mode.delayMs + (received.headers['x-strangler-shadow'] === '1' ? (mode.shadowDelayMs[jobType] ?? 0) : 0);
    if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    if (res.destroyed) return;
    const n = (seen.get(jobType) ?? 0) + 1;
    seen.set(jobType, n);
    const every = mode.failEvery[jobType];
    const status = every !== undefined && n % every === 0 ? mode.failStatus : 200;
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ servedBy: name, url: received.url }));
  };
}

interface Traffic {
  /** Answers by backend (X-Strangler-Backend) and status. */
  answered: Map<string, number>;
  stop(): Promise<void>;
}

/**
 * Steady traffic through the proxy: a request every 10 ms whatever the
 * latency (up to 64 in flight), cycling through the job types; plus one
 * request every 3 s per backend that the upstream answers by cutting the
 * connection, on job types of their own (linux64-debug, win32-debug): 20 a
 * minute, so within the test's length rate(...[5m]) stays under the error
 * alert's guard of 0.1 req/s and those 100%-failing job types fire nothing
 * (each is retried once: its route allows it).
 *
 * And the traffic-safety traffic: every 100 ms one of the shadowed, fallback
 * requests; every 2 s a burst of 6 requests whose copies are slow (4 fill
 * settings.shadow.maxInFlight, the others are dropped, and so are the other
 * routes' copies while they last); every 4 s a request to the route on the
 * dead backend with no fallback (answered 503 unavailable once its circuit
 * is open; 15 a minute, under the error alert's guard like the cuts). The
 * first two requests that reach the dead backend are fallback-job requests,
 * refused, so both fallback causes show: refused, then circuit_open.
 */
function startTraffic(proxyUrl: string): Traffic {
  const answered = new Map<string, number>();
  const inFlight = new Set<Promise<void>>();
  const mix: Array<{ path: string; method?: string; headers?: Record<string, string>; body?: string }> = [
    { path: `/api/v2/builders/${SPLIT_JOB}/builds` },
    { path: `/api/v2/builders/${SPLIT_JOB}/builds?limit=5` },
    // A force body (request bytes on both sides of the split), its job type given by the header.
    { path: '/api/v2/forceschedulers/force', method: 'POST', headers: { 'x-job-type': SPLIT_JOB, 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', method: 'force', id: 1, params: { builderNames: [SPLIT_JOB] } }) },
    { path: `/api/v2/builders/${MOVED_JOB}/builds` },
    { path: `/api/v2/builders/${MOVED_JOB}/builds?limit=1` },
    { path: '/api/v2/builders/win32-debug/builds' },
    { path: '/api/v2/builds' },
  ];
  const force = (builder: string) => JSON.stringify({ jsonrpc: '2.0', method: 'force', id: 1, params: { builderNames: [builder] } });
  const safety: Array<(typeof mix)[number]> = [
    { path: '/api/v2/builders/fallback-job/builds' },
    { path: '/api/v2/builders/shadow-match/builds' },
    { path: '/api/v2/builders/shadow-mismatch/builds' },
    { path: '/api/v2/builders/shadow-error/builds' },
    // Not copied: a force on a route without mutating: true (skipped_mutating), and a body the
    // proxy streams rather than holds (skipped_body).
    { path: '/api/v2/forceschedulers/force', method: 'POST', headers: { 'content-type': 'application/json' }, body: force('shadow-match') },
    { path: '/api/v2/builders/shadow-match/builds', method: 'OPTIONS', headers: { 'content-type': 'text/plain' }, body: 'a body to stream' },
  ];
  const send = (r: (typeof mix)[number]) => {
    const p = fetch(proxyUrl + r.path, { method: r.method ?? 'GET', ...(r.headers ? { headers: r.headers } : {}), ...(r.body ? { body: r.body } : {}), signal: AbortSignal.timeout(10_000) })
      .then(async (res) => {
        await res.arrayBuffer();
        const key = `${res.headers.get('x-strangler-backend')} ${res.status}`;
        answered.set(key, (answered.get(key) ?? 0) + 1);
      })
      .catch(() => undefined) // a cut connection: counted by the proxy, nothing to count here
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
  };
  let i = 0;
  const steady = setInterval(() => {
    if (inFlight.size < 64) send(mix[i++ % mix.length]!);
  }, 10);
  const cuts = setInterval(() => {
    send({ path: '/api/v2/builders/linux64-debug/reset' }); // the new backend
    send({ path: '/api/v2/builders/win32-debug/reset' }); // the legacy backend
  }, 3_000);
  send({ path: '/api/v2/builders/linux64-debug/reset' });
  send({ path: '/api/v2/builders/win32-debug/reset' });
  let j = 0;
  const safe = setInterval(() => send(safety[j++ % safety.length]!), 100);
  const slowBursts = setInterval(() => {
    for (let k = 0; k < 6; k++) send({ path: `/api/v2/builders/${SLOW_SHADOW_JOB}/builds` });
  }, 2_000);
  const unavailable = setInterval(() => send({ path: '/api/v2/builders/unavailable-job/builds' }), 4_000);
  return {
    answered,
    async stop() {
      for (const timer of [steady, cuts, safe, slowBursts, unavailable]) clearInterval(timer);
      await Promise.allSettled([...inFlight]);
    },
  };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** What one series of a panel must be: present with any value, above 0, or exactly a value. */
type Want = 'present' | 'positive' | number;

/**
 * The series the traffic-safety panels (and the legacy-vs-new share, which
 * has no backend label) must show after the healthy phase's traffic, by
 * panel title and refId: labels a series must carry, and its value. These
 * panels' series are not one per backend pair, so they take the place of the
 * generic "both backends" check, and say more than it: each shadow result,
 * each side of the circuit, each fallback cause the traffic produces.
 */
const EXPECTED_SERIES: Record<string, Array<{ labels: Record<string, string>; want: Want }>> = {
  'Requests served: legacy vs new A': [{ labels: {}, want: 'positive' }],
  'Requests served: legacy vs new B': [{ labels: {}, want: 'positive' }],
  'Shadow comparisons by result A': ['match', 'mismatch', 'error', 'dropped', 'skipped_mutating', 'skipped_body'].map((result) => ({ labels: { result }, want: 'positive' as const })),
  'Shadow mismatch ratio by job type A': [
    { labels: { job_type: 'shadow-match' }, want: 0 },
    { labels: { job_type: 'shadow-mismatch' }, want: 1 },
  ],
  'Shadow copies in flight A': [{ labels: {}, want: 'present' }],
  // 0 closed, 1 half-open, 2 open.
  'Circuit breaker state A': [
    { labels: { backend: LEGACY }, want: 0 },
    { labels: { backend: NEW }, want: 0 },
    { labels: { backend: DEAD }, want: 2 },
  ],
  'Fallbacks taken A': [
    // The first two, before the circuit opened: counted once each, perhaps within one scrape (a rate of 0).
    { labels: { from: DEAD, to: LEGACY, cause: 'refused' }, want: 'present' },
    { labels: { from: DEAD, to: LEGACY, cause: 'circuit_open' }, want: 'positive' },
  ],
  'Retries A': BACKENDS.map((backend) => ({ labels: { backend }, want: 'positive' as const })),
  'Answered 503: backend unavailable A': [{ labels: { backend: DEAD, job_type: 'unavailable-job' }, want: 'positive' }],
};

/**
 * Runs every dashboard query as Grafana would send it and says what is
 * wrong: a query Prometheus rejects, one with no series, a panel split by
 * backend missing one of BACKENDS (or with NaN from 0/0), a series of
 * EXPECTED_SERIES missing or with the wrong value, a metric the dashboard or
 * the rules read that Prometheus never scraped. Not the build comparison's
 * queries and rules: no build runs here (prometheus-builds.test.ts).
 */
async function dashboardProblems(p: TestPrometheus, rules: AlertRule[]): Promise<string[]> {
  const problems: string[] = [];
  const queries = dashboardQueries(readDashboard()).filter((q) => !readsBuildMetrics(q.expr));
  if (queries.length <= 20) problems.push(`only ${queries.length} dashboard queries`);
  const keys = new Set(queries.map((q) => `${q.panel} ${q.refId}`));
  for (const key of Object.keys(EXPECTED_SERIES)) if (!keys.has(key)) problems.push(`${key}: no such panel query in the dashboard (EXPECTED_SERIES is out of date)`);
  for (const q of queries) {
    // Panels repeated per job type are run for the split job type.
    const expr = substituteGrafanaVariables(q.expr, RATE_INTERVAL, q.repeat === 'job_type' ? SPLIT_JOB : '.*');
    if (expr.includes('$')) {
      problems.push(`${q.panel} ${q.refId}: unsubstituted variable in ${expr}`);
      continue;
    }
    let result;
    try {
      result = await p.query(expr);
    } catch (error) {
      problems.push(`${q.panel} ${q.refId}: ${(error as Error).message}`);
      continue;
    }
    if (result.length === 0) problems.push(`${q.panel} ${q.refId}: no series for ${expr}`);
    const expected = EXPECTED_SERIES[`${q.panel} ${q.refId}`];
    if (expected) {
      for (const { labels, want } of expected) {
        const found = result.find((s) => Object.entries(labels).every(([k, v]) => s.metric[k] === v));
        const ok = found !== undefined && (want === 'present' || (want === 'positive' ? found.value > 0 : found.value === want));
        if (!ok) problems.push(`${q.panel} ${q.refId}: wanted ${JSON.stringify(labels)} ${want}, got ${found ? found.value : 'no such series'} in ${JSON.stringify(result)}`);
      }
      continue;
    }
    // Split by backend: both backends, with a number (not NaN from 0/0). Also by job type: both, for the split job type.
    if (q.legendFormat.includes('{{backend}}')) {
      const perJobType = q.legendFormat.includes('{{job_type}}');
      const scoped = perJobType ? result.filter((s) => s.metric['job_type'] === SPLIT_JOB) : result;
      for (const b of BACKENDS) {
        if (!scoped.some((s) => s.metric['backend'] === b && Number.isFinite(s.value))) {
          problems.push(`${q.panel} ${q.refId}: no value for backend ${b}${perJobType ? ` and job type ${SPLIT_JOB}` : ''} in ${JSON.stringify(result)}`);
        }
      }
    }
  }
  // Every metric the dashboard and the rules read is one Prometheus actually scraped.
  const scraped = new Set(await p.metricNames());
  const read = [...queries.map((q) => q.expr), ...rules.map((r) => r.expr).filter((expr) => !readsBuildMetrics(expr))];
  for (const name of new Set(read.flatMap(metricNamesIn))) {
    if (!scraped.has(name)) problems.push(`${name}: not among the scraped series`);
  }
  return problems;
}

/**
 * The `it`s below run in order, each taking the new backend one step further:
 * healthy (dashboard queries, no alert), slow (latency alert), failing (error
 * and reload alerts), down (backend-down alert). Traffic runs throughout.
 */
describe('e2e: Prometheus scraping the proxy: dashboard queries and alert rules', function () {
  let legacy: TestUpstream;
  let taskservice: TestUpstream;
  // The legacy side is not spotless either: it answers 500 to every win32-debug
  // request (a job type only it serves), so its error ratio over all job types
  // (~20%) is far above its ratio for the split job type (0). The error alert
  // must compare the split job type with the latter.
  const legacyMode: UpstreamMode = { delayMs: 0, shadowDelayMs: {}, failEvery: { 'win32-debug': 1 }, failStatus: 500 };
  const taskserviceMode: UpstreamMode = { delayMs: 0, shadowDelayMs: { [SLOW_SHADOW_JOB]: SLOW_SHADOW_MS }, failEvery: {}, failStatus: 503 };
  let deadUrl = '';
  let t: TestProxy;
  let prom: TestPrometheus | undefined;
  let p: TestPrometheus;
  let traffic: Traffic | undefined;
  let rules: AlertRule[];
  let started = 0;
  let settledDashboard = false;
  const rule = (name: string) => {
    const found = rules.find((r) => r.alert === name);
    if (!found) throw new Error(`no alert ${name} in deploy/prometheus/alerts.yml`);
    return found;
  };

  before(async function () {
    this.timeout(90_000);
    requirePrometheus(this);
    started = Date.now();
    rules = alertRules();
    legacy = await startUpstream(LEGACY, behave(LEGACY, legacyMode));
    taskservice = await startUpstream(NEW, behave(NEW, taskserviceMode));
    deadUrl = `http://127.0.0.1:${await freePort()}`;
    t = await startTestProxy(config(legacy.url, taskservice.url, deadUrl));
    prom = await startPrometheus({ scrapeUrl: `${t.adminUrl}/metrics`, rules: rulesForTest(readAlertsText()) });
    p = prom;
    // Traffic before the first scrape would be invisible to rate(): wait until Prometheus has scraped once.
    await waitFor(async () => (await p.query('up{job="strangler-proxy"} == 1')).length === 1 || undefined, 15_000, 'the first scrape of the proxy');
    traffic = startTraffic(t.url);

    // A successful reload, so the reload panels show one (the failure comes later).
    t.writeConfig(config(legacy.url, taskservice.url, deadUrl) + '# reloaded by the test\n');
    await waitFor(async () => (await t.proxy.metrics.reloads.get()).values.some((v) => v.labels.result === 'success' && v.value >= 1) || undefined, 10_000, 'a successful reload');

    // Wait until the alerts' minimum-traffic guards hold for both backends of
    // the split job type, so that "no alert" below means "no alert although
    // they could fire", not "not enough data yet"; and until both backends
    // have upstream errors in the dashboard's window.
    const guard = `sum by (backend) (rate(strangler_request_duration_seconds_count{job_type="${SPLIT_JOB}"}[10m])) > 0.1`;
    await waitFor(async () => (await p.query(guard)).length === 2 || undefined, 30_000, `traffic above the alerts' guards on both backends (${guard})`);
    const withErrors = `sum by (backend) (rate(strangler_upstream_errors_total[${RATE_INTERVAL}])) > 0`;
    await waitFor(async () => (await p.query(withErrors)).filter((s) => BACKENDS.includes(s.metric['backend']!)).length === 2 || undefined, 20_000, 'upstream errors counted for both backends');
    // And until the dashboard has everything to show (the traffic-safety
    // series need a few seconds of their slower traffic). Not an assertion:
    // the test below says what is missing if this times out.
    settledDashboard = await waitFor(async () => ((await dashboardProblems(p, rules)).length === 0 ? true : undefined), 30_000, 'every dashboard query to have its series').catch(() => false);
  });

  after(async function () {
    this.timeout(30_000);
    await traffic?.stop();
    if (traffic) console.log(`      (traffic answered, by backend and status: ${JSON.stringify(Object.fromEntries(traffic.answered))})`);
    const pid = prom?.pid;
    await prom?.stop();
    await t?.close();
    await legacy?.close();
    await taskservice?.close();
    if (started) console.log(`      (Prometheus suite: ${((Date.now() - started) / 1000).toFixed(1)} s)`);
    // Nothing of Prometheus may outlive the suite.
    if (pid !== undefined) expect(isAlive(pid), `prometheus pid ${pid} still alive`).to.equal(false);
  });

  it('promtool accepts deploy/prometheus/alerts.yml', () => {
    const result = promtool(['check', 'rules', fileURLToPath(ALERTS_PATH)]);
    expect(result.stderr, 'promtool stderr').to.equal('');
    expect(result.status, result.stdout).to.equal(0);
    expect(result.stdout).to.include(`SUCCESS: ${rules.length + recordingRules().length} rules found`);
  });

  it('passes the rules\' unit tests on synthetic series (deploy/prometheus/alerts.test.yml)', () => {
    // for: durations, traffic guards, baselines, the latency floor, reloads across restarts, legacy known by strangler_backend_info alone.
    const result = promtool(['test', 'rules', fileURLToPath(new URL('alerts.test.yml', ALERTS_PATH))]);
    expect(result.status, result.stdout + result.stderr).to.equal(0);
    expect(result.stdout).to.include('SUCCESS');
  });

  it('runs the rule file unchanged but for the for: durations', () => {
    const original = parse(readAlertsText()) as RuleFile;
    const copy = parse(rulesForTest(readAlertsText())) as RuleFile;
    const exprs = (f: RuleFile) => f.groups.flatMap((g) => g.rules.map((r) => r.expr));
    expect(exprs(copy)).to.deep.equal(exprs(original));
    expect(exprs(copy)).to.have.length(rules.length + recordingRules().length);
  });

  it('promtool check metrics finds nothing wrong with a live scrape of the admin port', async () => {
    const res = await fetch(`${t.adminUrl}/metrics`);
    const text = await res.text();
    expect(text).to.include('strangler_requests_total');
    const result = promtool(['check', 'metrics'], text);
    // promtool writes its findings to stderr and exits non-zero when there are any.
    expect({ status: result.status, stdout: result.stdout, stderr: result.stderr }).to.deep.equal({ status: 0, stdout: '', stderr: '' });
  });

  it('answers every dashboard query with series: both backends where split by backend, every traffic-safety series', async function () {
    this.timeout(30_000);
    const problems = await dashboardProblems(p, rules);
    expect(problems, `dashboard queries${settledDashboard ? '' : ' (they had not settled within 30 s either)'}`).to.deep.equal([]);
  });

  it('fires no alert on healthy traffic above the alerts\' guards', async () => {
    // All of them at once, so a failure shows every expression that returned something.
    const results: Record<string, unknown[]> = {};
    for (const r of rules) results[r.alert] = await p.query(r.expr);
    expect(results, 'alert expressions while healthy').to.deep.equal(Object.fromEntries(rules.map((r) => [r.alert, []])));
    expect(await p.alerts(), 'alerts while healthy').to.deep.equal([]);
  });

  it('fires the latency alert when the new backend slows down', async function () {
    this.timeout(40_000);
    // The new backend takes 250 ms; the legacy one answers at once.
    taskserviceMode.delayMs = 250;
    const latency = rule('StranglerNewBackendLatencyRegression');
    const slow = await waitForAlerts(p, (a) => firing(a, latency.alert, { backend: NEW, job_type: SPLIT_JOB }), `${latency.alert} firing`);
    expect(Number(slow.value), `p95 of ${NEW}`).to.be.greaterThan(0.1);
    const series = await p.query(latency.expr);
    // Only the split job type has a legacy latency to compare with; the moved one has none (documented).
    expect(series.map((s) => `${s.metric['backend']} ${s.metric['job_type']}`), `${latency.alert} expression`).to.deep.equal([`${NEW} ${SPLIT_JOB}`]);
    // Slow, not failing: the error alert stays quiet.
    expect(firing(await p.alerts(), 'StranglerNewBackendErrorRatioAboveLegacy'), 'error alert while only slow').to.equal(undefined);
  });

  it('fires the error-ratio alert when the new backend fails, and the reload alert when routes.yaml is rejected', async function () {
    this.timeout(40_000);
    // The new backend answers 503 to every 10th request of the split job type
    // (its health probes still pass): above the legacy backend's 0% for that
    // job type, below its overall ratio. And to every 2nd request of the job
    // type moved to it entirely, which has no legacy series of its own:
    // compared with the legacy overall ratio, and above it.
    taskserviceMode.delayMs = 0;
    taskserviceMode.failEvery = { [SPLIT_JOB]: 10, [MOVED_JOB]: 2 };
    // An unknown key: rejected, the previous routes stay in force.
    t.writeConfig(readFileSync(t.configFile, 'utf8') + 'bogus: true\n');
    const errorAlert = rule('StranglerNewBackendErrorRatioAboveLegacy');
    const reloadAlert = rule('StranglerConfigReloadFailed');
    const fired = await waitForAlerts(
      p,
      (alerts) => {
        const split = firing(alerts, errorAlert.alert, { backend: NEW, job_type: SPLIT_JOB });
        const moved = firing(alerts, errorAlert.alert, { backend: NEW, job_type: MOVED_JOB });
        return (split && moved && firing(alerts, reloadAlert.alert) && { split, moved }) || undefined;
      },
      `${errorAlert.alert} for ${SPLIT_JOB} and ${MOVED_JOB}, and ${reloadAlert.alert}, firing`,
    );
    // The split job type fired on a ratio below the legacy overall one: it was compared with the legacy ratio for itself.
    const legacySide = 'and on (backend) strangler_backend_info{legacy="true"}';
    const [legacyOverall] = await p.query(`sum(rate(strangler_requests_total{code=~"5.."}[5m]) ${legacySide}) / sum(rate(strangler_requests_total[5m]) ${legacySide})`);
    expect(legacyOverall?.value, "the legacy backend's overall error ratio").to.be.greaterThan(0.15);
    expect(Number(fired.split.value), `${SPLIT_JOB} error ratio on taskservice when the alert fired`).to.be.lessThan(legacyOverall!.value);
    expect(Number(fired.moved.value), `${MOVED_JOB} error ratio on taskservice`).to.be.greaterThan(legacyOverall!.value + 0.02);
    const series = await p.query(errorAlert.expr);
    expect(series.map((s) => s.metric['backend'])).to.include(NEW).and.not.include(LEGACY);
    expect(series.map((s) => s.metric['job_type'])).to.include.members([SPLIT_JOB, MOVED_JOB]);
    expect(await p.query(reloadAlert.expr), reloadAlert.alert).to.have.length(1);
    // Still answering its probes: not "down".
    expect(firing(await p.alerts(), 'StranglerBackendDown'), 'backend down while it answers probes').to.equal(undefined);
  });

  it('fires the backend-down alert when the new backend stops listening', async function () {
    this.timeout(40_000);
    await taskservice.close();
    const down = rule('StranglerBackendDown');
    await waitForAlerts(p, (a) => firing(a, down.alert, { backend: NEW }), `${down.alert} firing for ${NEW}`);
    // Not the dead backend: it has no health probes, hence no strangler_backend_up.
    expect((await p.query(down.expr)).map((s) => s.metric['backend']), down.alert).to.deep.equal([NEW]);
    // Its routes have no fallback: the dashboard's "Answered 503" shows their requests refused at once.
    const panel = dashboardQueries(readDashboard()).find((q) => q.panel === 'Answered 503: backend unavailable')!;
    const unavailable = substituteGrafanaVariables(panel.expr, RATE_INTERVAL);
    await waitFor(async () => (await p.query(unavailable)).some((s) => s.metric['backend'] === NEW && s.metric['job_type'] === SPLIT_JOB && s.value > 0) || undefined, 15_000, `"${panel.panel}" to show ${NEW} ${SPLIT_JOB}`);
  });

  it('evaluated every rule without error throughout', async () => {
    // E.g. many-to-many matching only shows with real data, as a rule evaluation error.
    const evaluated = await p.rules();
    expect(evaluated.map((r) => r.name)).to.have.members([...recordingRules().map((r) => r.record), ...rules.map((r) => r.alert)]);
    const unhealthy = evaluated.filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.health} ${r.lastError ?? ''}`);
    expect(unhealthy, 'rules with evaluation errors').to.deep.equal([]);
  });
});
