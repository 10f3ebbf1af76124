/**
 * The one way the proxy talks HTTP to a backend. Clients' requests (bodies
 * held whole or streaming), shadow copies, health probes and builder lookups
 * all go through undici here, each told to an AnswerSink by the same
 * Exchange handler, so a failure always says whether the request may have
 * reached the backend, and nothing here ever sends a request twice: what
 * happens after a failure is src/resilience/replay.ts's decision.
 * Clients' WebSocket upgrades are the one exception (src/upstream/websocket.ts).
 * docs/decisions/0005-one-engine.md records why.
 */
import type { ServerResponse } from 'node:http';
import { Pool, WebSocket, type Dispatcher } from 'undici';
import type { Backend } from '../routing/table.js';
import type { CapturedResponse } from '../shadow/compare.js';
import { Exchange, type AnswerSink } from './exchange.js';
import type { UpstreamFailure } from './failure.js';
import type { RawHeaders } from './headers.js';
import { ClientAnswer, type ForwardCall, type ForwardRequest } from './to-client.js';

/**
 * Idle connections to a backend are closed after this long, before a typical
 * backend's own keep-alive timeout (5 s in Node's http server, for one), so a
 * request is rarely written to a connection the backend is closing.
 */
const IDLE_TIMEOUT_MS = 4_000;

/** A GET of the proxy's own. */
export interface SmallRequest {
  /** Path and query below the backend's base path. */
  path: string;
  headers: RawHeaders;
  timeoutMs: number;
  /** Keep the body, up to this many bytes (a larger answer fails the request); without it the body is read and dropped. */
  maxBytes?: number;
}

export interface SmallAnswer {
  status: number;
  contentType: string | undefined;
  body: Buffer;
}

/** A call of the proxy's own with any method (a queue call), its answer held whole. */
export interface HeldRequest {
  method: string;
  /** Path and query below the backend's base path. */
  path: string;
  headers: RawHeaders;
  body: Buffer | null;
  timeoutMs: number;
  /** A larger answer fails the call. */
  maxBytes: number;
}

export interface HeldAnswer extends SmallAnswer {
  headers: RawHeaders;
}

/** `complete`: false when a copy's body was larger than its limit and left out. */
type Collected = HeldAnswer & { complete: boolean };

/** A request failure as an Error, for callers that await: keeps the classification. */
export class UpstreamError extends Error {
  constructor(
    readonly failure: UpstreamFailure,
    options: { cause: unknown },
  ) {
    super(failure.message, options);
  }
}

class UpstreamTimeout extends Error {
  readonly code = 'EUPSTREAMTIMEOUT';
}

/**
 * Collects an answer up to `limit` bytes. `truncate`: past the limit keep
 * reading but stop collecting (a shadow copy compares the status alone then);
 * otherwise fail.
 */
class Collector implements AnswerSink {
  private status = 0;
  private contentType: string | undefined;
  private headers: RawHeaders = [];
  private chunks: Buffer[] | undefined = [];
  private size = 0;
  exchange: Exchange | undefined;

  constructor(
    private readonly limit: number,
    private readonly truncate: boolean,
    private readonly done: (error: Error | undefined, answer: Collected | undefined) => void,
  ) {}

  head(status: number, _text: string | undefined, headers: RawHeaders, contentType: string | undefined): void {
    this.status = status;
    this.contentType = contentType;
    this.headers = headers;
  }

  data(chunk: Buffer): boolean {
    this.size += chunk.length;
    if (this.chunks === undefined) return true;
    if (this.size <= this.limit) this.chunks.push(chunk);
    else if (this.truncate) this.chunks = undefined;
    else this.exchange?.abort(Object.assign(new Error(`answer larger than ${this.limit} bytes`), { code: 'UND_ERR_RES_EXCEEDED_MAX_SIZE' }));
    return true;
  }

  end(): void {
    const body = this.chunks === undefined ? Buffer.alloc(0) : Buffer.concat(this.chunks);
    this.done(undefined, { status: this.status, contentType: this.contentType, headers: this.headers, body, complete: this.chunks !== undefined });
  }

  failed(failure: UpstreamFailure, error: unknown): void {
    this.done(new UpstreamError(failure, { cause: error }), undefined);
  }
}

export class Upstream {
  /** Clients' requests, health probes and builder lookups. */
  private readonly pools = new PerBackend((backend) => newPool(backend));
  /** Shadow copies: their own connections, so a copy never shares one with a client's request. */
  private readonly copyPools = new PerBackend((backend) => newPool(backend));

  /**
   * Sends a client's request to `backend` and streams the answer to `res`.
   * Never throws; failures come back as the call's result. The caller tells
   * the call when `res` closes early.
   */
  forward(backend: Backend, request: ForwardRequest, res: ServerResponse): ForwardCall {
    const answer = new ClientAnswer(res, request);
    answer.exchange = this.dispatch(this.pools.get(backend), backend, { method: request.method, path: request.url, headers: request.headers, body: request.body, timeoutMs: undefined }, answer);
    if (res.destroyed) answer.clientGone();
    return answer;
  }

  /**
   * Sends a shadow copy and reads its answer, keeping up to `limit` body bytes
   * (a larger body is read to its end and left out). Never touches a client.
   */
  async copy(backend: Backend, request: { method: string; url: string; headers: RawHeaders; body: Buffer | null }, limit: number, timeoutMs: number): Promise<CapturedResponse> {
    const answer = await this.collect(this.copyPools.get(backend), backend, { method: request.method, path: request.url, headers: request.headers, body: request.body, timeoutMs }, limit, true);
    return { status: answer.status, contentType: answer.contentType, body: answer.complete ? answer.body : undefined };
  }

