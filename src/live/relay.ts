/**
 * The web UI's `/ws` carried by the proxy itself while it has queue work, so
 * that events of builds on the queue reach the web UI next to the master's.
 * The client's handshake is answered by the `ws` package once the proxy's
 * own WebSocket to the master (undici, through src/upstream/) is open; from
 * then every frame goes across unchanged, both ways, and the hub
 * (src/live/hub.ts) adds the queue's events the client subscribed to. The
 * proxy reads the client's text frames only to follow its subscriptions.
 *
 * Either side closing closes the other. A client is dropped, rather than
 * buffered for without end, when it sends frames over {@link RelayOptions.maxPayload},
 * stops reading (more than `maxBufferedBytes` waiting for it), stops
 * answering pings, or sends faster than the master reads.
 */
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { CloseEvent, MessageEvent, WebSocket as UpstreamSocket } from 'undici';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import type { Logger } from '../logging/logger.js';
import type { Backend, RoutingTable } from '../routing/table.js';
import type { Upstream } from '../upstream/upstream.js';
import type { LiveEvents } from './hub.js';
import { Subscriptions } from './subscriptions.js';

export interface RelayOptions {
  /** Largest frame a client may send (the web UI's are a few hundred bytes). Default 64 KiB. */
  maxPayload?: number;
  /** Bytes waiting for a client (or for the master) past which the connection is dropped. Default 4 MiB. */
  maxBufferedBytes?: number;
  /** How often clients are pinged; one that has not answered the last ping is dropped. Default 30 s; 0 = never. */
  pingIntervalMs?: number;
}

const DEFAULT_MAX_PAYLOAD = 64 * 1024;
const DEFAULT_MAX_BUFFERED = 4 * 1024 * 1024;
const DEFAULT_PING_INTERVAL_MS = 30_000;

interface Connection {
  client: WebSocket;
  master: UpstreamSocket;
  answeredPing: boolean;
  done: () => void;
}

export class LiveRelay {
  private readonly server: WebSocketServer;
  private readonly connections = new Set<Connection>();
  /** Handshakes waiting for the master's WebSocket to open. */
  private readonly opening = new Set<() => void>();
  private readonly maxBuffered: number;
  private readonly pinger: NodeJS.Timeout | undefined;

