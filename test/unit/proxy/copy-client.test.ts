import { expect } from 'chai';
import http from 'node:http';
import net from 'node:net';
import { CopyClient } from '../../../src/proxy/copy-client.js';
import { closeServer, listen, rawServer, selfSignedHttpsServer } from '../../support/servers.js';
import type { CapturedResponse } from '../../../src/shadow/compare.js';

// ---------------------------------------------------------------- real sockets

function send(client: CopyClient, request: { method?: string; path: string; headers?: string[]; body?: Buffer | null }, limit = 1 << 20, timeoutMs = 2000) {
  return new Promise<{ error: Error | undefined; answer: CapturedResponse | undefined }>((resolve) =>
    client.send({ method: request.method ?? 'GET', path: request.path, headers: request.headers ?? ['host', 'mirror'], body: request.body ?? null }, limit, timeoutMs, { copyDone: (error, answer) => resolve({ error, answer }) }),
  );
}

const OPTIONS = { connections: 2, pipelining: 64, connectTimeoutMs: 1000, idleTimeoutMs: 4000 };

describe('proxy/copy-client: CopyClient against real servers', () => {
  let server: http.Server;
  let port: number;
  let connections: number;
  let requests: { method: string; url: string; headers: http.IncomingHttpHeaders; body: string }[];
  let client: CopyClient;

  beforeEach(async () => {
    connections = 0;
    requests = [];
    server = http.createServer((req, res) => {
      let body = '';
      req.setEncoding('latin1');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        requests.push({ method: req.method!, url: req.url!, headers: req.headers, body });
        const url = new URL(req.url!, 'http://x');
        const answer = JSON.stringify({ url: req.url, body });
        const delay = Number(url.searchParams.get('delay') ?? 0);
        setTimeout(() => {
          if (url.pathname === '/chunked') {
            res.writeHead(200, { 'content-type': 'application/json' });
            res.write(answer.slice(0, 5));
            setImmediate(() => res.end(answer.slice(5)));
          } else if (url.pathname === '/empty') {
            res.writeHead(Number(url.searchParams.get('status')));
            res.end();
          } else if (url.pathname === '/big') {
            res.end('x'.repeat(5000));
          } else {
            res.writeHead(Number(url.searchParams.get('status') ?? 200), { 'content-type': 'application/json', 'content-length': Buffer.byteLength(answer) });
            res.end(req.method === 'HEAD' ? undefined : answer);
          }
        }, delay);
      });
    });
    server.on('connection', () => connections++);
    port = await listen(server);
    client = new CopyClient(`http://127.0.0.1:${port}`, OPTIONS);
  });

  afterEach(async () => {
    await client.close();
    await closeServer(server);
  });

  it('gives each of many pipelined copies its own answer, on at most two connections', async () => {
    const paths = Array.from({ length: 300 }, (_, i) => (i % 3 === 0 ? `/chunked?i=${i}` : `/a?i=${i}&delay=${i % 7}`));
    const results = await Promise.all(paths.map((path) => send(client, { path })));
    results.forEach((r, i) => {
      expect(r.error, paths[i]).to.equal(undefined);
      expect(r.answer!.status).to.equal(200);
      expect(r.answer!.contentType).to.equal('application/json');
      expect(JSON.parse(r.answer!.body!.toString())).to.deep.equal({ url: paths[i], body: '' });
    });
    expect(requests).to.have.length(300);
    expect(connections).to.be.at.most(2);
  });

  it('sends the method, path, headers and body as given, with its own Content-Length', async () => {
    const body = Buffer.from('{"jsonrpc":"2.0","method":"force","params":{"builderNames":["é"]}}', 'latin1');
    const r = await send(client, { method: 'POST', path: '/api/v2/forceschedulers/force', headers: ['Host', 'mirror', 'Content-Length', '3', 'X-Strangler-Shadow', '1'], body });
    expect(r.error).to.equal(undefined);
    expect(requests).to.have.length(1);
    expect(requests[0]).to.deep.include({ method: 'POST', url: '/api/v2/forceschedulers/force', body: body.toString('latin1') });
    expect(requests[0]!.headers).to.include({ host: 'mirror', 'content-length': String(body.length), 'x-strangler-shadow': '1' });
  });

  it('reads HEAD, 204 and 304 answers as bodiless and goes on with the next copy', async () => {
    const [head, noContent, notModified, after] = await Promise.all([
      send(client, { method: 'HEAD', path: '/a' }),
      send(client, { path: '/empty?status=204' }),
      send(client, { path: '/empty?status=304' }),
      send(client, { path: '/a?after=1' }),
    ]);
    expect(head.answer).to.deep.include({ status: 200 });
    expect(head.answer!.body!.length).to.equal(0);
    expect(noContent.answer!.status).to.equal(204);
    expect(notModified.answer!.status).to.equal(304);
    expect(JSON.parse(after.answer!.body!.toString()).url).to.equal('/a?after=1');
  });

  it('keeps no body past the limit: the answer is compared by status', async () => {
    const r = await send(client, { path: '/big' }, 1000);
    expect(r.answer).to.deep.equal({ status: 200, contentType: undefined, body: undefined });
  });

  it('fails a copy at its deadline, and the next copy gets a new connection', async () => {
    const late = await send(client, { path: '/a?delay=1000' }, 1 << 20, 200);
    expect(late.error?.message).to.equal('no complete answer within 200 ms');
    const next = await send(client, { path: '/a?next=1' });
    expect(next.error).to.equal(undefined);
    expect(connections).to.equal(2);
  });

  it('refuses a header or path that would break the request apart, and sends nothing', async () => {
    for (const request of [{ path: '/a', headers: ['x-evil', 'a\r\nx-injected: 1'] }, { path: '/a HTTP/1.1\r\nx: y' }, { path: '/a', headers: ['bad\nname', 'v'] }]) {
      const r = await send(client, request);
      expect(r.error?.message).to.match(/not fit to send/);
    }
    await send(client, { path: '/a?ok=1' });
    expect(requests.map((r) => r.url)).to.deep.equal(['/a?ok=1']);
  });

  it('close() lets copies in flight finish, then ends its connections', async () => {
    const inFlight = send(client, { path: '/a?delay=100' });
    await new Promise((resolve) => setTimeout(resolve, 20));
    await client.close();
    expect((await inFlight).error).to.equal(undefined);
    expect(client.inFlightCount()).to.equal(0);
    expect((await send(client, { path: '/a' })).error?.message).to.equal('the shadow client is closed');
  });
});

