/**
 * The proxy's request pipeline: find the job type, decide once against the
 * routing table in force at the start of the request, forward, then log and
 * count what happened.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline, Transform } from 'node:stream';
import { ERROR_CODES, type ErrorCode } from '../errors.js';
import type { Logger } from '../logging/logger.js';
import { DEFAULT_RULE, upstreamErrorLabel, type ProxyMetrics } from '../metrics/metrics.js';
import type { TrafficStats } from '../metrics/traffic.js';
import { decide, type Decision } from '../routing/decide.js';
import type { Backend, RoutingTable } from '../routing/table.js';
import type { CircuitBreakers } from './circuit.js';
import type { HealthMonitor } from './health.js';
import { isMutating, type Shadower } from './shadow.js';
import type { BuilderDirectory } from './builder-directory.js';
import type { Forwarder, RequestBody } from './forward.js';
import { upstreamHeaders } from './headers.js';
import { gatherFacts, type GatheredFacts } from './facts.js';
import { peekBody, type PeekedBody } from './peek.js';

export interface ProxyDeps {
  /** The routing table in force; called once per request. */
  currentTable: () => RoutingTable;
  forwarder: Forwarder;
  builders: BuilderDirectory;
  breakers: CircuitBreakers;
  health: Pick<HealthMonitor, 'state'>;
  shadower: Shadower;
  metrics: ProxyMetrics;
  traffic: TrafficStats;
  logger: Logger;
  /** True once shutdown began: answers then carry `Connection: close` so keep-alive clients go elsewhere. */
  isDraining?: () => boolean;
}

/** A backend takes requests unless its circuit is open or its health probes say it is down. */
function isAvailable(deps: ProxyDeps, backend: Backend): boolean {
  if (deps.health.state(backend.name)?.up === false) return false;
  return deps.breakers.allow(backend);
}

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

export function createProxyHandler(deps: ProxyDeps): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    void handle(deps, req, res);
  };
}

