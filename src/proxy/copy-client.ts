/**
 * The HTTP/1.1 client for shadow copies, and only for them.
 *
 * A copy needs less than a client's request: no streaming to anyone, no
 * redirects, no retries, no upgrades; the status, the content type and the
 * body up to a limit. Through undici a copy cost about as much CPU as the
 * backend half of the request it shadows (docs/decisions/0003-shadow-copy-client.md
 * has the measurements), so copies have this client of their own:
 *
 * - a few keep-alive connections per backend, requests pipelined on each;
 * - a request is one latin1 string, and the requests of one event-loop turn
 *   leave in one write;
 * - answers are read by a small parser made for what a copy needs (status,
 *   four headers, Content-Length or chunked bodies, or a body to the close).
 *
 * Whatever goes wrong stays here: a copy that fails is reported to its
 * caller as an error and counted; no client ever waits for or sees a copy.
 * Nothing is sent twice: a copy whose connection breaks is failed, never
 * resent (copies of mutating calls may be allowed by a route).
 */
import type net from 'node:net';
import type { CapturedResponse } from '../shadow/compare.js';
import { AnswerParser, connectTo, endpointOf, requestHead, type AnswerEvents, type AnswerTarget, type Endpoint, type OutgoingRequest } from './http1.js';

/** Told once how a copy ended: with its answer, or with an error. */
export interface CopyHandler {
  copyDone(error: Error | undefined, answer: CapturedResponse | undefined): void;
}

export type CopyRequest = OutgoingRequest;

/** How often copies are checked against their deadlines (while any are in flight). */
const SWEEP_MS = 100;

export interface CopyClientOptions {
  connections: number;
  /** Requests written ahead on one connection before its answers come back. */
  pipelining: number;
  connectTimeoutMs: number;
  /** A connection with nothing in flight for this long is closed (before a typical backend closes it). */
  idleTimeoutMs: number;
}

/** One copy, from the moment it is accepted until its answer or its failure. */
class Copy implements AnswerTarget {
  status = 0;
  contentType: string | undefined;
  chunks: Buffer[] | undefined = [];
  size = 0;
  settled = false;

  constructor(
    readonly head: string,
    readonly body: Buffer | null,
    readonly bodyless: boolean,
    readonly limit: number,
    readonly timeoutMs: number,
    readonly deadline: number,
    private readonly handler: CopyHandler,
  ) {}

  addBody(bytes: Buffer): void {
    this.size += bytes.length;
    if (this.chunks === undefined) return;
    // A view of the socket's read buffer, which Node allocates afresh for every read: nothing overwrites it.
    if (this.size <= this.limit) this.chunks.push(bytes);
    else this.chunks = undefined; // too large to compare: the status alone will be
  }

  succeed(): void {
    if (this.settled) return;
    this.settled = true;
    const chunks = this.chunks;
    const body = chunks === undefined ? undefined : chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, this.size);
    this.handler.copyDone(undefined, { status: this.status, contentType: this.contentType, body });
  }

  fail(error: Error): void {
    if (this.settled) return;
    this.settled = true;
    this.handler.copyDone(error, undefined);
  }
}

/**
 * One connection: copies go out in order, answers come back in the same
 * order (HTTP/1.1 pipelining), so the oldest copy in flight owns the next
 * answer.
 */
class CopyConnection implements AnswerEvents {
  readonly socket: net.Socket;
  readonly inFlight: Copy[] = [];
  private readonly parser = new AnswerParser(this);
  private text = '';
  private parts: (string | Buffer)[] | undefined;
  private flushScheduled = false;
  private closed = false;
  /** False once an answer said the connection ends after it. */
  private reusable = true;
  private connected = false;

  constructor(
    private readonly client: CopyClient,
    endpoint: Endpoint,
    private readonly options: CopyClientOptions,
  ) {
    const { socket, connectEvent } = connectTo(endpoint);
    this.socket = socket;
    this.socket.setTimeout(options.connectTimeoutMs);
    this.socket.once(connectEvent, () => {
      this.connected = true;
      this.socket.setTimeout(options.idleTimeoutMs);
    });
    this.socket.on('timeout', () => {
      if (!this.connected) this.destroy(new Error(`no connection within ${options.connectTimeoutMs} ms`));
      else if (this.inFlight.length === 0) this.destroy(undefined);
    });
    this.socket.on('data', (chunk: Buffer) => {
      try {
        this.parser.read(chunk);
      } catch (error) {
        // Nothing in a copy's path may take the proxy down.
        this.destroy(error instanceof Error ? error : new Error(String(error)));
      }
    });
    this.socket.on('end', () => {
      this.parser.end();
      this.destroy(undefined);
    });
    this.socket.on('error', (error) => this.destroy(error));
    this.socket.on('close', () => this.destroy(undefined));
  }

  /** Room for another copy on this connection. */
  get open(): boolean {
    return !this.closed && this.reusable && this.inFlight.length < this.options.pipelining;
  }

