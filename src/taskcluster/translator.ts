/**
 * A Taskcluster queue behind Buildbot's API: the proxy answers, on the
 * queue's behalf, every Buildbot call about work it sent there. A force
 * becomes tasks (forces.ts); reads of that work come from the store and the
 * queue's task status in Buildbot's shapes (shapes.ts); a log is the task's
 * log artifact (logs.ts); stop and cancel cancel the task; rebuild makes a new
 * task from the stored definition. Calls it does not translate (builder
 * metadata, changes, workers...) are the legacy master's: `not-mine`.
 */
import type { BuilderDirectory } from '../ingress/builder-directory.js';
import type { Logger } from '../logging/logger.js';
import { builderFromPath, isForceCall } from '../routing/extract.js';
import type { OwnedRef } from '../routing/owner.js';
import type { Backend, Route, RoutingTable } from '../routing/table.js';
import type { BuildRecord, BuildsetRecord, Store, TaskRecord } from '../store/store.js';
import type { UpstreamFailure } from '../upstream/failure.js';
import type { CapturedResponse } from '../shadow/compare.js';
import { asClientResponse, RecordingResponse } from '../shadow/recording.js';
import type { RawHeaders } from '../upstream/headers.js';
import type { Upstream } from '../upstream/upstream.js';
import { JSONRPC_CODES, parseJsonRpc, sendAnswer, sendData, sendJsonRpcError, sendJsonRpcResult, sendRestError, type AnswerContext, type ClientResponse } from './answers.js';
import { applyQuery, ENTITIES, legacyQueryOf, mergeCollections, parseCollectionQuery, type EntitySpec } from '../buildbot-api/collection.js';
import type { QueueObserver } from './observer.js';
import { ForceTranslator, queueErrorMessage } from './forces.js';
import { ArtifactStores, LogStream } from './logs.js';
import type { QueueClient } from './queue-client.js';
import type { QueueTaskDefinition } from './queue-types.js';
import { TaskStatuses, type TaskView } from './reads.js';
import { buildOf, buildrequestOf, buildsetOf, logOf, stepOf, type ShapeOptions } from './shapes.js';

export interface TranslateRequest {
  method: string;
  pathname: string;
  /** The query string without "?". */
  search: string;
  accept: string | undefined;
  /** The request body, held whole (a force's JSON-RPC call), or null. */
  body: Buffer | null;
  /** The proxy's own response headers. */
  tags: RawHeaders;
  route: Route | undefined;
  table: RoutingTable;
  /** The builder a listing path names, by name or resolved from its id. */
  builderName?: string;
  /** Whether a fallback would take the request if the queue cannot be reached; without one, the client is answered here. */
  canFallBack: boolean;
  /** Told of the whole answer when it is written at once (not a streamed log), for shadow comparison. */
  onAnswer?: (status: number, contentType: string, body: Buffer) => void;
}

export type TranslateResult =
  | { kind: 'answered'; status: number; owner?: string }
  /** Not a call the translation answers: the legacy master's. */
  | { kind: 'not-mine' }
  /** The queue could not be reached and nothing reached it: the request may go to a fallback. */
  | { kind: 'unreachable'; failure: UpstreamFailure };

/** The stored records a minted id names (undefined: not in the store). */
type OwnedRecords =
  | { kind: 'buildrequest'; task: TaskRecord | undefined }
  | { kind: 'buildset'; buildset: BuildsetRecord | undefined }
  | { kind: 'build'; build: BuildRecord | undefined; task: TaskRecord | undefined };

/** The most builds of one builder merged into a listing from the store when the query needs them all (filters, other orders). */
const MERGE_CAP = 5_000;

export class TaskclusterTranslator {
  readonly forces: ForceTranslator;
  readonly statuses: TaskStatuses;
  private readonly artifacts = new ArtifactStores();
  /** Builders with work on a queue, so that their listings merge both sides even when routed to legacy. */
  private readonly buildersWithQueueWork = new Set<string>();

  constructor(
    private readonly store: Store,
    private readonly client: QueueClient,
    private readonly upstream: Upstream,
    private readonly builderIds: Pick<BuilderDirectory, 'idFor' | 'nameFor'>,
    logger: Logger,
    observer: QueueObserver = {},
  ) {
    this.forces = new ForceTranslator(store, client, logger, (task) => observer.taskCreated?.(task));
    this.statuses = new TaskStatuses(store, client, upstream, logger, observer);
  }

