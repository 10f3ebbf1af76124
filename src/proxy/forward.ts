/**
 * The forwarding engine: one function that sends this request to that
 * backend and streams the answer back. Routing never looks inside; the
 * engine can be measured and replaced on its own.
 *
 * Built on undici's connection pools and its dispatch API with a raw
 * handler: response headers arrive as the raw array undici parsed (nothing
 * rebuilt into objects), the body is written straight to the client with
 * backpressure (the backend is paused while the client is slow), and there
 * are no intermediate streams (docs/decisions/0001-forwarding-engine.md has
 * the measurements behind that choice). Nothing here retries: a request is
 * sent at most once. Shadow copies take another way, through a client made
 * for them (src/proxy/copy-client.ts, docs/decisions/0003-shadow-copy-client.md).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';
import type { Backend } from '../routing/table.js';
import { downstreamHeaders, type RawHeaders } from './headers.js';
import { gcPacer } from './gc-pacer.js';
import type { CapturedResponse } from './compare.js';
import { CopyClient, type CopyHandler } from './copy-client.js';
import { classifyUpstreamError, type UpstreamFailure } from './upstream-errors.js';

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

type Abort = (reason: Error) => void;

/** The chunks as one buffer; the usual single chunk as it is (a small answer arrives in one read). */
function joined(chunks: Buffer[], size: number): Buffer {
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
}

/** The first value of a header among undici's raw response headers. `lowerName` must be lower case. */
function rawValue(raw: readonly Buffer[], lowerName: string): string | undefined {
  for (let i = 0; i < raw.length; i += 2) if (isNamed(raw[i]!, lowerName)) return raw[i + 1]!.toString('latin1');
  return undefined;
}

/** Whether the header name in `name` is `lowerName` in any case, compared byte by byte (no string per header). */
function isNamed(name: Buffer, lowerName: string): boolean {
  if (name.length !== lowerName.length) return false;
  for (let i = 0; i < name.length; i++) {
    let c = name[i]!;
    if (c >= 65 && c <= 90) c += 32;
    if (c !== lowerName.charCodeAt(i)) return false;
  }
  return true;
}

/** A request under way: its result, and how to call it off when the client hangs up. */
export interface ForwardCall {
  readonly result: Promise<ForwardResult>;
  /** The client hung up: cancel the exchange with the backend (frees its connection). No-op once the answer is complete. */
  clientGone(): void;
}

/**
 * One request's exchange with its backend, as undici's raw dispatch handler
 * (onConnect/onHeaders/onData/onComplete/onError). A class, not closures:
 * this runs once per proxied request.
 */
class Exchange implements ForwardCall {
  readonly result: Promise<ForwardResult>;
  private resolve!: (result: ForwardResult) => void;
  private status = 0;
  private responseBytes = 0;
  private contentType: string | undefined;
  private captured: Buffer[] | undefined;
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
    if (!this.settled && !this.res.writableFinished) this.abort?.(new ClientGoneError());
  }

  settle(result: ForwardResult): void {
    if (this.settled) return;
    this.settled = true;
    this.resolve(result);
  }

  onConnect(abort: Abort): void {
    this.abort = abort;
    if (this.res.destroyed) abort(new ClientGoneError());
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    if (statusCode < 200) return true; // 1xx informational; the final answer follows
    this.status = statusCode;
    this.resumeBackend = resume;
    if (this.captured) this.contentType = rawValue(rawHeaders, 'content-type');
    const headers = downstreamHeaders(rawHeaders);
    const tags = this.request.responseTags;
    if (tags !== undefined) for (let i = 0; i < tags.length; i++) headers.push(tags[i]!);
    if (statusText) this.res.writeHead(statusCode, statusText, headers);
    else this.res.writeHead(statusCode, headers);
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.responseBytes += chunk.length;
    gcPacer.forwarded(chunk.length);
    this.request.onResponseBytes?.(chunk.length);
    if (this.captured) {
      // No copy: undici hands over a view of the socket's own read buffer, which nothing reuses.
      if (this.responseBytes <= this.request.captureBytes!) this.captured.push(chunk);
      else this.captured = undefined; // too large to compare: the status alone will be
    }
    if (this.res.write(chunk)) return true;
    this.res.once('drain', this.resumeBackend!);
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
}

