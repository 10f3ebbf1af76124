/**
 * Every routed build followed to its end on both sides, and counted once,
 * across a SIGKILL of the proxy.
 *
 * Behind the proxy (the built CLI, `serve`, in a child process with its
 * embedded store in a temporary folder): a REAL Buildbot 3.7 master with a
 * real worker, whose builders pass, fail (exit 1) and raise an exception, one
 * of them also started by the master's own scheduler on a change (its route
 * says `track: true`); and the stand-in queue, whose worker completes and
 * fails tasks as their payload asks, one cancelled by the client while it
 * runs. The proxy is killed while builds run and a scheduler build starts and
 * ends while it is down; after the restart, every build must be counted once:
 * the counters of the two processes add up exactly to the builds that ran,
 * the admin API's comparison and `strangler-proxy report` (read from the
 * store) give the same counts, and the durations and waits observed add up
 * exactly to those the master and the queue report for the same builds (their
 * own timestamps).
 *
 * Needs Debian's buildbot and buildbot-worker; without them this suite fails
 * with the install command, unless STRANGLER_SKIP_BUILDBOT=1 (then skipped).
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { BuildComparison } from '../../src/tracking/compare.js';
import { startStandinQueue, type StandinQueue } from '../../src/standin-queue/index.js';
import { requireBuildbot, startBuildbotMasters, type BuildbotMaster, type BuildbotMasters } from '../support/buildbot.js';
import { BuildbotClient, forceIds, sleep } from '../support/buildbot-client.js';
import { requireBuiltCli, runCli } from '../support/cli-process.js';
import { waitFor } from '../support/proxy.js';
import { RestartableProxy } from '../support/proxy-process.js';
import { legacyAndQueueYaml } from '../support/tables.js';
import { freePort } from '../support/upstream.js';

const QUEUE = 'proj-tracking/linux';
const TOKEN = 'tracking-e2e-secret-access-token';
const LEGACY_BUILDERS = ['bb-pass', 'bb-fail', 'bb-exc', 'bb-nightly', 'bb-untracked'];
const QUEUE_BUILDERS = ['tc-pass', 'tc-fail', 'tc-exc', 'tc-cancel'];
/** Long enough that the kill lands at a quiet moment: after the cancel was counted, before any other build ends. */
const BUILD_SECONDS = 6;

type Counts = Map<string, number>;

/** `name{labels} value` lines of one metric family, keyed by their label text. */
function samples(text: string, name: string): Counts {
  const found: Counts = new Map();
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)\{([^}]*)\} (\S+)$/.exec(line);
    if (m && m[1] === name) found.set(m[2]!, Number(m[3]));
  }
  return found;
}

function addInto(total: Counts, more: Counts): void {
  for (const [k, v] of more) total.set(k, (total.get(k) ?? 0) + v);
}

