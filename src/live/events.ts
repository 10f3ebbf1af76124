/**
 * The events a Buildbot 3.7 master would put on its message queue for work
 * the proxy runs on a queue, with the keys and messages its data API
 * produces (`data/base.py` produceEvent: one key per `eventPathPatterns`
 * line, the event's name last; the message is the object as `GET` would
 * answer it without properties, which src/taskcluster/shapes.ts renders).
 *
 * - builds: `builders/<builderid>/builds/<number>/<event>` and
 *   `builds/<buildid>/<event>`, events `new` and `finished`. Buildbot's
 *   third key, `workers/<workerid>/builds/...`, is left out: queue builds
 *   have no Buildbot worker (workerid null).
 * - buildrequests: `buildsets/<bsid>/builders/<builderid>/buildrequests/<brid>/<event>`,
 *   `buildrequests/<brid>/<event>`, `builders/<builderid>/buildrequests/<brid>/<event>`;
 *   events `new`, `claimed`, `unclaimed` (a build that ended in RETRY) and `complete`.
 * - buildsets: `buildsets/<bsid>/<event>`, events `new` and `complete`.
 *
 * Pure functions: what changed is derived from the task's status before and
 * after one look at the queue. A look may cover several moments (a run that
 * started and finished between two polls): each is replayed in Buildbot's
 * order, and each message shows the object as it was at that moment.
 */
import type { BuildRecord, BuildsetRecord, TaskRecord } from '../store/store.js';
import type { QueueRun, QueueTaskStatus } from '../taskcluster/queue-types.js';
import { isAutomaticRetry, isRunFinished } from '../taskcluster/results.js';
import { buildOf, buildrequestOf, buildsetOf, type BuildbotBuild, type BuildbotBuildrequest, type BuildbotBuildset } from '../taskcluster/shapes.js';

export interface LiveEvent {
  /** Every key the master would produce the message under, in its order. */
  keys: string[][];
  message: object;
  /** Names this event once (kind, id, event, moment), so the same change seen twice is told once. */
  id: string;
}

export function buildEvent(build: BuildbotBuild, event: 'new' | 'finished'): LiveEvent {
  return {
    keys: [
      ['builders', String(build.builderid), 'builds', String(build.number), event],
      ['builds', String(build.buildid), event],
    ],
    message: build,
    id: `build/${build.buildid}/${event}`,
  };
}

/** `moment` tells apart the claims of successive runs of one request. */
export function buildrequestEvent(request: BuildbotBuildrequest, event: 'new' | 'claimed' | 'unclaimed' | 'complete', moment = 0): LiveEvent {
  const brid = String(request.buildrequestid);
  const builderid = String(request.builderid);
  return {
    keys: [
      ['buildsets', String(request.buildsetid), 'builders', builderid, 'buildrequests', brid, event],
      ['buildrequests', brid, event],
      ['builders', builderid, 'buildrequests', brid, event],
    ],
    message: request,
    id: `buildrequest/${brid}/${event}/${moment}`,
  };
}

/** The buildrequest a task is when the queue confirms it. */
export function newTaskEvent(task: TaskRecord): LiveEvent {
  return buildrequestEvent(buildrequestOf(task, undefined), 'new');
}

/**
 * A buildset's `new` event. Buildbot's message (`data/buildsets.py`
 * addBuildset) is not the REST object: it has the scheduler's name and no
 * parent fields. The scheduler that made queue work is not kept, so it is null.
 */
export function buildsetNewEvent(buildset: BuildsetRecord): LiveEvent {
  const shape = buildsetOf(buildset, []);
  const message = {
    bsid: shape.bsid,
    external_idstring: shape.external_idstring,
    reason: shape.reason,
    submitted_at: shape.submitted_at,
    complete: false,
    complete_at: null,
    results: null,
    scheduler: null,
    sourcestamps: shape.sourcestamps,
  };
  return { keys: [['buildsets', String(buildset.bsid), 'new']], message, id: `buildset/${buildset.bsid}/new` };
}

/**
 * A buildset's `complete` event once every one of its tasks is complete, else
 * undefined. The message is Buildbot's `maybeBuildsetComplete` one.
 */
