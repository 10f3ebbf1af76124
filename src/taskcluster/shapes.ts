/**
 * Queue work in Buildbot's shapes: the buildrequest, buildset, builds, steps
 * and logs a Buildbot 3.7 master would serve for the same work, field for
 * field as its data API serializes them (`data/buildrequests.py`,
 * `builds.py`, `buildsets.py`, `sourcestamps.py`, `steps.py`, `logs.py`).
 * Pure functions of what the store holds; nothing here reads the queue.
 *
 * Times are whole epoch seconds, as Buildbot's `datetime2epoch` gives them
 * (it drops the sub-second part, so we floor).
 *
 * Ids (docs/taskcluster.md, "Ids"): buildset, buildrequest and build ids are
 * minted in the store. A build has exactly one step and the step exactly one
 * log, so stepid and logid are the buildid: Buildbot keeps a separate id
 * sequence per kind (its `steps.id` and `logs.id` are autoincrement columns of
 * their own tables, and every URL names the kind), so a step and a build with
 * the same number never meet, and minted build ids sit above everything the
 * legacy master's own step and log sequences reach. Sourcestamp ids are
 * derived from the bsid ({@link ssidOf}) so they need no storage either.
 */
import { MINTED_ID_BASE, MINTED_ID_LIMIT, type BuildRecord, type BuildsetRecord, type TaskRecord } from '../store/store.js';
import type { QueueRun, QueueTaskStatus } from './queue-types.js';
import {
  EXCEPTION,
  FAILURE,
  RESULT_NAMES,
  SUCCESS,
  UNFINISHED_BUILDREQUEST,
  buildrequestResult,
  isRunFinished,
  resultOfRun,
  worstStatus,
  type ResultCode,
} from './results.js';

/** Buildbot's sourced properties: `{name: [value, source]}`. */
export type SourcedProperties = Record<string, [unknown, string]>;

export interface BuildbotBuildrequest {
  buildrequestid: number;
  buildsetid: number;
  builderid: number;
  priority: number;
  claimed: boolean;
  claimed_at: number | null;
  claimed_by_masterid: number | null;
  complete: boolean;
  complete_at: number | null;
  results: number;
  submitted_at: number;
  waited_for: boolean;
  properties: SourcedProperties | null;
}

export interface BuildbotSourcestamp {
  ssid: number;
  branch: string | null;
  revision: string | null;
  project: string;
  repository: string;
  codebase: string;
  created_at: number;
  patch: null;
}

export interface BuildbotBuildset {
  bsid: number;
  external_idstring: string | null;
  reason: string;
  submitted_at: number;
  complete: boolean;
  complete_at: number | null;
  results: number | null;
  sourcestamps: BuildbotSourcestamp[];
  parent_buildid: number | null;
  parent_relationship: string | null;
}

export interface BuildbotBuild {
  buildid: number;
  number: number;
  builderid: number;
  buildrequestid: number;
  workerid: number | null;
  masterid: number | null;
  started_at: number;
  complete: boolean;
  complete_at: number | null;
  results: number | null;
  state_string: string;
  properties: SourcedProperties;
}

export interface BuildbotStep {
  stepid: number;
  number: number;
  name: string;
  buildid: number;
  started_at: number | null;
  complete: boolean;
  complete_at: number | null;
  results: number | null;
  state_string: string;
  urls: Array<{ name: string; url: string }>;
  hidden: boolean;
}

export interface BuildbotLog {
  logid: number;
  name: string;
  slug: string;
  stepid: number;
  complete: boolean;
  num_lines: number;
  type: string;
}