  /** Learns which builders have queue work, from the store (at startup). */
  rememberBuilders(names: Iterable<string>): void {
    for (const name of names) this.buildersWithQueueWork.add(name);
  }

  hasQueueWork(builderName: string): boolean {
    return this.buildersWithQueueWork.has(builderName);
  }

  /** A shadow copy sent to a queue backend: the translation's answer, recorded instead of sent. */
  async copy(backend: Backend, route: Route | undefined, table: RoutingTable, request: { method: string; pathname: string; search: string; body: Buffer | null; accept: string | undefined }, limit: number): Promise<CapturedResponse | undefined> {
    const recording = new RecordingResponse(limit);
    const result = await this.routed(backend, { ...request, tags: ['x-strangler-shadow', '1'], route, table, canFallBack: false }, asClientResponse(recording));
    return result.kind === 'answered' ? recording.captured() : undefined;
  }

  /** A request a route sent to a queue backend. */
  async routed(backend: Backend, request: TranslateRequest, res: ClientResponse): Promise<TranslateResult> {
    if (isForceCall(request.method, request.pathname)) return this.force(backend, request, res);
    const inPath = builderFromPath(request.pathname);
    const name = inPath?.kind === 'name' ? inPath.name : request.builderName;
    if (name !== undefined && request.method === 'GET' && isBuilderListing(request.pathname)) return this.builderListing(name, request, res);
    return { kind: 'not-mine' };
  }

  /** A read of a builder's builds or buildrequests, merged from both sides. */
  async builderListing(builderName: string, request: TranslateRequest, res: ClientResponse): Promise<TranslateResult> {
    const ctx = this.context(request, res);
    const tail = listingTail(request.pathname);
    if (tail === undefined) return { kind: 'not-mine' };
    if (tail.kind === 'build-number') {
      const build = await this.store.buildByNumber(builderName, tail.number);
      if (build === undefined) return { kind: 'not-mine' };
      return this.ownedBuild(build, tail.rest, request, ctx);
    }
    const entity = tail.kind === 'builds' ? ENTITIES.build : ENTITIES.buildrequest;
    const params = new URLSearchParams(request.search);
    const parsed = parseCollectionQuery(params, entity);
    if (!parsed.ok) return { kind: 'answered', status: sendAnswer(ctx, parsed.error) };
    const legacy = await this.legacyCollection(request.table.legacy, request.pathname, legacyQueryOf(params, parsed.query), entity);
    if (!legacy.ok) return { kind: 'answered', status: sendRestError(ctx, 502, `the legacy master's ${tail.kind} could not be read for merging: ${legacy.message}`) };
    const ours = tail.kind === 'builds' ? await this.ourBuilds(builderName, request) : await this.ourBuildrequests(builderName, request);
    const merged = mergeCollections(ours, legacy.answer, parsed.query, entity);
    return { kind: 'answered', status: sendData(ctx, tail.kind, merged.items, merged.total) };
  }

  /** A request naming a minted id: its owner answers, whatever the routes say. */
  async owned(ref: OwnedRef, request: TranslateRequest, res: ClientResponse): Promise<TranslateResult> {
    const records = await this.recordsOf(ref);
    const owner = records.kind === 'buildset' ? records.buildset?.backend : records.task?.backend;
    // SECURITY: only a backend name from the store goes into the header, never request data.
    if (owner !== undefined) request.tags.push('x-strangler-backend', owner);
    const result = await this.ownedAnswer(ref, records, request, res);
    return result.kind === 'answered' && owner !== undefined ? { ...result, owner } : result;
  }

  /** What a minted id names, read from the store once: its owner and its answer both come from it. */
  private async recordsOf(ref: OwnedRef): Promise<OwnedRecords> {
    if (ref.kind === 'buildrequest') return { kind: 'buildrequest', task: await this.taskOf(ref.id) };
    if (ref.kind === 'buildset') return { kind: 'buildset', buildset: await this.store.buildset(ref.id) };
    const build = await this.store.build(ref.id);
    return { kind: 'build', build, task: build === undefined ? undefined : await this.taskOf(build.buildrequestId) };
  }

