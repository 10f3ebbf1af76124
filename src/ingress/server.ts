/**
 * The proxy listener: a plain node:http server (no framework and no body
 * parser in front of the proxy path). Created here, listened on by main.
 */
import http from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from '../logging/logger.js';
import { decide } from '../routing/decide.js';
import { gatherFacts } from './facts.js';
import { createProxyHandler, originFormTarget, requestIdOf, type ProxyDeps } from './handler.js';
import { createUpgradeForwarder } from '../upstream/websocket.js';

export interface ProxyServerOptions {
  /** How long a client has to send its request headers (slowloris protection). */
  clientHeadersTimeoutMs?: number;
}

export function createProxyServer(deps: ProxyDeps, options: ProxyServerOptions = {}): http.Server {
  const headersTimeout = options.clientHeadersTimeoutMs ?? 30_000;
  const server = http.createServer(
    {
      // Node answers 431 to larger header blocks itself.
      maxHeaderSize: 32 * 1024,
      // A client has this long to send its headers (slowloris); bodies may stream for longer.
      headersTimeout,
      requestTimeout: 0,
      keepAliveTimeout: 65_000,
      // How often the header timeout is enforced; node's default (30 s) would let it run over by that much.
      connectionsCheckingInterval: Math.min(1_000, headersTimeout),
    },
    createProxyHandler(deps),
  );
  const forwardUpgrade = createUpgradeForwarder(deps.logger);

  server.on('upgrade', (req: http.IncomingMessage, socket: Socket, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    const table = deps.currentTable();
    const requestId = requestIdOf(req);
    const target = originFormTarget(req.url);
    if (target === undefined) return rejectUpgrade(socket, 400, 'Bad Request');
    const pathname = target.split('?', 1)[0]!;
    gatherFacts({ method: 'GET', pathname, search: target.slice(pathname.length + 1), headers: req.headers, peekBody: async () => ({ complete: true, body: Buffer.alloc(0) }) }, table, deps.builders)
      .then(({ facts }) => {
        const decision = decide(table, facts);
        deps.logger.info('upgrade', { requestId, path: pathname, backend: decision.backend.name, jobType: decision.jobType, reason: decision.reason });
        forwardUpgrade(req, socket, head, decision.backend, requestId);
      })
      .catch(() => socket.destroy());
  });

  server.on('clientError', (error: NodeJS.ErrnoException, socket: Socket) => {
    logClientError(deps.logger, error);
    if (!socket.writable) return socket.destroy();
    const status = error.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Type: application/json\r\n\r\n${JSON.stringify({ error: status.slice(4) })}`);
  });
  return server;
}

function rejectUpgrade(socket: Socket, status: number, text: string): void {
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\n\r\n`);
}

function logClientError(logger: Logger, error: NodeJS.ErrnoException): void {
  // Resets from clients that hang up are routine; malformed requests are worth a debug line.
  if (error.code === 'ECONNRESET') return;
  logger.debug('malformed request', { code: error.code, error: error.message });
}
