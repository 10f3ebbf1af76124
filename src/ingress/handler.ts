/**
 * The proxy's request pipeline: find the job type, decide once against the
 * routing table in force at the start of the request, forward, then log and
 * count what happened.
 */
import { randomUUID } from 'node:crypto';
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import { pipeline, Transform } from 'node:stream';
import { ERROR_CODES, isStranglerError, type ErrorCode } from '../errors.js';
import type { Logger } from '../logging/logger.js';
import { DEFAULT_RULE, upstreamErrorLabel, type ProxyMetrics } from '../metrics/metrics.js';
import type { TrafficStats } from '../metrics/traffic.js';
import { decide, type Decision } from '../routing/decide.js';
import type { Backend, RoutingTable } from '../routing/table.js';
import type { CircuitBreakers } from '../resilience/circuit.js';
import type { HealthMonitor } from '../resilience/health.js';
import { replayAfterFailure } from '../resilience/replay.js';
import type { Shadower } from '../shadow/shadow.js';
import type { BuilderDirectory } from './builder-directory.js';
import type { ForwardCall, RequestBody } from '../upstream/to-client.js';
import type { Upstream } from '../upstream/upstream.js';
import { upstreamHeaders, type RawHeaders } from '../upstream/headers.js';
import type { ForwardResult } from '../upstream/to-client.js';
import type { CapturedResponse } from '../shadow/compare.js';
import { ownedFilterIn, ownedIdIn, type OwnedRef } from '../routing/owner.js';
import { builderFromPath, isForceCall } from '../routing/extract.js';
import { JSONRPC_CODES, parseJsonRpc, sendJsonRpcError } from '../taskcluster/answers.js';
import type { BuildTracker } from '../tracking/tracker.js';
import { isBuilderListing, type TaskclusterTranslator, type TranslateRequest, type TranslateResult } from '../taskcluster/translator.js';
import { factsAtOnce, gatherFacts, type GatheredFacts, type RequestView } from './facts.js';
import { BodyBudgetExceeded, peekBody, type PeekedBody } from './peek.js';
import { BodyBudget, DEFAULT_MAX_HELD_BODY_BYTES, type BodyReservation } from './body-budget.js';
import { BodyIdleTimer, DEFAULT_CLIENT_BODY_IDLE_TIMEOUT_MS, type BodyFault } from './body-timeout.js';

export interface ProxyDeps {
  /** The routing table in force; called once per request. */
  currentTable: () => RoutingTable;
  upstream: Upstream;
  builders: BuilderDirectory;
  breakers: CircuitBreakers;
  health: Pick<HealthMonitor, 'isDown'>;
  shadower: Shadower;
  metrics: ProxyMetrics;
  traffic: TrafficStats;
  logger: Logger;
  /** Speaks Buildbot's API for backends of kind taskcluster; absent, such backends cannot be served. */
  translator?: () => TaskclusterTranslator | undefined;
  /** Follows the builds of forces answered by Buildbot-API backends (src/tracking/); absent or undefined while no store is open. */
  tracker?: () => Pick<BuildTracker, 'forceAnswered'> | undefined;
  /** True once shutdown began: answers then carry `Connection: close` so keep-alive clients go elsewhere. */
  isDraining?: () => boolean;
}

/** A backend takes requests unless its circuit is open or its health probes say it is down. */
function isAvailable(deps: ProxyDeps, backend: Backend): boolean {
  if (deps.health.isDown(backend.name)) return false;
  return deps.breakers.allow(backend);
}

/** Retry-After on a 503 STORE_UNAVAILABLE: about when a store that was down is tried again. */
const STORE_RETRY_AFTER_SECONDS = 5;

/** The most of a force's answer kept for the tracker: a JSON-RPC result naming a few buildrequests. */
const FORCE_ANSWER_CAPTURE_BYTES = 64 * 1024;

/** Status recorded when the client hung up before getting an answer (nginx's convention). */
export const CLIENT_CLOSED = 499;

/** A client's X-Request-Id is passed on only if it is a sane token; otherwise we make one. */
const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

export function requestIdOf(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
}

/** Path and query of a request target; absolute-form targets (`GET http://host/path`) are reduced to theirs. */
export function originFormTarget(url: string | undefined): string | undefined {
  if (url === undefined || url === '') return undefined;
  if (url.startsWith('/')) return url;
  try {
    const parsed = new URL(url);
    return parsed.pathname + parsed.search;
  } catch {
    return undefined;
  }
}