  constructor(
    private readonly hub: LiveEvents,
    private readonly upstream: Pick<Upstream, 'webSocket'>,
    private readonly logger: Logger,
    options: RelayOptions = {},
  ) {
    // SECURITY: frames are request data; ws refuses (1009) and drops a client whose frame is larger than maxPayload.
    this.server = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      maxPayload: options.maxPayload ?? DEFAULT_MAX_PAYLOAD,
      perMessageDeflate: false,
      // The master is not asked for a subprotocol, so none is agreed with the client either.
      handleProtocols: () => false,
    });
    this.maxBuffered = options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED;
    const interval = options.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS;
    if (interval > 0) {
      this.pinger = setInterval(() => this.ping(), interval);
      this.pinger.unref();
    }
  }

  /** Connections relayed now. */
  get size(): number {
    return this.connections.size;
  }

  /**
   * Takes a WebSocket handshake for `target` (path and query) whose route
   * goes to `backend`: opens the proxy's own WebSocket there, then answers
   * the client. A master that cannot be reached is answered 502.
   */
  relay(req: IncomingMessage, socket: Socket, head: Buffer, backend: Backend, target: string, requestId: string): void {
    let master: UpstreamSocket;
    try {
      master = this.upstream.webSocket(backend, target);
    } catch (error) {
      this.logger.warn('live events: the master\'s /ws could not be opened', { requestId, backend: backend.name, error: (error as Error).message });
      return reject(socket, 502, 'Bad Gateway');
    }
    master.binaryType = 'arraybuffer';
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    /** Ends the handshake without a connection: the client answered `answer`, or its socket just closed. */
    const giveUp = (answer?: [number, string]) => {
      if (settled) return;
      settled = true;
      this.opening.delete(onShutdown);
      clearTimeout(timer);
      socket.off('close', onClientGone);
      master.close();
      if (answer === undefined) socket.destroy();
      else reject(socket, answer[0], answer[1]);
    };
    const onShutdown = () => giveUp([503, 'Service Unavailable']);
    const onClientGone = () => giveUp();
    this.opening.add(onShutdown);
    socket.once('close', onClientGone);
    timer = setTimeout(() => {
      this.logger.warn('live events: the master\'s /ws did not open in time', { requestId, backend: backend.name });
      giveUp([504, 'Gateway Timeout']);
    }, backend.connectTimeoutMs + backend.responseTimeoutMs);
    timer.unref();
    const failed = () => {
      if (settled) return;
      this.logger.warn('live events: the master refused or dropped the /ws handshake', { requestId, backend: backend.name });
      giveUp([502, 'Bad Gateway']);
    };
    master.addEventListener('error', failed, { once: true });
    master.addEventListener('close', failed, { once: true });
    master.addEventListener(
      'open',
      () => {
        if (settled) return;
        settled = true;
        this.opening.delete(onShutdown);
        clearTimeout(timer);
        socket.off('close', onClientGone);
        master.removeEventListener('error', failed);
        master.removeEventListener('close', failed);
        // An invalid handshake is answered 400 by ws and the socket closed, without calling back: the master goes too.
        const abandon = () => master.close();
        socket.once('close', abandon);
        this.server.handleUpgrade(req, socket, head, (client) => {
          socket.off('close', abandon);
          this.connect(client, master, requestId);
        });
      },
      { once: true },
    );
  }

  /** Closes every relayed connection (the proxy is shutting down) and refuses handshakes under way. */
  closeAll(): void {
    clearInterval(this.pinger);
    for (const refuse of [...this.opening]) refuse();
    for (const connection of [...this.connections]) {
      connection.client.close(1001, 'the proxy is shutting down');
      connection.master.close(1000);
      connection.done();
    }
  }

  private connect(client: WebSocket, master: UpstreamSocket, requestId: string): void {
    const subscriptions = new Subscriptions();
    const connection: Connection = { client, master, answeredPing: true, done: () => undefined };
    const unlisten = this.hub.add({
      wants: (key) => (client.readyState === WebSocket.OPEN ? subscriptions.count(key) : 0),
      send: (text) => this.toClient(connection, text, false),
    });
    connection.done = () => {
      unlisten();
      this.connections.delete(connection);
    };
    this.connections.add(connection);

    client.on('message', (data: RawData, isBinary: boolean) => {
      if (master.readyState !== master.OPEN) return;
      const bytes = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
      if (isBinary) master.send(bytes);
      else {
        // ws has checked that a text frame is valid UTF-8, so it goes across as the same text.
        const text = bytes.toString('utf8');
        subscriptions.apply(text);
        master.send(text);
      }
      if (master.bufferedAmount > this.maxBuffered) {
        this.logger.warn('live events: the master does not read what a client sends; closing both', { requestId });
        client.terminate();
      }
    });
    master.addEventListener('message', (event: MessageEvent) => {
      const data = event.data as string | ArrayBuffer;
      this.toClient(connection, typeof data === 'string' ? data : Buffer.from(data), typeof data !== 'string');
    });
    client.on('pong', () => {
      connection.answeredPing = true;
    });
    // ws reports protocol errors (an oversized frame, bad UTF-8) here, then closes the connection.
    client.on('error', (error) => this.logger.debug('live events: client connection error', { requestId, error: error.message }));
    client.on('close', (code: number, reason: Buffer) => {
      connection.done();
      if (master.readyState === master.OPEN || master.readyState === master.CONNECTING) master.close(toMasterCode(code), sendableReason(reason.toString('utf8')));
    });
    master.addEventListener('error', () => undefined); // 'close' follows
    master.addEventListener('close', (event: CloseEvent) => {
      connection.done();
      if (client.readyState === WebSocket.OPEN || client.readyState === WebSocket.CONNECTING) {
        const { code, reason } = toClientClose(event.code, event.reason);
        client.close(code, reason);
      }
    });
  }

  /** One frame to the client, or the client dropped when too much already waits for it. */
  private toClient(connection: Connection, data: string | Buffer, binary: boolean): void {
    const { client } = connection;
    if (client.readyState !== WebSocket.OPEN) return;
    if (client.bufferedAmount > this.maxBuffered) {
      this.logger.warn('live events: a client does not read its events; dropping it', { buffered: client.bufferedAmount });
      client.terminate();
      return;
    }
    client.send(data, { binary });
  }

  private ping(): void {
    for (const connection of this.connections) {
      if (!connection.answeredPing) {
        connection.client.terminate();
        continue;
      }
      connection.answeredPing = false;
      if (connection.client.readyState === WebSocket.OPEN) connection.client.ping();
    }
  }
}

/** The web UI's event socket: Buildbot serves it at `/ws` below its root. */
export function isLivePath(pathname: string): boolean {
  return pathname === '/ws';
}

/** Where a relayed `/ws` goes: the routed backend when it is a Buildbot master, else the legacy master (a queue has no `/ws`). */
export function masterOf(routed: Backend, table: Pick<RoutingTable, 'legacy'>): Backend {
  return routed.kind === 'taskcluster' ? table.legacy : routed;
}

function reject(socket: Socket, status: number, text: string): void {
  if (!socket.writable) return void socket.destroy();
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`, () => socket.destroy());
}

/** undici sends only 1000 and 3000–4999. */
function toMasterCode(code: number): number {
  return code === 1000 || (code >= 3000 && code <= 4999) ? code : 1000;
}

/**
 * The master's close, told to the client: a code a peer may send goes as it
 * is; none (1005) is a normal close; a connection that broke (1006) reads as
 * the server going away.
 */
function toClientClose(code: number, reason: string): { code: number; reason: string } {
  if (code === 1005) return { code: 1000, reason: '' };
  if (code === 1006) return { code: 1001, reason: 'the master\'s connection ended' };
  const sendable = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
  return sendable ? { code, reason: sendableReason(reason) } : { code: 1011, reason: '' };
}

/** A close reason is at most 123 bytes. */
function sendableReason(reason: string): string {
  return Buffer.byteLength(reason) <= 123 ? reason : '';
}
