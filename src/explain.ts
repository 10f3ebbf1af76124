/**
 * "Where would this request go, and why?" — the proxy's own decision path,
 * run on a request described by hand (the `explain` command). A path naming
 * a build, buildrequest or buildset by id also says which side owns that id
 * (the legacy master's below 10^15; the proxy's own minted ids belong to work
 * it sent to a queue, found in the store when one is given). For a job type
 * routed to a queue, it shows the task a force would create.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import { decide, type DecisionReason } from './routing/decide.js';
import { builderFromPath, isForceCall } from './routing/extract.js';
import type { Backend, Route, RoutingTable } from './routing/table.js';
import type { BuilderDirectory } from './ingress/builder-directory.js';
import { gatherFacts } from './ingress/facts.js';
import { isStranglerError } from './errors.js';
import type { OwnedKind } from './routing/owner.js';
import { isMintedId, MINTED_ID_BASE, type Store, type TaskRecord } from './store/store.js';
import type { QueueTaskDefinition } from './taskcluster/queue-types.js';
import { mergeTemplates, renderTask, sampleContext, TemplateError } from './taskcluster/template.js';

export interface ExplainInput {
  method: string;
  /** Path and optional query. */
  path: string;
  headers?: IncomingHttpHeaders;
  body?: Buffer;
}

export interface Explanation {
  method: string;
  path: string;
  backend: string;
  backendUrl: string;
  jobType: string | null;
  /** Where the job type came from. */
  source: 'header' | 'path' | 'path-builderid' | 'body' | 'none';
  reason: DecisionReason;
  rule: { index: number; jobType: string; kind: string; split: Record<string, number> | null } | null;
  /** For a sticky split: the source that gave the key, the key, and the side it hashes to. */
  sticky: { source: string; key: string; backend: string } | null;
  why: string;
  /** For a path naming a build, step, log, buildrequest or buildset by id: the side that owns it. */
  owner: OwnerView | null;
  /** For a job type routed to a queue: the task a force would create on each queue of its route (a sample force). */
  tasks: WouldCreate[];
}

/** Which side an id belongs to, and for a minted one, its work on the queue. */
export interface OwnerView {
  kind: OwnedKind;
  id: number;
  /** `legacy`: below 10^15, the legacy master's; `queue`: minted by the proxy for work on a queue. */
  side: 'legacy' | 'queue';
  /** The backend that owns it: the legacy one, or the queue the store names; null when no store was asked. */
  backend: string | null;
  /** Whether the store has it; null when there was no store to ask (or it failed). */
  found: boolean | null;
  /** For a build, step or log: the build's number and the task's run it is. */
  build: { number: number; runId: number; builderName: string } | null;
  tasks: OwnedTask[];
  why: string;
}

export interface OwnedTask {
  taskId: string;
  backend: string;
  buildsetId: number;
  buildrequestId: number;
  builderName: string;
  /** The proxy's record of the creation: pending, created, rejected, abandoned. */
  state: string;
  /** The queue's state at the proxy's last look, or null before the first. */
  queueState: string | null;
}

export interface WouldCreate {
  builder: string;
  backend: string;
  /** The createTask body, rendered with a sample force (placeholder revision, ids and times). */
  task: QueueTaskDefinition | null;
  /** Why there is none (no template, or it does not render). */
  error: string | null;
}

/** What explain reads from the store to find the owner of a minted id. */
export type OwnerStore = Pick<Store, 'build' | 'task' | 'buildset' | 'tasksOfBuildset'>;

export interface ExplainOptions {
  /** The draw for a split without a sticky key (default: random). */
  draw?: number;
  /** The store of a running proxy; without it a minted id is known to be the proxy's, not which queue's. */
  store?: OwnerStore | undefined;
}

const ID_PATH = /^\/api\/v2\/(builds|buildrequests|buildsets|steps|logs)\/([0-9]{1,16})(?:\/|$)/;
const ID_KINDS: Record<string, OwnedKind> = { builds: 'build', buildrequests: 'buildrequest', buildsets: 'buildset', steps: 'step', logs: 'log' };
const LEGACY_RANGE = 'ids below 10^15';