/**
 * The body to send upstream, and its size for the byte counters: the peeked
 * bytes, or the client's stream as is. Only a chunked body of unknown length
 * passes through a counter, to keep the common path free of extra streams.
 */
function requestBody(req: IncomingMessage, peeked: PeekedBody | undefined, size: (bytes: number) => void): RequestBody {
  if (peeked?.complete) {
    size(peeked.body.length);
    return peeked.body;
  }
  const declared = req.headers['content-length'];
  if (declared !== undefined) {
    size(Number(declared) || 0);
    return declared === '0' ? null : (peeked?.body ?? req);
  }
  if (req.headers['transfer-encoding'] === undefined) return null;
  let counted = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      counted += chunk.length;
      size(counted);
      done(null, chunk);
    },
  });
  // pipeline, not pipe: a client breaking off its body must also end the counter's stream.
  pipeline(peeked?.body ?? req, counter, () => undefined);
  return counter;
}

/** Printable ASCII: a header value every client reads the same way. */
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

/**
 * A job type as a response header value. Builder names are data from clients
 * and the legacy master, not header values: a name with anything but printable
 * ASCII (`ci-ő`, a control character) is sent percent-encoded as UTF-8.
 */
export function headerSafeJobType(jobType: string): string {
  return PRINTABLE_ASCII.test(jobType) ? jobType : encodeURIComponent(jobType);
}

/** What bounds a client's request body: how long it may stall, and how many of its bytes may be held in memory, across all requests. */
export interface BodyLimits {
  idle: BodyIdleTimer;
  budget: BodyBudget;
}

export function createProxyHandler(deps: ProxyDeps, limits: BodyLimits = { idle: new BodyIdleTimer(DEFAULT_CLIENT_BODY_IDLE_TIMEOUT_MS), budget: new BodyBudget(DEFAULT_MAX_HELD_BODY_BYTES) }): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    try {
      handle(deps, limits, req, res);
    } catch (error) {
      deps.metrics.internalErrors.inc();
      deps.logger.error('unexpected error in request handling', { error: (error as Error)?.stack ?? String(error) });
      if (!res.headersSent) res.writeHead(500, STATUS_CODES[500]!, { 'content-type': 'application/json', connection: 'close' }).end(JSON.stringify({ error: 'internal proxy error', code: 'INTERNAL' }));
      else res.destroy();
    }
  };
}

/**
 * What one request went through, filled in as it goes and written to the
 * access log, the metrics and the traffic windows when its response closes.
 */
class Outcome {
  decision: Decision | undefined;
  failureKind: string | undefined;
  /** 0 until known; CLIENT_CLOSED when the client hung up first. */
  status = 0;
  jobTypeLabel = 'none';
  requestBytes = 0;
  responseBytes = 0;
  served: Backend | undefined;
  sticky: string | undefined;
  failover: string | undefined;
  shadowNote: string | undefined;
  retries = 0;
  /** The exchange with a backend under way, told when the client hangs up. */
  call: ForwardCall | undefined;

  constructor(
    readonly started: number,
    readonly requestId: string,
    readonly method: string,
    readonly pathname: string,
  ) {}

  /** The proxy's own response headers: X-Request-Id always, X-Strangler-Backend and -Job-Type once known. */
  tags(backend: Backend | undefined): RawHeaders {
    const tags = ['x-request-id', this.requestId];
    if (this.decision?.jobType !== undefined) tags.push('x-strangler-job-type', headerSafeJobType(this.decision.jobType));
    if (backend !== undefined) tags.push('x-strangler-backend', backend.name);
    return tags;
  }

  readonly countResponseBytes = (bytes: number): void => {
    this.responseBytes += bytes;
  };

  readonly setRequestBytes = (bytes: number): void => {
    this.requestBytes = bytes;
  };
}

