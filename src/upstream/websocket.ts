/**
 * WebSocket upgrades (the Buildbot web UI's live updates on `/ws`). They are
 * few and long-lived, so they go through http-proxy-middleware rather than
 * the request engine; the routing decision is the same as for any request.
 */
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { createProxyMiddleware } from 'http-proxy-middleware';
import type { Logger } from '../logging/logger.js';
import type { Backend } from '../routing/table.js';

const TARGET = Symbol('strangler.wsTarget');
type RoutedRequest = IncomingMessage & { [TARGET]?: Backend };

export type UpgradeForwarder = (req: IncomingMessage, socket: Socket, head: Buffer, backend: Backend, requestId: string) => void;

export function createUpgradeForwarder(logger: Logger): UpgradeForwarder {
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
  return (req, socket, head, backend, requestId) => {
    (req as RoutedRequest)[TARGET] = backend;
    req.headers['x-request-id'] = requestId;
    proxy.upgrade(req, socket, head);
  };
}
