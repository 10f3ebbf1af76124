/**
 * The proxy listener: a plain node:http server (no framework and no body
 * parser in front of the proxy path). Created here, listened on by main.
 */
import http from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from '../logging/logger.js';
import { decide } from '../routing/decide.js';
import { gatherFacts } from './facts.js';
import { createProxyHandler, hasDuplicateHost, originFormTarget, requestIdOf, type ProxyDeps } from './handler.js';
import { closeUpgradesWithServer, createUpgradeForwarder } from '../upstream/websocket.js';
import type { LiveEvents } from '../live/hub.js';
import { BodyBudget, DEFAULT_MAX_HELD_BODY_BYTES } from './body-budget.js';
import { BodyIdleTimer, DEFAULT_CLIENT_BODY_IDLE_TIMEOUT_MS } from './body-timeout.js';
import { isWebSocketUpgrade, serveAsPlainRequest } from './plain-upgrade.js';

export interface ProxyServerOptions {
  /** How long a client has to send its request headers (slowloris protection). */
  clientHeadersTimeoutMs?: number;
  /**
   * Longest pause inside a request body while the proxy waits for it (default
   * 30 s; 0 = none). Past it: 408 CLIENT_BODY_TIMEOUT while nothing went to a
   * backend, and the connection cut (the backend's request aborted) after.
   */
  clientBodyIdleTimeoutMs?: number;
  /**
   * Request-body bytes held in memory at once across all requests (default
   * 64 MiB; 0 = no cap): force bodies read to find builder names. A body that
   * does not fit is answered 503 PROXY_BUSY with Retry-After, and not sent.
   */
  maxHeldBodyBytes?: number;
  /** The queue's live events: with it, the web UI's `/ws` is relayed by the proxy while it has queue work (src/live/). */
  live?: LiveEvents;
}

/** `shouldUpgradeCallback` arrived in node 24.9; the types of older node do not know it. */
type ServerOptionsWithUpgradeChoice = http.ServerOptions & { shouldUpgradeCallback?: (req: http.IncomingMessage) => boolean };