/** The object a path names by its own id, if any, whichever side's. */
export function idInPath(pathname: string): { kind: OwnedKind; id: number } | undefined {
  const match = ID_PATH.exec(pathname);
  if (match === null) return undefined;
  const id = Number(match[2]);
  return Number.isSafeInteger(id) ? { kind: ID_KINDS[match[1]!]!, id } : undefined;
}

/**
 * The tasks a force of these builders would create on each queue the route
 * sends to (the decided backend, without a route), rendered from the route's
 * template over the backend's with a sample force.
 *
 * @example tasksForceWouldCreate(route, [queue], ['linux64-opt'])[0].task.taskQueueId // 'proj-ci/linux'
 */
export function tasksForceWouldCreate(route: Route | undefined, queues: readonly Backend[], builders: readonly string[], now = new Date()): WouldCreate[] {
  const out: WouldCreate[] = [];
  for (const backend of queues) {
    if (backend.kind !== 'taskcluster') continue;
    const template = mergeTemplates(backend.queue?.task, route?.task);
    for (const builder of builders) {
      if (template === undefined) {
        out.push({ builder, backend: backend.name, task: null, error: `no task template for backend ${backend.name}: a force would be refused` });
        continue;
      }
      try {
        out.push({ builder, backend: backend.name, task: renderTask(template, sampleContext(builder, now)), error: null });
      } catch (error) {
        if (!(error instanceof TemplateError)) throw error;
        out.push({ builder, backend: backend.name, task: null, error: `task template: ${error.message}${error.path.length ? ` (at ${error.path.join('.')})` : ''}` });
      }
    }
  }
  return out;
}

/** The queues a job type's route sends to (or the backend decided, without a route). */
function queuesOf(table: RoutingTable, route: Route | undefined, decided: Backend): Backend[] {
  const names = route ? route.targets.map((t) => t.backend) : [decided.name];
  return names.map((n) => table.backends.get(n)).filter((b): b is Backend => b?.kind === 'taskcluster');
}

async function ownerOf(table: RoutingTable, ref: { kind: OwnedKind; id: number }, store: OwnerStore | undefined): Promise<OwnerView> {
  const base = { kind: ref.kind, id: ref.id, build: null, tasks: [] as OwnedTask[] };
  if (!isMintedId(ref.id)) {
    return { ...base, side: 'legacy', backend: table.legacy.name, found: null, why: `${ref.kind} ${ref.id} is the legacy master's (${LEGACY_RANGE}): ${table.legacy.name}` };
  }
  const minted = `${ref.kind} ${ref.id} is in the proxy's minted range (ids from ${MINTED_ID_BASE}): work the proxy sent to a Taskcluster queue`;
  if (store === undefined) return { ...base, side: 'queue', backend: null, found: null, why: `${minted}; no store to ask which queue and task` };
  try {
    let build: OwnerView['build'] = null;
    let tasks: TaskRecord[];
    if (ref.kind === 'buildrequest') {
      const task = await store.task(ref.id);
      tasks = task ? [task] : [];
    } else if (ref.kind === 'buildset') {
      tasks = (await store.buildset(ref.id)) ? await store.tasksOfBuildset(ref.id) : [];
    } else {
      // Step and log ids are the build's own id (docs/taskcluster.md, Ids).
      const record = await store.build(ref.id);
      const task = record ? await store.task(record.buildrequestId) : undefined;
      if (record) build = { number: record.number, runId: record.runId, builderName: record.builderName };
      tasks = task ? [task] : [];
    }
    if (tasks.length === 0) return { ...base, side: 'queue', backend: null, found: false, why: `${minted}, but the store has no such ${ref.kind}: the proxy answers 404 itself` };
    const owned = tasks.map(ownedTask);
    const backends = [...new Set(owned.map((t) => t.backend))];
    const what = owned.map((t) => `task ${t.taskId} (${t.builderName}, ${t.state}${t.queueState ? `, queue state ${t.queueState}` : ''})`).join(', ');
    const run = build ? `run ${build.runId} (build #${build.number} of ${build.builderName}) of ` : '';
    return { ...base, build, tasks: owned, side: 'queue', backend: backends.join(','), found: true, why: `${minted}: ${run}${what} on queue ${backends.join(', ')}; the proxy answers it from the store and the queue, whatever the routes say` };
  } catch (error) {
    if (!isStranglerError(error)) throw error;
    return { ...base, side: 'queue', backend: null, found: null, why: `${minted}; the store could not be read: ${error.message}` };
  }
}

