/**
 * What `strangler-proxy demo` starts besides the proxy, and what it prints.
 *
 * Without a routes file of the user's, the demo makes its own world: a
 * Buildbot look-alike as the legacy master, a stand-in Taskcluster queue
 * whose worker runs each task for a few seconds (and fails some on purpose),
 * credentials made up for the occasion, and a routes.yaml in a temporary
 * folder that moves one job type to the queue. With a routes file, it starts
 * a stand-in on each backend's port instead. Either way the embedded store
 * lives in the temporary folder, which is removed when the process exits.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { StranglerError } from '../errors.js';
import { decide } from '../routing/decide.js';
import type { Backend, RoutingTable } from '../routing/table.js';
import { startStandinQueue, type StandinQueue } from '../standin-queue/index.js';
import { MINTED_ID_BASE } from '../store/store.js';
import { startStandinBackend, type StandinBackend } from './standin.js';

/** The builders every stand-in knows (the legacy master's builder ids follow this order). */
export const DEMO_BUILDERS = ['linux64-opt', 'linux64-debug', 'win32-debug', 'android-api-15-test', 'android-api-16-test', 'mac-opt'] as const;

/** The queue the demo's task template sends tasks to, and the stand-in worker claims from. */
export const DEMO_TASK_QUEUE = 'proj-demo/linux';

/** How the stand-ins pace work: the look-alike's builds and the queue worker's runs alike. */
const START_DELAY_MS = 500;
const RUN_MS = 3000;
/** A share of queue tasks the worker fails on purpose, and the seed that makes the first succeed and the second fail. */
const FAILURE_RATE = 0.2;
const FAILURE_SEED = 1;

export interface DemoStandin {
  name: string;
  url: string;
  note: string;
}

/** One side a build can be forced on through the proxy and followed to its log. */
export interface DemoSide {
  builder: string;
  /** Where it runs, in words: "on the queue", "on the legacy master". */
  where: string;
  /** The ids a first force of this builder gets. */
  ids: { brid: number; buildid: number };
}

export interface DemoWorld {
  /** The routes file the proxy follows. */
  file: string;
  /** Whether the demo wrote that file (and removes it on exit). */
  ownFile: boolean;
  /** The embedded store's folder, inside the demo's temporary folder. */
  dataDir: string;
  standins: DemoStandin[];
  /** Which side each printed walk-through forces a build on; empty where reads by id would not reach the side that ran it. */
  sides(table: RoutingTable): DemoSide[];
  close(): Promise<void>;
  /** Removes the temporary folder; synchronous, for process.on('exit'). */
  removeSync(): void;
}

/** The demo's own routes.yaml: linux64-* moved to the queue with a task template, everything else on the legacy master. */
export function demoRoutesYaml(legacyUrl: string, rootUrl: string): string {
  return `# The strangler-proxy demo's routes (a temporary file: edit it while the demo runs; it is removed when the demo stops).
backends:
  buildbot: { url: ${legacyUrl}, legacy: true }   # a Buildbot look-alike, standing in for the legacy master
  queue:                                          # a stand-in Taskcluster queue; credentials from TASKCLUSTER_CLIENT_ID / _ACCESS_TOKEN
    kind: taskcluster
    rootUrl: ${rootUrl}

default: buildbot

routes:
  - jobType: linux64-*            # moved: a force becomes one task per builder on the queue
    backend: queue
    task:                         # json-e, rendered from the force's parameters
      taskQueueId: ${DEMO_TASK_QUEUE}
      payload:
        command: [make, all, 'BUILDER=\${builder.name}', 'REVISION=\${revision}']
      metadata:
        description: '\${reason}'
      tags: { demo: strangler-proxy }
  - jobType: win32-debug          # stays on the legacy master (so does every job type no route matches)
    backend: buildbot
  # - jobType: /^android-api-1[56]-/    # uncomment and save: a quarter of these forces go to the queue
  #   split: { queue: 25, buildbot: 75 }
  #   task: { taskQueueId: ${DEMO_TASK_QUEUE}, payload: { command: [make, check] } }
`;
}

