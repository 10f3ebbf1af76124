import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { isStranglerError } from '../../../src/errors.js';
import { BackendClient, type BackendConnection, type ResponseSink, type Timeouts } from '../../../src/proxy/backend-client.js';
import type { RawHeaders } from '../../../src/upstream/headers.js';
import { classifyUpstreamError } from '../../../src/upstream/failure.js';
import { closeServer, listen, rawServer, selfSignedHttpsServer } from '../../support/servers.js';

/** Records what the client tells a sender; `slow` makes it refuse body chunks until resumed, like a client that reads slowly. */
class Recorder implements ResponseSink {
  status = 0;
  statusText = '';
  headers: RawHeaders = [];
  contentType: string | undefined;
  chunks: Buffer[] = [];
  error: Error | undefined;
  ended = false;
  refuseHead = false;
  slow = false;
  readonly done: Promise<void>;
  private finish!: () => void;
  events = 0;

  constructor() {
    this.done = new Promise((resolve) => (this.finish = resolve));
  }

  head(status: number, statusText: string, headers: RawHeaders, contentType: string | undefined): boolean {
    Object.assign(this, { status, statusText, headers, contentType });
    return !this.refuseHead;
  }

  body(chunk: Buffer): boolean {
    this.chunks.push(chunk);
    return !this.slow;
  }

  end(): void {
    this.events++;
    this.ended = true;
    this.finish();
  }

  fail(error: Error): void {
    this.events++;
    this.error = error;
    this.finish();
  }

  get text(): string {
    return Buffer.concat(this.chunks).toString('latin1');
  }

  header(name: string): string | undefined {
    for (let i = 0; i < this.headers.length; i += 2) if (this.headers[i]!.toLowerCase() === name) return this.headers[i + 1];
    return undefined;
  }
}

const OPTIONS = { connectTimeoutMs: 1000, idleTimeoutMs: 4000 };
const TIMEOUTS: Timeouts = { responseMs: 2000, bodyIdleMs: 2000 };

function send(client: BackendClient, request: { method?: string; path: string; headers?: RawHeaders; body?: Buffer | null }, timeouts = TIMEOUTS, sink = new Recorder()): { sink: Recorder; connection: BackendConnection } {
  const connection = client.request({ method: request.method ?? 'GET', path: request.path, headers: request.headers ?? ['host', 'backend'], body: request.body ?? null }, timeouts, sink);
  return { sink, connection };
}

