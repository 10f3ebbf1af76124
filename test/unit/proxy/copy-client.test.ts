import { expect } from 'chai';
import fc from 'fast-check';
import http from 'node:http';
import net from 'node:net';
import { CopyClient } from '../../../src/proxy/copy-client.js';
import { closeServer, listen, rawServer, selfSignedHttpsServer } from '../../support/servers.js';
import { AnswerParser, type AnswerTarget } from '../../../src/proxy/http1.js';
import type { CapturedResponse } from '../../../src/proxy/compare.js';

/** What the parser made of a stream: the answers in order, and whether it called the stream malformed. */
function parseAll(stream: Buffer, cuts: number[], bodyless: boolean[], end = false) {
  const answers: (CapturedResponse & { keepAlive: boolean })[] = [];
  const malformed: string[] = [];
  let index = 0;
  let target: (AnswerTarget & { chunks: Buffer[] }) | undefined;
  const parser = new AnswerParser({
    current() {
      if (index >= bodyless.length) return undefined;
      target ??= { bodyless: bodyless[index]!, status: 0, contentType: undefined, chunks: [], addBody(b) { this.chunks.push(Buffer.from(b)); } };
      return target;
    },
    complete(keepAlive) {
      answers.push({ status: target!.status, contentType: target!.contentType, body: Buffer.concat(target!.chunks), keepAlive });
      target = undefined;
      index++;
    },
    malformed(reason) {
      malformed.push(reason);
    },
  });
  let at = 0;
  for (const cut of [...cuts.filter((c) => c > 0 && c < stream.length)].sort((a, b) => a - b).concat(stream.length)) {
    if (cut > at) parser.read(stream.subarray(at, cut));
    at = Math.max(at, cut);
  }
  if (end) parser.end();
  return { answers, malformed };
}

interface Answer {
  status: number;
  contentType: string | undefined;
  body: Buffer;
  framing: 'length' | 'chunked';
  chunkSizes: number[];
  interim: boolean;
  head: boolean;
  upper: boolean;
}

function serialize(a: Answer): Buffer {
  const name = (n: string) => (a.upper ? n.toUpperCase() : n);
  const noBody = a.head || a.status === 204 || a.status === 304;
  let head = a.interim ? 'HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n' : '';
  head += `HTTP/1.1 ${a.status} Whatever\r\nDate: Tue, 01 Dec 2026 10:00:00 GMT\r\n${name('X-Extra')}: a: b\r\n`;
  if (a.contentType !== undefined) head += `${name('Content-Type')}:  ${a.contentType} \r\n`;
  if (a.framing === 'length') head += `${name('Content-Length')}: ${a.body.length}\r\n\r\n`;
  else head += `${name('Transfer-Encoding')}: chunked\r\n\r\n`;
  if (noBody && !(a.head && a.framing === 'length')) return Buffer.from(head.replace(/Content-Length: \d+|Transfer-Encoding: chunked/i, 'X-None: 1'), 'latin1');
  if (noBody) return Buffer.from(head, 'latin1'); // HEAD: Content-Length of the body a GET would get, and no body
  if (a.framing === 'length') return Buffer.concat([Buffer.from(head, 'latin1'), a.body]);
  const parts: Buffer[] = [Buffer.from(head, 'latin1')];
  let at = 0;
  for (const size of a.chunkSizes) {
    if (at >= a.body.length) break;
    const piece = a.body.subarray(at, at + Math.max(1, size));
    at += piece.length;
    parts.push(Buffer.from(`${piece.length.toString(16)}${size % 3 === 0 ? ';ext=1' : ''}\r\n`), piece, Buffer.from('\r\n'));
  }
  if (at < a.body.length) parts.push(Buffer.from(`${(a.body.length - at).toString(16)}\r\n`), a.body.subarray(at), Buffer.from('\r\n'));
  parts.push(Buffer.from(a.body.length % 2 ? '0\r\nX-Trailer: t\r\n\r\n' : '0\r\n\r\n'));
  return Buffer.concat(parts);
}

