/**
 * The `/ws` relay over real sockets: a stand-in master (a ws server that
 * speaks enough of Buildbot's protocol to answer), the proxy's side through
 * the real Upstream (undici), and clients that behave and that do not.
 * test/e2e/live-events.test.ts runs the same against a real Buildbot master.
 */
import { expect } from 'chai';
import http from 'node:http';
import net from 'node:net';
import { Writable } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import { LiveEvents } from '../../../src/live/hub.js';
import { LiveRelay, isLivePath, masterOf, type RelayOptions } from '../../../src/live/relay.js';
import { createLogger } from '../../../src/logging/logger.js';
import type { Backend, RoutingTable } from '../../../src/routing/table.js';
import { Upstream } from '../../../src/upstream/upstream.js';

const quietLogger = () => createLogger({ stream: new Writable({ write: (_c, _e, done) => done() }), level: 'error' });

/** A master's /ws: acks commands like Buildbot, records what it got, and lets a test close or talk. */
class StandinMaster {
  readonly frames: Array<{ data: string; binary: boolean }> = [];
  readonly sockets: WebSocket[] = [];
  readonly closes: number[] = [];
  readonly server = http.createServer((_req, res) => res.end());
  private readonly wss = new WebSocketServer({ server: this.server, path: '/ws' });
  url = '';

  async start(): Promise<this> {
    this.wss.on('connection', (socket) => {
      this.sockets.push(socket);
      socket.on('close', (code) => this.closes.push(code));
      socket.on('message', (data, binary) => {
        const text = String(data);
        this.frames.push({ data: text, binary });
        if (binary) return socket.send(data, { binary: true });
        try {
          const frame = JSON.parse(text) as { _id?: number; cmd?: string };
          socket.send(JSON.stringify({ msg: frame.cmd === 'ping' ? 'pong' : 'OK', code: 200, _id: frame._id }));
        } catch {
          socket.close(1003, 'not json');
        }
      });
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', () => resolve()));
    this.url = `http://127.0.0.1:${(this.server.address() as net.AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    for (const s of this.wss.clients) s.terminate();
    this.wss.close();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

function backendAt(origin: string): Backend {
  return { name: 'legacy', kind: 'buildbot', origin, basePath: '', url: origin, host: origin.slice(7), legacy: true, connectTimeoutMs: 1000, responseTimeoutMs: 2000 } as Backend;
}

/** The proxy's listener with only the relay behind its upgrades. */
async function startRelay(master: string, options: RelayOptions = {}) {
  const hub = new LiveEvents({ store: () => undefined, logger: quietLogger() });
  const upstream = new Upstream();
  const relay = new LiveRelay(hub, upstream, quietLogger(), options);
  const server = http.createServer((_req, res) => res.end());
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    relay.relay(req, socket, head, backendAt(master), req.url!, 'test-request');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  return {
    hub,
    relay,
    port,
    url: `ws://127.0.0.1:${port}/ws`,
    async close() {
      relay.closeAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await upstream.close();
    },
  };
}

/** A ws client that keeps every frame it gets. */
async function connect(url: string): Promise<{ ws: WebSocket; got: string[]; closed: Promise<{ code: number; reason: string }> }> {
  const ws = new WebSocket(url);
  const got: string[] = [];
  ws.on('message', (data) => got.push(String(data)));
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: String(reason) })));
  ws.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, res) => reject(new Error(`handshake answered ${res.statusCode}`)));
    ws.once('error', reject);
  });
  return { ws, got, closed };
}

async function until(check: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const event = (id: string, key: string[], message: object = { buildid: 1 }) => ({ id, keys: [key], message });

/** A client that completes the handshake by hand and then does as it is told (never read, never answer pings). */
async function rawClient(port: number): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  socket.write('GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
  await new Promise<void>((resolve) => socket.once('data', () => resolve()));
  return socket;
}

/** A masked client text frame, as a browser sends it. */
function clientFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  if (payload.length >= 126) throw new Error('short frames only');
  const mask = Buffer.from([1, 2, 3, 4]);
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!))]);
}