  /** A GET of the proxy's own (health probe, builder lookup), read to its end. */
  async fetch(backend: Backend, request: SmallRequest): Promise<SmallAnswer> {
    const outgoing = { method: 'GET', path: request.path, headers: request.headers, body: null, timeoutMs: request.timeoutMs };
    const { status, contentType, body } = await this.collect(this.pools.get(backend), backend, outgoing, request.maxBytes ?? 0, request.maxBytes === undefined);
    return { status, contentType, body };
  }

  /**
   * A call of the proxy's own with any method and body (a queue's API), its
   * answer held whole up to `maxBytes`. Sent once: a failure says whether it
   * may have reached the backend, and the caller decides about sending again.
   */
  async send(backend: Backend, request: HeldRequest): Promise<HeldAnswer> {
    const { status, contentType, headers, body } = await this.collect(this.pools.get(backend), backend, request, request.maxBytes, false);
    return { status, contentType, headers, body };
  }

  /**
   * A GET whose answer goes to `sink` as it arrives (a log artifact streamed
   * to a client). The returned exchange lets the caller abort it.
   */
  stream(backend: Backend, request: { path: string; headers: RawHeaders }, sink: AnswerSink): Exchange {
    return this.dispatch(this.pools.get(backend), backend, { method: 'GET', path: request.path, headers: request.headers, body: null, timeoutMs: undefined }, sink);
  }

  /**
   * A WebSocket of the proxy's own to a backend (a Buildbot master's `/ws`
   * events, which the build tracker follows), through undici like every
   * other call of the proxy's own. The caller speaks the protocol and closes it.
   */
  webSocket(backend: Backend, path: string): WebSocket {
    const url = new URL(backend.basePath + path, backend.origin);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    return new WebSocket(url, { headers: { 'user-agent': 'strangler-proxy build tracking' } });
  }

  /** Closes the connections of backends no longer in use, once their requests finish. */
  retainOnly(backends: Iterable<Backend>): void {
    const keep = new Set([...backends].map(poolKey));
    this.pools.retainOnly(keep);
    this.copyPools.retainOnly(keep);
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools.closeAll(), ...this.copyPools.closeAll()]);
  }

  /** A request with an overall time limit, its answer collected (copies, probes, lookups). */
  private collect(pool: Pool, backend: Backend, request: Outgoing & { timeoutMs: number }, limit: number, truncate: boolean): Promise<Collected> {
    return new Promise((resolve, reject) => {
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const collector = new Collector(limit, truncate, (error, answer) => {
        settled = true;
        clearTimeout(timer);
        if (answer) resolve(answer);
        else reject(error);
      });
      const exchange = this.dispatch(pool, backend, request, collector);
      collector.exchange = exchange;
      if (settled) return; // refused before it was sent
      timer = setTimeout(() => exchange.abort(new UpstreamTimeout(`no complete answer within ${request.timeoutMs} ms`)), request.timeoutMs);
      timer.unref();
    });
  }

  private dispatch(pool: Pool, backend: Backend, request: Outgoing, sink: AnswerSink): Exchange {
    const exchange = new Exchange(sink);
    const options: Dispatcher.DispatchOptions = {
      origin: backend.origin,
      path: backend.basePath + request.path,
      method: request.method,
      headers: request.headers,
      body: request.body,
      headersTimeout: request.timeoutMs ?? backend.responseTimeoutMs,
      bodyTimeout: request.timeoutMs ?? backend.bodyIdleTimeoutMs,
    };
    // undici reports a request it refuses (an invalid header, say) to the handler, before any byte is sent.
    pool.dispatch(options, exchange);
    return exchange;
  }
}

interface Outgoing {
  method: string;
  path: string;
  headers: RawHeaders;
  body: ForwardRequest['body'];
  timeoutMs: number | undefined;
}

function newPool(backend: Backend): Pool {
  return new Pool(backend.origin, { connect: { timeout: backend.connectTimeoutMs }, keepAliveTimeout: IDLE_TIMEOUT_MS, keepAliveMaxTimeout: 60_000 });
}

/**
 * One pool per backend origin (and connect timeout), made when first needed.
 * Found by the Backend object first, so the common lookup builds no key
 * string; a pool that is closing or closed is replaced.
 */
class PerBackend {
  private readonly byBackend = new WeakMap<Backend, Pool>();
  private readonly byKey = new Map<string, Pool>();

  constructor(private readonly create: (backend: Backend) => Pool) {}

  get(backend: Backend): Pool {
    const known = this.byBackend.get(backend);
    if (known !== undefined && usable(known)) return known;
    const key = poolKey(backend);
    let pool = this.byKey.get(key);
    if (pool === undefined || !usable(pool)) {
      pool = this.create(backend);
      this.byKey.set(key, pool);
    }
    this.byBackend.set(backend, pool);
    return pool;
  }

  /** Closes the pools whose key is not in `keep`. */
  retainOnly(keep: Set<string>): void {
    for (const [key, pool] of this.byKey) {
      if (keep.has(key)) continue;
      this.byKey.delete(key);
      void pool.close().catch(() => undefined);
    }
  }

  closeAll(): Promise<void>[] {
    const all = [...this.byKey.values()];
    this.byKey.clear();
    return all.map((pool) => pool.close().catch(() => undefined));
  }
}

function usable(pool: Pool): boolean {
  return !pool.closed && !pool.destroyed;
}

function poolKey(backend: Backend): string {
  return `${backend.origin}|${backend.connectTimeoutMs}`;
}