function recordOutcome(deps: ProxyDeps, o: Outcome, res: ServerResponse): void {
  o.call?.clientGone();
  if (!res.writableFinished && o.status === 0) o.status = CLIENT_CLOSED;
  const seconds = (performance.now() - o.started) / 1000;
  const backend = o.served?.name ?? 'none';
  const code = o.status || res.statusCode;
  const rule = o.decision?.route?.pattern;
  deps.metrics.requestFinished({ backend, jobType: o.jobTypeLabel, method: deps.metrics.methodLabel(o.method), code, seconds, requestBytes: o.requestBytes, responseBytes: o.responseBytes });
  if (o.served) deps.traffic.record({ jobType: o.jobTypeLabel, rule: rule ?? DEFAULT_RULE, backend, status: code, seconds });
  deps.logger.access({
    requestId: o.requestId,
    method: o.method,
    path: o.pathname.length > 2048 ? o.pathname.slice(0, 2048) : o.pathname, // SECURITY: never the query string, which may carry tokens
    status: code,
    durationMs: Math.round(seconds * 1e6) / 1e3,
    backend,
    jobType: o.decision?.jobType,
    rule,
    reason: o.decision?.reason,
    sticky: o.sticky,
    fallback: o.failover,
    retries: o.retries || undefined,
    shadow: o.shadowNote,
    error: o.failureKind,
  });
}

/** Whether a request says it has a body (node has already refused one with both or with broken framing headers). */
function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return (length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined;
}

/** More than one Host line: node keeps the first in `req.headers` and drops the rest, so only the raw list tells. */
export function hasDuplicateHost(rawHeaders: readonly string[]): boolean {
  let seen = false;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (name.length !== 4 || name.toLowerCase() !== 'host') continue;
    if (seen) return true;
    seen = true;
  }
  return false;
}

