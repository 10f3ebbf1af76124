/**
 * The HTTP/1.1 client for clients' requests whose body is whole in memory:
 * no body, or a body the proxy peeked to route it. That is nearly every call
 * of a CI API (reads, and forces). Requests with a streamed body (uploads,
 * bodies past the peek limit) go through undici (src/proxy/forward.ts).
 *
 * It does what a proxy's backend side needs and nothing more: a keep-alive
 * pool per backend origin, one request per connection at a time (no client
 * waits behind another), the request as one latin1 string (and the body),
 * the answer read by the shared parser (src/proxy/http1.ts) and streamed to
 * the sender with backpressure. Through undici the same exchange cost the
 * proxy ~10 µs more CPU per request (docs/decisions/0004-backend-client.md).
 *
 * Timeouts are checked by one sweep per client every 50 ms, not a timer per
 * request: a deadline fires up to that much late.
 *
 * SAFETY: nothing is ever sent twice. A failure is reported with whether the
 * request may have reached the backend: only errors before the connection
 * was established say it cannot have (the request is written after that).
 */
import type net from 'node:net';
import { StranglerError } from '../errors.js';
import { downstreamHeadersOfHead, type RawHeaders } from '../upstream/headers.js';
import { AnswerParser, connectTo, endpointOf, requestHead, type AnswerEvents, type AnswerTarget, type Endpoint, type OutgoingRequest } from './http1.js';

/** What a request's sender is told, in this order: `head`, `body` chunks, `end`; or `fail`, at any point before `end`. */
export interface ResponseSink {
  /** The answer's status and end-to-end headers. False: they cannot be passed on, and the exchange fails. */
  head(status: number, statusText: string, headers: RawHeaders, contentType: string | undefined): boolean;
  /** A piece of the body. False: no more until the sender calls `resume(sink)` on the connection. */
  body(chunk: Buffer): boolean;
  end(): void;
  /** A StranglerError (BACKEND_*) once connected; before that, the socket's own error (ECONNREFUSED, ENOTFOUND, ...). */
  fail(error: Error): void;
}

export interface BackendClientOptions {
  connectTimeoutMs: number;
  /** An idle connection is closed after this long (before a typical backend's own keep-alive timeout closes it under a request). */
  idleTimeoutMs: number;
}

export interface Timeouts {
  /** Until the answer's head is read. */
  responseMs: number;
  /** Longest silence inside the body while the sender is reading (0: none). */
  bodyIdleMs: number;
}

const SWEEP_MS = 50;
/**
 * A body up to this size leaves with its head as one latin1 string (latin1
 * maps every byte to one character and back, so the bytes are the client's
 * own): one write instead of a corked pair, ~1 µs less per force call.
 */
const ONE_WRITE_BODY_BYTES = 16 * 1024;
/** A backend's own `Keep-Alive: timeout=N` is trusted minus this margin, so we close first. */
const KEEP_ALIVE_MARGIN_MS = 1_000;
const KEEP_ALIVE_TIMEOUT = /(?:^|[,;\s])timeout\s*=\s*(\d{1,6})/i;

/** One connection to a backend, carrying one request at a time; it is the parser's target for that request's answer. */
export class BackendConnection implements AnswerEvents, AnswerTarget {
  private readonly socket: net.Socket;
  private readonly parser = new AnswerParser(this);
  private connected = false;
  private closed = false;
  /** False once an answer said the connection ends after it. */
  private reusable = true;
  /** The request in flight, told of its answer. */
  private sink: ResponseSink | undefined;
  private timeouts: Timeouts = { responseMs: 0, bodyIdleMs: 0 };
  private sentAt = 0;
  private headSeen = false;
  private paused = false;
  /** Body chunks read so far; the sweep compares it with what it saw last time to find a stalled body. */
  private reads = 0;
  private readsSwept = 0;
  private quietSince = 0;
  /** When it became idle (for the idle timeout), and for how long it may stay so. */
  idleSince = 0;
  private idleLimitMs: number;

  // AnswerTarget: filled in by the parser.
  bodyless = false;
  status = 0;
  contentType: string | undefined;

