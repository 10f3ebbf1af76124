/**
 * HTTP/1.1 on the wire, for the clients of our own (src/proxy/backend-client.ts
 * for clients' requests, src/proxy/copy-client.ts for shadow copies): the
 * request head as one string, and a pure parser for answers. No sockets here.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { RawHeaders } from '../upstream/headers.js';

/** A request whose body, if any, is whole in memory. */
export interface OutgoingRequest {
  method: string;
  /** Path and query as sent on the request line. */
  path: string;
  headers: RawHeaders;
  body: Buffer | null;
}

/** A response head larger than this is refused (never buffered without bound). */
const MAX_HEAD_BYTES = 64 * 1024;
const CRLF = Buffer.from('\r\n');
const HEAD_END = Buffer.from('\r\n\r\n');
/** What no request line or header may contain: it would end the line early. */
const LINE_BREAKING = /[\r\n\0]/;
const CLOSE_TOKEN = /(?:^|,)\s*close\s*(?:,|$)/i;
const KEEP_ALIVE_TOKEN = /(?:^|,)\s*keep-alive\s*(?:,|$)/i;
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

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
  /**
   * The final answer's head was read (`status` and `contentType` are set): the
   * status line ends at `lineEnd`, headers follow. False stops reading (the
   * answer cannot be passed on; the connection is being closed).
   */
  headRead?(head: string, lineEnd: number): boolean;
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
 * line, the four headers that frame and describe an answer (Content-Length,
 * Transfer-Encoding, Connection, Content-Type), and the body by length, by
 * chunks, or to the end of the stream. A target that wants every header reads
 * them from the head it is given (`headRead`). Pure: no sockets, no timers.
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
      // Only four headers matter here; the others are passed over without building strings.
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
      // 1xx: informational, the final answer follows (101 would switch protocols, which no request of ours asks for; upgrades go elsewhere).
      if (status === 101) return this.fail('unexpected 101 Switching Protocols');
      return;
    }
    // Both framings at once "ought to be handled as an error" (RFC 9112 §6.3): it is how responses get smuggled.
    if (transferEncoding !== undefined && contentLength >= 0) return this.fail('both transfer-encoding and content-length');
    target.status = status;
    target.contentType = contentType;
    if (target.headRead !== undefined && (!target.headRead(head, lineEnd < 0 ? head.length : lineEnd) || this.broken)) {
      this.broken = true;
      return;
    }
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
export function statusOf(head: string, end: number): number {
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

/** `1a3f` or `1a3f;ext=value`: the size, or -1 when the line is not one. */
function parseChunkSize(line: string): number {
  const semicolon = line.indexOf(';');
  const digits = (semicolon < 0 ? line : line.slice(0, semicolon)).trim();
  if (!/^[0-9a-fA-F]{1,12}$/.test(digits)) return -1;
  return parseInt(digits, 16);
}

export interface Endpoint {
  host: string;
  port: number;
  tls: boolean;
}

export function endpointOf(origin: string): Endpoint {
  const url = new URL(origin);
  const secure = url.protocol === 'https:';
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return { host, port: url.port === '' ? (secure ? 443 : 80) : Number(url.port), tls: secure };
}


/** A connection to a backend, not yet connected; emits 'secureConnect' (TLS) or 'connect' when it is. */
export function connectTo(endpoint: Endpoint): { socket: net.Socket; connectEvent: 'connect' | 'secureConnect' } {
  const socket = endpoint.tls
    ? tls.connect({ host: endpoint.host, port: endpoint.port, servername: net.isIP(endpoint.host) ? undefined : endpoint.host, ALPNProtocols: ['http/1.1'] })
    : net.connect({ host: endpoint.host, port: endpoint.port });
  socket.setNoDelay(true);
  return { socket, connectEvent: endpoint.tls ? 'secureConnect' : 'connect' };
}

/**
 * The request line and headers, or an error when something would break the
 * framing. The client's headers were parsed by Node's HTTP parser, which
 * refuses line breaks, but nothing trusts that here. Content-Length is the
 * request's own: the body is whole in memory.
 */
export function requestHead(request: OutgoingRequest): string | Error {
  const { method, path, headers, body } = request;
  if (LINE_BREAKING.test(path) || path.includes(' ') || !TOKEN.test(method)) return new Error('request line not fit to send');
  let head = `${method} ${path} HTTP/1.1\r\n`;
  // Every name and value, run together, tested once: cheaper than a test each.
  let text = '';
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!;
    const value = headers[i + 1]!;
    if (name.length === 14 && name.toLowerCase() === 'content-length') continue;
    if (name.includes(':')) return new Error(`header ${JSON.stringify(name.slice(0, 40))} not fit to send`);
    text += name;
    text += value;
    head += `${name}: ${value}\r\n`;
  }
  if (LINE_BREAKING.test(text)) return new Error('a header not fit to send (line break or NUL)');
  if (body !== null) head += `content-length: ${body.length}\r\n`;
  return `${head}\r\n`;
}
