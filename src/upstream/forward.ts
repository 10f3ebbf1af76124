/**
 * The forwarding engine: one function that sends this request to that
 * backend and streams the answer back. Routing never looks inside; the
 * engine can be measured and replaced on its own.
 *
 * A request whose body is whole in memory (none, or one the proxy peeked to
 * route it: nearly every CI API call) goes through our own HTTP/1.1 client
 * (src/proxy/backend-client.ts, docs/decisions/0004-backend-client.md); one
 * whose body is still streaming in from the client goes through undici's
 * dispatch API with a raw handler (docs/decisions/0001-forwarding-engine.md).
 * Either way the answer's headers are passed on as a flat array, the body is
 * written straight to the client with backpressure (the backend is paused
 * while the client is slow), and nothing here retries: a request is sent at
 * most once. Shadow copies take a third way, through a client made for them
 * (src/proxy/copy-client.ts, docs/decisions/0003-shadow-copy-client.md).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';
import type { Backend } from '../routing/table.js';
import { downstreamHeaders, type RawHeaders } from './headers.js';
import { gcPacer } from '../proxy/gc-pacer.js';
import type { CapturedResponse } from '../shadow/compare.js';
import { BackendClient, type BackendConnection, type ResponseSink } from '../proxy/backend-client.js';
import { CopyClient, type CopyHandler } from '../proxy/copy-client.js';
import { classifyUpstreamError, type UpstreamFailure } from './failure.js';

export type RequestBody = Buffer | Readable | IncomingMessage | null;

export interface ForwardRequest {
  method: string;
  /** Path and query, as the client sent them. */
  url: string;
  headers: RawHeaders;
  body: RequestBody;
  /** Headers of the proxy's own appended to the backend's answer (X-Request-Id, X-Strangler-*). */
  responseTags?: RawHeaders;
  /** Keep a copy of up to this many response bytes (for shadow comparison); the client's stream is unaffected. */
  captureBytes?: number;
  /** Told of each response chunk passed to the client (for the byte counters, which are read when the client's response closes). */
  onResponseBytes?: (bytes: number) => void;
}

export type ForwardResult =
  | { ok: true; status: number; responseBytes: number; captured?: CapturedResponse }
  /** `responseStarted`: the backend's status line was already sent on, so the client cannot get an error answer. */
  | { ok: false; failure: UpstreamFailure; responseStarted: boolean; responseBytes: number; error: unknown };

class ClientGoneError extends Error {
  readonly code = 'ECLIENTABORTED';
  constructor() {
    super('the client closed the connection');
  }
}

/**
 * Shadow copies share a few pipelined connections per backend, and the copies
 * of one event-loop turn leave in one write (src/proxy/copy-client.ts). Only
 * copies go this way; clients' requests never wait behind another.
 */
const COPY_OPTIONS = { connections: 2, pipelining: 64, idleTimeoutMs: 4_000 };

/**
 * Idle connections to a backend are closed after this long, before a typical
 * backend's own keep-alive timeout (5 s in Node's http server, for one), so a request
 * is rarely written to a connection the backend is closing (such a request
 * fails, and is not resent unless it is safe to).
 */
const IDLE_TIMEOUT_MS = 4_000;

const EMPTY = Buffer.alloc(0);

/** Methods whose requests carry a body by definition: without one they say `content-length: 0` (as undici does). */
const EXPECTS_BODY = new Set(['POST', 'PUT', 'PATCH', 'QUERY', 'PROPFIND', 'PROPPATCH']);

type Abort = (reason: Error) => void;

/** The chunks as one buffer; the usual single chunk as it is (a small answer arrives in one read). */
function joined(chunks: Buffer[], size: number): Buffer {
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
}

/** A request under way: its result, and how to call it off when the client hangs up. */
export interface ForwardCall {
  readonly result: Promise<ForwardResult>;
  /** The client hung up: cancel the exchange with the backend (frees its connection). No-op once the answer is complete. */
  clientGone(): void;
}

/**
 * One request's exchange with its backend: told of the answer by our own
 * client (as its ResponseSink) or by undici (as its raw dispatch handler:
 * onConnect/onHeaders/onData/onComplete/onError). A class, not closures:
 * this runs once per proxied request.
 */
class Exchange implements ForwardCall, ResponseSink {
  readonly result: Promise<ForwardResult>;
  private resolve!: (result: ForwardResult) => void;
  private status = 0;
  private responseBytes = 0;
  private contentType: string | undefined;
  private captured: Buffer[] | undefined;
  /** The connection of our own client carrying this exchange, or undici's abort and resume. */
  connection: BackendConnection | undefined;
  private abort: Abort | undefined;
  private resumeBackend: (() => void) | undefined;
  private settled = false;

