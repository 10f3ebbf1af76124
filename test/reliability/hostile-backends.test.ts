/**
 * Hostile backends: raw `net` servers that write exactly the bytes a test
 * gives (broken status lines and reason phrases, refused header names and
 * values, contradictory framing, bytes beyond an answer, late bytes on a
 * pooled connection), then fuzzed answers. After each case the proxy still
 * serves, and no client ever gets bytes meant for another: every honest
 * answer carries the request id the proxy sent, and each client checks it
 * got its own.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import http from 'node:http';
import type net from 'node:net';
import { closeServer, listen, rawServer } from '../support/servers.js';
import { routesYaml, startTestProxy, type TestProxy } from '../support/proxy.js';
import { FULL, send } from './kit.js';

/** What the hostile backend writes for `/bad` (`close`: then ends the connection) and, for `/late`, after its answer. */
interface Script {
  bad: Buffer;
  close: boolean;
  late?: { answer: string; after: Buffer; delayMs: number };
}

function requestIdOf(head: string): string {
  return /\r\nx-request-id: ([^\r\n]*)/i.exec(head)?.[1] ?? 'none';
}

/**
 * Answers `/bad` and `/late` as scripted and anything else honestly, with the
 * request id as its body; on a connection that had a late answer, only after
 * the late bytes went out (so a reused connection would hand them over first).
 */