export interface ShapeOptions {
  /**
   * The masterid shown as claiming and running queue work (`claimed_by_masterid`,
   * a build's `masterid`). No Buildbot master runs it, so the default is null;
   * a deployment may show the legacy master's id to clients that insist on a number.
   */
  masterid?: number | null;
  /** The queue's root URL, for the step's link to the task run in the queue's UI. */
  rootUrl?: string;
  /**
   * The request's `property` query values (`*` for all). Buildbot sends
   * properties only when asked: a build's stay `{}`, a buildrequest's `null`.
   */
  properties?: readonly string[];
  /** The task's buildset: its properties (and sourcestamps, for a build's) when properties are asked. */
  buildset?: BuildsetRecord;
}

/** How many sourcestamps a buildset may have: the ssid scheme keeps this many per bsid. */
export const SOURCESTAMPS_PER_BUILDSET = 16;

/**
 * The ssid of the `index`-th sourcestamp of minted buildset `bsid`:
 * `MINTED_ID_BASE + (bsid − MINTED_ID_BASE) × 16 + index`. Injective, above
 * every legacy ssid, and below 2^53 for the first 5×10^14 minted buildsets.
 * Throws a RangeError outside that (a force must refuse more than 16 codebases).
 *
 * @example ssidOf(1_000_000_000_000_002, 1) // 1_000_000_000_000_033
 */
export function ssidOf(bsid: number, index: number): number {
  if (!Number.isSafeInteger(bsid) || bsid < MINTED_ID_BASE) throw new RangeError(`bsid ${bsid} is not a minted id`);
  if (!Number.isInteger(index) || index < 0 || index >= SOURCESTAMPS_PER_BUILDSET) {
    throw new RangeError(`sourcestamp index ${index} is outside 0..${SOURCESTAMPS_PER_BUILDSET - 1}`);
  }
  const ssid = MINTED_ID_BASE + (bsid - MINTED_ID_BASE) * SOURCESTAMPS_PER_BUILDSET + index;
  if (ssid > MINTED_ID_LIMIT) throw new RangeError(`bsid ${bsid} is past the range of minted ssids`);
  return ssid;
}

/** The buildset and position an ssid from {@link ssidOf} stands for, or undefined for any other id (a legacy ssid). */
export function sourcestampOfSsid(ssid: number): { bsid: number; index: number } | undefined {
  if (!Number.isSafeInteger(ssid) || ssid < MINTED_ID_BASE) return undefined;
  const offset = ssid - MINTED_ID_BASE;
  return { bsid: MINTED_ID_BASE + Math.floor(offset / SOURCESTAMPS_PER_BUILDSET), index: offset % SOURCESTAMPS_PER_BUILDSET };
}

/** The queue status a task record keeps, parsed; undefined before the first poll or if the stored text is not a status. */
export function parseStoredStatus(task: TaskRecord): QueueTaskStatus | undefined {
  if (task.status === null) return undefined;
  try {
    const parsed: unknown = JSON.parse(task.status);
    return typeof parsed === 'object' && parsed !== null && Array.isArray((parsed as { runs?: unknown }).runs) ? (parsed as QueueTaskStatus) : undefined;
  } catch {
    return undefined;
  }
}

/** Whole epoch seconds of an ISO date, or null when absent or unreadable. */
function seconds(iso: string | undefined): number | null {
  if (iso === undefined) return null;
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? null : Math.floor(ms / 1000);
}

function secondsOfMs(ms: number): number {
  return Math.floor(ms / 1000);
}

/**
 * Buildbot's `_generate_filtered_properties`: nothing unless asked, all for
 * `*`, else the named ones; an empty selection is the same as none.
 */
function filterProperties(props: SourcedProperties, wanted: readonly string[] | undefined): SourcedProperties | null {
  if (wanted === undefined || wanted.length === 0 || Object.keys(props).length === 0) return null;
  if (wanted.includes('*')) return props;
  const picked: SourcedProperties = {};
  for (const name of wanted) if (Object.hasOwn(props, name)) picked[name] = props[name]!;
  return Object.keys(picked).length > 0 ? picked : null;
}