  constructor(
    private readonly res: ServerResponse,
    private readonly request: ForwardRequest,
  ) {
    this.result = new Promise((resolve) => (this.resolve = resolve));
    if ((request.captureBytes ?? 0) > 0) this.captured = [];
  }

  clientGone(): void {
    if (this.settled || this.res.writableFinished) return;
    if (this.connection !== undefined) this.connection.abort(this, new ClientGoneError());
    else this.abort?.(new ClientGoneError());
  }

  settle(result: ForwardResult): void {
    if (this.settled) return;
    this.settled = true;
    this.resolve(result);
  }

  // ResponseSink (our own client)

  head(statusCode: number, statusText: string, headers: RawHeaders, contentType: string | undefined): boolean {
    this.contentType = contentType;
    try {
      this.writeHead(statusCode, statusText, headers);
      return true;
    } catch {
      return false; // node refused a header name or value: nothing was sent to the client
    }
  }

  body(chunk: Buffer): boolean {
    return this.onData(chunk);
  }

  end(): void {
    this.onComplete();
  }

  fail(error: Error): void {
    this.onError(error);
  }

  private readonly resumeOwn = (): void => this.connection?.resume(this);

  // undici's dispatch handler

  onConnect(abort: Abort): void {
    this.abort = abort;
    if (this.res.destroyed) abort(new ClientGoneError());
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    if (statusCode < 200) return true; // 1xx informational; the final answer follows
    this.resumeBackend = resume;
    // Nothing is captured here: a shadowed request has its body held whole (src/proxy/shadow.ts), so it goes through our own client.
    this.writeHead(statusCode, statusText, downstreamHeaders(rawHeaders));
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.responseBytes += chunk.length;
    gcPacer.forwarded(chunk.length);
    this.request.onResponseBytes?.(chunk.length);
    if (this.captured) {
      // No copy: the client hands over a view of the socket's own read buffer, which nothing reuses.
      if (this.responseBytes <= this.request.captureBytes!) this.captured.push(chunk);
      else this.captured = undefined; // too large to compare: the status alone will be
    }
    // A 64 KiB chunk is over the socket's 16 KiB mark, so write() says false even when the kernel
    // took it all at once: the backend is paused only when bytes are really waiting in memory.
    if (this.res.write(chunk) || this.res.writableLength === 0) return true;
    this.res.once('drain', this.resumeBackend ?? this.resumeOwn);
    return false;
  }

  onComplete(): void {
    this.res.end();
    const captured = this.request.captureBytes ? { status: this.status, contentType: this.contentType, body: this.captured ? joined(this.captured, this.responseBytes) : undefined } : undefined;
    this.settle(captured ? { ok: true, status: this.status, responseBytes: this.responseBytes, captured } : { ok: true, status: this.status, responseBytes: this.responseBytes });
  }

  onError(error: Error): void {
    this.settle({ ok: false, failure: classifyUpstreamError(error), responseStarted: this.status !== 0, responseBytes: this.responseBytes, error });
  }

  onUpgrade(): void {
    // Upgrades (WebSockets) never come this way: src/proxy/websocket.ts handles them.
  }

  onBodySent(): void {}

  onResponseStarted(): void {}

  /** The backend's status and headers, with the proxy's own tags, to the client. */
  private writeHead(statusCode: number, statusText: string, headers: RawHeaders): void {
    const tags = this.request.responseTags;
    if (tags !== undefined) for (let i = 0; i < tags.length; i++) headers.push(tags[i]!);
    if (statusText) this.res.writeHead(statusCode, statusText, headers);
    else this.res.writeHead(statusCode, headers);
    this.status = statusCode;
  }
}

export class Forwarder {
  /** Our own client, for requests whose body is held whole. */
  private readonly clients = new PerBackend<BackendClient>(
    (client) => !client.isClosing,
    (backend) => new BackendClient(backend.origin, { connectTimeoutMs: backend.connectTimeoutMs, idleTimeoutMs: IDLE_TIMEOUT_MS }),
  );
  /** undici, for requests whose body streams. */
  private readonly pools = new PerBackend<Pool>(
    (pool) => !pool.closed && !pool.destroyed,
    (backend) => new Pool(backend.origin, { connect: { timeout: backend.connectTimeoutMs }, keepAliveTimeout: IDLE_TIMEOUT_MS, keepAliveMaxTimeout: 60_000 }),
  );
  private readonly copyClients = new PerBackend<CopyClient>(
    (client) => !client.isClosing,
    (backend) => new CopyClient(backend.origin, { ...COPY_OPTIONS, connectTimeoutMs: backend.connectTimeoutMs }),
  );