  /** A task by its buildrequest id: a finished one read before is known without the store. */
  private async taskOf(buildrequestId: number): Promise<TaskRecord | undefined> {
    return this.statuses.finishedView(buildrequestId)?.task ?? (await this.store.task(buildrequestId));
  }

  private async ownedAnswer(ref: OwnedRef, records: OwnedRecords, request: TranslateRequest, res: ClientResponse): Promise<TranslateResult> {
    const ctx = this.context(request, res);
    switch (ref.kind) {
      case 'buildrequest': {
        const task = records.kind === 'buildrequest' ? records.task : undefined;
        if (task === undefined) return { kind: 'answered', status: sendRestError(ctx, 404, `no buildrequest ${ref.id}`) };
        if (request.method === 'POST') return this.control(task, undefined, request, ctx);
        const view = await this.view(task, request.table);
        const options = await this.shapeOptions(task, request);
        if (ref.rest.length === 0) return this.data(ctx, request, 'buildrequests', [buildrequestOf(view.task, view.status, options)]);
        if (ref.rest.length === 1 && ref.rest[0] === 'builds') return this.data(ctx, request, 'builds', view.builds.map((b) => buildOf(b, view.task, view.status, options)), true);
        return { kind: 'answered', status: sendRestError(ctx, 404, 'invalid path') };
      }
      case 'buildset': {
        const buildset = records.kind === 'buildset' ? records.buildset : undefined;
        if (buildset === undefined) return { kind: 'answered', status: sendRestError(ctx, 404, `no buildset ${ref.id}`) };
        const tasks = await this.store.tasksOfBuildset(ref.id);
        const views = await Promise.all(tasks.map((t) => this.view(t, request.table)));
        if (ref.rest.length === 1 && ref.rest[0] === 'buildrequests') {
          const items = await Promise.all(views.map(async (v) => buildrequestOf(v.task, v.status, await this.shapeOptions(v.task, request))));
          return this.data(ctx, request, 'buildrequests', items, true);
        }
        if (ref.rest.length > 0) return { kind: 'answered', status: sendRestError(ctx, 404, 'invalid path') };
        return this.data(ctx, request, 'buildsets', [buildsetOf(buildset, views.map((v) => ({ task: v.task, status: v.status })))]);
      }
      case 'build':
      case 'step':
      case 'log': {
        const build = records.kind === 'build' ? records.build : undefined;
        if (build === undefined || records.kind !== 'build') return { kind: 'answered', status: sendRestError(ctx, 404, `no ${ref.kind} ${ref.id}`) };
        const rest = ref.kind === 'build' ? ref.rest : ref.kind === 'step' ? ['steps', '0', ...ref.rest] : ['steps', '0', 'logs', 'stdio', ...ref.rest];
        return this.ownedBuild(build, rest, request, ctx, records.task);
      }
    }
  }

  /** Reads and controls below one build: steps, logs, properties; stop and rebuild. */
  private async ownedBuild(build: BuildRecord, rest: string[], request: TranslateRequest, ctx: AnswerContext, taskOfBuild?: TaskRecord): Promise<TranslateResult> {
    const task = taskOfBuild ?? (await this.store.task(build.buildrequestId));
    if (task === undefined) return { kind: 'answered', status: sendRestError(ctx, 404, `no build ${build.buildid}`) };
    if (request.method === 'POST' && rest.length === 0) return this.control(task, build, request, ctx);
    const view = await this.view(task, request.table);
    const rootUrl = request.table.backends.get(task.backend)?.queue?.rootUrl;
    if (rest.length === 0) return this.data(ctx, request, 'builds', [buildOf(build, view.task, view.status, await this.shapeOptions(task, request))]);
    if (rest[0] === 'properties' && rest.length === 1) {
      const buildset = await this.store.buildset(task.buildsetId);
      const properties = buildOf(build, view.task, view.status, { properties: ['*'], ...(buildset ? { buildset } : {}) }).properties;
      return this.data(ctx, request, 'properties', [properties]);
    }
    if (rest[0] !== 'steps') return { kind: 'answered', status: sendRestError(ctx, 404, 'invalid path') };
    const step = stepOf(build, view.task, view.status, rootUrl === undefined ? {} : { rootUrl });
    if (rest.length === 1) return this.data(ctx, request, 'steps', [step], true);
    if (rest[1] !== '0' && rest[1] !== step.name) return { kind: 'answered', status: sendRestError(ctx, 404, `no step ${rest[1]}`) };
    if (rest.length === 2) return this.data(ctx, request, 'steps', [step]);
    if (rest[2] !== 'logs') return { kind: 'answered', status: sendRestError(ctx, 404, 'invalid path') };
    const log = logOf(build, view.status);
    if (rest.length === 3) return this.data(ctx, request, 'logs', [log], true);
    if (rest[3] !== log.slug) return { kind: 'answered', status: sendRestError(ctx, 404, `no log ${rest[3]}`) };
    if (rest.length === 4) return this.data(ctx, request, 'logs', [log]);
    if (rest.length === 5 && (rest[4] === 'raw' || rest[4] === 'contents')) return this.streamLog(view, build, rest[4], request, ctx);
    return { kind: 'answered', status: sendRestError(ctx, 404, 'invalid path') };
  }

