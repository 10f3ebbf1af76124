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
import net from 'node:net';
import tls from 'node:tls';
import type { CapturedResponse } from './compare.js';
import type { RawHeaders } from './headers.js';

/** Told once how a copy ended: with its answer, or with an error. */
export interface CopyHandler {
  copyDone(error: Error | undefined, answer: CapturedResponse | undefined): void;
}

export interface CopyRequest {
  method: string;
  /** Path and query as sent on the request line. */
  path: string;
  headers: RawHeaders;
  body: Buffer | null;
}

export interface CopyClientOptions {
  connections: number;
  /** Requests written ahead on one connection before its answers come back. */
  pipelining: number;
  connectTimeoutMs: number;
  /** A connection with nothing in flight for this long is closed (before a typical backend closes it). */
  idleTimeoutMs: number;
}

/** A response head larger than this is refused (a copy is given up, never buffered without bound). */
const MAX_HEAD_BYTES = 64 * 1024;
/** How often copies are checked against their deadlines (while any are in flight). */
const SWEEP_MS = 100;
const CRLF = Buffer.from('\r\n');
const HEAD_END = Buffer.from('\r\n\r\n');
/** What no request line or header of ours may contain: it would end the line early. */
const LINE_BREAKING = /[\r\n\0]/;
const CLOSE_TOKEN = /(?:^|,)\s*close\s*(?:,|$)/i;
const KEEP_ALIVE_TOKEN = /(?:^|,)\s*keep-alive\s*(?:,|$)/i;
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

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

const enum State {
  Head,
  Body,
  ChunkSize,
  ChunkData,
  ChunkEnd,
  Trailers,
}

/** What the parser fills in: the oldest request still waiting for its answer. */
export interface AnswerTarget {
  /** True for HEAD: the answer has no body, whatever its headers say. */
  readonly bodyless: boolean;
  status: number;
  contentType: string | undefined;
  addBody(bytes: Buffer): void;
}

export interface AnswerEvents {
  /** The request the next answer belongs to (pipelining: the oldest in flight), or undefined if none is. */
  current(): AnswerTarget | undefined;
  /** The current request's answer is complete; `keepAlive` false when the connection must not carry another. */
  complete(keepAlive: boolean): void;
  /** The bytes are not an HTTP/1.x answer: the connection can't be trusted further. */
  malformed(reason: string): void;
}

/**
 * Reads pipelined HTTP/1.x answers from a byte stream cut anywhere: status
 * line, the four headers a copy needs (Content-Length, Transfer-Encoding,
 * Connection, Content-Type), and the body by length, by chunks, or to the
 * end of the stream. Pure: no sockets, no timers.
 */
export class AnswerParser {
  private state = State.Head;
  /** Bytes read but not yet consumed (a head or a chunk line cut by a read). */
  private pending: Buffer | undefined;
  /** In State.Body: the body runs to the end of the stream (else `remaining` bytes are left). */
  private untilClose = false;
  private remaining = 0;
  private keepAlive = true;
  private broken = false;

  constructor(private readonly events: AnswerEvents) {}

  /** Reads nothing more (the connection is gone). */
  stop(): void {
    this.broken = true;
    this.pending = undefined;
  }

  /** The stream ended: completes an answer whose body runs to the close. */
  end(): void {
    if (!this.broken && this.state === State.Body && this.untilClose) this.complete();
  }