/** A buildset's stored properties; anything that is not `{name: [value, source]}` is left out rather than sent malformed. */
function buildsetProperties(buildset: BuildsetRecord | undefined): SourcedProperties {
  if (buildset === undefined) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(buildset.properties);
  } catch {
    return {};
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return {};
  const props: SourcedProperties = {};
  for (const [name, entry] of Object.entries(parsed)) {
    if (Array.isArray(entry) && entry.length === 2 && typeof entry[1] === 'string') props[name] = [entry[0], entry[1]];
  }
  return props;
}

/** True when the task will never get a run: the queue refused it or the proxy gave it up. */
function neverCreated(task: TaskRecord): boolean {
  return task.state === 'rejected' || task.state === 'abandoned';
}

/**
 * A buildrequest for a task, as `GET /buildrequests/<id>` answers it.
 *
 * - complete: the last run is resolved. A `rerun` of a resolved task makes it
 *   incomplete again, as the queue reopens the task.
 * - claimed: the last run started, or the request is complete. Buildbot
 *   unclaims a request whose build ended in RETRY until a worker takes it
 *   again (so a pending retry run is unclaimed), and its cancel claims a request
 *   before completing it (so a request canceled before any start reads
 *   claimed, at its completion time).
 * - results: the last run's result, -1 until complete ({@link buildrequestResult}).
 * - A task the queue refused (or the proxy abandoned) reads complete with
 *   EXCEPTION and unclaimed: it will never run.
 */
export function buildrequestOf(task: TaskRecord, status: QueueTaskStatus | undefined, options: ShapeOptions = {}): BuildbotBuildrequest {
  const masterid = options.masterid ?? null;
  let claimedAt: number | null = null;
  let complete = false;
  let completeAt: number | null = null;
  let results: number = UNFINISHED_BUILDREQUEST;
  if (neverCreated(task)) {
    complete = true;
    completeAt = secondsOfMs(task.statusAt ?? task.submittedAt);
    results = EXCEPTION;
  } else {
    const last = status?.runs.at(-1);
    if (last !== undefined && isRunFinished(last)) {
      complete = true;
      completeAt = seconds(last.resolved) ?? seconds(last.started) ?? seconds(last.scheduled);
      results = buildrequestResult(status);
    }
    if (last?.started !== undefined) claimedAt = seconds(last.started);
    else if (complete) claimedAt = completeAt;
  }
  const claimed = claimedAt !== null;
  return {
    buildrequestid: task.buildrequestId,
    buildsetid: task.buildsetId,
    builderid: task.builderid,
    priority: 0,
    claimed,
    claimed_at: claimedAt,
    claimed_by_masterid: claimed ? masterid : null,
    complete,
    complete_at: completeAt,
    results,
    submitted_at: secondsOfMs(task.submittedAt),
    waited_for: false,
    properties: filterProperties(buildsetProperties(options.buildset), options.properties),
  };
}

/**
 * A buildset, as `GET /buildsets/<bsid>` answers it: complete once every
 * buildrequest is (a buildset without any is complete at once, as Buildbot's
 * `maybeBuildsetComplete` does), then `results` is the worst of theirs starting
 * from SUCCESS (Buildbot's `worst_status`) and `complete_at` the last of
 * theirs; -1 and null before (Buildbot's database default).
 */