async function handle(deps: ProxyDeps, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const started = performance.now();
  const table = deps.currentTable();
  const requestId = requestIdOf(req);
  const method = req.method ?? 'GET';
  res.setHeader('x-request-id', requestId);
  if (deps.isDraining?.()) res.shouldKeepAlive = false; // node then sends Connection: close

  let decision: Decision | undefined;
  let failureKind: string | undefined;
  let status = 0;

  const originTarget = originFormTarget(req.url);
  const queryAt = originTarget?.indexOf('?') ?? -1;
  const pathname = originTarget === undefined ? '' : queryAt === -1 ? originTarget : originTarget.slice(0, queryAt);

  let jobTypeLabel = 'none';
  let requestBytes = 0;
  let responseBytes = 0;
  let served: Backend | undefined;
  let sticky: string | undefined;
  let failover: string | undefined;
  let shadowNote: string | undefined;
  let retries = 0;
  res.once('close', () => {
    if (!res.writableFinished && status === 0) status = CLIENT_CLOSED;
    const seconds = (performance.now() - started) / 1000;
    const backend = served?.name ?? 'none';
    const code = status || res.statusCode;
    deps.metrics.requestFinished({ backend, jobType: jobTypeLabel, method: deps.metrics.methodLabel(method), code, seconds, requestBytes, responseBytes });
    if (served) deps.traffic.record({ jobType: jobTypeLabel, rule: decision?.route?.pattern ?? DEFAULT_RULE, backend, status: code, seconds });
    deps.logger.access({
      requestId,
      method,
      path: pathname.slice(0, 2048), // SECURITY: never the query string, which may carry tokens
      status: status || res.statusCode,
      durationMs: Math.round(seconds * 1e6) / 1e3,
      backend,
      jobType: decision?.jobType,
      rule: decision?.route?.pattern,
      reason: decision?.reason,
      sticky,
      fallback: failover,
      retries: retries || undefined,
      shadow: shadowNote,
      error: failureKind,
    });
  });

  try {
    if (originTarget === undefined) {
      status = 400;
      return sendError(res, 'BAD_REQUEST', 'the request target is not a path', undefined);
    }

    let gathered: GatheredFacts;
    try {
      gathered = await gatherFacts({ method, pathname, search: queryAt === -1 ? '' : originTarget.slice(queryAt + 1), headers: req.headers, peekBody: (limit) => peekBody(req, limit) }, table, deps.builders);
    } catch {
      // Reading the body failed: the client hung up mid-body. Nobody is left to answer.
      failureKind = 'client-aborted';
      status = CLIENT_CLOSED;
      res.destroy();
      return;
    }
    decision = decide(table, gathered.facts);
    jobTypeLabel = deps.metrics.jobTypeLabel(table, decision.jobType);
    deps.metrics.decided(decision.route?.pattern, decision.reason, decision.backend.name);
    if (decision.jobType !== undefined) res.setHeader('x-strangler-job-type', decision.jobType);
    sticky = decision.sticky?.source;

    const route = decision.route;
    const primary = decision.backend;
    const fallback = route?.fallback !== undefined && route.fallback !== primary.name ? table.backends.get(route.fallback) : undefined;
    const body = requestBody(req, gathered.peeked, (n) => (requestBytes = n));
    // Only a body we hold whole can be sent a second time; a streamed one is gone once read.
    const replayable = body === null || Buffer.isBuffer(body);

    let target = primary;
    if (!isAvailable(deps, primary)) {
      if (fallback && replayable && isAvailable(deps, fallback)) {
        const circuitOpen = deps.breakers.state(primary.name) !== 'closed';
        failover = circuitOpen ? 'circuit-open' : 'unhealthy';
        deps.metrics.fallbacks.inc({ from: primary.name, to: fallback.name, cause: circuitOpen ? 'circuit_open' : 'unhealthy' });
        target = fallback;
      } else {
        served = primary;
        status = 503;
        deps.metrics.unavailable.inc({ backend: primary.name, job_type: jobTypeLabel });
        res.setHeader('x-strangler-backend', primary.name);
        res.setHeader('retry-after', String(deps.breakers.retryAfterSeconds(primary.name)));
        return sendError(res, 'BACKEND_UNAVAILABLE', `backend ${primary.name} is unavailable (${deps.breakers.state(primary.name) === 'closed' ? 'health probes failing' : 'circuit open'})`, decision);
      }
    }

    const shadowTicket = deps.shadower.start(table, decision, { method, url: originTarget, pathname, headers: upstreamHeaders(req, { requestId }), body, requestId, jobTypeLabel });
    shadowNote = shadowTicket?.note;
    const captureBytes = shadowTicket?.note === 'sent' ? shadowTicket.captureBytes : 0;

    for (let attempt = 0; ; attempt++) {
      served = target;
      deps.metrics.sending(target.name, jobTypeLabel);
      deps.traffic.started(target.name);
      res.setHeader('x-strangler-backend', target.name);
      const headers = upstreamHeaders(req, { requestId, ...(target.preserveHost ? {} : { backendHost: new URL(target.origin).host }) });
      // Counted as they pass: the response's 'close' (where metrics are recorded) can come before forward() returns.
      const result = await deps.forwarder.forward(target, { method, url: originTarget, headers, body, captureBytes, onResponseBytes: (n) => (responseBytes += n) }, res);
      deps.metrics.sent(target.name, jobTypeLabel);
      deps.traffic.finished(target.name);

      if (result.ok) {
        status = result.status;
        if (status === 502 || status === 503 || status === 504) deps.breakers.failed(target);
        else deps.breakers.succeeded(target);
        if (shadowTicket?.note === 'sent') shadowTicket.primaryDone(result.captured);
        return;
      }
      if (shadowTicket?.note === 'sent' && attempt === 0) shadowTicket.primaryDone(undefined);

      failureKind = result.failure.kind;
      if (result.failure.kind === 'client-aborted') {
        status = CLIENT_CLOSED;
        res.destroy();
        return;
      }
      deps.breakers.failed(target);
      deps.metrics.upstreamErrors.inc({ backend: target.name, job_type: jobTypeLabel, kind: upstreamErrorLabel(result.failure.kind) });
      deps.logger.warn('backend failed', {
        requestId,
        backend: target.name,
        url: target.url,
        jobType: decision.jobType,
        kind: result.failure.kind,
        mayHaveReachedBackend: result.failure.mayHaveReachedBackend,
        detail: (result.error as Error)?.message,
      });
      if (result.responseStarted || res.headersSent) {
        // The status line is out: the only honest signal left is to cut the connection.
        status = result.responseStarted ? res.statusCode : 502;
        res.destroy();
        return;
      }
      // SAFETY: a request goes elsewhere only if it provably never reached its backend.
      if (!result.failure.mayHaveReachedBackend && fallback && target !== fallback && replayable && isAvailable(deps, fallback)) {
        failover = result.failure.kind;
        deps.metrics.fallbacks.inc({ from: target.name, to: fallback.name, cause: upstreamErrorLabel(result.failure.kind) });
        target = fallback;
        continue;
      }
      // Safe methods may be sent again where the route allows; anything else never is.
      if (!isMutating(method) && replayable && route !== undefined && attempt < route.retries) {
        retries++;
        deps.metrics.retries.inc({ backend: target.name });
        continue;
      }
      status = ERROR_CODES[result.failure.code].status;
      return sendError(res, result.failure.code, `backend ${target.name}: ${result.failure.message}`, decision);
    }
  } catch (error) {
    // A fault of ours: say so once in the log with an id the client also gets.
    deps.logger.error('internal error', { requestId, error: (error as Error)?.stack ?? String(error) });
    status = 500;
    if (!res.headersSent) {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'internal proxy error', requestId }));
    } else res.destroy();
  }
}

function sendError(res: ServerResponse, code: ErrorCode, message: string, decision: Decision | undefined): void {
  if (res.headersSent || res.destroyed) return;
  const body = JSON.stringify({ error: message, code, backend: decision?.backend.name ?? null, jobType: decision?.jobType ?? null });
  res.writeHead(ERROR_CODES[code].status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(body);
}
