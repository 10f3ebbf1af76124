/**
 * Finished builds for the build comparison's tests (admin API, status page,
 * `report`): written through the store's own recordOutcome into a real
 * store, so what the tests read back went through the same code as a
 * tracked build's.
 */
import { startStandinBackend } from '../../src/demo/standin.js';
import type { Strangler } from '../../src/main.js';
import { startStandinQueue } from '../../src/standin-queue/index.js';
import type { Store } from '../../src/store/store.js';
import { openStore } from '../../src/store/open.js';
import type { ResultCode } from '../../src/taskcluster/results.js';
import type { BuildOutcome } from '../../src/tracking/outcome.js';
import { startQueueProxy } from './queue-proxy.js';
import { legacyAndQueueYaml } from './tables.js';

const MINUTE = 60_000;

export interface BuildsOf {
  backend: string;
  jobType: string;
  /** Result codes, one build each, in the order they finished (the last one newest). */
  results: readonly ResultCode[];
  /** Each build's length. */
  seconds: number;
  waitSeconds?: number;
  /** When the newest finished (epoch ms); the others one `everyMinutes` apart before it. */
  lastAt: number;
  everyMinutes?: number;
}

let serial = 0;

/** Builds as BuildOutcomes, each with its own key. */
export function buildsOf(b: BuildsOf): BuildOutcome[] {
  const n = b.results.length;
  return b.results.map((result, i) => {
    const finishedAt = b.lastAt - (n - 1 - i) * (b.everyMinutes ?? 30) * MINUTE;
    const startedAt = finishedAt - b.seconds * 1000;
    return {
      backend: b.backend,
      buildKey: `test:${process.pid}:${serial++}`,
      jobType: b.jobType,
      result,
      submittedAt: startedAt - (b.waitSeconds ?? 10) * 1000,
      startedAt,
      finishedAt,
      origin: 'proxy',
      recordedAt: finishedAt + 500,
    };
  });
}

/** `passed` SUCCESS then `failed` FAILURE results. */
export function results(passed: number, failed: number): ResultCode[] {
  return [...Array<ResultCode>(passed).fill(0), ...Array<ResultCode>(failed).fill(2)];
}

export async function recordAll(store: Pick<Store, 'recordOutcome'>, outcomes: readonly BuildOutcome[]): Promise<void> {
  for (const o of outcomes) {
    if (!(await store.recordOutcome(o))) throw new Error(`outcome ${o.backend} ${o.buildKey} was recorded before`);
  }
}

/** Records outcomes into the embedded store of `dataDir` and closes it, for a proxy to open next. */
export async function seedEmbeddedStore(dataDir: string, outcomes: readonly BuildOutcome[]): Promise<void> {
  const store = await openStore(undefined, { dataDir });
  try {
    await recordAll(store, outcomes);
  } finally {
    await store.close();
  }
}

/**
 * The scenario the page and `report` tests run, all within the last day
 * before `now`, legacy backend `buildbot`, new backend `queue`:
 * - linux64-opt: buildbot 18 of 20 pass in 100 s; queue 8 of 12 in 130 s, after 2 RETRY: worse;
 * - linux64-debug: buildbot 9 of 10 in 100 s; queue 10 of 10 in 60 s, after 1 CANCELLED: better;
 * - win32-debug: only buildbot, 4 of 5;
 * - android-api-16-test: buildbot 10 of 10 in 200 s; queue 3 of 3 in 200 s: not enough builds.
 */
export function scenario(now: number): BuildOutcome[] {
  const at = now - 10 * MINUTE;
  return [
    ...buildsOf({ backend: 'buildbot', jobType: 'linux64-opt', results: results(18, 2), seconds: 100, waitSeconds: 20, lastAt: at }),
    ...buildsOf({ backend: 'queue', jobType: 'linux64-opt', results: [5, 5, ...results(8, 4)], seconds: 130, waitSeconds: 40, lastAt: at - 5 * MINUTE }),
    ...buildsOf({ backend: 'buildbot', jobType: 'linux64-debug', results: results(9, 1), seconds: 100, lastAt: at }),
    ...buildsOf({ backend: 'queue', jobType: 'linux64-debug', results: [6, ...results(10, 0)], seconds: 60, lastAt: at }),
    ...buildsOf({ backend: 'buildbot', jobType: 'win32-debug', results: results(4, 1), seconds: 300, lastAt: at, everyMinutes: 120 }),
    ...buildsOf({ backend: 'buildbot', jobType: 'android-api-16-test', results: results(10, 0), seconds: 200, lastAt: at }),
    ...buildsOf({ backend: 'queue', jobType: 'android-api-16-test', results: results(3, 0), seconds: 200, lastAt: at }),
  ];
}

/** A proxy in front of a stand-in legacy master (`buildbot`) and a stand-in queue (`queue`, linux64-* routed there), its store seeded with finished builds. */
export interface ProxyWithBuilds {
  proxy: Strangler;
  close(): Promise<void>;
}

export interface ProxyWithBuildsOptions {
  adminToken?: string;
  protectAdminReads?: boolean;
  /** A worker on the queue that runs each task for `runMs` and passes it, and the credentials the proxy signs with (set in TASKCLUSTER_CLIENT_ID and TASKCLUSTER_ACCESS_TOKEN for as long as the proxy runs); none by default. */
  worker?: { runMs: number };
}

export async function startProxyWithBuilds(outcomes: readonly BuildOutcome[], options: ProxyWithBuildsOptions = {}): Promise<ProxyWithBuilds> {
  const parts: { close(): Promise<void> }[] = [];
  const close = async () => {
    for (const part of parts.reverse()) await part.close();
  };
  try {
    const accessToken = `builds-${process.pid}-access-token`;
    const queue = options.worker
      ? await startStandinQueue({ clients: { proxy: { accessToken, scopes: ['*'] } }, worker: { taskQueueIds: ['proj-ci/linux'], startDelayMs: 20, runMs: options.worker.runMs, failureRate: 0, seed: 1 } as never })
      : await startStandinQueue({ clients: {}, worker: false });
    parts.push(queue);
    const legacy = await startStandinBackend({ name: 'buildbot', builders: [...new Set(outcomes.map((o) => o.jobType))] });
    parts.push(legacy);
    const world = await startQueueProxy(legacyAndQueueYaml({ legacyUrl: legacy.url, rootUrl: queue.rootUrl, task: '{ taskQueueId: proj-ci/linux, payload: { command: [echo] } }' }), {
      ...(options.worker ? { credentials: { clientId: 'proxy', accessToken } } : {}),
      beforeStart: (dataDir) => seedEmbeddedStore(dataDir, outcomes),
      watch: false,
      queueFollowIntervalMs: 100,
      ...(options.adminToken ? { adminToken: options.adminToken } : {}),
      protectAdminReads: options.protectAdminReads === true,
    });
    parts.push(world);
    return { proxy: world.proxy, close };
  } catch (error) {
    await close();
    throw error;
  }
}