function handle(deps: ProxyDeps, limits: BodyLimits, req: IncomingMessage, res: ServerResponse): void {
  const started = performance.now();
  const table = deps.currentTable();
  const method = req.method ?? 'GET';
  const originTarget = originFormTarget(req.url);
  const queryAt = originTarget?.indexOf('?') ?? -1;
  const pathname = originTarget === undefined ? '' : queryAt === -1 ? originTarget : originTarget.slice(0, queryAt);
  const outcome = new Outcome(started, requestIdOf(req), method, pathname);
  if (deps.isDraining?.()) res.shouldKeepAlive = false; // node then sends Connection: close
  // The request's share of the held-body budget, taken while its body is read whole and given back when it ends, however it ends.
  let held: BodyReservation | undefined;
  let unwatch: (() => void) | undefined;
  res.once('close', () => {
    held?.release();
    // A body still coming after the answer (read and dropped) stays watched until it ends.
    if (unwatch !== undefined && req.complete) unwatch();
    recordOutcome(deps, outcome, res);
  });

  if (originTarget === undefined) {
    outcome.status = 400;
    return sendError(res, 'BAD_REQUEST', 'the request target is not a path', outcome, undefined);
  }
  if (hasDuplicateHost(req.rawHeaders)) {
    // SECURITY: RFC 9112 §3.2. Which Host a backend or another proxy on the way would believe is anyone's guess.
    outcome.status = 400;
    res.shouldKeepAlive = false;
    return sendError(res, 'BAD_REQUEST', 'the request has more than one Host header', outcome, undefined);
  }

  // Until `forwarding`, nothing went to a backend: a body that stalls, breaks or does not fit is answered by the proxy.
  let forwarding = false;
  let refused = false;
  // A peek still under way when the request is refused ends with the connection (which every refusal but PROXY_BUSY
  // closes, and that one comes from the peek itself); its outcome is ignored.
  const refuse = (code: ErrorCode, message: string, failureKind: string, keepAlive: boolean): void => {
    refused = true;
    outcome.status = ERROR_CODES[code].status;
    outcome.failureKind = failureKind;
    // Closing after a stalled or broken body; a refused one is read to its end and dropped, so the connection stays usable.
    if (!keepAlive) res.shouldKeepAlive = false;
    sendError(res, code, message, outcome, undefined);
  };
  if (hasBody(req)) {
    unwatch = limits.idle.watch(req, (fault: BodyFault) => {
      if (fault === 'idle') deps.metrics.clientBodyTimeouts.inc({ phase: forwarding ? 'forwarding' : 'reading' });
      if (!forwarding && !refused && !res.headersSent) {
        if (fault === 'idle') return refuse('CLIENT_BODY_TIMEOUT', `the request body stalled: no byte for ${limits.idle.timeoutMs} ms`, 'client-body-timeout', false);
        return refuse('BAD_REQUEST', 'the request body is malformed', 'client-malformed-body', false);
      }
      // Part of the request may be on its way to a backend, or an answer is out: cutting the connection is all that is
      // left, and its close calls the backend exchange off (recordOutcome tells the call the client is gone).
      if (!res.headersSent && outcome.status === 0) outcome.status = fault === 'idle' ? 408 : 400;
      outcome.failureKind = fault === 'idle' ? 'client-body-timeout' : 'client-malformed-body';
      req.socket.destroy();
    });
  }

  const view: RequestView = {
    method,
    pathname,
    search: queryAt === -1 ? '' : originTarget.slice(queryAt + 1),
    headers: req.headers,
    // A body larger than the whole budget could never be held: it goes unread, like one over the peek limit.
    peekBody: (limit) => peekBody(req, limits.budget.limitBytes === 0 ? limit : Math.min(limit, limits.budget.limitBytes), (bytes) => (held ??= limits.budget.open()).reserve(bytes)),
  };
  const onFault = (error: unknown) => internalError(deps, res, outcome, error);
  const owned = deps.translator?.() === undefined || (method !== 'GET' && method !== 'HEAD' && method !== 'POST') ? undefined : (ownedIdIn(pathname) ?? ownedFilterIn(pathname, view.search));
  if (owned !== undefined) {
    // An id the proxy minted: its owner answers, whatever the routes say. A control call's body is read first.
    const body = req.method === 'POST' ? view.peekBody(table.settings.bodyPeekLimitBytes) : Promise.resolve(undefined);
    body.then(
      (peeked) => {
        if (refused) return;
        forwarding = true;
        return answerOwned(deps, req, res, table, owned, view, peeked?.complete ? peeked.body : null, outcome);
      },
      () => {
        outcome.failureKind = 'client-aborted';
        outcome.status = CLIENT_CLOSED;
        res.destroy();
      },
    ).catch(onFault);
    return;
  }
  // Most requests name their job type where it can be read at once; only a body or a builder id means waiting.
  const atOnce = factsAtOnce(view);
  if (atOnce !== undefined) {
    forwarding = true;
    proxy(deps, req, res, table, originTarget, atOnce, outcome).catch(onFault);
    return;
  }
  gatherFacts(view, table, deps.builders).then(
    (gathered) => {
      if (refused) return;
      forwarding = true;
      proxy(deps, req, res, table, originTarget, gathered, outcome).catch(onFault);
    },
    (error: unknown) => {
      if (refused) return;
      if (error instanceof BodyBudgetExceeded) {
        deps.metrics.busyRejections.inc();
        res.setHeader('retry-after', '1');
        return refuse('PROXY_BUSY', 'the proxy holds as many request bodies as it may right now; nothing was sent, retry shortly', 'proxy-busy', true);
      }
      // Reading the body failed: the client hung up mid-body. Nobody is left to answer.
      outcome.failureKind = 'client-aborted';
      outcome.status = CLIENT_CLOSED;
      res.destroy();
    },
  );
}