  send(copy: Copy): void {
    this.inFlight.push(copy);
    if (copy.body === null) this.text += copy.head;
    else {
      (this.parts ??= []).push(this.text + copy.head, copy.body);
      this.text = '';
    }
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** The copies of one event-loop turn, in one write. */
  private flush(): void {
    this.flushScheduled = false;
    if (this.closed) return;
    const parts = this.parts;
    const text = this.text;
    this.parts = undefined;
    this.text = '';
    if (parts === undefined) {
      this.socket.write(text, 'latin1');
      return;
    }
    this.socket.cork();
    for (const part of parts) {
      if (typeof part === 'string') this.socket.write(part, 'latin1');
      else this.socket.write(part);
    }
    if (text !== '') this.socket.write(text, 'latin1');
    this.socket.uncork();
  }

  /** Ends the connection; copies still waiting for an answer fail (never resent). */
  destroy(error: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.parser.stop();
    this.socket.destroy();
    const reason = error ?? new Error('the shadow backend closed the connection before answering');
    for (const copy of this.inFlight.splice(0)) copy.fail(reason);
    this.client.connectionClosed(this);
  }

  current(): Copy | undefined {
    return this.inFlight[0];
  }

  complete(keepAlive: boolean): void {
    this.inFlight.shift()!.succeed();
    if (!keepAlive) this.reusable = false;
    if (!keepAlive || (this.client.isClosing && this.inFlight.length === 0)) this.destroy(undefined);
    else this.client.drainWaiting();
  }

  malformed(reason: string): void {
    this.destroy(new Error(`unreadable answer from the shadow backend: ${reason}`));
  }
}

/** Shadow copies to one backend origin. */
export class CopyClient {
  private readonly endpoint: Endpoint;
  private readonly connections: CopyConnection[] = [];
  /** Copies waiting for room on a connection. */
  private readonly waiting: Copy[] = [];
  private sweeper: NodeJS.Timeout | undefined;
  private closing: (() => void) | undefined;

  constructor(
    origin: string,
    private readonly options: CopyClientOptions,
  ) {
    this.endpoint = endpointOf(origin);
  }

  /**
   * Sends a copy and reads its answer, up to `limit` body bytes (beyond them
   * the answer carries no body and is compared by status). `handler` is told
   * once: with the answer, or with an error (also when no complete answer
   * came within `timeoutMs`).
   */
  send(request: CopyRequest, limit: number, timeoutMs: number, handler: CopyHandler): void {
    const head = requestHead(request);
    if (typeof head !== 'string') return handler.copyDone(head, undefined);
    if (this.closing !== undefined) return handler.copyDone(new Error('the shadow client is closed'), undefined);
    const copy = new Copy(head, request.body, request.method === 'HEAD', limit, timeoutMs, Date.now() + timeoutMs, handler);
    this.sweeper ??= setInterval(() => this.sweep(), SWEEP_MS).unref();
    const connection = this.connectionWithRoom();
    if (connection === undefined) this.waiting.push(copy);
    else connection.send(copy);
  }

  private connectionWithRoom(): CopyConnection | undefined {
    let best: CopyConnection | undefined;
    for (const connection of this.connections) {
      if (connection.open && (best === undefined || connection.inFlight.length < best.inFlight.length)) best = connection;
    }
    // Reuse a connection with copies in flight rather than open another: fewer, fuller writes.
    if (best !== undefined && (best.inFlight.length === 0 || this.connections.length >= this.options.connections)) return best;
    if (this.connections.length < this.options.connections) {
      const fresh = new CopyConnection(this, this.endpoint, this.options);
      this.connections.push(fresh);
      return fresh;
    }
    return best;
  }

  connectionClosed(connection: CopyConnection): void {
    const i = this.connections.indexOf(connection);
    if (i >= 0) this.connections.splice(i, 1);
    if (this.closing !== undefined && this.connections.length === 0) this.closing();
    else this.drainWaiting();
  }

  /** Sends waiting copies while a connection has room (after an answer frees a slot, or a connection closes). */
  drainWaiting(): void {
    while (this.waiting.length > 0 && this.closing === undefined) {
      const connection = this.connectionWithRoom();
      if (connection === undefined) return;
      connection.send(this.waiting.shift()!);
    }
  }

  /** Copies past their deadline fail; on a pipelined connection that means the connection (and the copies behind) too. */
  private sweep(): void {
    const now = Date.now();
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      const copy = this.waiting[i]!;
      if (copy.deadline <= now) {
        this.waiting.splice(i, 1);
        copy.fail(timeoutError(copy));
      }
    }
    for (const connection of [...this.connections]) {
      const late = connection.inFlight.find((copy) => copy.deadline <= now);
      if (late !== undefined) connection.destroy(timeoutError(late));
    }
    if (this.connections.length === 0 && this.waiting.length === 0 && this.sweeper !== undefined) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  inFlightCount(): number {
    return this.waiting.length + this.connections.reduce((n, c) => n + c.inFlight.length, 0);
  }

  /** Stops taking copies; resolves once the copies in flight are answered (or have failed) and the connections are closed. */
  close(): Promise<void> {
    for (const copy of this.waiting.splice(0)) copy.fail(new Error('the shadow client is closed'));
    return new Promise((resolve) => {
      this.closing = () => {
        if (this.sweeper !== undefined) clearInterval(this.sweeper);
        this.sweeper = undefined;
        resolve();
      };
      for (const connection of [...this.connections]) if (connection.inFlight.length === 0) connection.destroy(undefined);
      if (this.connections.length === 0) this.closing();
      // Connections with copies in flight close after their last answer (see CopyConnection.complete) or at the copies' deadline.
    });
  }

  /** Connections close after their last answer once this is true. */
  get isClosing(): boolean {
    return this.closing !== undefined;
  }
}

function timeoutError(copy: Copy): Error {
  return new Error(`no complete answer within ${copy.timeoutMs} ms`);
}

