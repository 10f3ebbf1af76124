/**
 * The forwarding engine: one function that sends this request to that
 * backend and streams the answer back. Routing never looks inside; the
 * engine can be measured and replaced on its own.
 *
 * Built on undici's connection pools (docs/decisions/0001-forwarding-engine.md
 * has the measurements behind that choice). Nothing here retries: a request
 * is sent at most once, whatever its method.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { Pool } from 'undici';
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
  | { ok: true; status: number }
  /** `responseStarted`: the backend's status line was already sent on, so the client cannot get an error answer. */
  | { ok: false; failure: UpstreamFailure; responseStarted: boolean; error: unknown };

export class Forwarder {
  private readonly pools = new Map<string, Pool>();

  /** Sends `request` to `backend`, writes the answer to `res`. Never throws; failures come back as a result. */
  async forward(backend: Backend, request: ForwardRequest, res: ServerResponse, signal?: AbortSignal): Promise<ForwardResult> {
    let status = 0;
    try {
      await this.poolFor(backend).stream(
        {
          path: backend.basePath + request.url,
          method: request.method as 'GET',
          headers: request.headers,
          body: request.body,
          headersTimeout: backend.responseTimeoutMs,
          bodyTimeout: backend.bodyIdleTimeoutMs,
          signal: signal ?? null,
        },
        ({ statusCode, headers }) => {
          status = statusCode;
          res.writeHead(statusCode, downstreamHeaders(headers));
          return res;
        },
      );
      return { ok: true, status };
    } catch (error) {
      return { ok: false, failure: classifyUpstreamError(error), responseStarted: status !== 0, error };
    }
  }

  private poolFor(backend: Backend): Pool {
    const key = `${backend.origin}|${backend.connectTimeoutMs}`;
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
    const keep = new Set([...backends].map((b) => `${b.origin}|${b.connectTimeoutMs}`));
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