  read(chunk: Buffer): void {
    let data = chunk;
    if (this.pending !== undefined) {
      data = Buffer.concat([this.pending, chunk]);
      this.pending = undefined;
    }
    let at = 0;
    while (at < data.length && !this.broken) {
      switch (this.state) {
        case State.Head: {
          // Tolerate empty lines before a status line (RFC 9112 §2.2).
          while (at + 1 < data.length && data[at] === 13 && data[at + 1] === 10) at += 2;
          const end = data.indexOf(HEAD_END, at);
          if (end < 0) {
            if (data.length - at > MAX_HEAD_BYTES) return this.fail('response head too large');
            if (at < data.length) this.pending = data.subarray(at);
            return;
          }
          if (end - at > MAX_HEAD_BYTES) return this.fail('response head too large');
          const head = data.toString('latin1', at, end);
          at = end + 4;
          this.head(head);
          break;
        }
        case State.Body: {
          const target = this.events.current()!;
          if (this.untilClose) {
            target.addBody(at === 0 ? data : data.subarray(at));
            return;
          }
          const take = Math.min(this.remaining, data.length - at);
          target.addBody(take === data.length ? data : data.subarray(at, at + take));
          at += take;
          this.remaining -= take;
          if (this.remaining === 0) this.complete();
          break;
        }
        case State.ChunkSize:
        case State.Trailers: {
          const eol = data.indexOf(CRLF, at);
          if (eol < 0) {
            if (data.length - at > MAX_HEAD_BYTES) return this.fail('chunk line too long');
            this.pending = data.subarray(at);
            return;
          }
          const line = data.toString('latin1', at, eol);
          at = eol + 2;
          if (this.state === State.Trailers) {
            if (line === '') this.complete();
            break;
          }
          const size = parseChunkSize(line);
          if (size < 0) return this.fail(`bad chunk size line "${line.slice(0, 40)}"`);
          if (size === 0) this.state = State.Trailers;
          else {
            this.remaining = size;
            this.state = State.ChunkData;
          }
          break;
        }
        case State.ChunkData: {
          const take = Math.min(this.remaining, data.length - at);
          this.events.current()!.addBody(data.subarray(at, at + take));
          at += take;
          this.remaining -= take;
          if (this.remaining === 0) this.state = State.ChunkEnd;
          break;
        }
        case State.ChunkEnd: {
          if (data.length - at < 2) {
            this.pending = data.subarray(at);
            return;
          }
          if (data[at] !== 13 || data[at + 1] !== 10) return this.fail('chunk data not followed by CRLF');
          at += 2;
          this.state = State.ChunkSize;
          break;
        }
      }
    }
  }

  private fail(reason: string): void {
    this.broken = true;
    this.pending = undefined;
    this.events.malformed(reason);
  }

  /** A response head: status line and headers (without the blank line). */
  private head(head: string): void {
    const target = this.events.current();
    if (target === undefined) return this.fail('an answer with no request waiting for it');
    // "HTTP/1.1 200 OK": the version, then a three-digit status (the reason phrase may be empty).
    const lineEnd = head.indexOf('\r\n');
    const status = statusOf(head, lineEnd < 0 ? head.length : lineEnd);
    if (status < 0) return this.fail(`bad status line "${head.slice(0, Math.min(40, lineEnd < 0 ? head.length : lineEnd))}"`);
    const minor = head[7];
    let contentLength = -1;
    let transferEncoding: string | undefined;
    let connection: string | undefined;
    let contentType: string | undefined;
    let at = lineEnd < 0 ? head.length : lineEnd + 2;
    while (at < head.length) {
      let end = head.indexOf('\r\n', at);
      if (end < 0) end = head.length;
      const colon = head.indexOf(':', at);
      if (colon < 0 || colon > end || colon === at) return this.fail('bad header line');
      // Only four headers matter to a copy; the others are passed over without building strings.
      if (nameIs(head, at, colon, 'content-length')) {
        const value = head.slice(colon + 1, end).trim();
        if (!/^\d{1,15}$/.test(value)) return this.fail(`bad content-length "${value.slice(0, 40)}"`);
        const length = Number(value);
        if (contentLength >= 0 && contentLength !== length) return this.fail('conflicting content-length headers');
        contentLength = length;
      } else if (nameIs(head, at, colon, 'content-type')) contentType ??= head.slice(colon + 1, end).trim();
      else if (nameIs(head, at, colon, 'connection')) {
        const value = head.slice(colon + 1, end).trim();
        connection = connection === undefined ? value : `${connection}, ${value}`;
      } else if (nameIs(head, at, colon, 'transfer-encoding')) {
        const value = head.slice(colon + 1, end).trim();
        transferEncoding = transferEncoding === undefined ? value : `${transferEncoding}, ${value}`;
      }
      at = end + 2;
    }

    if (status < 200) {
      // 1xx: informational, the final answer follows (101 would switch protocols, which a copy never asks for).
      if (status === 101) return this.fail('unexpected 101 Switching Protocols');
      return;
    }
    target.status = status;
    target.contentType = contentType;
    this.keepAlive = minor === '1' ? !(connection !== undefined && CLOSE_TOKEN.test(connection)) : connection !== undefined && KEEP_ALIVE_TOKEN.test(connection);
    if (target.bodyless || status === 204 || status === 304) return this.complete();
    if (transferEncoding !== undefined && /(^|,)\s*chunked\s*$/i.test(transferEncoding)) {
      this.state = State.ChunkSize;
      return;
    }
    if (transferEncoding === undefined && contentLength === 0) return this.complete();
    // Chunked must be the last coding; with any other last coding, or no length at all, the body runs to the close (RFC 9112 §6.3).
    this.untilClose = transferEncoding !== undefined || contentLength < 0;
    if (this.untilClose) this.keepAlive = false;
    else this.remaining = contentLength;
    this.state = State.Body;
  }