  private async streamLog(view: TaskView, build: BuildRecord, form: 'raw' | 'contents', request: TranslateRequest, ctx: AnswerContext): Promise<TranslateResult> {
    const backend = request.table.backends.get(view.task.backend);
    if (backend?.kind !== 'taskcluster') return { kind: 'answered', status: sendRestError(ctx, 404, `the queue backend ${view.task.backend} is no longer configured`) };
    const run = view.status?.runs.find((r) => r.runId === build.runId);
    const name = run !== undefined && run.state !== 'running' && run.state !== 'pending' ? 'public/logs/live_backing.log' : 'public/logs/live.log';
    const located = await this.client.artifactUrl(backend, view.task.taskId, build.runId, name);
    if (!located.ok) {
      const status = located.answered && located.status === 404 ? 404 : 502;
      const message = located.answered ? `the queue answered ${located.status} ${located.error.code} for the log artifact` : `the queue could not be reached for the log artifact: ${located.failure.message}`;
      return { kind: 'answered', status: sendRestError(ctx, status, message) };
    }
    const url = new URL(located.body.url);
    const stream = new LogStream(ctx.res, form, build.buildid, `${view.task.builderName}_build_${build.number}_step_task_log_stdio.txt`, ctx.tags);
    stream.start(this.upstream, this.artifacts.for(url, backend), url.pathname + url.search);
    return { kind: 'answered', status: await stream.done };
  }

  /** stop and rebuild on a build, cancel on a buildrequest. */
  private async control(task: TaskRecord, build: BuildRecord | undefined, request: TranslateRequest, ctx: AnswerContext): Promise<TranslateResult> {
    const call = parseJsonRpc(request.body);
    if (!call.ok) return { kind: 'answered', status: sendJsonRpcError(ctx, call.id, 400, call.code, call.message) };
    const backend = request.table.backends.get(task.backend);
    if (backend?.kind !== 'taskcluster') return { kind: 'answered', status: sendJsonRpcError(ctx, call.id, 503, JSONRPC_CODES.internalError, `the queue backend ${task.backend} is no longer configured`) };
    const allowed = build === undefined ? ['cancel'] : ['stop', 'rebuild'];
    if (!allowed.includes(call.method)) return { kind: 'answered', status: sendJsonRpcError(ctx, call.id, 501, JSONRPC_CODES.methodNotFound, 'invalid control action') };

    if (call.method === 'rebuild') {
      const buildset = await this.store.buildset(task.buildsetId);
      const definition = JSON.parse(task.definition) as QueueTaskDefinition;
      const outcome = await this.forces.rebuild(backend, task, definition, buildset, build!.buildid);
      return this.forceAnswer(outcome, call.id, ctx);
    }
    const answer = await this.client.cancel(backend, task.taskId);
    if (answer.ok) {
      // Through the statuses, so the tracker and the live events hear of the cancel like of any status.
      await this.statuses.seen(task, answer.body.status, request.table.legacy);
      return { kind: 'answered', status: sendJsonRpcResult(ctx, call.id, null) };
    }
    if (!answer.answered) return { kind: 'answered', status: sendJsonRpcError(ctx, call.id, 502, JSONRPC_CODES.internalError, `the queue could not be reached to cancel: ${answer.failure.message}`) };
    return { kind: 'answered', status: sendJsonRpcError(ctx, call.id, answer.status === 409 ? 400 : answer.status >= 500 ? 502 : 400, JSONRPC_CODES.invalidParams, queueErrorMessage(answer.status, answer.error.code, answer.error.message)) };
  }