  constructor(
    private readonly client: BackendClient,
    endpoint: Endpoint,
    options: BackendClientOptions,
  ) {
    this.idleLimitMs = options.idleTimeoutMs;
    const { socket, connectEvent } = connectTo(endpoint);
    this.socket = socket;
    socket.setTimeout(options.connectTimeoutMs);
    socket.once(connectEvent, () => {
      this.connected = true;
      socket.setTimeout(0); // from now on the sweep keeps time
    });
    socket.on('timeout', () => {
      if (!this.connected) this.destroy(new StranglerError('BACKEND_CONNECT_TIMEOUT', `no connection within ${options.connectTimeoutMs} ms`));
    });
    socket.on('data', (chunk: Buffer) => {
      try {
        this.parser.read(chunk);
      } catch (error) {
        // Nothing in a backend's answer may take the proxy down.
        this.destroy(new StranglerError('BACKEND_ERROR', `could not read the backend's answer: ${(error as Error)?.message}`));
      }
    });
    socket.on('end', () => {
      this.parser.end(); // completes an answer whose body runs to the close
      this.destroy(undefined);
    });
    socket.on('error', (error) => this.destroy(error));
    socket.on('close', () => this.destroy(undefined));
  }

  get isIdle(): boolean {
    return !this.closed && this.reusable && this.sink === undefined;
  }

  send(head: string, body: Buffer | null, bodyless: boolean, timeouts: Timeouts, sink: ResponseSink): void {
    this.sink = sink;
    this.bodyless = bodyless;
    this.timeouts = timeouts;
    this.status = 0;
    this.contentType = undefined;
    this.headSeen = false;
    this.sentAt = Date.now();
    // Written before the connection is up, the bytes wait in the socket until it is.
    if (body === null || body.length === 0) this.socket.write(head, 'latin1');
    else if (body.length <= ONE_WRITE_BODY_BYTES) this.socket.write(head + body.toString('latin1'), 'latin1');
    else {
      this.socket.cork();
      this.socket.write(head, 'latin1');
      this.socket.write(body);
      this.socket.uncork();
    }
  }

  /** The sender can take more of `sink`'s body (no-op if that exchange is over). */
  resume(sink: ResponseSink): void {
    if (this.sink !== sink || !this.paused) return;
    this.paused = false;
    this.readsSwept = -1; // the body's idle time starts again now
    this.socket.resume();
  }

  /** The sender gave up on `sink` (its client hung up): the connection cannot carry the rest of that answer, so it closes. */
  abort(sink: ResponseSink, reason: Error): void {
    if (this.sink !== sink) return;
    this.sink = undefined;
    this.destroy(undefined);
    sink.fail(reason);
  }

  /** Checks the request in flight against its deadlines, or the idle connection against its idle limit. */
  sweep(now: number): void {
    if (this.closed) return;
    if (this.sink === undefined) {
      if (now - this.idleSince >= this.idleLimitMs) this.destroy(undefined);
      return;
    }
    if (!this.headSeen) {
      if (now - this.sentAt >= this.timeouts.responseMs) this.destroy(new StranglerError('BACKEND_TIMEOUT', `no answer within ${this.timeouts.responseMs} ms`));
      return;
    }
    if (this.paused || this.timeouts.bodyIdleMs === 0 || this.reads !== this.readsSwept) {
      this.readsSwept = this.reads;
      this.quietSince = now;
      return;
    }
    if (now - this.quietSince >= this.timeouts.bodyIdleMs) this.destroy(new StranglerError('BACKEND_TIMEOUT', `the answer's body stalled for ${this.timeouts.bodyIdleMs} ms`));
  }

  // AnswerEvents

  current(): AnswerTarget | undefined {
    return this.sink === undefined ? undefined : this;
  }

  complete(keepAlive: boolean): void {
    const sink = this.sink!;
    this.sink = undefined;
    if (!keepAlive) this.reusable = false;
    if (this.paused) {
      this.paused = false;
      this.socket.resume();
    }
    if (this.reusable && !this.client.isClosing) {
      this.idleSince = Date.now();
      this.client.released(this);
    } else this.destroy(undefined);
    sink.end();
  }

  malformed(reason: string): void {
    this.destroy(new StranglerError('BACKEND_ERROR', `unreadable answer from the backend: ${reason}`));
  }

  // AnswerTarget

  headRead(head: string, lineEnd: number): boolean {
    this.headSeen = true;
    this.readsSwept = -1;
    const { headers, keepAlive } = downstreamHeadersOfHead(head, lineEnd);
    if (keepAlive !== undefined) this.trustKeepAlive(keepAlive);
    if (this.sink!.head(this.status, lineEnd > 13 ? head.slice(13, lineEnd) : '', headers, this.contentType)) return true;
    this.destroy(new StranglerError('BACKEND_ERROR', "the backend's answer head cannot be passed on (an invalid header name or value)"));
    return false;
  }