async function fetchOnce(client: BackendClient, request: Parameters<typeof send>[1], timeouts = TIMEOUTS): Promise<Recorder> {
  const { sink } = send(client, request, timeouts);
  await sink.done;
  return sink;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('proxy/backend-client: BackendClient against a real node:http backend', () => {
  let server: http.Server;
  let client: BackendClient;
  let connections: number;
  let requests: { method: string; url: string; headers: http.IncomingHttpHeaders; body: string }[];
  /** What the last /stream answer's writes returned (false once the proxy side stopped reading). */
  let streamWrites: boolean[];

  beforeEach(async () => {
    connections = 0;
    requests = [];
    streamWrites = [];
    server = http.createServer((req, res) => {
      let body = '';
      req.setEncoding('latin1');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        requests.push({ method: req.method!, url: req.url!, headers: req.headers, body });
        const url = new URL(req.url!, 'http://x');
        const delay = Number(url.searchParams.get('delay') ?? 0);
        setTimeout(() => {
          switch (url.pathname) {
            case '/hop':
              res.writeHead(201, 'Made It', [
                ['Content-Type', 'text/plain'],
                ['X-Kept', 'yes'],
                ['Connection', 'keep-alive, X-Private'],
                ['X-Private', 'dropped'],
                ['Set-Cookie', 'a=1'],
                ['Set-Cookie', 'b=2'],
              ].flat());
              res.end('hop');
              return;
            case '/chunked':
              res.writeHead(200, { 'content-type': 'application/json' });
              res.write('{"part":');
              setTimeout(() => res.end('1}'), 20);
              return;
            case '/empty':
              res.writeHead(Number(url.searchParams.get('status')), { 'content-length': '5' });
              res.end();
              return;
            case '/stream': {
              // 32 MiB in 64 KiB writes, as fast as the socket takes them.
              const chunk = Buffer.alloc(64 * 1024, 'x');
              res.writeHead(200, { 'content-length': String(512 * chunk.length) });
              let sent = 0;
              const pump = () => {
                while (sent < 512) {
                  sent++;
                  const more = res.write(chunk);
                  streamWrites.push(more);
                  if (!more) return void res.once('drain', pump);
                }
                res.end();
              };
              pump();
              return;
            }
            case '/stall':
              res.writeHead(200, { 'content-length': '10' });
              res.write('half');
              return; // and nothing more
            default: {
              const answer = JSON.stringify({ method: req.method, url: req.url, body });
              res.writeHead(Number(url.searchParams.get('status') ?? 200), { 'content-type': 'application/json', 'content-length': Buffer.byteLength(answer) });
              res.end(req.method === 'HEAD' ? undefined : answer);
            }
          }
        }, delay);
      });
    });
    server.keepAliveTimeout = 10_000;
    server.on('connection', () => connections++);
    client = new BackendClient(`http://127.0.0.1:${await listen(server)}`, OPTIONS);
  });

  afterEach(async () => {
    await closeServer(server);
    await client.close();
  });

  it('sends the method, path, headers and body as given, and streams the status, headers and body back', async () => {
    const body = Buffer.from('{"jsonrpc":"2.0","method":"force","params":{"builderNames":["é"]}}', 'latin1');
    const r = await fetchOnce(client, { method: 'POST', path: '/api/v2/forceschedulers/force?x=1', headers: ['Host', 'buildbot', 'Content-Length', '3', 'X-Request-Id', 'r1'], body });
    expect(r.error).to.equal(undefined);
    expect(r.status).to.equal(200);
    expect(r.contentType).to.equal('application/json');
    expect(JSON.parse(Buffer.concat(r.chunks).toString('utf8'))).to.deep.equal({ method: 'POST', url: '/api/v2/forceschedulers/force?x=1', body: body.toString('latin1') });
    expect(requests[0]!.headers).to.include({ host: 'buildbot', 'content-length': String(body.length), 'x-request-id': 'r1' });
  });

  it('sends every byte value of a body unchanged, small (one write with the head) or large (head and body corked)', async () => {
    for (const size of [256, 16 * 1024, 16 * 1024 + 1, 200_000]) {
      const body = Buffer.alloc(size);
      for (let i = 0; i < size; i++) body[i] = (i * 7 + 3) & 0xff;
      const seen: Buffer[] = [];
      server.removeAllListeners('request');
      server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
        req.on('data', (c: Buffer) => seen.push(c));
        req.on('end', () => res.end('ok'));
      });
      const r = await fetchOnce(client, { method: 'PUT', path: '/bytes', body });
      expect(r.text).to.equal('ok');
      expect(Buffer.concat(seen).equals(body), `${size} bytes`).to.equal(true);
    }
  });

  it('says content-length: 0 for a POST without a body only when told to (the forwarder sends an empty buffer)', async () => {
    await fetchOnce(client, { method: 'POST', path: '/a', body: Buffer.alloc(0) });
    await fetchOnce(client, { method: 'DELETE', path: '/b' });
    expect(requests.map((r) => [r.method, r.headers['content-length']])).to.deep.equal([
      ['POST', '0'],
      ['DELETE', undefined],
    ]);
  });

  it("passes the backend's reason phrase and end-to-end headers on, with their spelling and repeats, and drops hop-by-hop ones", async () => {
    const r = await fetchOnce(client, { path: '/hop' });
    expect(r.status).to.equal(201);
    expect(r.statusText).to.equal('Made It');
    expect(r.header('x-kept')).to.equal('yes');
    expect(r.headers.filter((_, i) => i % 2 === 0)).to.include.members(['Content-Type', 'X-Kept', 'Set-Cookie']);
    expect(r.headers.filter((h, i) => i % 2 === 1 && h.startsWith('a=') || h.startsWith('b='))).to.deep.equal(['a=1', 'b=2']);
    for (const gone of ['connection', 'x-private', 'keep-alive', 'transfer-encoding']) expect(r.header(gone), gone).to.equal(undefined);
    expect(r.text).to.equal('hop');
  });

  it('keeps connections alive: requests one after another share one connection, requests at once each get their own', async () => {
    for (let i = 0; i < 5; i++) expect((await fetchOnce(client, { path: `/seq${i}` })).status).to.equal(200);
    expect(connections).to.equal(1);
    const together = await Promise.all(Array.from({ length: 8 }, (_, i) => fetchOnce(client, { path: `/par${i}?delay=30` })));
    together.forEach((r, i) => expect(JSON.parse(r.text).url).to.equal(`/par${i}?delay=30`));
    expect(connections).to.equal(8); // the idle one was reused, seven more opened: nobody waited behind another
    expect(client.connectionCount).to.equal(8);
  });

  it('reads chunked answers, and HEAD, 204 and 304 answers as bodiless, on the same connection', async () => {
    const chunked = await fetchOnce(client, { path: '/chunked' });
    expect(chunked.text).to.equal('{"part":1}');
    const head = await fetchOnce(client, { method: 'HEAD', path: '/a' });
    expect(head.ended).to.equal(true);
    expect(head.header('content-length')).to.equal(String(JSON.stringify({ method: 'HEAD', url: '/a', body: '' }).length));
    expect(head.chunks).to.have.length(0);
    for (const status of [204, 304]) {
      const r = await fetchOnce(client, { path: `/empty?status=${status}` });
      expect([r.status, r.ended, r.chunks.length]).to.deep.equal([status, true, 0]);
    }
    expect((await fetchOnce(client, { path: '/after' })).status).to.equal(200);
    expect(connections).to.equal(1);
  });

  it('stops reading while the sender is slow, so the backend waits instead of the proxy buffering, and goes on when resumed', async () => {
    const sink = new Recorder();
    sink.slow = true;
    const { connection } = send(client, { path: '/stream' }, { responseMs: 2000, bodyIdleMs: 300 }, sink);
    await sleep(600); // longer than the body idle timeout: a paused body is not a stalled one
    const held = sink.chunks.reduce((n, c) => n + c.length, 0);
    expect(streamWrites).to.include(false); // the backend's socket filled up
    expect(held).to.be.below(4 * 1024 * 1024); // far from the 32 MiB: the socket was paused
    expect(sink.error).to.equal(undefined);
    sink.slow = false;
    connection.resume(sink);
    await sink.done;
    expect(sink.error).to.equal(undefined);
    expect(sink.chunks.reduce((n, c) => n + c.length, 0)).to.equal(32 * 1024 * 1024);
  });

  it('fails with BACKEND_TIMEOUT when no answer comes within the response timeout, and the next request gets a new connection', async () => {
    const started = Date.now();
    const r = await fetchOnce(client, { path: '/late?delay=1500' }, { responseMs: 200, bodyIdleMs: 0 });
    expect(Date.now() - started).to.be.within(190, 800);
    expect(isStranglerError(r.error, 'BACKEND_TIMEOUT')).to.equal(true);
    expect(classifyUpstreamError(r.error)).to.include({ kind: 'timeout', mayHaveReachedBackend: true });
    expect((await fetchOnce(client, { path: '/next' })).status).to.equal(200);
    expect(connections).to.equal(2);
  });

  it('fails with BACKEND_TIMEOUT when the body stalls longer than the body idle timeout', async () => {
    const r = await fetchOnce(client, { path: '/stall' }, { responseMs: 2000, bodyIdleMs: 200 });
    expect(r.status).to.equal(200);
    expect(r.text).to.equal('half');
    expect(r.error?.message).to.equal("the answer's body stalled for 200 ms");
  });

  it('on abort closes the connection (it cannot carry the rest of the answer) and tells the sender once', async () => {
    const sink = new Recorder();
    const { connection } = send(client, { path: '/late?delay=300' }, TIMEOUTS, sink);
    await sleep(50);
    connection.abort(sink, new Error('client gone'));
    await sink.done;
    await sleep(400); // the answer the backend sends late reaches no one
    expect(sink.error?.message).to.equal('client gone');
    expect(sink.events).to.equal(1);
    expect(client.connectionCount).to.equal(0);
    connection.abort(sink, new Error('again')); // a second abort, or one of a finished exchange, does nothing
    expect(sink.events).to.equal(1);
  });

  it('closes idle connections after the idle timeout, sooner when the backend says so in Keep-Alive', async () => {
    const quick = new BackendClient(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, { ...OPTIONS, idleTimeoutMs: 200 });
    await fetchOnce(quick, { path: '/a' });
    expect(quick.connectionCount).to.equal(1);
    await sleep(400);
    expect(quick.connectionCount).to.equal(0);
    await quick.close();

    server.keepAliveTimeout = 1500; // node says "Keep-Alive: timeout=1"
    await fetchOnce(client, { path: '/b' });
    expect(client.connectionCount).to.equal(1);
    await sleep(200); // 1 s - 1 s margin: closed at the next sweep, long before the 4 s idle timeout
    expect(client.connectionCount).to.equal(0);
  });

  it('close() lets the request in flight finish, then ends the connections and takes no more', async () => {
    const { sink } = send(client, { path: '/a?delay=100' });
    await sleep(20);
    await client.close();
    await sink.done;
    expect(sink.error).to.equal(undefined);
    expect(client.connectionCount).to.equal(0);
    expect(() => send(client, { path: '/b' })).to.throw(/closed/);
  });

  it('refuses, before sending anything, a request whose head would break apart', () => {
    for (const request of [{ path: '/a', headers: ['x-evil', 'a\r\nx-injected: 1'] }, { path: '/a HTTP/1.1\r\nx: y' }, { path: '/a', headers: ['bad\nname', 'v'] }, { method: 'GE T', path: '/a' }]) {
      expect(() => send(client, request), JSON.stringify(request)).to.throw(/not fit to send/);
    }
    expect(connections).to.equal(0);
  });
});