async function proxy(deps: ProxyDeps, req: IncomingMessage, res: ServerResponse, table: RoutingTable, originTarget: string, gathered: GatheredFacts, o: Outcome): Promise<void> {
  const decision = decide(table, gathered.facts);
  o.decision = decision;
  o.jobTypeLabel = deps.metrics.jobTypeLabel(table, decision.jobType);
  deps.metrics.decided(decision.route?.pattern, decision.reason, decision.backend.name);
  o.sticky = decision.sticky?.source;

  const route = decision.route;
  const primary = decision.backend;
  const fallback = route?.fallback !== undefined && route.fallback !== primary.name ? table.backends.get(route.fallback) : undefined;
  const body = requestBody(req, gathered.peeked, o.setRequestBytes);

  let target = primary;
  if (!isAvailable(deps, primary)) {
    // Nothing was sent yet, so any request, whatever its body, may go to the fallback.
    if (fallback && isAvailable(deps, fallback)) {
      const circuitOpen = deps.breakers.state(primary.name) !== 'closed';
      o.failover = circuitOpen ? 'circuit-open' : 'unhealthy';
      deps.metrics.fallbacks.inc({ from: primary.name, to: fallback.name, cause: circuitOpen ? 'circuit_open' : 'unhealthy' });
      target = fallback;
    } else {
      o.served = primary;
      o.status = 503;
      deps.metrics.unavailable.inc({ backend: primary.name, job_type: o.jobTypeLabel });
      res.setHeader('retry-after', String(deps.breakers.retryAfterSeconds(primary.name)));
      const why = `backend ${primary.name} is unavailable (${deps.breakers.state(primary.name) === 'closed' ? 'health probes failing' : 'circuit open'})`;
      // A Buildbot client forcing a build reads JSON-RPC errors: a queue's force is answered in that shape.
      if (primary.kind === 'taskcluster' && isForceCall(o.method, o.pathname)) {
        o.failureKind = 'backend-unavailable';
        sendJsonRpcError({ res, tags: o.tags(primary), accept: req.headers.accept, method: o.method }, jsonRpcIdOf(gathered.peeked), 503, JSONRPC_CODES.internalError, `${why}; nothing was sent, retry shortly`, ['retry-after', res.getHeader('retry-after') as string]);
        return;
      }
      return sendError(res, 'BACKEND_UNAVAILABLE', why, o, primary);
    }
  }

  const shadowTicket = route?.shadow === undefined ? undefined : deps.shadower.start(table, decision, { method: o.method, url: originTarget, pathname: o.pathname, client: req, body, requestId: o.requestId, jobTypeLabel: o.jobTypeLabel });
  o.shadowNote = shadowTicket?.note;
  // A force's answer names the buildrequests it made: kept (it is small) so the tracker can follow their builds.
  const tracker = isForceCall(o.method, o.pathname) ? deps.tracker?.() : undefined;
  const shadowCapture = shadowTicket?.note === 'sent' ? shadowTicket.captureBytes : 0;
  const captureBytes = tracker === undefined ? shadowCapture : Math.max(shadowCapture, FORCE_ANSWER_CAPTURE_BYTES);

  for (let attempt = 0; ; attempt++) {
    o.served = target;
    deps.metrics.sending(target.name, o.jobTypeLabel);
    deps.traffic.started(target.name);
    const headers = upstreamHeaders(req, target.preserveHost ? { requestId: o.requestId } : { requestId: o.requestId, backendHost: target.host });
    // Counted as they pass: the response's 'close' (where metrics are recorded) can come before the call settles.
    let result: ForwardResult;
    if (target.kind === 'taskcluster' || listingMerged(deps, table, o, route)) {
      let primaryAnswer: CapturedResponse | undefined;
      const onAnswer = captureBytes > 0 ? (status: number, contentType: string, bytes: Buffer) => (primaryAnswer = { status, contentType, body: bytes.length <= captureBytes ? bytes : undefined }) : undefined;
      const canFallBack = fallback !== undefined && target !== fallback && isAvailable(deps, fallback);
      const translated = await translate(deps, table, target, route, req, body, o, res, canFallBack, onAnswer);
      deps.metrics.sent(target.name, o.jobTypeLabel);
      deps.traffic.finished(target.name);
      if (translated.kind === 'answered') {
        o.status = translated.status;
        deps.breakers.succeeded(target);
        if (shadowTicket?.note === 'sent') shadowTicket.primaryDone(primaryAnswer);
        return;
      }
      if (translated.kind === 'not-mine') {
        // Builder metadata, changes, workers...: the legacy master still answers them for a job type on a queue.
        target = table.legacy;
        attempt--;
        continue;
      }
      result = { ok: false, failure: translated.failure, responseStarted: false, responseBytes: 0, error: new Error(translated.failure.message) };
    } else {
      o.call = deps.upstream.forward(target, { method: o.method, url: originTarget, headers, body, responseTags: o.tags(target), captureBytes, onResponseBytes: o.countResponseBytes }, res);
      result = await o.call.result;
      o.call = undefined;
      deps.metrics.sent(target.name, o.jobTypeLabel);
      deps.traffic.finished(target.name);
    }

    if (result.ok) {
      o.status = result.status;
      if (o.status === 502 || o.status === 503 || o.status === 504) deps.breakers.failed(target);
      else deps.breakers.succeeded(target);
      if (tracker !== undefined && o.status === 200) tracker.forceAnswered(target, result.captured?.body, Date.now());
      if (shadowTicket?.note === 'sent') shadowTicket.primaryDone(result.captured);
      return;
    }
    if (shadowTicket?.note === 'sent' && attempt === 0) shadowTicket.primaryDone(undefined);

    const failure = result.failure;
    o.failureKind = failure.kind;
    if (failure.kind === 'client-aborted') {
      o.status = CLIENT_CLOSED;
      res.destroy();
      return;
    }
    deps.breakers.failed(target);
    deps.metrics.upstreamErrors.inc({ backend: target.name, job_type: o.jobTypeLabel, kind: upstreamErrorLabel(failure.kind) });
    deps.logger.warn('backend failed', {
      requestId: o.requestId,
      backend: target.name,
      url: target.url,
      jobType: decision.jobType,
      kind: failure.kind,
      mayHaveReachedBackend: failure.mayHaveReachedBackend,
      detail: (result.error as Error)?.message,
    });
    const next = replayAfterFailure({
      failure,
      method: o.method,
      responseStarted: result.responseStarted || res.headersSent,
      bodyReplayable: body === null || Buffer.isBuffer(body),
      fallbackAvailable: fallback !== undefined && target !== fallback && isAvailable(deps, fallback),
      retries: route?.retries ?? 0,
      attempt,
    });
    if (next === 'fallback') {
      o.failover = failure.kind;
      deps.metrics.fallbacks.inc({ from: target.name, to: fallback!.name, cause: upstreamErrorLabel(failure.kind) });
      target = fallback!;
      continue;
    }
    if (next === 'retry') {
      o.retries++;
      deps.metrics.retries.inc({ backend: target.name });
      continue;
    }
    if (result.responseStarted || res.headersSent) {
      // The status line is out: the only honest signal left is to cut the connection.
      o.status = result.responseStarted ? res.statusCode : 502;
      res.destroy();
      return;
    }
    o.status = ERROR_CODES[failure.code].status;
    return sendError(res, failure.code, `backend ${target.name}: ${failure.message}`, o, target);
  }
}