  addBody(bytes: Buffer): void {
    this.reads++;
    if (!this.sink!.body(bytes) && this.sink !== undefined && !this.paused) {
      this.paused = true;
      this.socket.pause();
    }
  }

  /** A backend that closes idle connections sooner than our idle limit says so in Keep-Alive; we then close first. */
  private trustKeepAlive(value: string): void {
    const match = KEEP_ALIVE_TIMEOUT.exec(value);
    if (match !== null) this.idleLimitMs = Math.max(0, Math.min(this.idleLimitMs, Number(match[1]) * 1000 - KEEP_ALIVE_MARGIN_MS));
  }

  /** Closes the connection; the request in flight, if any, fails (never resent). */
  destroy(error: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.parser.stop();
    this.socket.destroy();
    this.client.removed(this);
    const sink = this.sink;
    if (sink === undefined) return;
    this.sink = undefined;
    sink.fail(this.connected ? afterConnect(error, this.headSeen) : (error ?? new StranglerError('BACKEND_RESET', 'the connection closed before it was established')));
  }
}

/**
 * A failure once connected: the request may have reached the backend. The
 * socket's own error is not passed on, since codes like ETIMEDOUT would read
 * as "never connected".
 */
function afterConnect(error: Error | undefined, answering: boolean): Error {
  if (error instanceof StranglerError) return error;
  const detail = error === undefined ? '' : ` (${(error as NodeJS.ErrnoException).code ?? error.message})`;
  return new StranglerError('BACKEND_RESET', `the backend closed the connection ${answering ? 'in the middle of its answer' : 'before answering'}${detail}`);
}

/** Requests to one backend origin. */
export class BackendClient {
  private readonly endpoint: Endpoint;
  private readonly connections = new Set<BackendConnection>();
  /** Idle connections, the most recently used last (taken first: its socket is the warmest). */
  private readonly idle: BackendConnection[] = [];
  private sweeper: NodeJS.Timeout | undefined;
  private closing: (() => void) | undefined;

  constructor(
    origin: string,
    private readonly options: BackendClientOptions,
  ) {
    this.endpoint = endpointOf(origin);
  }

  /**
   * Sends a request and streams its answer to `sink`. Returns the connection
   * carrying it (to `resume` or `abort` the exchange). Throws, having sent
   * nothing, when the request cannot be written as HTTP/1.1.
   */
  request(request: OutgoingRequest, timeouts: Timeouts, sink: ResponseSink): BackendConnection {
    const head = requestHead(request);
    if (typeof head !== 'string') throw head;
    if (this.closing !== undefined) throw new StranglerError('BACKEND_ERROR', 'the backend client is closed');
    let connection = this.idle.pop();
    while (connection !== undefined && !connection.isIdle) connection = this.idle.pop(); // closed while idle
    if (connection === undefined) {
      connection = new BackendConnection(this, this.endpoint, this.options);
      this.connections.add(connection);
      this.sweeper ??= setInterval(() => this.sweep(), SWEEP_MS).unref();
    }
    connection.send(head, request.body, request.method === 'HEAD', timeouts, sink);
    return connection;
  }

  released(connection: BackendConnection): void {
    this.idle.push(connection);
  }

  removed(connection: BackendConnection): void {
    this.connections.delete(connection);
    const i = this.idle.lastIndexOf(connection);
    if (i >= 0) this.idle.splice(i, 1);
    if (this.connections.size === 0) {
      if (this.sweeper !== undefined) clearInterval(this.sweeper);
      this.sweeper = undefined;
      this.closing?.();
    }
  }

  private sweep(): void {
    const now = Date.now();
    for (const connection of this.connections) connection.sweep(now);
  }

  get isClosing(): boolean {
    return this.closing !== undefined;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** Takes no more requests; resolves once the requests in flight have finished (or failed) and every connection is closed. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.closing = resolve;
      for (const connection of [...this.idle]) connection.destroy(undefined);
      if (this.connections.size === 0) {
        if (this.sweeper !== undefined) clearInterval(this.sweeper);
        this.sweeper = undefined;
        resolve();
      }
    });
  }
}