export function buildsetOf(
  buildset: BuildsetRecord,
  tasks: ReadonlyArray<{ task: TaskRecord; status?: QueueTaskStatus | undefined }>,
  options: ShapeOptions = {},
): BuildbotBuildset {
  const submittedAt = secondsOfMs(buildset.submittedAt);
  const requests = tasks.map(({ task, status }) => buildrequestOf(task, status, { masterid: options.masterid ?? null }));
  const complete = requests.every((r) => r.complete);
  let results: number | null = UNFINISHED_BUILDREQUEST;
  let completeAt: number | null = null;
  if (complete) {
    results = requests.reduce<number | null>((worst, r) => worstStatus(worst, r.results), SUCCESS);
    completeAt = requests.reduce((latest, r) => Math.max(latest, r.complete_at ?? submittedAt), submittedAt);
  }
  return {
    bsid: buildset.bsid,
    external_idstring: buildset.externalIdstring,
    reason: buildset.reason,
    submitted_at: submittedAt,
    complete,
    complete_at: completeAt,
    results,
    sourcestamps: buildset.sourcestamps.map((ss, index) => ({
      ssid: ssidOf(buildset.bsid, index),
      branch: ss.branch,
      revision: ss.revision,
      project: ss.project,
      repository: ss.repository,
      codebase: ss.codebase,
      created_at: submittedAt,
      patch: null,
    })),
    // A rebuild in Buildbot copies these from the buildset it rebuilds, and a forced buildset has none.
    parent_buildid: null,
    parent_relationship: null,
  };
}

/**
 * The runs of a task that are builds: those a worker started. A run canceled,
 * expired or past its deadline while still pending never ran anything, as a
 * Buildbot request canceled before a worker took it has no build.
 */
export function runsThatAreBuilds(status: QueueTaskStatus | undefined): number[] {
  return (status?.runs ?? []).filter((run) => run.started !== undefined).map((run) => run.runId);
}

/** What one run says about its build, shared by build, step and log. */
interface RunView {
  run: QueueRun | undefined;
  startedAt: number;
  complete: boolean;
  completeAt: number | null;
  results: ResultCode | null;
}

function viewOfRun(build: BuildRecord, status: QueueTaskStatus | undefined): RunView {
  const run = status?.runs[build.runId];
  // A build is minted only for a run seen started; a status older than the build still shows it started.
  const startedAt = seconds(run?.started) ?? secondsOfMs(build.mintedAt);
  if (run === undefined || !isRunFinished(run)) return { run, startedAt, complete: false, completeAt: null, results: null };
  return {
    run,
    startedAt,
    complete: true,
    completeAt: seconds(run.resolved) ?? startedAt,
    results: resultOfRun(run, status?.runs[build.runId + 1]),
  };
}

/**
 * A finished build's `state_string` in Buildbot's own words (`process/build.py`
 * allStepsDone), with the queue's reason in parentheses as Buildbot adds a stop
 * reason: "build successful", "failed", "exception (malformed-payload)",
 * "retry (claim-expired)", "cancelled (canceled)". "building" while it runs.
 */
export function buildStateString(results: ResultCode | null, run: QueueRun | undefined): string {
  if (results === null) return 'building';
  if (results === SUCCESS) return 'build successful';
  if (results === FAILURE) return 'failed';
  const reason = run?.reasonResolved;
  return reason === undefined ? RESULT_NAMES[results] : `${RESULT_NAMES[results]} (${reason})`;
}

/**
 * The properties of a build: the buildset's (as Buildbot copies the
 * scheduler's into each build), the sourcestamp's when there is exactly one
 * (Buildbot sets branch, revision... from a single-codebase sourcestamp),
 * and what identifies the run, which win over the others.
 */
function buildProperties(build: BuildRecord, task: TaskRecord, run: QueueRun | undefined, buildset: BuildsetRecord | undefined): SourcedProperties {
  const props: SourcedProperties = { ...buildsetProperties(buildset) };
  const only = buildset?.sourcestamps.length === 1 ? buildset.sourcestamps[0] : undefined;
  if (only !== undefined) {
    props['branch'] = [only.branch, 'Build'];
    props['revision'] = [only.revision, 'Build'];
    props['repository'] = [only.repository, 'Build'];
    props['project'] = [only.project, 'Build'];
    props['codebase'] = [only.codebase, 'Build'];
  }
  props['buildername'] = [task.builderName, 'Builder'];
  props['buildnumber'] = [build.number, 'Build'];
  props['taskId'] = [task.taskId, 'Taskcluster'];
  props['runId'] = [build.runId, 'Taskcluster'];
  if (run?.workerGroup !== undefined) props['workerGroup'] = [run.workerGroup, 'Taskcluster'];
  if (run?.workerId !== undefined) {
    props['workerId'] = [run.workerId, 'Taskcluster'];
    // Buildbot clients show `workername`; the queue's worker id is the closest thing.
    props['workername'] = [run.workerId, 'Worker'];
  }
  return props;
}

