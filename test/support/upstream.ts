/**
 * Upstreams for end-to-end tests: real HTTP servers on 127.0.0.1 port 0 that
 * record every request they receive (method, URL, headers, exact body bytes)
 * and answer with whatever the test's handler writes.
 */
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface Received {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
}

export type UpstreamHandler = (req: IncomingMessage, res: ServerResponse, received: Received) => unknown;

export interface TestUpstream {
  readonly name: string;
  readonly url: string;
  readonly port: number;
  readonly server: Server;
  /** Requests received, health probes excepted. */
  readonly received: Received[];
  /** The proxy's own requests (health probes, builder lookups), kept apart so tests can count client traffic exactly. */
  readonly probes: Received[];
  /** Replaces the handler for later requests. */
  handle(handler: UpstreamHandler): void;
  close(): Promise<void>;
}

/** The default answer: JSON naming the upstream, echoing method and URL. */
export const echo: (name: string) => UpstreamHandler = (name) => (_req, res, received) => {
  const body = JSON.stringify({ servedBy: name, method: received.method, url: received.url, bodyBytes: received.body.length });
  res.writeHead(200, { 'content-type': 'application/json', 'x-served-by': name });
  res.end(body);
};

export async function startUpstream(name: string, handler: UpstreamHandler = echo(name), port = 0): Promise<TestUpstream> {
  const received: Received[] = [];
  const probes: Received[] = [];
  let current = handler;
  const sockets = new Set<Socket>();
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    try {
      for await (const chunk of req) chunks.push(chunk as Buffer);
    } catch {
      return; // the proxy gave up on the request body
    }
    const record: Received = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.concat(chunks) };
    if (req.headers['user-agent'] === 'strangler-proxy health probe') {
      probes.push(record);
      res.writeHead(200, { 'content-type': 'text/plain' });
      return void res.end('ok');
    }
    if (req.headers['user-agent'] === 'strangler-proxy builder lookup') {
      probes.push(record);
      return void (await current(req, res, record));
    }
    received.push(record);
    await current(req, res, record);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const actualPort = (server.address() as AddressInfo).port;
  return {
    name,
    url: `http://127.0.0.1:${actualPort}`,
    port: actualPort,
    server,
    received,
    probes,
    handle: (h) => {
      current = h;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A port nothing listens on (bound, then released). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
