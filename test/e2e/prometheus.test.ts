/**
 * The monitoring, end to end: a real Prometheus scrapes the real proxy in
 * front of two upstreams ("buildbot", the legacy one, and "taskservice") and
 * evaluates deploy/prometheus/alerts.yml. Every query of the Grafana
 * dashboard and every alert expression is run through Prometheus's HTTP API
 * against that data; then the new backend is made slow, failing and down, and
 * the matching alerts must fire (and not before).
 *
 * Traffic is shaped so that the comparisons have something to compare:
 * android-api-15-test is split 50/50, so the same job type has series on both
 * backends; linux64-opt is moved entirely to taskservice (the error alert then
 * compares with buildbot's overall error ratio); a trickle of requests that
 * the upstreams answer by cutting the connection gives both backends
 * upstream-error series, below the alerts' minimum-traffic guards.
 *
 * Needs Debian's prometheus package (prometheus and promtool): without it the
 * suite fails with the install command, or is skipped when
 * STRANGLER_SKIP_PROMETHEUS=1.
 */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse } from 'yaml';
import {
  alertRules,
  dashboardQueries,
  metricNamesIn,
  readAlertsText,
  readDashboard,
  substituteGrafanaVariables,
  type AlertRule,
  type RuleFile,
} from '../support/deploy.js';
import { promtool, requirePrometheus, startPrometheus, type PromAlert, type TestPrometheus } from '../support/prometheus.js';
import { routesYaml, startTestProxy, waitFor, type TestProxy } from '../support/proxy.js';
import { startUpstream, type Received, type TestUpstream } from '../support/upstream.js';

const SPLIT_JOB = 'android-api-15-test';
const MOVED_JOB = 'linux64-opt';
const BACKENDS = ['buildbot', 'taskservice'];

const ROUTES = `routes:
  - jobType: linux64-*
    backend: taskservice
  - jobType: /^android-api-1[56]-/
    split: { taskservice: 50, buildbot: 50 }
  - jobType: win32-debug
    backend: buildbot
`;

/** Probes every 200 ms, down after 2 failures: "backend down" within the test's time. */
const HEALTH = 'health: { intervalMs: 200, timeoutMs: 150, unhealthyThreshold: 2, healthyThreshold: 1 }';

function config(buildbotUrl: string, taskserviceUrl: string): string {
  return routesYaml({ buildbot: { url: buildbotUrl, legacy: true, extra: HEALTH }, taskservice: { url: taskserviceUrl, extra: HEALTH } }, ROUTES);
}

/**
 * What Grafana puts in for $__rate_interval with its default 15 s scrape
 * interval setting (4 x 15 s). Long enough to cover the whole test's traffic.
 */
const RATE_INTERVAL = '1m';

/**
 * alerts.yml with every `for:` cut to 1 s, so alerts fire within the test
 * (at the second evaluation, evaluation_interval being 1 s). Only the `for:`
 * lines change: the test checks below that every expression is exactly the
 * one of deploy/prometheus/alerts.yml.
 */
function rulesForTest(original: string): string {
  return original.replace(/^(\s*)for:\s*\S+\s*$/gm, '$1for: 1s');
}

interface UpstreamMode {
  delayMs: number;
  status: number;
}

/**
 * The upstreams' behaviour, changed by the test as it goes: answer `status`
 * after `delayMs`; a path ending in /reset has its connection cut instead (an
 * upstream error of kind "reset"). Health probes never get here: the
 * upstream helper answers them itself, so a 503 phase leaves the backend "up".
 */