describe('proxy/backend-client: BackendClient against broken backends', () => {
  const servers: net.Server[] = [];
  const clients: BackendClient[] = [];
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await Promise.all(servers.splice(0).map(closeServer));
  });

  async function clientOf(onRequest: Parameters<typeof rawServer>[0]): Promise<BackendClient> {
    const server = rawServer(onRequest);
    servers.push(server);
    const client = new BackendClient(`http://127.0.0.1:${await listen(server)}`, OPTIONS);
    clients.push(client);
    return client;
  }

  it('fails with BACKEND_RESET (may have reached the backend) when the backend closes before answering, and never resends', async () => {
    let received = 0;
    const client = await clientOf((socket) => {
      received++;
      socket.destroy();
    });
    const r = await fetchOnce(client, { method: 'POST', path: '/api/v2/forceschedulers/force', body: Buffer.from('{}') });
    expect(isStranglerError(r.error, 'BACKEND_RESET')).to.equal(true);
    expect(r.error?.message).to.match(/before answering/);
    expect(classifyUpstreamError(r.error)).to.include({ kind: 'reset', mayHaveReachedBackend: true });
    expect(received).to.equal(1);
  });

  it('fails with BACKEND_RESET when the backend breaks off mid-body, after the head was passed on', async () => {
    const client = await clientOf((socket) => socket.end('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial'));
    const r = await fetchOnce(client, { path: '/log' });
    expect(r.status).to.equal(200);
    expect(r.text).to.equal('partial');
    expect(r.error?.message).to.match(/in the middle of its answer/);
  });

  it('reads a body that runs to the close, and does not reuse that connection', async () => {
    let opened = 0;
    const client = await clientOf((socket, count) => {
      if (count === 1) opened++;
      socket.end('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it, until the end');
    });
    expect((await fetchOnce(client, { path: '/1' })).text).to.equal('all of it, until the end');
    expect((await fetchOnce(client, { path: '/2' })).ended).to.equal(true);
    expect(opened).to.equal(2);
  });

  it('honours Connection: close, skips 1xx answers, and reads an HTTP/1.0 answer', async () => {
    const client = await clientOf((socket, count) => {
      if (count > 1) return;
      socket.write('HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok');
    });
    const r = await fetchOnce(client, { path: '/1' });
    expect([r.status, r.text, r.header('link')]).to.deep.equal([200, 'ok', undefined]);
    expect(client.connectionCount).to.equal(0); // HTTP/1.0 without keep-alive: closed after the answer
  });

  it('fails with BACKEND_ERROR, before passing anything on, on an answer that is not HTTP, that has two framings, or whose head node would refuse', async () => {
    const garbage = await clientOf((socket) => socket.write('SSH-2.0-OpenSSH\r\n\r\n'));
    const r1 = await fetchOnce(garbage, { path: '/1' });
    expect(isStranglerError(r1.error, 'BACKEND_ERROR')).to.equal(true);
    expect(r1.error?.message).to.match(/unreadable answer from the backend: bad status line/);

    const smuggled = await clientOf((socket) => socket.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 2\r\n\r\n0\r\n\r\n'));
    const r2 = await fetchOnce(smuggled, { path: '/te-and-cl' });
    expect([r2.status, r2.error?.message]).to.deep.equal([0, 'unreadable answer from the backend: both transfer-encoding and content-length']); // nothing was passed on

    const refused = await clientOf((socket) => socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok'));
    const sink = new Recorder();
    sink.refuseHead = true;
    send(refused, { path: '/2' }, TIMEOUTS, sink);
    await sink.done;
    expect(sink.error?.message).to.match(/cannot be passed on/);
    expect(refused.connectionCount).to.equal(0);
  });

  it('never passes on a socket error code after the connection was up: ETIMEDOUT then means "may have reached", not "never connected"', async () => {
    let written!: () => void;
    const arrived = new Promise<void>((resolve) => (written = resolve));
    const client = await clientOf(() => written());
    const { sink, connection } = send(client, { method: 'POST', path: '/force', body: Buffer.from('{}') });
    await arrived; // the backend has the request
    (connection as unknown as { socket: net.Socket }).socket.destroy(Object.assign(new Error('read ETIMEDOUT'), { code: 'ETIMEDOUT' }));
    await sink.done;
    expect(isStranglerError(sink.error, 'BACKEND_RESET')).to.equal(true);
    expect(sink.error?.message).to.match(/before answering \(ETIMEDOUT\)/);
    expect(classifyUpstreamError(sink.error)).to.include({ kind: 'reset', mayHaveReachedBackend: true });
  });

  it('reports a refused connection with its own code, as never having reached the backend', async () => {
    const stopped = net.createServer();
    const port = await listen(stopped);
    await closeServer(stopped);
    const client = new BackendClient(`http://127.0.0.1:${port}`, OPTIONS);
    clients.push(client);
    const r = await fetchOnce(client, { method: 'POST', path: '/force', body: Buffer.from('{}') });
    expect(r.error).to.have.property('code', 'ECONNREFUSED');
    expect(classifyUpstreamError(r.error)).to.include({ kind: 'refused', mayHaveReachedBackend: false });
  });

  it('fails with BACKEND_CONNECT_TIMEOUT (never reached the backend) when the connection is not established in time', async function () {
    // A listener that never accepts, with its queue full: the kernel drops further connection attempts.
    let listener: ChildProcess;
    try {
      listener = spawn('python3', ['-c', 'import socket,sys,time\ns=socket.socket()\ns.bind(("127.0.0.1",0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(60)'], { stdio: ['ignore', 'pipe', 'ignore'] });
    } catch {
      return this.skip();
    }
    try {
      const port = await new Promise<number>((resolve, reject) => {
        listener.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
        listener.once('error', reject);
      }).catch(() => undefined);
      if (port === undefined) return this.skip(); // no python3
      const fillers = await Promise.all([0, 1].map(() => new Promise<net.Socket>((resolve) => { const s = net.connect(port, '127.0.0.1'); s.on('error', () => undefined); s.once('connect', () => resolve(s)); setTimeout(() => resolve(s), 300); })));
      const client = new BackendClient(`http://127.0.0.1:${port}`, { ...OPTIONS, connectTimeoutMs: 300 });
      clients.push(client);
      const r = await fetchOnce(client, { method: 'POST', path: '/force', body: Buffer.from('{}') });
      for (const s of fillers) s.destroy();
      expect(isStranglerError(r.error, 'BACKEND_CONNECT_TIMEOUT')).to.equal(true);
      expect(classifyUpstreamError(r.error)).to.include({ kind: 'connect-timeout', mayHaveReachedBackend: false });
    } finally {
      listener.kill();
    }
  });

  it('opens a new connection when the backend closed the idle one, without failing anyone', async () => {
    const client = await clientOf((socket) => {
      socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
      setTimeout(() => socket.destroy(), 20); // a backend with a short keep-alive timeout and no Keep-Alive header
    });
    expect((await fetchOnce(client, { path: '/1' })).text).to.equal('ok');
    await sleep(100);
    expect(client.connectionCount).to.equal(0);
    expect((await fetchOnce(client, { path: '/2' })).text).to.equal('ok');
  });
});

describe('proxy/backend-client: BackendClient to an https backend', () => {
  it('speaks TLS, and trusts only known authorities: a self-signed certificate fails before anything is sent', async function () {
    let served = 0;
    const server = selfSignedHttpsServer((_req, res) => {
      served++;
      res.end('secret');
    });
    if (server === undefined) return this.skip(); // no openssl to make a certificate with
    const client = new BackendClient(`https://127.0.0.1:${await listen(server)}`, OPTIONS);
    try {
      const r = await fetchOnce(client, { path: '/' });
      expect(r.error).to.have.property('code', 'DEPTH_ZERO_SELF_SIGNED_CERT');
      expect(served).to.equal(0);
    } finally {
      await client.close();
      await closeServer(server);
    }
  });
});