  private complete(): void {
    this.state = State.Head;
    this.untilClose = false;
    this.events.complete(this.keepAlive);
  }
}

/** The status of a status line `HTTP/1.x NNN[ reason]` ending at `end`, or -1 when it is not one. */
function statusOf(head: string, end: number): number {
  if (end < 12 || !head.startsWith('HTTP/1.') || (head[7] !== '0' && head[7] !== '1') || head[8] !== ' ' || (end > 12 && head[12] !== ' ')) return -1;
  let status = 0;
  for (let i = 9; i < 12; i++) {
    const digit = head.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return -1;
    status = status * 10 + digit;
  }
  return status;
}

/** Whether `head[from, to)` is the header name `lower` (lower case, letters and '-'), in any case, without building a string. */
function nameIs(head: string, from: number, to: number, lower: string): boolean {
  if (to - from !== lower.length) return false;
  for (let i = 0; i < lower.length; i++) {
    let c = head.charCodeAt(from + i);
    if (c >= 65 && c <= 90) c += 32;
    if (c !== lower.charCodeAt(i)) return false;
  }
  return true;
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
    const connectEvent = endpoint.tls ? 'secureConnect' : 'connect';
    this.socket = endpoint.tls
      ? tls.connect({ host: endpoint.host, port: endpoint.port, servername: net.isIP(endpoint.host) ? undefined : endpoint.host, ALPNProtocols: ['http/1.1'] })
      : net.connect({ host: endpoint.host, port: endpoint.port });
    this.socket.setNoDelay(true);
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

/** `1a3f` or `1a3f;ext=value`: the size, or -1 when the line is not one. */
function parseChunkSize(line: string): number {
  const semicolon = line.indexOf(';');
  const digits = (semicolon < 0 ? line : line.slice(0, semicolon)).trim();
  if (!/^[0-9a-fA-F]{1,12}$/.test(digits)) return -1;
  return parseInt(digits, 16);
}

interface Endpoint {
  host: string;
  port: number;
  tls: boolean;
}

function endpointOf(origin: string): Endpoint {
  const url = new URL(origin);
  const secure = url.protocol === 'https:';
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return { host, port: url.port === '' ? (secure ? 443 : 80) : Number(url.port), tls: secure };
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

/**
 * The request line and headers, or an error when something would break the
 * framing. The client's headers were parsed by Node's HTTP parser, which
 * refuses line breaks, but nothing trusts that here. Content-Length is the
 * copy's own: the body is whole in memory.
 */
function requestHead(request: CopyRequest): string | Error {
  const { method, path, headers, body } = request;
  if (LINE_BREAKING.test(path) || path.includes(' ') || !TOKEN.test(method)) return new Error('request line not fit to copy');
  let head = `${method} ${path} HTTP/1.1\r\n`;
  // Every name and value, run together, tested once: cheaper than a test each.
  let text = '';
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!;
    const value = headers[i + 1]!;
    if (name.length === 14 && name.toLowerCase() === 'content-length') continue;
    if (name.includes(':')) return new Error(`header ${JSON.stringify(name.slice(0, 40))} not fit to copy`);
    text += name;
    text += value;
    head += `${name}: ${value}\r\n`;
  }
  if (LINE_BREAKING.test(text)) return new Error('a header not fit to copy (line break or NUL)');
  if (body !== null) head += `content-length: ${body.length}\r\n`;
  return `${head}\r\n`;
}
