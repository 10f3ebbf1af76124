/**
 * One request's exchange with a backend, as undici's dispatch handler (its
 * controller API), told to an AnswerSink in the terms the proxy cares about:
 * a head, body chunks with backpressure, an end, or a failure that says
 * whether the request may have reached the backend.
 *
 * Every way the proxy talks to a backend (clients' requests, shadow copies,
 * health probes, builder lookups) goes through this one handler, so the rules
 * below hold for all of them.
 */
import type { Dispatcher } from 'undici';
import { classifyUpstreamError, type UpstreamFailure } from './failure.js';
import { endToEndResponseHeaders, type RawHeaders } from './headers.js';

/** Receives one answer from a backend, in order: head, data*, then end or failed. */
export interface AnswerSink {
  /**
   * The final status and end-to-end headers. Throwing refuses the answer (a
   * header node will not write, say): the exchange fails as a bad response
   * and its connection is discarded.
   */
  head(status: number, statusText: string | undefined, headers: RawHeaders, contentType: string | undefined): void;
  /** A body chunk; false pauses the backend until the exchange's `resume()`. */
  data(chunk: Buffer): boolean;
  end(): void;
  /** Told at most once, never after `end`. */
  failed(failure: UpstreamFailure, error: unknown): void;
}

/** A reason phrase node can write as is; anything else is dropped and node writes the standard one. */
const WRITABLE_REASON = /^[\t\x20-\x7e\x80-\xff]*$/;

/** An error code for an answer the proxy refuses to pass on. */
class BadAnswerError extends Error {
  readonly code = 'EBADANSWER';
}

/** Why a connection was dropped after an answer that is complete by definition (see onResponseStart). */
class DiscardConnection extends Error {
  readonly code = 'EDISCARD';
  constructor() {
    super('connection discarded after a bodiless answer');
  }
}

export class Exchange implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | undefined;
  /** The engine began writing the request to a connection; before that, nothing can have reached the backend. */
  private requestStarted = false;
  private finished = false;
  /** An abort asked for before the request was handed a connection; applied when it is. */
  private pendingAbort: Error | undefined;

  constructor(private readonly sink: AnswerSink) {}

  /** Calls the exchange off (the client left, a copy's time ran out). No-op once it is over. */
  abort(reason: Error): void {
    if (this.finished) return;
    if (this.controller !== undefined) this.controller.abort(reason);
    else this.pendingAbort = reason;
  }

  /** Lets the backend send again after the sink said false. */
  resume(): void {
    this.controller?.resume();
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.pendingAbort !== undefined) {
      controller.abort(this.pendingAbort); // before a byte is written: still never reached
      return;
    }
    this.requestStarted = true;
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>, statusMessage?: string): void {
    if (this.finished || statusCode < 200) return; // 1xx: the final answer follows
    const reason = statusMessage !== undefined && WRITABLE_REASON.test(statusMessage) ? statusMessage : undefined;
    const { list, contentType } = endToEndResponseHeaders(headers);
    try {
      this.sink.head(statusCode, reason, list, contentType);
    } catch (error) {
      controller.abort(new BadAnswerError(`the answer's head cannot be passed on: ${(error as Error).message}`));
      return;
    }
    if (statusCode === 204 || statusCode === 304) {
      // These answers have no body by definition, and broken servers send one anyway: on a reused
      // connection those bytes would be read as the next request's answer, someone else's. The answer
      // is complete now, so it ends here and its connection is closed instead of reused. (undici
      // already closes the connection after every HEAD request, for the same reason.)
      this.finish();
      controller.abort(new DiscardConnection());
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.finished) return;
    if (!this.sink.data(chunk)) controller.pause();
  }

  onResponseEnd(): void {
    this.finish();
  }

  onResponseError(_controller: Dispatcher.DispatchController | undefined, error: Error): void {
    if (this.finished) return;
    this.finished = true;
    this.sink.failed(classifyUpstreamError(error, this.requestStarted), error);
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.sink.end();
  }
}
