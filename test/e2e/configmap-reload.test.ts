/**
 * A Kubernetes ConfigMap edit reaching a running proxy. kubelet never writes a
 * mounted ConfigMap's files in place: it writes the new content into a fresh
 * timestamped folder, points a new `..data_tmp` symlink at it, renames that
 * over `..data` (one atomic step), and removes the old folder; `routes.yaml`
 * itself is a symlink to `..data/routes.yaml` that never changes. Here that
 * sequence runs against the real proxy (both listeners, watching its file as
 * `serve` does), and each update must be in force within the reload time the
 * README promises: 2 seconds.
 */
import { expect } from 'chai';
import { mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import request from 'supertest';
import { createLogger } from '../../src/logging/logger.js';
import { startStrangler, type Strangler } from '../../src/main.js';
import { routesYaml, waitFor } from '../support/proxy.js';
import { startUpstream, type TestUpstream } from '../support/upstream.js';

/** The README's promise: a saved change applies within 2 seconds. */
const RELOAD_TIME_MS = 2000;

/** A folder laid out and updated the way kubelet's atomic writer does it for a ConfigMap volume. */
class ConfigMapVolume {
  private version = 0;
  private current: string | undefined;

  constructor(readonly dir: string) {}

  get routesFile(): string {
    return path.join(this.dir, 'routes.yaml');
  }

  /** Publishes new content: timestamped folder, `..data_tmp` renamed over `..data`, old folder removed. */
  update(routes: string): void {
    this.version += 1;
    const stamped = `..2026_12_05_08_30_${String(this.version).padStart(2, '0')}.${100000000 + this.version}`;
    mkdirSync(path.join(this.dir, stamped));
    writeFileSync(path.join(this.dir, stamped, 'routes.yaml'), routes, { mode: 0o644 });
    symlinkSync(stamped, path.join(this.dir, '..data_tmp'));
    renameSync(path.join(this.dir, '..data_tmp'), path.join(this.dir, '..data'));
    if (this.current === undefined) symlinkSync(path.join('..data', 'routes.yaml'), this.routesFile);
    else rmSync(path.join(this.dir, this.current), { recursive: true });
    this.current = stamped;
  }
}

describe('e2e: a ConfigMap update (the ..data symlink swapped) reaches a running proxy', function () {
  let legacy: TestUpstream;
  let next: TestUpstream;
  let dir: string;
  let volume: ConfigMapVolume;
  let proxy: Strangler | undefined;

  const linuxTo = (backend: string) =>
    routesYaml({ buildbot: { url: legacy.url, legacy: true }, taskservice: { url: next.url } }, `routes:\n  - jobType: linux64-*\n    backend: ${backend}\n`);
  const start = async (options: { pollIntervalMs?: number } = {}) => {
    const quiet = new Writable({ write: (_chunk, _encoding, done) => done() });
    proxy = await startStrangler({ configFile: volume.routesFile, port: 0, adminPort: 0, host: '127.0.0.1', logger: createLogger({ stream: quiet, level: 'error' }), watch: true, ...options });
    return proxy;
  };
  const backendOf = async (p: Strangler) => (await request(p.proxyUrl).get('/api/v2/builders/linux64-opt/builds').expect(200)).headers['x-strangler-backend'] as string;
  /** Swaps the volume to `routes` and answers how long until linux64-opt is routed to `expected`. */
  const swapAndTime = async (p: Strangler, routes: string, expected: string) => {
    const swappedAt = Date.now();
    volume.update(routes);
    await waitFor(async () => (await backendOf(p)) === expected || undefined, RELOAD_TIME_MS * 3, `linux64-opt routed to ${expected} after the swap`);
    return Date.now() - swappedAt;
  };

  beforeEach(async () => {
    legacy = await startUpstream('buildbot');
    next = await startUpstream('taskservice');
    dir = mkdtempSync(path.join(tmpdir(), 'strangler-configmap-'));
    volume = new ConfigMapVolume(dir);
    volume.update(linuxTo('buildbot'));
  });
  afterEach(async () => {
    await proxy?.close();
    proxy = undefined;
    await legacy.close();
    await next.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('applies each update within the reload time, keeps the routes in force through a bad one, and applies the fix', async () => {
    const p = await start(); // as `serve` runs it: the folder watched, the file re-read every second
    expect(await backendOf(p)).to.equal('buildbot');

    const first = await swapAndTime(p, linuxTo('taskservice'), 'taskservice');
    expect(first, 'the first update in force within the reload time (ms)').to.be.below(RELOAD_TIME_MS);
    expect(readdirSync(dir).sort(), 'the layout kubelet leaves').to.deep.equal(['..2026_12_05_08_30_02.100000002', '..data', 'routes.yaml']);

    // A bad edit (a route naming no backend) is rejected by the proxy, which keeps the routes in force.
    volume.update(linuxTo('nowhere'));
    const versions = async () => ((await request(p.adminUrl).get('/history').expect(200)).body as { versions: Array<{ result: string; trigger: string; error: string | null }> }).versions;
    const rejected = await waitFor(
      async () => (await versions()).find((e) => e.result === 'failure'),
      RELOAD_TIME_MS,
      'the bad update to be rejected',
    );
    expect(rejected.trigger).to.equal('file-change');
    expect(rejected.error).to.contain('nowhere');
    expect(await backendOf(p)).to.equal('taskservice');

    const fix = await swapAndTime(p, linuxTo('buildbot'), 'buildbot');
    expect(fix, 'the fix in force within the reload time (ms)').to.be.below(RELOAD_TIME_MS);
    expect((await versions()).map((e) => `${e.trigger}:${e.result}`)).to.include.members(['startup:success', 'file-change:success', 'file-change:failure']);
  });

  it('sees the swap through its watch on the folder, not only by re-reading the file', async () => {
    const p = await start({ pollIntervalMs: 60_000 }); // no re-read within this test: only the folder's change events
    expect(await backendOf(p)).to.equal('buildbot');
    const first = await swapAndTime(p, linuxTo('taskservice'), 'taskservice');
    expect(first, 'in force on the change event (ms)').to.be.below(1000);
    // The watch outlives a swap: the folder is the same, only ..data moved.
    const second = await swapAndTime(p, linuxTo('buildbot'), 'buildbot');
    expect(second, 'the second swap too (ms)').to.be.below(1000);
  });
});