function ownedTask(task: TaskRecord): OwnedTask {
  let queueState: string | null = null;
  try {
    const status = task.status === null ? null : (JSON.parse(task.status) as { state?: unknown });
    if (typeof status?.state === 'string') queueState = status.state;
  } catch {
    queueState = null;
  }
  return { taskId: task.taskId, backend: task.backend, buildsetId: task.buildsetId, buildrequestId: task.buildrequestId, builderName: task.builderName, state: task.state, queueState };
}

export async function explainRequest(table: RoutingTable, input: ExplainInput, builders: Pick<BuilderDirectory, 'nameFor'>, options: ExplainOptions = {}): Promise<Explanation> {
  const draw = options.draw ?? Math.random();
  const method = input.method.toUpperCase();
  const headers: IncomingHttpHeaders = {};
  for (const [k, v] of Object.entries(input.headers ?? {})) headers[k.toLowerCase()] = v;
  const pathname = input.path.split('?', 1)[0]!;
  const search = input.path.slice(pathname.length + 1);
  const body = input.body ?? Buffer.alloc(0);
  const gathered = await gatherFacts(
    {
      method,
      pathname,
      search,
      headers,
      peekBody: async (limit) => (body.length <= limit ? { complete: true, body } : { complete: false, body: Readable.from([body]) }),
    },
    table,
    builders,
  );
  const decision = decide(table, gathered.facts, draw);
  const inPath = builderFromPath(pathname);
  const source: Explanation['source'] =
    decision.reason === 'header' ? 'header' : inPath?.kind === 'name' ? 'path' : inPath?.kind === 'id' ? 'path-builderid' : isForceCall(method, pathname) && gathered.facts.jobTypes?.length ? 'body' : 'none';

  const route = decision.route;
  const rule = route
    ? { index: route.index, jobType: route.pattern, kind: route.kind, split: route.isSplit ? Object.fromEntries(route.targets.map((t) => [t.backend, t.weight])) : null }
    : null;

  let why: string;
  switch (decision.reason) {
    case 'mixed-builders':
      why = `the force names builders on different backends (${decision.jobType}); the whole request goes to the legacy backend, which runs them all`;
      break;
    case 'owner':
      why = `the path names a Buildbot object by an id below 10^15, the legacy master's; it goes to the legacy backend whatever the default is`;
      break;
    case 'unparsed-body':
      why = 'the force body could not be read (larger than the peek limit, or not JSON-RPC); it goes to the default backend unparsed';
      break;
    default:
      if (route) {
        const weights = route.targets.map((t) => `${t.backend} ${Math.round((100 * t.weight) / route.totalWeight)}%`).join(', ');
        const share = !route.isSplit
          ? ''
          : decision.sticky
            ? `; split ${weights}, sticky key ${decision.sticky.source}=${JSON.stringify(decision.sticky.key)} hashes to ${decision.backend.name} (always, for these weights)`
            : `; split ${weights}, this request drew ${decision.backend.name}${route.stickyBy.length ? ` at random: it carries none of the sticky sources (${route.stickyBy.map((s) => `${s.from}:${s.name}`).join(', ')})` : ''}`;
        why = `routes[${route.index}] (${route.kind} "${route.pattern}") matches job type "${decision.jobType}"${share}`;
      } else if (decision.jobType !== undefined) {
        why = `no route matches job type "${decision.jobType}"; the default backend serves it`;
      } else if (inPath?.kind === 'id') {
        why = `builder id ${inPath.id} is unknown to the legacy master (or it could not be asked); the default backend serves it`;
      } else {
        why = 'the request names no job type; the default backend serves it';
      }
      if (decision.reason === 'header') why += ' (job type from the X-Job-Type header)';
  }

  const explanation: Explanation = {
    method,
    path: input.path,
    backend: decision.backend.name,
    backendUrl: decision.backend.url,
    jobType: decision.jobType ?? null,
    source,
    reason: decision.reason,
    rule,
    sticky: decision.sticky ? { ...decision.sticky, backend: decision.backend.name } : null,
    why,
    owner: null,
    tasks: [],
  };

  const ref = idInPath(pathname);
  if (ref !== undefined) {
    const owner = await ownerOf(table, ref, options.store);
    explanation.owner = owner;
    // With a store, the proxy answers a minted id itself (src/ingress/handler.ts); without one it is routed like any path.
    if (owner.side === 'queue' && options.store !== undefined) {
      const queue = owner.found ? table.backends.get(owner.tasks[0]!.backend) : undefined;
      explanation.backend = owner.found ? owner.backend! : '(the proxy itself)';
      explanation.backendUrl = queue?.url ?? '';
      explanation.reason = 'owner';
      explanation.jobType = owner.tasks[0]?.builderName ?? null;
      explanation.rule = null;
      explanation.sticky = null;
      explanation.why = owner.why;
    }
    return explanation;
  }

  const names = isForceCall(method, pathname) ? (gathered.facts.jobTypes ?? []) : decision.jobType !== undefined ? [decision.jobType] : [];
  if (decision.reason !== 'mixed-builders' && decision.reason !== 'unparsed-body') explanation.tasks = tasksForceWouldCreate(route, queuesOf(table, route, decision.backend), names);
  return explanation;
}