export function createProxyServer(deps: ProxyDeps, options: ProxyServerOptions = {}): http.Server {
  const headersTimeout = options.clientHeadersTimeoutMs ?? 30_000;
  const bodies = new BodyIdleTimer(options.clientBodyIdleTimeoutMs ?? DEFAULT_CLIENT_BODY_IDLE_TIMEOUT_MS, {
    onError: (error) => {
      deps.metrics.internalErrors.inc();
      deps.logger.error('unexpected error in request handling', { error: (error as Error)?.stack ?? String(error) });
    },
  });
  const budget = new BodyBudget(options.maxHeldBodyBytes ?? DEFAULT_MAX_HELD_BODY_BYTES);
  deps.metrics.countHeldBodyBytesWith(() => budget.heldBytes);
  const handler = createProxyHandler(deps, { idle: bodies, budget });
  const serverOptions: ServerOptionsWithUpgradeChoice = {
    // Node answers 431 to larger header blocks itself.
    maxHeaderSize: 32 * 1024,
    // A client has this long to send its headers (slowloris); bodies may stream for longer, but never stall (BodyIdleTimer).
    headersTimeout,
    requestTimeout: 0,
    keepAliveTimeout: 65_000,
    // How often the header timeout is enforced; node's default (30 s) would let it run over by that much.
    connectionsCheckingInterval: Math.min(1_000, headersTimeout),
    // Only a WebSocket handshake is an upgrade: any other request with an Upgrade header (h2c) is plain HTTP and reaches
    // the handler. Runtimes without the option send it to the 'upgrade' listener instead, which serves it the same way.
    shouldUpgradeCallback: isWebSocketUpgrade,
  };
  const server = http.createServer(serverOptions, handler);
  server.on('close', () => bodies.close());
  const upgrades = createUpgradeForwarder(deps.logger, options.live && { hub: options.live, upstream: deps.upstream, active: () => deps.translator?.() !== undefined });
  closeUpgradesWithServer(server, upgrades);

  server.on('upgrade', (req: http.IncomingMessage, socket: Socket, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    if (!isWebSocketUpgrade(req)) return serveAsPlainRequest(req, socket, head, handler);
    if (hasDuplicateHost(req.rawHeaders)) return rejectUpgrade(socket, 400, 'Bad Request');
    const table = deps.currentTable();
    const requestId = requestIdOf(req);
    const target = originFormTarget(req.url);
    if (target === undefined) return rejectUpgrade(socket, 400, 'Bad Request');
    const pathname = target.split('?', 1)[0]!;
    gatherFacts({ method: 'GET', pathname, search: target.slice(pathname.length + 1), headers: req.headers, peekBody: async () => ({ complete: true, body: Buffer.alloc(0) }) }, table, deps.builders)
      .then(({ facts }) => {
        const decision = decide(table, facts);
        deps.logger.info('upgrade', { requestId, path: pathname, backend: decision.backend.name, jobType: decision.jobType, reason: decision.reason });
        upgrades.forward({ req, socket, head, backend: decision.backend, table, target, pathname, requestId });
      })
      .catch(() => socket.destroy());
  });

  // Sockets whose answers in progress are let finish before they close; further parse errors on them change nothing.
  const finishing = new WeakSet<Socket>();
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Socket) => {
    if (finishing.has(socket)) return;
    logClientError(deps.logger, error);
    if (answerInProgress(socket, error) !== undefined) {
      finishing.add(socket);
      return finishAnswersThenClose(socket, error, bodies);
    }
    if (!socket.writable) return socket.destroy();
    const status = error.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Type: application/json\r\n\r\n${JSON.stringify({ error: status.slice(4) })}`);
  });
  return server;
}

/**
 * The response being written on `socket` when the parser failed on what
 * followed its request (or the next request's headers timed out), if any:
 * node keeps it as `socket._httpMessage`. Writing a 400 then would put bytes
 * in the middle of an answer, or in place of the answer a backend gave to a
 * request it ran.
 */
function answerInProgress(socket: Socket, error: NodeJS.ErrnoException): http.ServerResponse | undefined {
  if (!socket.writable || socket.destroyed) return undefined;
  if (!(error.code?.startsWith('HPE_') || error.code === 'ERR_HTTP_REQUEST_TIMEOUT')) return undefined;
  const res = (socket as { _httpMessage?: unknown })._httpMessage;
  return res instanceof http.ServerResponse && !res.writableFinished && !res.destroyed ? res : undefined;
}

/**
 * Lets every answer already under way on `socket` finish, then closes it. A
 * request whose own body broke off is told so through its body watch (answered
 * 400 if nothing went to a backend yet, cut otherwise).
 */
function finishAnswersThenClose(socket: Socket, error: NodeJS.ErrnoException, bodies: BodyIdleTimer): void {
  const res = (socket as { _httpMessage?: unknown })._httpMessage;
  if (!(res instanceof http.ServerResponse) || res.writableFinished || res.destroyed) {
    socket.end();
    if (socket.writableFinished) socket.destroy();
    else socket.once('finish', () => socket.destroy());
    return;
  }
  if (!res.req.complete) {
    // The client ended its side mid-body (EOF): it hung up, nobody reads an answer. Any other parse error: its framing broke.
    if (error.code === 'HPE_INVALID_EOF_STATE' || !bodies.malformed(res.req)) socket.destroy();
    return;
  }
  // node's own 'finish' listener runs first and hands the socket to the next pipelined answer, if any.
  res.once('finish', () => finishAnswersThenClose(socket, error, bodies));
  res.once('close', () => {
    if (!res.writableFinished) socket.destroy();
  });
}

function rejectUpgrade(socket: Socket, status: number, text: string): void {
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\n\r\n`);
}

function logClientError(logger: Logger, error: NodeJS.ErrnoException): void {
  // Resets from clients that hang up are routine; malformed requests are worth a debug line.
  if (error.code === 'ECONNRESET') return;
  logger.debug('malformed request', { code: error.code, error: error.message });
}
