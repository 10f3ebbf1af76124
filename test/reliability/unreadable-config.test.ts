/**
 * A routes.yaml path that stops being a readable file: a FIFO nobody writes
 * to is put in its place. Reloads fail with a clear error and the old routes
 * keep serving; a regular file is taken again; and the proxy still shuts down
 * within its drain limit (a read blocked in the thread pool would keep
 * `process.exit()` waiting for good).
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort, startUpstream, type TestUpstream } from '../support/upstream.js';
import { ROOT } from '../support/cli-process.js';
import { routesYaml, startTestProxy, waitFor, type TestProxy } from '../support/proxy.js';
import { startProxyProcess } from '../support/proxy-process.js';
import { send } from './kit.js';

describe('reliability: a routes file that cannot be read', function () {
  this.timeout(60_000);
  let legacy: TestUpstream;
  let next: TestUpstream;
  let t: TestProxy | undefined;
  let dir: string;
  before(async () => {
    legacy = await startUpstream('buildbot');
    next = await startUpstream('taskservice');
    dir = mkdtempSync(path.join(tmpdir(), 'strangler-unreadable-'));
  });
  after(async () => {
    await t?.close().catch(() => undefined);
    await legacy.close();
    await next.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const yaml = (linux: string) =>
    routesYaml({ buildbot: { url: legacy.url, legacy: true }, taskservice: { url: next.url } }, `routes:\n  - jobType: linux64-*\n    backend: ${linux}\n`);

  /** Puts a FIFO where the routes file was, as an atomic rename would. */
  const fifoOver = (file: string) => {
    const fifo = path.join(path.dirname(file), 'routes.fifo');
    execFileSync('mkfifo', [fifo]);
    renameSync(fifo, file);
  };

  it('refuses the FIFO, keeps routing on the old table, takes a regular file again, and closes within its drain limit', async () => {
    const drainTimeoutMs = 2000;
    t = await startTestProxy(yaml('taskservice'), { pollIntervalMs: 200, drainTimeoutMs, quiet: true });
    const proxy = t;
    const agent = new http.Agent({ keepAlive: true });
    const backendOfLinux = async () => String((await send(agent, `${proxy.url}/api/v2/builders/linux64-opt/builds`)).headers['x-strangler-backend']);
    expect(await backendOfLinux()).to.equal('taskservice');

    fifoOver(t.configFile);
    const rejected = await waitFor(() => t!.logs().find((l) => l.message === 'routes.yaml rejected; the previous routes stay in force'), 5000, 'the refused FIFO');
    expect(rejected.error).to.equal(`${t.configFile}: cannot read the routes file: it is a FIFO (named pipe); expected a regular file`);
    for (let i = 0; i < 20; i++) expect(await backendOfLinux()).to.equal('taskservice');

    unlinkSync(t.configFile);
    t.writeConfig(yaml('buildbot'));
    await waitFor(async () => (await backendOfLinux()) === 'buildbot', 5000, 'the regular file to be taken again');

    // And with the FIFO back in place, shutdown still completes within the drain limit.
    unlinkSync(t.configFile);
    fifoOver(t.configFile);
    await new Promise((r) => setTimeout(r, 500)); // a few polls meet the FIFO
    agent.destroy();
    const started = Date.now();
    await t.close();
    t = undefined;
    expect(Date.now() - started).to.be.lessThan(drainTimeoutMs);
  });

  it('exits 0 on SIGTERM, within the drain limit, while its routes file is a FIFO nobody writes to', async () => {
    const file = path.join(dir, 'routes.yaml');
    writeFileSync(file, yaml('taskservice'));
    const [port, adminPort] = [await freePort(), await freePort()];
    // From the sources, so that the test runs the code under test without a build.
    const proxy = await startProxyProcess({ configFile: file, port, adminPort, nodeArgs: ['--import', 'tsx'], bin: path.join(ROOT, 'src/cli.ts'), cwd: ROOT, startTimeoutMs: 30_000 });
    try {
      fifoOver(file);
      await waitFor(() => proxy.output().includes('it is a FIFO (named pipe)') || undefined, 5000, 'the refused FIFO in the log');
      const res = await send(new http.Agent(), `http://127.0.0.1:${port}/api/v2/builders/linux64-opt/builds`);
      expect(res.headers['x-strangler-backend']).to.equal('taskservice');

      proxy.child.kill('SIGTERM');
      const started = Date.now();
      const code = await Promise.race([proxy.exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 10_000))]);
      expect(code, proxy.output().slice(-2000)).to.equal(0);
      expect(Date.now() - started).to.be.lessThan(10_000); // the CLI's drain limit
    } finally {
      if (proxy.child.exitCode === null) proxy.child.kill('SIGKILL');
    }
  });
});
