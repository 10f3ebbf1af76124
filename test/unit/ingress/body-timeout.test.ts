import { expect } from 'chai';
import http from 'node:http';
import net from 'node:net';
import { BodyIdleTimer, type BodyFault } from '../../../src/ingress/body-timeout.js';
import { closeServer, listen } from '../../support/servers.js';

/** A server that hands each request to the test and never reads or answers on its own. */
async function requests(): Promise<{ port: number; next(): Promise<http.IncomingMessage>; close(): Promise<void> }> {
  const waiting: ((req: http.IncomingMessage) => void)[] = [];
  const server = http.createServer((req) => waiting.shift()?.(req));
  const port = await listen(server);
  return { port, next: () => new Promise((resolve) => waiting.push(resolve)), close: () => closeServer(server) };
}

async function client(port: number, head: string, body: Buffer | string = ''): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  await new Promise((r) => socket.once('connect', r));
  socket.write(head);
  if (body.length > 0) socket.write(body);
  return socket;
}

const until = async (probe: () => boolean): Promise<void> => {
  for (let i = 0; i < 200 && !probe(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(probe()).to.equal(true);
};

/** Whatever arrived has been read: nothing waits in the request's buffer. */
const settled = async (req: http.IncomingMessage): Promise<void> => {
  await new Promise((r) => setTimeout(r, 30));
  await until(() => req.readableLength === 0);
};

describe('ingress/body-timeout', () => {
  let server: Awaited<ReturnType<typeof requests>>;
  let clock: number;
  let timer: BodyIdleTimer;
  const sockets: net.Socket[] = [];

  beforeEach(async () => {
    server = await requests();
    clock = 0;
    timer = new BodyIdleTimer(1_000, { now: () => clock });
  });
  afterEach(async () => {
    timer.close();
    for (const s of sockets.splice(0)) s.destroy();
    await server.close();
  });

  it('tells a body that stalls for the timeout, once, and forgets it', async () => {
    const got = server.next();
    sockets.push(await client(server.port, 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n', 'abc'));
    const req = await got;
    const faults: BodyFault[] = [];
    timer.watch(req, (f) => faults.push(f));
    req.resume();
    await settled(req);
    timer.check(); // the bytes that came with the head are activity at 0
    clock = 999;
    timer.check();
    expect(faults).to.deep.equal([]);
    clock = 1_000;
    timer.check();
    clock = 5_000;
    timer.check();
    expect(faults).to.deep.equal(['idle']);
    expect(timer.size).to.equal(0);
  });

  it('counts from the last byte that arrived', async () => {
    const got = server.next();
    const socket = await client(server.port, 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n', 'abc');
    sockets.push(socket);
    const req = await got;
    const faults: BodyFault[] = [];
    timer.watch(req, (f) => faults.push(f));
    req.resume();
    clock = 900;
    const before = req.socket.bytesRead;
    socket.write('d');
    await until(() => req.socket.bytesRead > before);
    timer.check(); // activity seen at 900
    clock = 1_800;
    timer.check();
    expect(faults).to.deep.equal([]);
    clock = 1_900;
    timer.check();
    expect(faults).to.deep.equal(['idle']);
  });

  it('never blames the client while the proxy itself is not reading the body', async () => {
    const got = server.next();
    sockets.push(await client(server.port, 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4000000\r\n\r\n', Buffer.alloc(1_000_000, 0x61)));
    const req = await got; // nobody reads: its buffer fills and node stops reading the socket
    const faults: BodyFault[] = [];
    timer.watch(req, (f) => faults.push(f));
    await until(() => req.readableLength > 0);
    for (clock = 0; clock <= 10_000; clock += 500) timer.check();
    expect(faults).to.deep.equal([]);
    expect(timer.size).to.equal(1);
  });

  it('stops watching a body once it is complete', async () => {
    const got = server.next();
    sockets.push(await client(server.port, 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n', 'abc'));
    const req = await got;
    const faults: BodyFault[] = [];
    timer.watch(req, (f) => faults.push(f));
    req.resume();
    await new Promise((r) => req.once('end', r));
    clock = 10_000;
    timer.check();
    expect(faults).to.deep.equal([]);
    expect(timer.size).to.equal(0);
  });

  it('passes on a malformed body once, and says when nobody watches', async () => {
    const got = server.next();
    sockets.push(await client(server.port, 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n', 'abc'));
    const req = await got;
    const faults: BodyFault[] = [];
    const stop = timer.watch(req, (f) => faults.push(f));
    expect(timer.malformed(req)).to.equal(true);
    expect(timer.malformed(req)).to.equal(false);
    stop();
    expect(faults).to.deep.equal(['malformed']);
  });

  it('keeps sweeping when a fault callback throws', async () => {
    const errors: unknown[] = [];
    timer = new BodyIdleTimer(1_000, { now: () => clock, onError: (e) => errors.push(e) });
    const first = server.next();
    sockets.push(await client(server.port, 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n', 'a'));
    const a = await first;
    const second = server.next();
    sockets.push(await client(server.port, 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n', 'b'));
    const b = await second;
    const faults: string[] = [];
    timer.watch(a, () => {
      throw new Error('bug');
    });
    timer.watch(b, () => faults.push('b'));
    a.resume();
    b.resume();
    await settled(a);
    await settled(b);
    clock = 2_000;
    timer.check();
    expect(errors).to.have.length(1);
    expect(faults).to.deep.equal(['b']);
  });
});