describe('live/relay', function () {
  this.timeout(15_000);
  let master: StandinMaster;
  let proxy: Awaited<ReturnType<typeof startRelay>> | undefined;

  beforeEach(async () => {
    master = await new StandinMaster().start();
  });
  afterEach(async () => {
    await proxy?.close();
    proxy = undefined;
    await master.close();
  });

  it('carries frames both ways unchanged, and adds the events a client subscribed to until it stops', async () => {
    proxy = await startRelay(master.url);
    const client = await connect(proxy.url);
    const frames = [JSON.stringify({ cmd: 'startConsuming', path: 'builds/*/*', _id: 1 }), JSON.stringify({ cmd: 'ping', _id: 2 }), '{"_id": 3, "cmd":   "startConsuming", "path": "buildrequests/*/*"}'];
    for (const f of frames) client.ws.send(f);
    client.ws.send(Buffer.from([0, 1, 2, 255]), { binary: true });
    await until(() => client.got.length === 4, 'the master\'s answers');
    expect(master.frames).to.deep.equal([...frames.map((data) => ({ data, binary: false })), { data: String(Buffer.from([0, 1, 2, 255])), binary: true }]);
    expect(client.got.slice(0, 3).map((t) => JSON.parse(t))).to.deep.equal([
      { msg: 'OK', code: 200, _id: 1 },
      { msg: 'pong', code: 200, _id: 2 },
      { msg: 'OK', code: 200, _id: 3 },
    ]);

    proxy.hub.publish(event('a', ['builds', '7', 'new'], { buildid: 7 }));
    proxy.hub.publish(event('b', ['changes', '7', 'new']));
    await until(() => client.got.length === 5, 'the injected event');
    expect(JSON.parse(client.got[4]!)).to.deep.equal({ k: 'builds/7/new', m: { buildid: 7 } });

    client.ws.send(JSON.stringify({ cmd: 'stopConsuming', path: 'builds/*/*', _id: 4 }));
    await until(() => client.got.length === 6, 'the stop ack');
    proxy.hub.publish(event('c', ['builds', '8', 'new']));
    proxy.hub.publish(event('d', ['buildrequests', '8', 'new']));
    await until(() => client.got.length === 7, 'the buildrequest event');
    expect(JSON.parse(client.got[6]!).k).to.equal('buildrequests/8/new');
    client.ws.close();
  });

  it('closes the client when the master closes, with the master\'s code, or 1001 when its connection just ends', async () => {
    proxy = await startRelay(master.url);
    const first = await connect(proxy.url);
    await until(() => master.sockets.length === 1, 'the master connection');
    master.sockets[0]!.close(4000, 'reconfig');
    expect(await first.closed).to.deep.equal({ code: 4000, reason: 'reconfig' });

    const second = await connect(proxy.url);
    await until(() => master.sockets.length === 2, 'the second master connection');
    master.sockets[1]!.terminate();
    expect((await second.closed).code).to.equal(1001);
    await until(() => proxy!.relay.size === 0 && proxy!.hub.listening === 0, 'the connections forgotten');
  });

  it('closes the master side when the client closes', async () => {
    proxy = await startRelay(master.url);
    const client = await connect(proxy.url);
    await until(() => master.sockets.length === 1, 'the master connection');
    client.ws.close(4100);
    await until(() => master.closes.length === 1, 'the master side closed');
    expect(master.closes).to.deep.equal([4100]);
  });

  it('drops a client that sends a frame over maxPayload (1009), and its master connection with it', async () => {
    proxy = await startRelay(master.url, { maxPayload: 1024 });
    const client = await connect(proxy.url);
    client.ws.send('x'.repeat(2048));
    expect((await client.closed).code).to.equal(1009);
    await until(() => master.closes.length === 1, 'the master side closed');
    expect(master.frames).to.deep.equal([]);
  });

  it('drops a client that does not read rather than buffer for it without end', async () => {
    proxy = await startRelay(master.url, { maxBufferedBytes: 64 * 1024 });
    const socket = await rawClient(proxy.port);
    socket.write(clientFrame(JSON.stringify({ cmd: 'startConsuming', path: 'builds/*/*', _id: 1 })));
    await until(() => master.frames.length === 1, 'the subscription relayed');
    socket.pause();
    const big = 'y'.repeat(64 * 1024);
    for (let i = 0; i < 400 && proxy.relay.size > 0; i++) {
      proxy.hub.publish(event(`e${i}`, ['builds', String(i), 'new'], { big }));
      await new Promise((r) => setImmediate(r));
    }
    await until(() => proxy!.relay.size === 0, 'the client dropped');
    await until(() => master.closes.length === 1, 'the master side closed');
    socket.destroy();
  });

  it('drops a client that stops answering pings', async () => {
    proxy = await startRelay(master.url, { pingIntervalMs: 50 });
    const socket = await rawClient(proxy.port);
    socket.on('data', () => undefined); // reads, never answers
    const gone = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    await until(() => proxy!.relay.size === 1, 'the connection');
    await gone;
    await until(() => proxy!.relay.size === 0, 'the connection forgotten');
    await until(() => master.closes.length === 1, 'the master side closed');
  });

  it('answers the handshake 502 when the master cannot be reached, and 503 to one under way at shutdown', async () => {
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', () => resolve()));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    proxy = await startRelay(`http://127.0.0.1:${port}`);
    const error = await connect(proxy.url).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(error?.message).to.equal('handshake answered 502');
    await proxy.close();

    // A master that accepts the connection and never answers the handshake.
    const silent = net.createServer((s) => s.on('data', () => undefined));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', () => resolve()));
    proxy = await startRelay(`http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`);
    const pending = connect(proxy.url).then(
      () => undefined,
      (e: Error) => e,
    );
    await new Promise((r) => setTimeout(r, 200));
    proxy.relay.closeAll();
    expect((await pending)?.message).to.equal('handshake answered 503');
    silent.close();
  });

  it('closes every connection at shutdown with 1001', async () => {
    proxy = await startRelay(master.url);
    const clients = await Promise.all([connect(proxy.url), connect(proxy.url)]);
    proxy.relay.closeAll();
    for (const c of clients) expect((await c.closed).code).to.equal(1001);
    await until(() => master.closes.length === 2, 'the master sides closed');
  });

  it('relays /ws only, to a Buildbot master: a queue routed for it sends it to the legacy master', () => {
    expect(isLivePath('/ws')).to.equal(true);
    for (const p of ['/ws/', '/wss', '/api/v2/ws', '/sse']) expect(isLivePath(p), p).to.equal(false);
    const legacy = backendAt('http://127.0.0.1:1');
    const other = { ...backendAt('http://127.0.0.1:2'), name: 'second' } as Backend;
    const queue = { ...backendAt('http://127.0.0.1:3'), kind: 'taskcluster' } as Backend;
    const table = { legacy } as Pick<RoutingTable, 'legacy'>;
    expect(masterOf(other, table)).to.equal(other);
    expect(masterOf(queue, table)).to.equal(legacy);
  });
});