function behave(name: string, mode: UpstreamMode) {
  return async (req: IncomingMessage, res: ServerResponse, received: Received) => {
    if (received.url.endsWith('/reset')) return void req.socket.destroy();
    if (mode.delayMs > 0) await new Promise((r) => setTimeout(r, mode.delayMs));
    if (res.destroyed) return;
    res.writeHead(mode.status, { 'content-type': 'application/json' });
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
 * request every 2 s per backend that the upstream answers by cutting the
 * connection (about 0.5/s, under the alerts' 0.1 req/s per job type guard
 * over their 5-10 minute windows for this test's length).
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
    send({ path: '/api/v2/builders/linux64-debug/reset' }); // taskservice (linux64-*)
    send({ path: '/api/v2/builders/win32-debug/reset' }); // buildbot
  }, 2_000);
  send({ path: '/api/v2/builders/linux64-debug/reset' });
  send({ path: '/api/v2/builders/win32-debug/reset' });
  return {
    answered,
    async stop() {
      clearInterval(steady);
      clearInterval(cuts);
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

const firing = (alerts: PromAlert[], name: string, labels: Record<string, string> = {}) =>
  alerts.find((a) => a.state === 'firing' && a.labels['alertname'] === name && Object.entries(labels).every(([k, v]) => a.labels[k] === v));

describe('e2e: Prometheus scraping the proxy: dashboard queries and alert rules', function () {
  let buildbot: TestUpstream;
  let taskservice: TestUpstream;
  const buildbotMode: UpstreamMode = { delayMs: 0, status: 200 };
  const taskserviceMode: UpstreamMode = { delayMs: 0, status: 200 };
  let t: TestProxy;
  let prom: TestPrometheus | undefined;
  let traffic: Traffic | undefined;
  let rules: AlertRule[];
  let started = 0;

  before(async function () {
    this.timeout(60_000);
    requirePrometheus(this);
    started = Date.now();
    rules = alertRules();
    buildbot = await startUpstream('buildbot', behave('buildbot', buildbotMode));
    taskservice = await startUpstream('taskservice', behave('taskservice', taskserviceMode));
    t = await startTestProxy(config(buildbot.url, taskservice.url));
    prom = await startPrometheus({ scrapeUrl: `${t.adminUrl}/metrics`, rules: rulesForTest(readAlertsText()) });
    // Traffic before the first scrape would be invisible to rate(): wait until Prometheus has scraped once.
    await waitFor(async () => (await prom!.query('up{job="strangler-proxy"} == 1')).length === 1 || undefined, 15_000, 'the first scrape of the proxy');
  });

  after(async function () {
    this.timeout(30_000);
    await traffic?.stop();
    const pid = prom?.pid;
    await prom?.stop();
    await t?.close();
    await buildbot?.close();
    await taskservice?.close();
    // Nothing of Prometheus may outlive the suite.
    if (pid !== undefined) expect(isAlive(pid), `prometheus pid ${pid} still alive`).to.equal(false);
    if (started) console.log(`      (Prometheus suite: ${((Date.now() - started) / 1000).toFixed(1)} s)`);
  });

  it('promtool accepts deploy/prometheus/alerts.yml', () => {
    const result = promtool(['check', 'rules', 'deploy/prometheus/alerts.yml']);
    expect(result.stderr, 'promtool stderr').to.equal('');
    expect(result.status, result.stdout).to.equal(0);
    expect(result.stdout).to.include(`SUCCESS: ${rules.length} rules found`);
  });

  it('runs the rule file unchanged but for the for: durations', () => {
    const original = parse(readAlertsText()) as RuleFile;
    const copy = parse(rulesForTest(readAlertsText())) as RuleFile;
    const exprs = (f: RuleFile) => f.groups.flatMap((g) => g.rules.map((r) => r.expr));
    expect(exprs(copy)).to.deep.equal(exprs(original));
    expect(exprs(copy)).to.have.length(rules.length);
  });

  it('promtool check metrics finds nothing wrong with a live scrape of the admin port', async () => {
    const res = await fetch(`${t.adminUrl}/metrics`);
    const text = await res.text();
    expect(text).to.include('strangler_requests_total');
    const result = promtool(['check', 'metrics'], text);
    // promtool writes its findings to stderr and exits non-zero when there are any.
    expect({ status: result.status, stdout: result.stdout, stderr: result.stderr }).to.deep.equal({ status: 0, stdout: '', stderr: '' });
  });

  it('answers every dashboard query and alert rule with series; the alerts fire when the new backend slows, fails and goes down', async function () {
    this.timeout(80_000);
    const p = prom!;
    traffic = startTraffic(t.url);

    // A successful reload, so the reload panels have a series (the failure one comes later).
    t.writeConfig(config(buildbot.url, taskservice.url) + '# reloaded by the test\n');
    await waitFor(async () => (await t.proxy.metrics.reloads.get()).values.some((v) => v.labels.result === 'success' && v.value >= 1) || undefined, 10_000, 'a successful reload');

    // --- Healthy: wait until the alerts' minimum-traffic guards hold for both
    // backends of the split job type, so that "no alert" below means "no
    // alert although they could fire", not "not enough data yet".
    const guard = `sum by (backend) (rate(strangler_request_duration_seconds_count{job_type="${SPLIT_JOB}"}[5m])) > 0.1`;
    await waitFor(async () => (await p.query(guard)).length === 2 || undefined, 30_000, `traffic above the alerts' guards on both backends (${guard})`);
    await waitFor(async () => (await p.query('sum by (backend) (rate(strangler_upstream_errors_total[1m])) > 0')).length === 2 || undefined, 20_000, 'upstream errors counted for both backends');

    // Every dashboard query, as Grafana would send it, returns series; a query
    // split by backend returns both; by job type and backend, both for the
    // split job type. Panels repeated per job type are run for the split job type.
    const dashboard = readDashboard();
    const problems: string[] = [];
    const queries = dashboardQueries(dashboard);
    expect(queries.length, 'dashboard queries').to.be.greaterThan(20);
    for (const q of queries) {
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
      if (q.legendFormat.includes('{{backend}}')) {
        const scoped = q.legendFormat.includes('{{job_type}}') ? result.filter((s) => s.metric['job_type'] === SPLIT_JOB) : result;
        for (const b of BACKENDS) {
          if (!scoped.some((s) => s.metric['backend'] === b && Number.isFinite(s.value))) problems.push(`${q.panel} ${q.refId}: no finite value for backend ${b}${q.legendFormat.includes('{{job_type}}') ? ` and job type ${SPLIT_JOB}` : ''}: ${JSON.stringify(result)}`);
        }
      }
    }
    // Every metric the dashboard and the rules read is one Prometheus actually scraped.
    const scraped = new Set(await p.metricNames());
    for (const name of [...queries.flatMap((q) => metricNamesIn(q.expr)), ...rules.flatMap((r) => metricNamesIn(r.expr))]) {
      if (!scraped.has(name)) problems.push(`${name}: not among the scraped series`);
    }
    expect(problems, 'dashboard queries').to.deep.equal([]);

    // Healthy traffic above the guards: no alert expression matches, none is pending or firing.
    for (const r of rules) expect(await p.query(r.expr), `${r.alert} while healthy`).to.deep.equal([]);
    expect(await p.alerts(), 'alerts while healthy').to.deep.equal([]);

    // --- Slow: the new backend takes 250 ms, buildbot answers at once.
    taskserviceMode.delayMs = 250;
    const latency = rules.find((r) => r.alert === 'StranglerNewBackendLatencyRegression')!;
    const slow = await waitFor(async () => firing(await p.alerts(), latency.alert, { backend: 'taskservice', job_type: SPLIT_JOB }), 30_000, `${latency.alert} firing`);
    expect(Number(slow.value), 'p95 of taskservice').to.be.greaterThan(0.1);
    const latencySeries = await p.query(latency.expr);
    expect(latencySeries.map((s) => `${s.metric['backend']} ${s.metric['job_type']}`), `${latency.alert} expression`).to.deep.equal([`taskservice ${SPLIT_JOB}`]);
    // Slow, not failing: the error alert must stay quiet.
    expect(firing(await p.alerts(), 'StranglerNewBackendErrorRatioAboveLegacy'), 'error alert while only slow').to.equal(undefined);

    // --- Failing: the new backend answers 503 (its health probes still pass), and routes.yaml is broken.
    taskserviceMode.delayMs = 0;
    taskserviceMode.status = 503;
    // An unknown key: rejected, the previous routes stay in force.
    t.writeConfig(readFileSync(t.configFile, 'utf8') + 'bogus: true\n');
    const errorAlert = rules.find((r) => r.alert === 'StranglerNewBackendErrorRatioAboveLegacy')!;
    const reloadAlert = rules.find((r) => r.alert === 'StranglerConfigReloadFailed')!;
    await waitFor(
      async () => {
        const alerts = await p.alerts();
        // The split job type is compared with buildbot's ratio for it; the moved one with buildbot's overall ratio.
        return (firing(alerts, errorAlert.alert, { backend: 'taskservice', job_type: SPLIT_JOB }) && firing(alerts, errorAlert.alert, { backend: 'taskservice', job_type: MOVED_JOB }) && firing(alerts, reloadAlert.alert)) || undefined;
      },
      30_000,
      `${errorAlert.alert} for ${SPLIT_JOB} and ${MOVED_JOB}, and ${reloadAlert.alert}, firing`,
    );
    const errorSeries = await p.query(errorAlert.expr);
    expect(errorSeries.map((s) => s.metric['backend'])).to.include('taskservice').and.not.include('buildbot');
    expect(errorSeries.map((s) => s.metric['job_type'])).to.include.members([SPLIT_JOB, MOVED_JOB]);
    expect(await p.query(reloadAlert.expr), reloadAlert.alert).to.have.length(1);
    // Still answering its probes: not "down".
    expect(firing(await p.alerts(), 'StranglerBackendDown'), 'backend down while it answers probes').to.equal(undefined);

    // --- Down: the new backend stops listening; its probes fail.
    await taskservice.close();
    const downAlert = rules.find((r) => r.alert === 'StranglerBackendDown')!;
    await waitFor(async () => firing(await p.alerts(), downAlert.alert, { backend: 'taskservice' }), 30_000, `${downAlert.alert} firing for taskservice`);
    expect((await p.query(downAlert.expr)).map((s) => s.metric['backend']), downAlert.alert).to.deep.equal(['taskservice']);

    // No rule failed to evaluate at any point (e.g. many-to-many matching on real data).
    const unhealthy = (await p.rules()).filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.health} ${r.lastError ?? ''}`);
    expect(unhealthy, 'rules with evaluation errors').to.deep.equal([]);
    console.log(`      (traffic answered: ${JSON.stringify(Object.fromEntries(traffic.answered))})`);
  });
});