  private async force(backend: Backend, request: TranslateRequest, res: ClientResponse): Promise<TranslateResult> {
    const ctx = this.context(request, res);
    const call = parseJsonRpc(request.body);
    if (!call.ok) return { kind: 'answered', status: sendJsonRpcError(ctx, call.id, 400, call.code, call.message) };
    if (call.method !== 'force') return { kind: 'not-mine' };
    const names = await this.builderNames(call.params, request.table.legacy);
    if (typeof names === 'string') return { kind: 'answered', status: sendJsonRpcError(ctx, call.id, 400, JSONRPC_CODES.invalidParams, names) };
    const builders: { name: string; id: number }[] = [];
    for (const name of names) {
      const id = await this.builderIds.idFor(name, request.table.legacy);
      if (id === undefined) return { kind: 'answered', status: sendJsonRpcError(ctx, call.id, 400, JSONRPC_CODES.invalidParams, `unknown builder ${name}: the legacy master has no builder of that name, so it has no builderid to answer with`) };
      builders.push({ name, id });
    }
    const outcome = await this.forces.force({ backend, route: request.route, builders, params: call.params });
    if (outcome.kind === 'unreachable' && request.canFallBack) return { kind: 'unreachable', failure: { kind: 'refused', code: 'BACKEND_REFUSED', mayHaveReachedBackend: false, message: outcome.message } };
    if (outcome.kind === 'accepted') for (const b of builders) this.buildersWithQueueWork.add(b.name);
    return this.forceAnswer(outcome, call.id, ctx);
  }

  private forceAnswer(outcome: Awaited<ReturnType<ForceTranslator['force']>>, id: unknown, ctx: AnswerContext): TranslateResult {
    switch (outcome.kind) {
      case 'accepted':
        return { kind: 'answered', status: sendJsonRpcResult(ctx, id, [outcome.bsid, Object.fromEntries([...outcome.brids].map(([builderid, brid]) => [String(builderid), brid]))]) };
      case 'refused':
        return { kind: 'answered', status: sendJsonRpcError(ctx, id, 400, JSONRPC_CODES.invalidParams, outcome.message) };
      case 'unreachable':
        return { kind: 'answered', status: sendJsonRpcError(ctx, id, 503, JSONRPC_CODES.internalError, outcome.message, ['retry-after', '5']) };
      case 'failed':
        return { kind: 'answered', status: sendJsonRpcError(ctx, id, 502, JSONRPC_CODES.internalError, outcome.message) };
    }
  }

  private async builderNames(params: Readonly<Record<string, unknown>>, legacy: Backend): Promise<string[] | string> {
    const names = Object.hasOwn(params, 'builderNames') ? params.builderNames : undefined;
    if (Array.isArray(names) && names.length > 0 && names.every((n) => typeof n === 'string')) return [...new Set(names as string[])];
    const id = Object.hasOwn(params, 'builderid') ? Number(params.builderid) : NaN;
    if (Number.isSafeInteger(id)) {
      const name = await this.builderIds.nameFor(id, legacy);
      if (name !== undefined) return [name];
      return `unknown builderid ${id}`;
    }
    return 'a force for a job type on a queue must name its builders (builderNames)';
  }

  /** Properties only when the client asks for them (`?property=...`), as Buildbot sends them. */
  private async shapeOptions(task: TaskRecord, request: TranslateRequest): Promise<ShapeOptions> {
    const asked = new URLSearchParams(request.search).getAll('property');
    if (asked.length === 0) return {};
    const buildset = await this.store.buildset(task.buildsetId);
    return { properties: asked, ...(buildset ? { buildset } : {}) };
  }