/** The builder a listing path names: by name, or by id as routing resolved it (the legacy master's builderid). */
function listedBuilder(o: Outcome): string | undefined {
  const inPath = builderFromPath(o.pathname);
  if (inPath?.kind === 'name') return inPath.name;
  const jobType = o.decision?.jobType;
  return inPath?.kind === 'id' && jobType !== undefined && !jobType.includes(',') ? jobType : undefined;
}

/** A GET of a builder's builds or buildrequests while some of its work ran on a queue: both sides' answers, merged. */
function listingMerged(deps: ProxyDeps, table: RoutingTable, o: Outcome, route: Decision['route']): boolean {
  const translator = deps.translator?.();
  if (translator === undefined || o.method !== 'GET' || !isBuilderListing(o.pathname)) return false;
  const name = listedBuilder(o);
  if (name === undefined) return false;
  return translator.hasQueueWork(name) || (route?.targets.some((t) => table.backends.get(t.backend)?.kind === 'taskcluster') ?? false);
}

async function translate(deps: ProxyDeps, table: RoutingTable, target: Backend, route: Decision['route'], req: IncomingMessage, body: RequestBody, o: Outcome, res: ServerResponse, canFallBack: boolean, onAnswer?: TranslateRequest['onAnswer']): Promise<TranslateResult> {
  const listed = listedBuilder(o);
  const request: TranslateRequest = {
    ...(listed !== undefined ? { builderName: listed } : {}),
    canFallBack,
    ...(onAnswer ? { onAnswer } : {}),
    method: o.method,
    pathname: o.pathname,
    search: searchOf(req.url),
    accept: req.headers.accept,
    body: Buffer.isBuffer(body) ? body : null,
    tags: o.tags(target),
    route,
    table,
  };
  const translator = deps.translator?.();
  if (translator === undefined) {
    return { kind: 'answered', status: translationFailed(req, res, request.body, o, target, 'STORE_UNAVAILABLE', `backend ${target.name} is a taskcluster queue, and the store its work needs is not open`) };
  }
  try {
    if (target.kind !== 'taskcluster') {
      const name = listedBuilder(o);
      return name !== undefined ? await translator.builderListing(name, request, res) : { kind: 'not-mine' };
    }
    return await translator.routed(target, request, res);
  } catch (error) {
    if (!isStranglerError(error)) throw error;
    return { kind: 'answered', status: translationFailed(req, res, request.body, o, target, error.code, error.message) };
  }
}