export function buildsetCompleteEvent(buildset: BuildsetRecord, tasks: ReadonlyArray<{ task: TaskRecord; status?: QueueTaskStatus | undefined }>): LiveEvent | undefined {
  const shape: BuildbotBuildset = buildsetOf(buildset, tasks);
  if (!shape.complete) return undefined;
  const message = {
    bsid: shape.bsid,
    external_idstring: shape.external_idstring,
    reason: shape.reason,
    sourcestamps: shape.sourcestamps,
    submitted_at: shape.submitted_at,
    complete: true,
    complete_at: shape.complete_at,
    results: shape.results,
  };
  return { keys: [['buildsets', String(buildset.bsid), 'complete']], message, id: `buildset/${buildset.bsid}/complete` };
}

export interface StatusEvents {
  events: LiveEvent[];
  /** True when the task's buildrequest became complete: its buildset may be complete now. */
  requestCompleted: boolean;
}

/**
 * The events one fresh status of a task means, given the status known before
 * (undefined for the first) and the builds its started runs are.
 */
export function eventsOfStatus(task: TaskRecord, previous: QueueTaskStatus | undefined, status: QueueTaskStatus, builds: readonly BuildRecord[]): StatusEvents {
  const events: LiveEvent[] = [];
  let requestCompleted = false;
  let before = previous;
  for (const { at, moment } of moments(previous, status)) {
    const change = changesBetween(task, before, at, builds, moment);
    events.push(...change.events);
    requestCompleted ||= change.requestCompleted;
    before = at;
  }
  return { events, requestCompleted };
}

/**
 * The task's status at each moment between `previous` and `status`: a run
 * started, a run resolved (with the queue's automatic retry run, created at
 * the same instant), in run order, and `status` itself last.
 */
export function moments(previous: QueueTaskStatus | undefined, status: QueueTaskStatus): { at: QueueTaskStatus; moment: number }[] {
  const out: { at: QueueTaskStatus; moment: number }[] = [];
  status.runs.forEach((run, i) => {
    const known = previous?.runs[i];
    if (run.started !== undefined && known?.started === undefined) {
      out.push({ at: statusWith(status, [...status.runs.slice(0, i), asRunning(run)]), moment: i });
    }
    if (isRunFinished(run) && !(known !== undefined && isRunFinished(known))) {
      const next = status.runs[i + 1];
      const retry = next !== undefined && isAutomaticRetry(next) ? [asPending(next)] : [];
      out.push({ at: statusWith(status, [...status.runs.slice(0, i + 1), ...retry]), moment: i });
    }
  });
  out.push({ at: status, moment: Math.max(0, status.runs.length - 1) });
  return out;
}

/** What changed between two statuses of a task, in Buildbot's order: builds finished, the request's moves, builds new. */
function changesBetween(task: TaskRecord, before: QueueTaskStatus | undefined, after: QueueTaskStatus, builds: readonly BuildRecord[], moment: number): StatusEvents {
  const finished: LiveEvent[] = [];
  const started: LiveEvent[] = [];
  for (const build of builds) {
    const now = after.runs[build.runId];
    if (now?.started === undefined) continue;
    const then = before?.runs[build.runId];
    const shape = buildOf(build, task, after);
    if (then?.started === undefined) started.push(buildEvent(shape, 'new'));
    if (shape.complete && !(then !== undefined && isRunFinished(then))) finished.push(buildEvent(shape, 'finished'));
  }
  const requestBefore = buildrequestOf(task, before);
  const request = buildrequestOf(task, after);
  const moves: LiveEvent[] = [];
  if (!requestBefore.claimed && request.claimed) moves.push(buildrequestEvent(request, 'claimed', moment));
  if (requestBefore.claimed && !request.claimed && !request.complete) moves.push(buildrequestEvent(request, 'unclaimed', moment));
  const requestCompleted = !requestBefore.complete && request.complete;
  if (requestCompleted) moves.push(buildrequestEvent(request, 'complete', moment));
  // moments() puts a run's start and its end in moments of their own, so no build is both new and finished here.
  return { events: [...finished, ...moves, ...started], requestCompleted };
}

function statusWith(status: QueueTaskStatus, runs: QueueRun[]): QueueTaskStatus {
  return { ...status, state: runs.at(-1)?.state ?? 'unscheduled', runs };
}

/** A run as it was while it ran: started, not yet resolved. */
function asRunning(run: QueueRun): QueueRun {
  const { reasonResolved: _reason, resolved: _resolved, ...rest } = run;
  return { ...rest, state: 'running' };
}

/** A run as it was when the queue created it. */
function asPending(run: QueueRun): QueueRun {
  const { reasonResolved: _reason, resolved: _resolved, started: _started, workerGroup: _group, workerId: _worker, takenUntil: _taken, ...rest } = run;
  return { ...rest, state: 'pending' };
}