  private async view(task: TaskRecord, table: RoutingTable): Promise<TaskView> {
    return this.statuses.view(task, table.backends, table.legacy);
  }

  private async ourBuilds(builderName: string, request: TranslateRequest): Promise<object[]> {
    const builds = await this.store.buildsOfBuilder(builderName, { limit: MERGE_CAP, offset: 0, newestFirst: true });
    const items = [];
    for (const build of builds) {
      const task = await this.store.task(build.buildrequestId);
      if (task === undefined) continue;
      const view = await this.view(task, request.table);
      items.push(buildOf(build, view.task, view.status, await this.shapeOptions(task, request)));
    }
    return items;
  }

  private async ourBuildrequests(builderName: string, request: TranslateRequest): Promise<object[]> {
    const tasks = await this.store.tasksOfBuilder(builderName, { limit: MERGE_CAP, offset: 0, newestFirst: true });
    const items = [];
    for (const task of tasks) {
      const view = await this.view(task, request.table);
      items.push(buildrequestOf(view.task, view.status, await this.shapeOptions(task, request)));
    }
    return items;
  }

  /** The legacy master's answer to the same listing, from its first item to the last the client's page needs. */
  private async legacyCollection(legacy: Backend, pathname: string, query: URLSearchParams, entity: EntitySpec): Promise<{ ok: true; answer: { items: object[]; total: number } } | { ok: false; message: string }> {
    const plural = entity.plural;
    try {
      const answer = await this.upstream.fetch(legacy, { path: `${pathname}?${query.toString()}`, headers: ['accept', 'application/json', 'user-agent', 'strangler-proxy merge'], timeoutMs: legacy.responseTimeoutMs, maxBytes: 64 * 1024 * 1024 });
      if (answer.status !== 200) return { ok: false, message: `it answered ${answer.status}` };
      const parsed = JSON.parse(answer.body.toString('utf8')) as Record<string, unknown> & { meta?: { total?: number } };
      const items = parsed[plural];
      if (!Array.isArray(items)) return { ok: false, message: `its answer has no "${plural}" list` };
      return { ok: true, answer: { items, total: typeof parsed.meta?.total === 'number' ? parsed.meta.total : items.length } };
    } catch (error) {
      return { ok: false, message: (error as Error).message };
    }
  }

  /** One object (or a short list) read by id: Buildbot's field selection applies, and its envelope has no total. */
  private data(ctx: AnswerContext, request: TranslateRequest, plural: string, items: object[], isCollection = false): TranslateResult {
    const entity = Object.values(ENTITIES).find((e) => e.plural === plural);
    if (entity === undefined) return { kind: 'answered', status: sendData(ctx, plural, items) };
    const parsed = parseCollectionQuery(new URLSearchParams(request.search), entity, { isCollection });
    if (!parsed.ok) return { kind: 'answered', status: sendAnswer(ctx, parsed.error) };
    const applied = applyQuery(items, parsed.query, entity);
    return { kind: 'answered', status: sendData(ctx, plural, applied.items, isCollection ? applied.total : undefined) };
  }

  private context(request: TranslateRequest, res: ClientResponse): AnswerContext {
    return { res, tags: request.tags, accept: request.accept, method: request.method, ...(request.onAnswer ? { onAnswer: request.onAnswer } : {}) };
  }
}

/** `/api/v2/builders/{x}/builds`, `/builds/{number}...` or `/buildrequests`. */
export function isBuilderListing(pathname: string): boolean {
  return listingTail(pathname) !== undefined;
}

type ListingTail = { kind: 'builds' } | { kind: 'buildrequests' } | { kind: 'build-number'; number: number; rest: string[] };

function listingTail(pathname: string): ListingTail | undefined {
  const match = /^\/api\/v2\/builders\/[^/]+\/(builds|buildrequests)(?:\/([0-9]{1,9})((?:\/[^/]+)*))?\/?$/.exec(pathname);
  if (match === null) return undefined;
  if (match[2] === undefined) return { kind: match[1] as 'builds' | 'buildrequests' };
  if (match[1] !== 'builds') return undefined;
  return { kind: 'build-number', number: Number(match[2]), rest: (match[3] ?? '').split('/').filter((s) => s !== '') };
}