export class Forwarder {
  private readonly pools = new Map<string, Pool>();
  private readonly copyClients = new Map<string, CopyClient>();
  /** The copy client per backend object, so the common lookup builds no key string. */
  private readonly copyClientOf = new WeakMap<Backend, CopyClient>();

  /**
   * Sends `request` to `backend`, writes the answer to `res`. Never throws;
   * failures come back as the call's result. The caller tells the call when
   * `res` closes early (it already listens for 'close'; one listener per
   * request is cheaper than two).
   */
  forward(backend: Backend, request: ForwardRequest, res: ServerResponse): ForwardCall {
    const exchange = new Exchange(res, request);
    try {
      this.poolFor(backend).dispatch(
        {
          origin: backend.origin,
          path: backend.basePath + request.url,
          method: request.method as Dispatcher.HttpMethod,
          headers: request.headers,
          body: request.body,
          headersTimeout: backend.responseTimeoutMs,
          bodyTimeout: backend.bodyIdleTimeoutMs,
        },
        exchange as unknown as Dispatcher.DispatchHandler,
      );
    } catch (error) {
      // undici rejects some requests synchronously (an invalid header value, say): nothing was sent.
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
    let client = this.copyClientOf.get(backend);
    if (client === undefined || client.isClosing) {
      const key = poolKey(backend);
      client = this.copyClients.get(key);
      if (client === undefined) {
        client = new CopyClient(backend.origin, { ...COPY_OPTIONS, connectTimeoutMs: backend.connectTimeoutMs });
        this.copyClients.set(key, client);
      }
      this.copyClientOf.set(backend, client);
    }
    client.send({ method: request.method, path: backend.basePath + request.url, headers: request.headers, body: request.body }, limit, timeoutMs, handler);
  }

  /** The pool per backend object, so the common lookup builds no key string. */
  private readonly poolOf = new WeakMap<Backend, Pool>();
  private poolFor(backend: Backend): Pool {
    const known = this.poolOf.get(backend);
    if (known !== undefined && !known.closed && !known.destroyed) return known;
    const key = poolKey(backend);
    let pool = this.pools.get(key);
    if (pool === undefined || pool.closed || pool.destroyed) {
      pool = new Pool(backend.origin, {
        connect: { timeout: backend.connectTimeoutMs },
        // Idle sockets are closed before a typical backend's own keep-alive timeout, so a request
        // is rarely written to a socket the backend is closing (that request could not be retried).
        keepAliveTimeout: 4_000,
        keepAliveMaxTimeout: 60_000,
      });
      this.pools.set(key, pool);
    }
    this.poolOf.set(backend, pool);
    return pool;
  }

  /** Closes the pools of backends no longer in use, once their requests finish. */
  retainOnly(backends: Iterable<Backend>): void {
    const keep = new Set([...backends].map(poolKey));
    for (const pools of [this.pools, this.copyClients] as Map<string, { close(): Promise<void> }>[]) {
      for (const [key, pool] of pools) {
        if (!keep.has(key)) {
          pools.delete(key);
          void pool.close().catch(() => undefined);
        }
      }
    }
  }

  async close(): Promise<void> {
    const pools = [...this.pools.values(), ...this.copyClients.values()];
    this.pools.clear();
    this.copyClients.clear();
    await Promise.all(pools.map((p) => p.close().catch(() => undefined)));
  }
}

function poolKey(backend: Backend): string {
  return `${backend.origin}|${backend.connectTimeoutMs}`;
}
