/**
 * Graceful shutdown: SIGTERM to the real process (the built CLI) under load.
 * Requests already accepted complete, new connections are refused, keep-alive
 * clients are told to close, and the process exits 0. Nothing accepted is lost.
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort, startUpstream, type TestUpstream } from '../support/upstream.js';
import { routesYaml, waitFor } from '../support/proxy.js';
import { startProxyProcess } from '../support/proxy-process.js';
import { send } from './kit.js';

describe('reliability: graceful shutdown', function () {
  this.timeout(60_000);
  let upstream: TestUpstream;
  let dir: string;
  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'strangler-shutdown-'));
    upstream = await startUpstream('buildbot', (req, res) => {
      const delay = req.url?.includes('slow') ? 800 : 5;
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ url: req.url }));
      }, delay);
    });
  });
  after(async () => {
    await upstream.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('finishes every accepted request, refuses new connections, tells keep-alive clients to close, exits 0', async () => {
    const file = path.join(dir, 'routes.yaml');
    writeFileSync(file, routesYaml({ buildbot: { url: upstream.url, legacy: true } }));
    const [port, adminPort] = [await freePort(), await freePort()];
    const proxy = await startProxyProcess({ configFile: file, port, adminPort, startTimeoutMs: 15_000 });
    const url = `http://127.0.0.1:${port}`;

    // A keep-alive client with an idle connection, and 20 slow requests in flight.
    const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 32 });
    expect((await send(keepAlive, `${url}/warm`)).status).to.equal(200);
    const received = upstream.received.length;
    const inFlight = Array.from({ length: 20 }, (_, i) => send(keepAlive, `${url}/slow/${i}`));
    await waitFor(() => upstream.received.length >= received + 20 || undefined, 5000, 'the slow requests to reach the backend');

    proxy.child.kill('SIGTERM');
    await waitFor(() => proxy.output().includes('shutting down') || undefined, 5000, 'the shutdown to begin');
    // New connections are refused while the accepted requests drain.
    const fresh = await send(new http.Agent(), `${url}/new`);
    expect(fresh.status).to.equal(0);
    expect(fresh.error).to.equal('ECONNREFUSED');

    const results = await Promise.all(inFlight);
    expect(results.map((r) => r.status)).to.deep.equal(Array(20).fill(200));
    expect(await proxy.exited).to.equal(0);
    // Once the process is gone, every keep-alive socket the client held has been closed by the server.
    const sockets = Object.values(keepAlive.freeSockets).flat();
    await waitFor(() => sockets.every((s) => s?.destroyed) || undefined, 2000, 'the idle keep-alive sockets to be closed');
    keepAlive.destroy();
  });

  it('with STRANGLER_SHUTDOWN_DELAY_MS: /readyz turns unready at once while new connections are still served, then drains and exits 0', async () => {
    const file = path.join(dir, 'routes-delay.yaml');
    writeFileSync(file, routesYaml({ buildbot: { url: upstream.url, legacy: true } }));
    const [port, adminPort] = [await freePort(), await freePort()];
    const proxy = await startProxyProcess({ configFile: file, port, adminPort, env: { ...process.env, STRANGLER_SHUTDOWN_DELAY_MS: '2000' }, startTimeoutMs: 15_000 });
    const url = `http://127.0.0.1:${port}`;
    await waitFor(async () => ((await send(new http.Agent(), `http://127.0.0.1:${adminPort}/readyz`)).status === 200 ? true : undefined), 5000, 'ready');

    proxy.child.kill('SIGTERM');
    await waitFor(() => proxy.output().includes('shutting down') || undefined, 5000, 'the shutdown to begin');
    const startedAt = Date.now();
    expect((await send(new http.Agent(), `http://127.0.0.1:${adminPort}/readyz`)).status, 'unready at once').to.equal(503);
    const fresh = await send(new http.Agent(), `${url}/during-delay`);
    expect(fresh.status, 'a new connection during the delay is still served').to.equal(200);
    expect(Date.now() - startedAt, 'both within the delay').to.be.below(2000);
    expect(await proxy.exited).to.equal(0);
    expect(Date.now() - startedAt).to.be.at.least(1500);
  });

  it('answers requests that arrive on a kept-alive connection during the drain with Connection: close', async () => {
    const file = path.join(dir, 'routes2.yaml');
    writeFileSync(file, routesYaml({ buildbot: { url: upstream.url, legacy: true } }));
    const [port, adminPort] = [await freePort(), await freePort()];
    const proxy = await startProxyProcess({ configFile: file, port, adminPort, startTimeoutMs: 15_000 });
    const url = `http://127.0.0.1:${port}`;

    // One connection, one slow request keeps the drain open; a second request is pipelined on a
    // second kept-alive connection that is busy when SIGTERM arrives.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const first = send(agent, `${url}/slow/a`);
    await waitFor(() => upstream.received.some((r) => r.url === '/slow/a') || undefined, 5000, 'the first request to arrive');
    proxy.child.kill('SIGTERM');
    await waitFor(() => proxy.output().includes('shutting down') || undefined, 5000, 'the shutdown to begin');
    const second = send(agent, `${url}/after-sigterm`); // queued on the same keep-alive socket
    const [a, b] = await Promise.all([first, second]);
    expect(a.status).to.equal(200);
    // The queued request either was answered with Connection: close, or found the socket closed
    // after the first answer and was never sent (the agent reports a reset before any byte).
    if (b.status === 200) expect(b.headers.connection).to.equal('close');
    else expect(b.error).to.be.oneOf(['ECONNRESET', 'ECONNREFUSED', 'EPIPE']);
    expect(await proxy.exited).to.equal(0);
    agent.destroy();
  });
});