function makeTempDir(): { dir: string; removeSync(): void } {
  const dir = mkdtempSync(path.join(tmpdir(), 'strangler-demo-'));
  return { dir, removeSync: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * SECURITY: credentials made up for the stand-in queue, handed to the proxy
 * through the environment variables a taskcluster backend reads; never printed.
 */
function demoCredentials(backend: Backend | undefined): { clientId: string; accessToken: string } {
  const clientId = `strangler-demo-${randomBytes(4).toString('hex')}`;
  const accessToken = randomBytes(33).toString('base64url');
  process.env[backend?.queue?.clientIdEnv ?? 'TASKCLUSTER_CLIENT_ID'] = clientId;
  process.env[backend?.queue?.accessTokenEnv ?? 'TASKCLUSTER_ACCESS_TOKEN'] = accessToken;
  // A certificate left in the environment belongs to other, temporary credentials: the stand-in would refuse the signature.
  delete process.env[backend?.queue?.certificateEnv ?? 'TASKCLUSTER_CERTIFICATE'];
  return { clientId, accessToken };
}

function startQueue(port: number, clientId: string, accessToken: string, taskQueueIds: string[]): Promise<StandinQueue> {
  return startStandinQueue({
    port,
    host: '127.0.0.1',
    clients: { [clientId]: { accessToken, scopes: ['*'] } },
    worker: { taskQueueIds, startDelayMs: START_DELAY_MS, runMs: RUN_MS, failureRate: FAILURE_RATE, seed: FAILURE_SEED },
  });
}

const QUEUE_NOTE = `a Taskcluster queue; its worker runs each task for ${RUN_MS / 1000} s and fails about ${Math.round(FAILURE_RATE * 100)} % on purpose`;

/** The demo's own world: a look-alike legacy master, a stand-in queue, and a routes file that joins them. */
export async function startDemoWorld(): Promise<DemoWorld> {
  const temp = makeTempDir();
  let legacy: StandinBackend | undefined;
  let queue: StandinQueue | undefined;
  try {
    legacy = await startStandinBackend({ name: 'buildbot', builders: DEMO_BUILDERS, startDelayMs: START_DELAY_MS, runMs: RUN_MS });
    const { clientId, accessToken } = demoCredentials(undefined);
    queue = await startQueue(0, clientId, accessToken, [DEMO_TASK_QUEUE]);
    const file = path.join(temp.dir, 'routes.yaml');
    writeFileSync(file, demoRoutesYaml(legacy.url, queue.rootUrl));
    const [l, q] = [legacy, queue];
    const firstLegacy = l.nextIds();
    return {
      file,
      ownFile: true,
      dataDir: path.join(temp.dir, 'data'),
      standins: [
        { name: 'buildbot', url: l.url, note: '(legacy: a Buildbot look-alike)' },
        { name: 'queue', url: q.rootUrl, note: `(${QUEUE_NOTE})` },
      ],
      sides: (table) => sidesOf(table, firstLegacy),
      close: async () => {
        await Promise.all([l.close(), q.close()]);
      },
      removeSync: temp.removeSync,
    };
  } catch (error) {
    await Promise.all([legacy?.close(), queue?.close()]);
    temp.removeSync();
    throw error;
  }
}

/**
 * The user's routes file: a look-alike on each plain backend's port and a
 * stand-in queue on each taskcluster backend's, all on this machine. Its
 * worker claims the task queues the file's templates name literally.
 */
export async function startStandinsFor(file: string, table: RoutingTable): Promise<DemoWorld> {
  for (const backend of table.backends.values()) {
    if (!['127.0.0.1', 'localhost'].includes(new URL(backend.url).hostname)) {
      throw new StranglerError('USAGE', `demo: backend ${backend.name} (${backend.url}) is not on this machine; the demo starts stand-ins on 127.0.0.1 ports only`);
    }
  }
  const temp = makeTempDir();
  const closers: Array<() => Promise<void>> = [];
  // Whatever fails to start, nothing started before it is left listening (it would keep the process running).
  const closeAll = async () => {
    await Promise.all(closers.splice(0).map((c) => c()));
  };
  const standins: DemoStandin[] = [];
  const looks = new Map<string, StandinBackend>();
  try {
    for (const backend of table.backends.values()) {
      const port = Number(new URL(backend.url).port || 80);
      try {
        if (backend.kind === 'taskcluster') {
          const taskQueueIds = literalTaskQueues(table, backend);
          if (taskQueueIds.length === 0) {
            throw new StranglerError('USAGE', `demo: no template for backend ${backend.name} names its taskQueueId as plain text, so the stand-in worker would not know which tasks to run; write one, e.g. task: { taskQueueId: ${DEMO_TASK_QUEUE}, ... }`);
          }
          const { clientId, accessToken } = demoCredentials(backend);
          const q = await startQueue(port, clientId, accessToken, taskQueueIds);
          closers.push(() => q.close());
          standins.push({ name: backend.name, url: q.rootUrl, note: `(${QUEUE_NOTE})` });
        } else {
          const s = await startStandinBackend({ name: backend.name, builders: DEMO_BUILDERS, port, startDelayMs: START_DELAY_MS, runMs: RUN_MS });
          closers.push(() => s.close());
          looks.set(backend.name, s);
          standins.push({ name: backend.name, url: s.url, note: backend.legacy ? '(legacy)' : '' });
        }
      } catch (error) {
        if (error instanceof StranglerError) throw error;
        const code = (error as NodeJS.ErrnoException).code;
        const why = code === 'EADDRINUSE' ? 'the port is already in use' : (error as Error).message;
        throw new StranglerError('LISTEN_FAILED', `demo: cannot start the ${backend.name} stand-in on 127.0.0.1:${port}: ${why}${code ? ` (${code})` : ''}; stop what uses it, or give the demo a routes file with other ports (--config)`, { cause: error });
      }
    }
  } catch (error) {
    await closeAll();
    temp.removeSync();
    throw error;
  }
  const first = looks.get(table.defaultBackend.name)?.nextIds();
  return {
    file,
    ownFile: false,
    dataDir: path.join(temp.dir, 'data'),
    standins,
    sides: (t) => sidesOf(t, first),
    close: closeAll,
    removeSync: temp.removeSync,
  };
}

function literalTaskQueues(table: RoutingTable, backend: Backend): string[] {
  const templates = [backend.queue?.task, ...table.routes.filter((r) => r.targets.some((t) => t.backend === backend.name) || r.fallback === backend.name).map((r) => r.task)];
  return [...new Set(templates.flatMap((t) => (typeof t?.taskQueueId === 'string' && /^[\w-]+\/[\w-]+$/.test(t.taskQueueId) ? [t.taskQueueId] : [])))];
}

/**
 * A builder that surely runs on a queue, and one that surely runs on the
 * default backend: the two sides whose builds a client can follow by id
 * (ids of queue work go to their owner, every other id to the default).
 * The queue's first ids are the store's first minted ones, since each demo
 * starts with an empty store.
 */
function sidesOf(table: RoutingTable, firstDefault: { brid: number; buildid: number } | undefined): DemoSide[] {
  const sides: DemoSide[] = [];
  const sure = (name: string) => {
    const d = decide(table, { jobTypes: [name] }, 0);
    return d.route?.isSplit ? undefined : d.backend;
  };
  const onQueue = DEMO_BUILDERS.find((b) => sure(b)?.kind === 'taskcluster');
  if (onQueue !== undefined) sides.push({ builder: onQueue, where: `on the Taskcluster queue (backend ${sure(onQueue)!.name})`, ids: { brid: MINTED_ID_BASE, buildid: MINTED_ID_BASE } });
  const onDefault = DEMO_BUILDERS.find((b) => sure(b) === table.defaultBackend);
  if (onDefault !== undefined && firstDefault !== undefined && table.defaultBackend.kind !== 'taskcluster') {
    sides.push({ builder: onDefault, where: table.defaultBackend.legacy ? `on the legacy master (${table.defaultBackend.name})` : `on ${table.defaultBackend.name}`, ids: firstDefault });
  }
  return sides;
}

/** A force of one builder as the web UI sends it. */
export function forceBody(builder: string): string {
  return JSON.stringify({ jsonrpc: '2.0', method: 'force', id: 1, params: { builderNames: [builder], reason: 'tried from the demo' } });
}

/** The walk-through for each side: force, poll the buildrequest, find its build, read its log. */
export function walkthroughLines(proxyUrl: string, sides: readonly DemoSide[]): string {
  if (sides.length === 0) return '';
  const blocks = sides.map(({ builder, where, ids }) => `  ${builder} runs ${where}:
    curl -s -H 'Content-Type: application/json' -d '${forceBody(builder)}' ${proxyUrl}/api/v2/forceschedulers/force
    curl -s ${proxyUrl}/api/v2/buildrequests/${ids.brid}
    curl -s ${proxyUrl}/api/v2/buildrequests/${ids.brid}/builds
    curl -s ${proxyUrl}/api/v2/builds/${ids.buildid}/steps/0/logs/stdio/raw`);
  return `
Force a build on each side, poll its buildrequest until "complete": true (a few seconds; "results":
0 is SUCCESS, 2 FAILURE), find its build, read its log: Buildbot's API, through the proxy alone.
The ids are those each side gives its first force; a later force answers with its own.
${blocks.join('\n')}
`;
}