export function formatExplanation(e: Explanation): string {
  const lines = [
    `${e.method} ${e.path}`,
    `  backend:  ${e.backend}${e.backendUrl ? ` (${e.backendUrl})` : ''}`,
    `  job type: ${e.jobType ?? '(none)'}${e.source !== 'none' && e.reason !== 'owner' ? ` (from the ${e.source === 'path-builderid' ? 'builder id in the path' : e.source})` : ''}`,
    `  reason:   ${e.reason}`,
    ...(e.sticky ? [`  sticky:   ${e.sticky.source}=${JSON.stringify(e.sticky.key)} -> ${e.sticky.backend}`] : []),
    `  why:      ${e.why}`,
  ];
  // Older proxies answer without these fields.
  const owner = e.owner ?? null;
  if (owner !== null) {
    lines.push(`  owner:    ${owner.side === 'legacy' ? `the legacy master's (${LEGACY_RANGE})` : `a queue's${owner.backend ? `: ${owner.backend}` : ''} (minted by the proxy)`}`);
    if (owner.side === 'legacy' && e.reason !== 'owner' && e.backend !== owner.backend) lines.push(`  note:     the id is ${owner.backend}'s, but no job type in the path, so routing sends it to ${e.backend}`);
    if (owner.build) lines.push(`  build:    #${owner.build.number} of ${owner.build.builderName}, run ${owner.build.runId}`);
    for (const t of owner.tasks) {
      lines.push(`  task:     ${t.taskId} on ${t.backend}: ${t.builderName}, buildset ${t.buildsetId}, buildrequest ${t.buildrequestId}, ${t.state}, queue state ${t.queueState ?? 'not seen yet'}`);
    }
  }
  for (const w of e.tasks ?? []) {
    lines.push('', `a force of ${w.builder} would create this task on ${w.backend} (a sample force: revision, ids and times are placeholders):`);
    lines.push(w.task ? JSON.stringify(w.task, null, 2).replace(/^/gm, '    ') : `    none: ${w.error}`);
  }
  return lines.join('\n');
}