/**
 * A build for one run of a task, as `GET /builds/<id>` answers it. `workerid`
 * is null: no Buildbot worker ran it, and a made-up id would send clients to a
 * `/workers/<id>` that does not exist. Buildbot 3.7 has no `locks_duration_s`
 * (it came in 4.x), so neither does this.
 */
export function buildOf(build: BuildRecord, task: TaskRecord, status: QueueTaskStatus | undefined, options: ShapeOptions = {}): BuildbotBuild {
  const view = viewOfRun(build, status);
  return {
    buildid: build.buildid,
    number: build.number,
    builderid: task.builderid,
    buildrequestid: build.buildrequestId,
    workerid: null,
    masterid: options.masterid ?? null,
    started_at: view.startedAt,
    complete: view.complete,
    complete_at: view.completeAt,
    results: view.results,
    state_string: buildStateString(view.results, view.run),
    properties: filterProperties(buildProperties(build, task, view.run, options.buildset), options.properties) ?? {},
  };
}

/** The builds of a task: one per stored BuildRecord whose run started ({@link runsThatAreBuilds}), by run. */
export function buildsOf(task: TaskRecord, status: QueueTaskStatus | undefined, builds: readonly BuildRecord[], options: ShapeOptions = {}): BuildbotBuild[] {
  const started = new Set(runsThatAreBuilds(status));
  return builds
    .filter((b) => b.buildrequestId === task.buildrequestId && started.has(b.runId))
    .sort((a, b) => a.runId - b.runId)
    .map((b) => buildOf(b, task, status, options));
}

/** The link to a task run in the queue's UI, or undefined without a root URL. */
export function taskRunUrl(rootUrl: string | undefined, taskId: string, runId: number): string | undefined {
  if (rootUrl === undefined || rootUrl === '') return undefined;
  return `${rootUrl.replace(/\/+$/, '')}/tasks/${encodeURIComponent(taskId)}/runs/${runId}`;
}

/**
 * The one step of a build (stepid = buildid, number 0, name "task"), worded
 * as Buildbot's default step summary: "running", then "finished" or
 * "finished (failure)"...
 */
export function stepOf(build: BuildRecord, task: TaskRecord, status: QueueTaskStatus | undefined, options: ShapeOptions = {}): BuildbotStep {
  const view = viewOfRun(build, status);
  const url = taskRunUrl(options.rootUrl, task.taskId, build.runId);
  return {
    stepid: build.buildid,
    number: 0,
    name: 'task',
    buildid: build.buildid,
    started_at: view.startedAt,
    complete: view.complete,
    complete_at: view.completeAt,
    results: view.results,
    state_string: view.results === null ? 'running' : view.results === SUCCESS ? 'finished' : `finished (${RESULT_NAMES[view.results]})`,
    urls: url === undefined ? [] : [{ name: 'task', url }],
    hidden: false,
  };
}

/**
 * The one log of a build's step (logid = stepid = buildid): the task's log
 * artifact. Type `t` (plain text), not Buildbot's `s` (stream, each line
 * prefixed by its channel), because the artifact is served as it is.
 * `numLines` when known (the caller counted it), else 0.
 */
export function logOf(build: BuildRecord, status: QueueTaskStatus | undefined, numLines = 0): BuildbotLog {
  const view = viewOfRun(build, status);
  return {
    logid: build.buildid,
    name: 'stdio',
    slug: 'stdio',
    stepid: build.buildid,
    complete: view.complete,
    num_lines: numLines,
    type: 't',
  };
}
