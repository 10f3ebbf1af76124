/**
 * The forwarding engine: one function that sends this request to that
 * backend and streams the answer back. Routing never looks inside; the
 * engine can be measured and replaced on its own.
 *
 * Built on undici's connection pools and its low-level dispatch API: the
 * response is written straight to the client with backpressure (pause the
 * backend while the client is slow), no intermediate streams
 * (docs/decisions/0001-forwarding-engine.md has the measurements behind that
 * choice). Nothing here retries: a request is sent at most once.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';
import type { Backend } from '../routing/table.js';
import { downstreamHeaders, type HeaderMap } from './headers.js';
import type { CapturedResponse } from './compare.js';
import { classifyUpstreamError, type UpstreamFailure } from './upstream-errors.js';

export type RequestBody = Buffer | Readable | IncomingMessage | null;

export interface ForwardRequest {
  method: string;
  /** Path and query, as the client sent them. */
  url: string;
  headers: HeaderMap;
  body: RequestBody;
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

export class Forwarder {
  private readonly pools = new Map<string, Pool>();

  /** Sends `request` to `backend`, writes the answer to `res`. Never throws; failures come back as a result. */
  forward(backend: Backend, request: ForwardRequest, res: ServerResponse): Promise<ForwardResult> {
    return new Promise((resolve) => {
      let status = 0;
      let responseBytes = 0;
      let contentType: string | undefined;
      const captureLimit = request.captureBytes ?? 0;
      let captured: Buffer[] | undefined = captureLimit > 0 ? [] : undefined;
      let controller: Dispatcher.DispatchController | undefined;
      let settled = false;

      // The client hanging up cancels the exchange with the backend (and frees its connection).
      const onClientGone = () => {
        if (!res.writableFinished) controller?.abort(new ClientGoneError());
      };
      res.once('close', onClientGone);
      const settle = (result: ForwardResult) => {
        if (settled) return;
        settled = true;
        res.off('close', onClientGone);
        resolve(result);
      };
      const resumeBackend = () => controller?.resume();

      const handler: Dispatcher.DispatchHandler = {
        onRequestStart(c) {
          controller = c;
          if (res.destroyed) c.abort(new ClientGoneError());
        },
        onResponseStart(_c, statusCode, headers, statusMessage) {
          if (statusCode < 200) return; // 1xx informational; the final answer follows
          status = statusCode;
          contentType = typeof headers['content-type'] === 'string' ? headers['content-type'] : undefined;
          if (statusMessage) res.writeHead(statusCode, statusMessage, downstreamHeaders(headers));
          else res.writeHead(statusCode, downstreamHeaders(headers));
        },
        onResponseData(c, chunk) {
          responseBytes += chunk.length;
          request.onResponseBytes?.(chunk.length);
          if (captured) {
            if (responseBytes <= captureLimit) captured.push(Buffer.from(chunk));
            else captured = undefined; // too large to compare: the status alone will be
          }
          if (!res.write(chunk)) {
            c.pause();
            res.once('drain', resumeBackend);
          }
        },
        onResponseEnd() {
          res.end();
          const copy = captureLimit > 0 ? { status, contentType, body: captured ? Buffer.concat(captured) : undefined } : undefined;
          settle({ ok: true, status, responseBytes, ...(copy ? { captured: copy } : {}) });
        },
        onResponseError(_c, error) {
          settle({ ok: false, failure: classifyUpstreamError(error), responseStarted: status !== 0, responseBytes, error });
        },
      };

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
          handler,
        );
      } catch (error) {
        // undici rejects some requests synchronously (an invalid header value, say): nothing was sent.
        settle({ ok: false, failure: { ...classifyUpstreamError(error), mayHaveReachedBackend: false }, responseStarted: false, responseBytes: 0, error });
      }
    });
  }

  /**
   * Sends a copy of a request (shadow traffic) and reads the answer, up to
   * `limit` bytes; never touches a client. Throws on failure or timeout.
   */
  async copy(backend: Backend, request: Omit<ForwardRequest, 'body'> & { body: Buffer | null }, limit: number, timeoutMs: number): Promise<CapturedResponse> {
    const response = await this.poolFor(backend).request({
      path: backend.basePath + request.url,
      method: request.method as Dispatcher.HttpMethod,
      headers: request.headers,
      body: request.body,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs),
    });
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of response.body) {
      size += (chunk as Buffer).length;
      if (size > limit) {
        response.body.destroy();
        return { status: response.statusCode, contentType: contentTypeOf(response.headers), body: undefined };
      }
      chunks.push(chunk as Buffer);
    }
    return { status: response.statusCode, contentType: contentTypeOf(response.headers), body: Buffer.concat(chunks) };
  }

  private poolFor(backend: Backend): Pool {
    const key = poolKey(backend);
    let pool = this.pools.get(key);
    if (!pool) {
      pool = new Pool(backend.origin, {
        connect: { timeout: backend.connectTimeoutMs },
        // Idle sockets are closed before a typical backend's own keep-alive timeout, so a request
        // is rarely written to a socket the backend is closing (that request could not be retried).
        keepAliveTimeout: 4_000,
        keepAliveMaxTimeout: 60_000,
      });
      this.pools.set(key, pool);
    }
    return pool;
  }

  /** Closes the pools of backends no longer in use, once their requests finish. */
  retainOnly(backends: Iterable<Backend>): void {
    const keep = new Set([...backends].map(poolKey));
    for (const [key, pool] of this.pools) {
      if (!keep.has(key)) {
        this.pools.delete(key);
        void pool.close().catch(() => undefined);
      }
    }
  }

  async close(): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((p) => p.close().catch(() => undefined)));
  }
}

function contentTypeOf(headers: Record<string, string | string[] | undefined>): string | undefined {
  const value = headers['content-type'];
  return typeof value === 'string' ? value : undefined;
}

function poolKey(backend: Backend): string {
  return `${backend.origin}|${backend.connectTimeoutMs}`;
}