describe('proxy/copy-client: CopyClient against broken servers', () => {
  const servers: net.Server[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map(closeServer));
  });

  async function raw(onRequest: (socket: net.Socket, count: number) => void): Promise<string> {
    const server = rawServer(onRequest);
    servers.push(server);
    return `http://127.0.0.1:${await listen(server)}`;
  }

  it('fails the copies on a connection that answers garbage, and recovers on a new one', async () => {
    let connection = 0;
    const origin = await raw((socket, n) => {
      if (n === 1) connection++;
      socket.write(connection === 1 ? 'garbage\r\n\r\n' : 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    });
    const client = new CopyClient(origin, { ...OPTIONS, connections: 1 });
    const [a, b] = await Promise.all([send(client, { path: '/1' }), send(client, { path: '/2' })]);
    expect(a.error?.message).to.match(/unreadable answer from the shadow backend: bad status line/);
    expect(b.error).to.not.equal(undefined);
    const c = await send(client, { path: '/3' });
    expect(c.answer?.body?.toString()).to.equal('ok');
    await client.close();
  });

  it('fails the copies whose answers never came when the backend closes mid-way, and never resends them', async () => {
    let received = 0;
    const origin = await raw((socket) => {
      received++;
      socket.end('HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf');
    });
    const client = new CopyClient(origin, { ...OPTIONS, connections: 1 });
    const results = await Promise.all([send(client, { path: '/1' }), send(client, { path: '/2' }), send(client, { path: '/3' })]);
    for (const r of results) expect(r.error).to.not.equal(undefined);
    expect(received).to.equal(3); // all three were written once; none was written again
    await client.close();
  });

  it('reports a refused connection as the copy failing', async () => {
    const stopped = net.createServer();
    const port = await listen(stopped);
    await closeServer(stopped);
    const client = new CopyClient(`http://127.0.0.1:${port}`, OPTIONS);
    const r = await send(client, { path: '/' });
    expect(r.error).to.have.property('code', 'ECONNREFUSED');
    await client.close();
  });
});

describe('proxy/copy-client: CopyClient to an https backend', () => {
  it('speaks TLS to it and, like the primary path, trusts only known authorities: a self-signed certificate fails the copy', async function () {
    let served = 0;
    const server = selfSignedHttpsServer((_req, res) => {
      served++;
      res.end('secret');
    });
    if (server === undefined) return this.skip(); // no openssl to make a certificate with
    const client = new CopyClient(`https://127.0.0.1:${await listen(server)}`, OPTIONS);
    try {
      const r = await send(client, { path: '/' });
      expect(r.error).to.have.property('code', 'DEPTH_ZERO_SELF_SIGNED_CERT');
      expect(served).to.equal(0);
    } finally {
      await client.close();
      await closeServer(server);
    }
  });
});