  /**
   * Sends `request` to `backend`, writes the answer to `res`. Never throws;
   * failures come back as the call's result. The caller tells the call when
   * `res` closes early (it already listens for 'close'; one listener per
   * request is cheaper than two).
   */
  forward(backend: Backend, request: ForwardRequest, res: ServerResponse): ForwardCall {
    const exchange = new Exchange(res, request);
    const body = request.body;
    try {
      if (body === null || Buffer.isBuffer(body)) {
        // The body is whole in memory (or there is none): our own client.
        const outgoing = { method: request.method, path: backend.basePath + request.url, headers: request.headers, body: body ?? (EXPECTS_BODY.has(request.method) ? EMPTY : null) };
        exchange.connection = this.clients.get(backend).request(outgoing, { responseMs: backend.responseTimeoutMs, bodyIdleMs: backend.bodyIdleTimeoutMs }, exchange);
        if (res.destroyed) exchange.clientGone();
      } else {
        this.pools.get(backend).dispatch(
          {
            origin: backend.origin,
            path: backend.basePath + request.url,
            method: request.method as Dispatcher.HttpMethod,
            headers: request.headers,
            body,
            headersTimeout: backend.responseTimeoutMs,
            bodyTimeout: backend.bodyIdleTimeoutMs,
          },
          exchange as unknown as Dispatcher.DispatchHandler,
        );
      }
    } catch (error) {
      // A request that cannot be written (an invalid header value, say) is refused before anything is sent.
      exchange.settle({ ok: false, failure: { ...classifyUpstreamError(error), mayHaveReachedBackend: false }, responseStarted: false, responseBytes: 0, error });
    }
    return exchange;
  }

  /**
   * Sends a copy of a request (shadow traffic) and reads the answer, up to
   * `limit` bytes; never touches a client. Tells `handler` once: with an error
   * on failure or when no complete answer came within `timeoutMs`.
   */
  copy(backend: Backend, request: { method: string; url: string; headers: RawHeaders; body: Buffer | null }, limit: number, timeoutMs: number, handler: CopyHandler): void {
    this.copyClients.get(backend).send({ method: request.method, path: backend.basePath + request.url, headers: request.headers, body: request.body }, limit, timeoutMs, handler);
  }

  /** Closes the clients of backends no longer in use, once their requests finish. */
  retainOnly(backends: Iterable<Backend>): void {
    const keep = new Set([...backends].map(poolKey));
    for (const kind of [this.clients, this.pools, this.copyClients]) kind.retainOnly(keep);
  }

  async close(): Promise<void> {
    await Promise.all([this.clients, this.pools, this.copyClients].flatMap((kind) => kind.closeAll()));
  }
}

/**
 * One kind of client per backend origin (and connect timeout), made when first
 * needed. Found by the Backend object first, so the common lookup builds no key
 * string; a client that is closing or closed is replaced.
 */
class PerBackend<T extends { close(): Promise<void> }> {
  private readonly byBackend = new WeakMap<Backend, T>();
  private readonly byKey = new Map<string, T>();

  constructor(
    private readonly usable: (client: T) => boolean,
    private readonly create: (backend: Backend) => T,
  ) {}

  get(backend: Backend): T {
    const known = this.byBackend.get(backend);
    if (known !== undefined && this.usable(known)) return known;
    const key = poolKey(backend);
    let client = this.byKey.get(key);
    if (client === undefined || !this.usable(client)) {
      client = this.create(backend);
      this.byKey.set(key, client);
    }
    this.byBackend.set(backend, client);
    return client;
  }

  /** Closes the clients whose key is not in `keep`. */
  retainOnly(keep: Set<string>): void {
    for (const [key, client] of this.byKey) {
      if (keep.has(key)) continue;
      this.byKey.delete(key);
      void client.close().catch(() => undefined);
    }
  }

  closeAll(): Promise<void>[] {
    const all = [...this.byKey.values()];
    this.byKey.clear();
    return all.map((client) => client.close().catch(() => undefined));
  }
}

function poolKey(backend: Backend): string {
  return `${backend.origin}|${backend.connectTimeoutMs}`;
}