/** A translation that could not be done: a force is told in JSON-RPC (what its client parses), anything else in the proxy's error shape. */
function translationFailed(req: IncomingMessage, res: ServerResponse, body: Buffer | null, o: Outcome, target: Backend, code: ErrorCode, message: string): number {
  if (!isForceCall(o.method, o.pathname)) return sendTranslatedError(res, code, message, o, target);
  o.failureKind = code.toLowerCase();
  const status = ERROR_CODES[code].status;
  const retryAfter: string[] = code === 'STORE_UNAVAILABLE' ? ['retry-after', String(STORE_RETRY_AFTER_SECONDS)] : [];
  const id = body === null ? null : (parseJsonRpc(body).id ?? null);
  return sendJsonRpcError({ res, tags: o.tags(target), accept: req.headers.accept, method: o.method }, id, status, JSONRPC_CODES.internalError, `${message} (${code})`, retryAfter);
}

async function answerOwned(deps: ProxyDeps, req: IncomingMessage, res: ServerResponse, table: RoutingTable, owned: OwnedRef, view: RequestView, body: Buffer | null, o: Outcome): Promise<void> {
  o.decision = { backend: table.legacy, reason: 'owner' };
  deps.metrics.decided(undefined, 'owner', 'owner');
  const request: TranslateRequest = { method: o.method, pathname: o.pathname, search: view.search, accept: req.headers.accept, body, tags: o.tags(undefined), route: undefined, table, canFallBack: false };
  o.requestBytes = body?.length ?? 0;
  try {
    const translated = await deps.translator!()!.owned(owned, request, res);
    if (translated.kind === 'answered') {
      o.status = translated.status;
      if (translated.owner !== undefined) o.served = table.backends.get(translated.owner);
    }
    else o.status = sendTranslatedError(res, 'BACKEND_ERROR', 'the queue could not be reached', o, undefined);
  } catch (error) {
    if (!isStranglerError(error)) throw error;
    o.status = sendTranslatedError(res, error.code, error.message, o, undefined);
  }
}

/** The id of a JSON-RPC call in a held body, to answer it in kind; null when there is none to read. */
function jsonRpcIdOf(peeked: PeekedBody | undefined): unknown {
  if (!peeked?.complete) return null;
  const call = parseJsonRpc(peeked.body);
  return call.id ?? null;
}

function searchOf(url: string | undefined): string {
  const at = url?.indexOf('?') ?? -1;
  return at === -1 ? '' : url!.slice(at + 1);
}

function sendTranslatedError(res: ServerResponse, code: ErrorCode, message: string, o: Outcome, backend: Backend | undefined): number {
  o.failureKind = code.toLowerCase();
  // The store comes back on its own (a database restarting, a replica reconnecting): worth trying again shortly.
  if (code === 'STORE_UNAVAILABLE') res.setHeader('retry-after', String(STORE_RETRY_AFTER_SECONDS));
  sendError(res, code, message, o, backend);
  return ERROR_CODES[code].status;
}

/**
 * The last resort: a fault in the proxy's own code is logged with the request
 * id, counted, and answered 500 if nothing was sent yet, so that no bug takes
 * all traffic down with an unhandled rejection.
 */
function internalError(deps: ProxyDeps, res: ServerResponse, o: Outcome, error: unknown): void {
  deps.metrics.internalErrors.inc();
  deps.logger.error('unexpected error in request handling', { requestId: o.requestId, error: (error as Error)?.stack ?? String(error) });
  o.status = 500;
  o.failureKind = 'internal';
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  try {
    sendError(res, 'INTERNAL', 'internal proxy error', o, o.served);
  } catch {
    res.destroy();
  }
}

function sendError(res: ServerResponse, code: ErrorCode, message: string, o: Outcome, backend: Backend | undefined): void {
  if (res.headersSent || res.destroyed) return;
  const decision = o.decision;
  const body = JSON.stringify({ error: message, code, backend: decision?.backend.name ?? null, jobType: decision?.jobType ?? null });
  const headers = o.tags(backend);
  headers.push('content-type', 'application/json', 'content-length', String(Buffer.byteLength(body)), 'cache-control', 'no-store');
  const status = ERROR_CODES[code].status;
  // The reason phrase is given: a backend's refused one must never be reused for the error.
  res.writeHead(status, STATUS_CODES[status]!, headers);
  res.end(body);
}