const answerArb: fc.Arbitrary<Answer> = fc.record({
  status: fc.oneof(fc.constantFrom(200, 201, 204, 304, 404, 500), fc.integer({ min: 200, max: 599 })),
  contentType: fc.option(fc.constantFrom('application/json', 'text/plain; charset=utf-8'), { nil: undefined }),
  body: fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
  framing: fc.constantFrom('length' as const, 'chunked' as const),
  chunkSizes: fc.array(fc.integer({ min: 1, max: 120 }), { maxLength: 5 }),
  interim: fc.boolean(),
  head: fc.boolean(),
  upper: fc.boolean(),
});

describe('proxy/copy-client: AnswerParser', () => {
  it('reads pipelined answers the same wherever the stream is cut (property)', () => {
    fc.assert(
      fc.property(fc.array(answerArb, { minLength: 1, maxLength: 6 }), fc.array(fc.nat({ max: 3000 }), { maxLength: 12 }), (answers, cuts) => {
        const stream = Buffer.concat(answers.map(serialize));
        const { answers: got, malformed } = parseAll(stream, cuts, answers.map((a) => a.head));
        expect(malformed).to.deep.equal([]);
        expect(got.map((g) => ({ status: g.status, contentType: g.contentType, body: g.body!.toString('hex') }))).to.deep.equal(
          answers.map((a) => ({ status: a.status, contentType: a.contentType, body: a.head || a.status === 204 || a.status === 304 ? '' : a.body.toString('hex') })),
        );
      }),
      { numRuns: 400 },
    );
  });

  it('reads a body that runs to the end of the stream, and says the connection is done', () => {
    const { answers } = parseAll(Buffer.from('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it'), [20, 40], [false], true);
    expect(answers).to.have.length(1);
    expect(answers[0]!.body!.toString()).to.equal('all of it');
    expect(answers[0]!.keepAlive).to.equal(false);
  });

  it('keeps a connection only when the answer allows it (HTTP/1.1 unless close, HTTP/1.0 only with keep-alive)', () => {
    const keep = (text: string) => parseAll(Buffer.from(text), [], [false]).answers[0]!.keepAlive;
    expect(keep('HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n')).to.equal(true);
    expect(keep('HTTP/1.1 200 OK\r\nConnection: Close\r\ncontent-length: 0\r\n\r\n')).to.equal(false);
    expect(keep('HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n')).to.equal(false);
    expect(keep('HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n')).to.equal(true);
  });

  it('passes over empty lines before a status line', () => {
    const { answers, malformed } = parseAll(Buffer.from('HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\na\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n'), [16, 42, 43], [false, false]);
    expect(malformed).to.deep.equal([]);
    expect(answers.map((a) => a.status)).to.deep.equal([200, 201]);
  });

  it('calls anything else malformed, once, and reads nothing after it', () => {
    const cases = [
      'HTTP/2 200 OK\r\n\r\n',
      'HTTP/1.1 20 OK\r\n\r\n',
      'ICY 200 OK\r\n\r\n',
      'HTTP/1.1 200 OK\r\ncontent-length: 12x\r\n\r\n',
      'HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab',
      'HTTP/1.1 200 OK\r\nno colon here\r\n\r\n',
      'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n',
      'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabXX0\r\n\r\n',
      'HTTP/1.1 101 Switching Protocols\r\n\r\n',
    ];
    for (const text of cases) {
      const { answers, malformed } = parseAll(Buffer.from(`${text}HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n`), [], [false, false]);
      expect(malformed, text).to.have.length(1);
      expect(answers, text).to.have.length(0);
    }
    const unasked = parseAll(Buffer.from('HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n'), [], [false]);
    expect(unasked.answers).to.have.length(1);
    expect(unasked.malformed).to.deep.equal(['an answer with no request waiting for it']);
  });

  it('refuses a response head without end instead of buffering it without bound', () => {
    const { malformed } = parseAll(Buffer.from(`HTTP/1.1 200 OK\r\nx: ${'a'.repeat(70_000)}`), [1000, 30_000, 60_000], [false]);
    expect(malformed).to.deep.equal(['response head too large']);
  });
});

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
