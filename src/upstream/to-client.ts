/**
 * The sink that streams a backend's answer to the client it is for: status and
 * headers with the proxy's own tags, then the body with backpressure (the
 * backend is paused while the client is slow), keeping a bounded copy for
 * shadow comparison when asked.
 */
import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { CapturedResponse } from '../shadow/compare.js';
import type { AnswerSink, Exchange } from './exchange.js';
import type { UpstreamFailure } from './failure.js';
import type { RawHeaders } from './headers.js';

export type RequestBody = Buffer | Readable | null;

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

/** A request under way: its result, and how to call it off when the client hangs up. */
export interface ForwardCall {
  readonly result: Promise<ForwardResult>;
  /** The client hung up: cancel the exchange with the backend (frees its connection). No-op once the answer is complete. */
  clientGone(): void;
}

class ClientGoneError extends Error {
  readonly code = 'ECLIENTABORTED';
  constructor() {
    super('the client closed the connection');
  }
}

export class ClientAnswer implements AnswerSink, ForwardCall {
  readonly result: Promise<ForwardResult>;
  private resolve!: (result: ForwardResult) => void;
  private status = 0;
  private responseBytes = 0;
  private contentType: string | undefined;
  private captured: Buffer[] | undefined;
  /** Set by the engine once the exchange exists. */
  exchange: Exchange | undefined;

  constructor(
    private readonly res: ServerResponse,
    private readonly request: ForwardRequest,
  ) {
    this.result = new Promise((resolve) => (this.resolve = resolve));
    if ((request.captureBytes ?? 0) > 0) this.captured = [];
  }

  clientGone(): void {
    if (this.res.writableFinished) return;
    this.exchange?.abort(new ClientGoneError());
  }

  head(statusCode: number, statusText: string | undefined, headers: RawHeaders, contentType: string | undefined): void {
    const tags = this.request.responseTags;
    if (tags !== undefined) for (let i = 0; i < tags.length; i++) headers.push(tags[i]!);
    try {
      // node checks every name and value before writing a byte, so a refusal leaves the response unsent.
      this.res.writeHead(statusCode, statusText ?? STATUS_CODES[statusCode] ?? '', headers);
    } catch (error) {
      this.res.statusCode = 200;
      this.res.statusMessage = '';
      throw error;
    }
    this.status = statusCode;
    this.contentType = contentType;
  }

  data(chunk: Buffer): boolean {
    this.responseBytes += chunk.length;
    this.request.onResponseBytes?.(chunk.length);
    if (this.captured) {
      // No copy: undici hands over a buffer nothing else reuses.
      if (this.responseBytes <= this.request.captureBytes!) this.captured.push(chunk);
      else this.captured = undefined; // too large to compare: the status alone will be
    }
    // A 64 KiB chunk is over the socket's 16 KiB mark, so write() says false even when the kernel
    // took it all at once: the backend is paused only when bytes are really waiting in memory.
    if (this.res.write(chunk) || this.res.writableLength === 0) return true;
    this.res.once('drain', this.resumeBackend);
    return false;
  }

  end(): void {
    this.res.end();
    const base = { ok: true as const, status: this.status, responseBytes: this.responseBytes };
    if (!this.request.captureBytes) return this.resolve(base);
    const body = this.captured ? (this.captured.length === 1 ? this.captured[0]! : Buffer.concat(this.captured, this.responseBytes)) : undefined;
    this.resolve({ ...base, captured: { status: this.status, contentType: this.contentType, body } });
  }

  failed(failure: UpstreamFailure, error: unknown): void {
    // A client that left is why the exchange broke off, whatever undici called it.
    const cause: UpstreamFailure = this.res.destroyed && failure.kind !== 'client-aborted' ? { ...failure, kind: 'client-aborted', code: 'BAD_REQUEST', message: 'the client went away before the exchange finished' } : failure;
    this.resolve({ ok: false, failure: cause, responseStarted: this.status !== 0, responseBytes: this.responseBytes, error });
  }

  private readonly resumeBackend = (): void => this.exchange?.resume();
}