describe('e2e: builds followed to their end on a real Buildbot master and a queue, counted once across a SIGKILL', function () {
  this.timeout(240_000);
  let bb: BuildbotMasters | undefined;
  let legacy: BuildbotMaster;
  let queue: StandinQueue | undefined;
  let dir: string;
  let configFile: string;
  let port: number;
  let adminPort: number;
  let proxy: RestartableProxy | undefined;
  let client: BuildbotClient;

  const metricsText = async () => (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();

  before(async function () {
    requireBuildbot(this);
    requireBuiltCli();
    bb = await startBuildbotMasters([
      {
        name: 'legacy',
        builders: [...LEGACY_BUILDERS, ...QUEUE_BUILDERS],
        buildSeconds: BUILD_SECONDS,
        outcomes: { 'bb-fail': 'fail', 'bb-exc': 'exception' },
        changeBuilders: ['bb-nightly', 'bb-untracked'],
      },
    ]);
    legacy = bb.byName('legacy');
    queue = await startStandinQueue({
      clients: { proxy: { accessToken: TOKEN, scopes: ['*'] } },
      worker: { taskQueueIds: [QUEUE], startDelayMs: 300, runMs: BUILD_SECONDS * 1000, failureRate: 0, seed: 1 },
    });
    dir = mkdtempSync(path.join(tmpdir(), 'strangler-e2e-tracking-'));
    configFile = path.join(dir, 'routes.yaml');
    const onQueue = (jobType: string, outcome: string) => `  - jobType: ${jobType}
    backend: queue
    task: { payload: { command: [echo, tracked], outcome: ${outcome} } }
`;
    writeFileSync(
      configFile,
      legacyAndQueueYaml({
        legacyUrl: legacy.url,
        rootUrl: queue.rootUrl,
        task: `{ taskQueueId: ${QUEUE}, payload: { command: [echo, tracked] } }`,
        routes: `${onQueue('tc-pass', 'success')}${onQueue('tc-fail', 'failure')}${onQueue('tc-exc', 'exception')}${onQueue('tc-cancel', 'success')}  - jobType: bb-nightly
    backend: buildbot
    track: true
`,
      }),
    );
    port = await freePort();
    adminPort = await freePort();
    client = new BuildbotClient(`http://127.0.0.1:${port}`);
    proxy = new RestartableProxy({ configFile, port, adminPort, dataDir: path.join(dir, 'data'), credentials: { clientId: 'proxy', accessToken: TOKEN } });
    await proxy.start();
  });

  after(async function () {
    await proxy?.stop('SIGKILL');
    await queue?.close();
    await bb?.stopAll();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('counts each build once by its result, duration and wait, on both sides, with a SIGKILL in the middle', async function () {
    // Forces through the proxy: three outcomes on each side, and a queue build the client stops while it runs.
    const forced = new Map<string, number>();
    for (const builder of ['bb-pass', 'bb-pass', 'bb-fail', 'bb-exc', 'tc-pass', 'tc-pass', 'tc-fail', 'tc-exc', 'tc-cancel']) {
      const { brids } = forceIds(await client.force([builder], { revision: `r-${builder}` }));
      forced.set(`${builder}#${forced.size}`, [...brids.values()][0]!);
    }
    // Not through the proxy: a force straight to the master (not followed: its route does not track),
    // and a change that starts bb-nightly (followed: track: true) and bb-untracked (not).
    await legacy.forceDirect(['bb-pass']);
    await legacy.postChange('nightly-1');

    // The cancelled queue build: stopped once it runs.
    const cancelBrid = forced.get('tc-cancel#8')!;
    const running = await client.waitForBuild(cancelBrid, 30_000);
    const stop = await client.rpc(`/builds/${running.buildid as number}`, 'stop', { reason: 'e2e stops it' });
    expect(stop.status, JSON.stringify(stop)).to.equal(200);

    // The cancelled build is counted, the others run: the proxy dies (a scrape collects metric by metric, so two equal ones in a row make a consistent snapshot).
    const cancelled = 'job_type="tc-cancel",backend="queue",result="cancelled"';
    let before = '';
    await waitFor(async () => {
      const [first, second] = [await metricsText(), await metricsText()];
      const stable = (t: string) => t.split('\n').filter((l) => l.startsWith('strangler_build')).join('\n');
      before = second;
      return samples(first, 'strangler_builds_finished_total').get(cancelled) === 1 && stable(first) === stable(second) ? true : undefined;
    }, 30_000, 'the cancelled build counted');
    await proxy!.stop('SIGKILL');
    expect([...samples(before, 'strangler_builds_finished_total')].filter(([, v]) => v > 0), 'only the cancelled build had ended at the kill').to.deep.equal([[cancelled, 1]]);

    // While it is down: a scheduler build starts and ends, and the running builds end.
    await legacy.postChange('nightly-2');
    await sleep((BUILD_SECONDS + 2) * 1000);
    await proxy!.start();

    const expected = new Map([
      ['job_type="bb-pass",backend="buildbot",result="success"', 2],
      ['job_type="bb-fail",backend="buildbot",result="failure"', 1],
      ['job_type="bb-exc",backend="buildbot",result="exception"', 1],
      ['job_type="bb-nightly",backend="buildbot",result="success"', 2],
      ['job_type="tc-pass",backend="queue",result="success"', 2],
      ['job_type="tc-fail",backend="queue",result="failure"', 1],
      ['job_type="tc-exc",backend="queue",result="exception"', 1],
      ['job_type="tc-cancel",backend="queue",result="cancelled"', 1],
    ]);
    const total = (): Promise<Counts> =>
      metricsText().then((after) => {
        const sum: Counts = new Map();
        addInto(sum, samples(before, 'strangler_builds_finished_total'));
        addInto(sum, samples(after, 'strangler_builds_finished_total'));
        return sum;
      });
    const sum = await waitFor(async () => {
      const s = await total();
      return [...expected.values()].reduce((a, b) => a + b, 0) === [...s.values()].reduce((a, b) => a + b, 0) ? s : undefined;
    }, 60_000, 'every build counted').catch(async (error: Error) => {
      throw new Error(`${error.message}: counted ${JSON.stringify([...(await total())])}\n${proxy!.output().slice(-3000)}`);
    });
    // Both processes counted: the first before it was killed, the second what ended while it was down.
    const countedBy = (text: string) => [...samples(text, 'strangler_builds_finished_total').values()].reduce((a, b) => a + b, 0);
    expect(countedBy(before), 'counted before the kill').to.be.greaterThan(0);
    expect(countedBy(await metricsText()), 'counted after the restart').to.be.greaterThan(0);
    // A moment more: a build counted twice would show now.
    await sleep(2_000);
    expect(new Map([...(await total())].filter(([, v]) => v > 0))).to.deep.equal(expected);
    expect(sum.size).to.be.greaterThan(0);

    // The admin API and `report` read the store: the same builds, whichever process counted them.
    const resultsOf = (comparison: BuildComparison) => {
      const found = new Map<string, number>();
      for (const j of comparison.jobTypes) for (const side of j.sides) for (const [result, n] of Object.entries(side.results)) if (n > 0) found.set(`job_type="${j.jobType}",backend="${side.backend}",result="${result}"`, n);
      return found;
    };
    expect(resultsOf((await (await fetch(`http://127.0.0.1:${adminPort}/builds?window=1h`)).json()) as BuildComparison)).to.deep.equal(expected);
    const printed = await runCli(['report', '--admin', `http://127.0.0.1:${adminPort}`, '--window', '1h', '--format', 'json']);
    expect(printed.code, printed.stderr).to.equal(0);
    expect(resultsOf(JSON.parse(printed.stdout) as BuildComparison)).to.deep.equal(expected);

    // Nothing is left in flight (the gauge is refreshed each tracking round).
    const inFlight = async () => [...samples(await metricsText(), 'strangler_builds_in_flight')].filter(([, v]) => v > 0);
    await waitFor(async () => ((await inFlight()).length === 0 ? true : undefined), 15_000, 'no build in flight').catch(async (error: Error) => {
      throw new Error(`${error.message}: ${JSON.stringify(await inFlight())}`);
    });
    const after = await metricsText();
    // The real master's /ws events were followed (an events outage would be counted), and no step failed.
    expect(proxy!.output()).to.include("following a backend's build events");
    expect([...samples(before, 'strangler_build_tracking_errors_total'), ...samples(after, 'strangler_build_tracking_errors_total')].filter(([, v]) => v > 0)).to.deep.equal([]);

    // Durations and waits: exactly what the master and the queue say of the same builds.
    const observed = (metric: string, text: string): Counts => {
      const sums: Counts = new Map();
      for (const [labels, value] of samples(text, metric)) {
        const backend = /backend="([^"]+)"/.exec(labels)![1]!;
        sums.set(backend, (sums.get(backend) ?? 0) + value);
      }
      return sums;
    };
    const durations = observed('strangler_build_duration_seconds_sum', before);
    addInto(durations, observed('strangler_build_duration_seconds_sum', after));
    const waits = observed('strangler_build_wait_seconds_sum', before);
    addInto(waits, observed('strangler_build_wait_seconds_sum', after));

    const builders = new Map((await legacy.builders()).map((b) => [b.builderid, b.name]));
    const requests = new Map((await legacy.buildrequests()).map((r) => [r.buildrequestid, r]));
    const counted = new Set(['bb-pass', 'bb-fail', 'bb-exc', 'bb-nightly']);
    const direct = (await legacy.builds()).filter((b) => counted.has(builders.get(b.builderid)!));
    // The direct force of bb-pass is the one build of a counted builder the proxy must not count.
    const legacyBuilds = direct.filter((b) => builders.get(b.builderid) !== 'bb-pass' || [...forced.values()].includes(b.buildrequestid));
    expect(legacyBuilds).to.have.length(6);
    const legacyDuration = legacyBuilds.reduce((s, b) => s + (b.complete_at! - b.started_at), 0);
    const legacyWait = legacyBuilds.reduce((s, b) => s + (b.started_at - requests.get(b.buildrequestid)!.submitted_at), 0);
    expect(durations.get('buildbot')).to.be.closeTo(legacyDuration, 1e-6);
    expect(waits.get('buildbot')).to.be.closeTo(legacyWait, 1e-6);
    // Each legacy build ran at least its step's BUILD_SECONDS (the master's timestamps are whole seconds; a busy machine adds to it).
    for (const b of legacyBuilds) expect(b.complete_at! - b.started_at).to.be.at.least(BUILD_SECONDS - 1);

    const runs = queue!
      .tasks()
      .flatMap((t) => t.status.runs)
      .filter((r) => r.started !== undefined && r.resolved !== undefined);
    expect(runs).to.have.length(5);
    const queueDuration = runs.reduce((s, r) => s + (Date.parse(r.resolved!) - Date.parse(r.started!)) / 1000, 0);
    const queueWait = runs.reduce((s, r) => s + (Date.parse(r.started!) - Date.parse(r.scheduled)) / 1000, 0);
    expect(durations.get('queue')).to.be.closeTo(queueDuration, 1e-6);
    expect(waits.get('queue')).to.be.closeTo(queueWait, 1e-6);
  });
});

