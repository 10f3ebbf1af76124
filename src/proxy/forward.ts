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
import { classifyUpstreamError, type UpstreamFailure } from './upstream-errors.js';

export type RequestBody = Buffer | Readable | IncomingMessage | null;

export interface ForwardRequest {
  method: string;
  /** Path and query, as the client sent them. */
  url: string;
  headers: HeaderMap;
  body: RequestBody;
}

export type ForwardResult =
  | { ok: true; status: number; responseBytes: number }
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
          if (statusMessage) res.writeHead(statusCode, statusMessage, downstreamHeaders(headers));
          else res.writeHead(statusCode, downstreamHeaders(headers));
        },
        onResponseData(c, chunk) {
          responseBytes += chunk.length;
          if (!res.write(chunk)) {
            c.pause();
            res.once('drain', resumeBackend);
          }
        },
        onResponseEnd() {
          res.end();
          settle({ ok: true, status, responseBytes });
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

function poolKey(backend: Backend): string {
  return `${backend.origin}|${backend.connectTimeoutMs}`;
}
