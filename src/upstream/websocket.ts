/**
 * WebSocket upgrades (the Buildbot web UI's live updates on `/ws`). The
 * routing decision is the same as for any request. While the proxy has queue
 * work (its store is open), `/ws` is carried by the proxy itself
 * (src/live/relay.ts) so that the queue's build events join the master's;
 * otherwise, and for any other path, upgrades are few and long-lived, so
 * they go through http-proxy-middleware rather than the request engine.
 */
import type { IncomingMessage, Server } from 'node:http';
import type { Socket } from 'node:net';
import { createProxyMiddleware } from 'http-proxy-middleware';
import type { Logger } from '../logging/logger.js';
import type { Backend, RoutingTable } from '../routing/table.js';
import type { LiveEvents } from '../live/hub.js';
import { isLivePath, LiveRelay, masterOf } from '../live/relay.js';
import type { Upstream } from './upstream.js';

const TARGET = Symbol('strangler.wsTarget');
type RoutedRequest = IncomingMessage & { [TARGET]?: Backend };

export interface Upgrade {
  req: IncomingMessage;
  socket: Socket;
  head: Buffer;
  backend: Backend;
  table: RoutingTable;
  /** Path and query, origin form. */
  target: string;
  pathname: string;
  requestId: string;
}

export interface LiveUpgrades {
  hub: LiveEvents;
  upstream: Pick<Upstream, 'webSocket'>;
  /** True while the proxy has queue work (QueueWork's translator exists). */
  active: () => boolean;
}

export interface UpgradeForwarder {
  forward(upgrade: Upgrade): void;
  /** Ends every upgraded connection: a server's close() would wait for them for as long as clients stay. */
  closeAll(): void;
}

export function createUpgradeForwarder(logger: Logger, live?: LiveUpgrades): UpgradeForwarder {
  const proxy = createProxyMiddleware<IncomingMessage>({
    target: 'http://127.0.0.1', // replaced per request by `router`
    router: (req) => {
      const backend = (req as RoutedRequest)[TARGET]!;
      return backend.origin + backend.basePath;
    },
    changeOrigin: false,
    xfwd: true,
    ws: false, // we call upgrade() ourselves, after routing
    on: {
      error: (error, req, socketOrRes) => {
        logger.warn('websocket upgrade failed', { path: (req.url ?? '').split('?')[0], error: error.message });
        (socketOrRes as Socket).destroy?.();
      },
    },
  });
  const relay = live === undefined ? undefined : new LiveRelay(live.hub, live.upstream, logger);
  const forwarded = new Set<Socket>();
  return {
    forward({ req, socket, head, backend, table, target, pathname, requestId }) {
      if (relay !== undefined && live!.active() && isLivePath(pathname)) return relay.relay(req, socket, head, masterOf(backend, table), target, requestId);
      (req as RoutedRequest)[TARGET] = backend;
      req.headers['x-request-id'] = requestId;
      forwarded.add(socket);
      socket.once('close', () => forwarded.delete(socket));
      proxy.upgrade(req, socket, head);
    },
    closeAll() {
      relay?.closeAll();
      for (const socket of forwarded) socket.destroy();
    },
  };
}

/** Makes `server.close()` end the upgraded connections first (a shutdown then waits only for requests). */
export function closeUpgradesWithServer(server: Server, upgrades: UpgradeForwarder): void {
  const close = server.close.bind(server);
  server.close = ((callback?: (error?: Error) => void) => {
    upgrades.closeAll();
    return close(callback);
  }) as Server['close'];
}