function hostileBackend(script: () => Script): net.Server {
  const lateUntil = new WeakMap<net.Socket, number>();
  return rawServer((socket, _count, head) => {
    const target = head.slice(head.indexOf(' ') + 1, head.indexOf(' ', head.indexOf(' ') + 1));
    const current = script();
    if (target.startsWith('/bad')) {
      if (current.close) socket.end(current.bad);
      else socket.write(current.bad);
      return;
    }
    if (target.startsWith('/late') && current.late) {
      const late = current.late;
      socket.write(late.answer);
      lateUntil.set(socket, Date.now() + late.delayMs);
      setTimeout(() => socket.writable && socket.write(late.after), late.delayMs);
      return;
    }
    const id = requestIdOf(head);
    const honest = () => socket.writable && socket.write(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(id)}\r\n\r\n${id}`);
    const wait = (lateUntil.get(socket) ?? 0) - Date.now();
    if (wait > 0) setTimeout(honest, wait + 20);
    else honest();
  });
}

let counter = 0;
const freshId = () => `client-${process.pid}-${++counter}`;

/** Asks for `/ok/...` with an id of its own and checks it got exactly its own answer back. */
async function expectOwnAnswer(agent: http.Agent, url: string): Promise<void> {
  const id = freshId();
  const answer = await send(agent, `${url}/ok/${id}`, { headers: { 'x-request-id': id } });
  expect(answer, `the answer to ${id}`).to.include({ status: 200, body: id });
}

describe('reliability: hostile backends', function () {
  this.timeout(FULL ? 300_000 : 90_000);
  let script: Script = { bad: Buffer.alloc(0), close: true };
  let backend: net.Server;
  let honest: http.Server;
  let t: TestProxy;
  let agent: http.Agent;

  before(async () => {
    backend = hostileBackend(() => script);
    honest = http.createServer((req, res) => res.end(String(req.headers['x-request-id'])));
    const [port, honestPort] = await Promise.all([listen(backend), listen(honest)]);
    t = await startTestProxy(
      routesYaml(
        {
          legacy: { url: `http://127.0.0.1:${honestPort}`, legacy: true },
          hostile: { url: `http://127.0.0.1:${port}`, extra: 'responseTimeoutMs: 500, bodyIdleTimeoutMs: 500, circuit: { failureThreshold: 0 }, health: { intervalMs: 0 }' },
        },
        'default: hostile\n',
      ),
      { quiet: true },
    );
    agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  });
  after(async () => {
    agent.destroy();
    await t.close();
    await Promise.all([closeServer(backend), closeServer(honest)]);
  });

  /** The proxy is alive and honest: its own health, and two clients each get their own answer. */
  async function stillServes(): Promise<void> {
    expect((await send(agent, `${t.adminUrl}/healthz`)).status).to.equal(200);
    await Promise.all([expectOwnAnswer(agent, t.url), expectOwnAnswer(agent, t.url)]);
  }

  const cases: Array<{ name: string; bytes: string; complete?: string }> = [
    { name: 'a control character in the reason phrase', bytes: 'HTTP/1.1 200 O\x01K\r\nContent-Length: 2\r\n\r\nok', complete: 'ok' },
    { name: 'a bare LF ending the status line', bytes: 'HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nok', complete: 'ok' },
    { name: 'a header name with a space', bytes: 'HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 2\r\n\r\nok' },
    { name: 'a NUL in a header value', bytes: 'HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok' },
    { name: 'a newline inside a header value', bytes: 'HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 2\r\n\r\nok' },
    { name: 'both Content-Length and Transfer-Encoding', bytes: 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n' },
    { name: 'two different Content-Lengths', bytes: 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!' },
    { name: 'a status that is not a number', bytes: 'HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok' },
    { name: 'a status node will not send', bytes: 'HTTP/1.1 099 Odd\r\nContent-Length: 2\r\n\r\nok' },
    { name: 'something that is not HTTP at all', bytes: 'SSH-2.0-OpenSSH_9.6\r\n\r\n' },
    { name: 'a broken chunk size', bytes: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n' },
    { name: 'bytes beyond the declared length', bytes: 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nSECRET', complete: 'ok' },
    { name: 'a body after a 204', bytes: 'HTTP/1.1 204 No Content\r\nContent-Length: 6\r\n\r\nSECRET', complete: '' },
    { name: 'a 101 nobody asked for', bytes: 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n' },
  ];

  for (const { name, bytes, complete } of cases) {
    for (const close of [false, true]) {
      it(`${name} (${close ? 'then closes' : 'keeps the connection'}): a clear 502, the complete answer, or a cut connection; never a crash or a leak`, async () => {
        script = { bad: Buffer.from(bytes, 'latin1'), close };
        const answer = await send(agent, `${t.url}/bad`);
        if (answer.status === 502 || answer.status === 504) {
          expect(JSON.parse(answer.body)).to.have.property('code').that.matches(/^BACKEND_/);
        } else if (answer.status !== 0) {
          expect(complete, `an answer passed on (${answer.status})`).to.not.equal(undefined);
          expect(answer.body).to.equal(complete);
          expect(answer.body).to.not.contain('SECRET');
        }
        await stillServes();
      });
    }
  }

  for (const [method, status] of [
    ['HEAD', 200],
    ['GET', 204],
    ['GET', 304],
  ] as const) {
    it(`does not reuse a connection after a ${method} answered ${status}: bytes the backend sends late never reach the next client`, async () => {
      const length = method === 'HEAD' ? 'Content-Length: 6\r\n' : '';
      script = {
        bad: Buffer.alloc(0),
        close: false,
        late: { answer: `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\n${length}\r\n`, after: Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nSECRET'), delayMs: 40 },
      };
      const one = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        for (let round = 0; round < 5; round++) {
          const first = await send(one, `${t.url}/late`, { method });
          expect(first.status).to.equal(status);
          expect(first.body).to.equal('');
          // Sent while the late bytes are still on their way: on a reused connection they would be its answer.
          await expectOwnAnswer(one, t.url);
        }
        await new Promise((r) => setTimeout(r, 60));
        await stillServes();
      } finally {
        one.destroy();
      }
    });
  }

  it('survives fuzzed answers: arbitrary bytes never crash the proxy or reach another client', async () => {
    const fragments = ['HTTP/1.1 ', 'HTTP/1.0 ', '200', '204', '304', '999', ' OK', '\r\n', '\n', '\r', 'Content-Length: ', 'Transfer-Encoding: chunked', 'Connection: close', 'Connection: keep-alive', ': ', '0', '5', '2\r\nok\r\n', '0\r\n\r\n', 'x', '\x00', '\x7f', '\xff', 'SECRET'];
    const answer = fc.oneof(
      fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes)),
      fc.array(fc.constantFrom(...fragments), { maxLength: 40 }).map((parts) => Buffer.from(parts.join(''), 'latin1')),
    );
    await fc.assert(
      fc.asyncProperty(answer, fc.boolean(), async (bad, close) => {
        script = { bad, close };
        const [result] = await Promise.all([send(agent, `${t.url}/bad`), expectOwnAnswer(agent, t.url)]);
        expect([0, 200, 204, 304, 502, 504].includes(result.status) || (result.status >= 100 && result.status <= 999), `status ${result.status}`).to.equal(true);
        await stillServes();
      }),
      { numRuns: FULL ? 1_000 : 120 },
    );
  });
});

describe('reliability: a backend that closes keep-alive connections right after answering', function () {
  this.timeout(FULL ? 240_000 : 60_000);

  for (const when of ['with the answer', 'on the next turn'] as const) {
    it(`(${when}) fails no force and runs none twice`, async () => {
      const received = new Map<string, number>();
      const server = rawServer((socket, _count, head) => {
        const id = requestIdOf(head);
        received.set(id, (received.get(id) ?? 0) + 1);
        socket.write(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${id.length + 2}\r\n\r\n"${id}"`);
        // No `Connection: close` said: the next request may already be on its way.
        if (when === 'with the answer') socket.end();
        else setImmediate(() => socket.end());
      });
      const port = await listen(server);
      const t = await startTestProxy(routesYaml({ buildbot: { url: `http://127.0.0.1:${port}`, legacy: true, extra: 'circuit: { failureThreshold: 0 }, health: { intervalMs: 0 }' } }), { quiet: true });
      const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
      try {
        const forces = FULL ? 5_000 : 600;
        const ids = Array.from({ length: forces }, () => freshId());
        const answers = await Promise.all(
          ids.map((id) => send(agent, `${t.url}/api/v2/forceschedulers/force`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': id }, body: JSON.stringify({ jsonrpc: '2.0', method: 'force', id: 1, params: { builderNames: ['linux64-opt'] } }) })),
        );
        expect(answers.filter((a) => a.status !== 200).map((a) => `${a.status} ${a.body}`)).to.deep.equal([]);
        expect(answers.map((a) => a.body)).to.deep.equal(ids.map((id) => `"${id}"`));
        expect(ids.filter((id) => received.get(id) !== 1)).to.deep.equal([]);
      } finally {
        agent.destroy();
        await t.close();
        await closeServer(server);
      }
    });
  }
});
