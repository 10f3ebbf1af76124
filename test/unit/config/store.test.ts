/** The config store on a real filesystem: the ways editors and Kubernetes replace a file. */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfigFileSync } from '../../../src/config/load.js';
import { ConfigStore, type ReloadEvent } from '../../../src/config/store.js';
import { TWO_BACKENDS } from '../../support/tables.js';
import { waitFor } from '../../support/proxy.js';

const routesTo = (backend: string) => `${TWO_BACKENDS}routes:\n  - jobType: a\n    backend: ${backend}\n`;
const backendOfA = (store: ConfigStore) => store.current().routes[0]?.targets[0]?.backend;

describe('config/store: ConfigStore', () => {
  let dir: string;
  let store: ConfigStore | undefined;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'strangler-store-'));
  });
  afterEach(() => {
    store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function open(file: string): { store: ConfigStore; events: ReloadEvent[] } {
    const s = new ConfigStore(file, loadConfigFileSync(file), { pollIntervalMs: 500 });
    const events: ReloadEvent[] = [];
    s.on('reload', (e) => events.push(e));
    s.watch();
    store = s;
    return { store: s, events };
  }

  it('applies an in-place save', async () => {
    const file = path.join(dir, 'routes.yaml');
    writeFileSync(file, routesTo('buildbot'));
    const { store: s, events } = open(file);
    writeFileSync(file, routesTo('taskservice'));
    await waitFor(() => backendOfA(s) === 'taskservice', 2000, 'the in-place save');
    expect(events.map((e) => [e.result, e.trigger])).to.deep.equal([['success', 'file-change']]);
  });

  it('applies a save by rename, as editors do', async () => {
    const file = path.join(dir, 'routes.yaml');
    writeFileSync(file, routesTo('buildbot'));
    const { store: s } = open(file);
    writeFileSync(path.join(dir, '.routes.yaml.swp'), routesTo('taskservice'));
    renameSync(path.join(dir, '.routes.yaml.swp'), file);
    await waitFor(() => backendOfA(s) === 'taskservice', 2000, 'the rename-save');
  });

  it("applies a Kubernetes ConfigMap update (the ..data symlink swapped)", async () => {
    // The layout kubelet writes: routes.yaml -> ..data/routes.yaml, ..data -> ..2026_v1 (a timestamped folder).
    mkdirSync(path.join(dir, '..v1'));
    writeFileSync(path.join(dir, '..v1', 'routes.yaml'), routesTo('buildbot'));
    symlinkSync('..v1', path.join(dir, '..data'));
    symlinkSync('..data/routes.yaml', path.join(dir, 'routes.yaml'));
    const { store: s } = open(path.join(dir, 'routes.yaml'));
    expect(backendOfA(s)).to.equal('buildbot');

    mkdirSync(path.join(dir, '..v2'));
    writeFileSync(path.join(dir, '..v2', 'routes.yaml'), routesTo('taskservice'));
    symlinkSync('..v2', path.join(dir, '..data_tmp'));
    renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data')); // atomic swap, as kubelet does
    rmSync(path.join(dir, '..v1'), { recursive: true });
    await waitFor(() => backendOfA(s) === 'taskservice', 2000, 'the symlink swap');
  });

  it('keeps the old table on an invalid file, reports it once, and applies the fix', async () => {
    const file = path.join(dir, 'routes.yaml');
    writeFileSync(file, routesTo('buildbot'));
    const { store: s, events } = open(file);
    writeFileSync(file, routesTo('nowhere'));
    await waitFor(() => events.length === 1, 2000, 'the failed reload');
    await new Promise((r) => setTimeout(r, 1200)); // two more polls of the same broken bytes
    expect(events).to.have.length(1);
    expect(events[0]!.result).to.equal('failure');
    expect(events[0]!.error?.code).to.equal('CONFIG_INVALID');
    expect(backendOfA(s)).to.equal('buildbot');
    writeFileSync(file, routesTo('taskservice'));
    await waitFor(() => backendOfA(s) === 'taskservice', 2000, 'the fixed file');
  });

  it('reports a YAML syntax error as file:line:column: YAML syntax: reason, the location once', async () => {
    const file = path.join(dir, 'routes.yaml');
    writeFileSync(file, routesTo('buildbot'));
    const { store: s, events } = open(file);
    writeFileSync(file, `${TWO_BACKENDS}routes:\n  - jobType: a\n   backend: buildbot\n`);
    await waitFor(() => events.length === 1, 2000, 'the failed reload');
    expect(events[0]!.error?.message).to.equal(`${file}:6:1: YAML syntax: Sequence item without - indicator`);
    expect(backendOfA(s)).to.equal('buildbot');
  });

  it('survives the file disappearing, and picks it up again', async () => {
    const file = path.join(dir, 'routes.yaml');
    writeFileSync(file, routesTo('buildbot'));
    const { store: s, events } = open(file);
    unlinkSync(file);
    await waitFor(() => events.find((e) => e.error?.code === 'CONFIG_UNREADABLE'), 2000, 'the unreadable report');
    expect(backendOfA(s)).to.equal('buildbot');
    writeFileSync(file, routesTo('taskservice'));
    await waitFor(() => backendOfA(s) === 'taskservice', 2000, 'the file coming back');
  });

  it('refuses a FIFO put in place of the file, keeps the old table, and takes a regular file again', async () => {
    const file = path.join(dir, 'routes.yaml');
    writeFileSync(file, routesTo('buildbot'));
    const { store: s, events } = open(file);
    execFileSync('mkfifo', [path.join(dir, 'pipe')]);
    renameSync(path.join(dir, 'pipe'), file); // nobody ever writes to it: a blocking read would wait for good
    await waitFor(() => events.find((e) => e.result === 'failure'), 2000, 'the refused FIFO');
    expect(events[0]!.error?.code).to.equal('CONFIG_UNREADABLE');
    expect(events[0]!.error?.message).to.equal(`${file}: cannot read the routes file: it is a FIFO (named pipe); expected a regular file`);
    expect(backendOfA(s)).to.equal('buildbot');
    // Asked directly, it says the same, at once.
    expect((await s.reload('signal')).error?.message).to.contain('it is a FIFO (named pipe)');

    unlinkSync(file);
    writeFileSync(file, routesTo('taskservice'));
    await waitFor(() => backendOfA(s) === 'taskservice', 2000, 'the regular file again');
  });

  it('fails a reload whose read hangs after its deadline, and closes without waiting for it', async () => {
    const file = path.join(dir, 'routes.yaml');
    writeFileSync(file, routesTo('buildbot'));
    let reads = 0;
    const s = new ConfigStore(file, loadConfigFileSync(file), { readTimeoutMs: 100, read: () => (reads++, new Promise<Buffer>(() => undefined)) });
    store = s;
    const events: ReloadEvent[] = [];
    s.on('reload', (e) => events.push(e));
    const event = await s.reload('signal');
    expect(event.result).to.equal('failure');
    expect(event.error?.message).to.contain('the read did not finish within 0.1 s');
    expect(s.current().routes[0]?.targets[0]?.backend).to.equal('buildbot');
    // The hung read is still outstanding: the next reload fails at once, without a second read.
    expect((await s.reload('signal')).error?.message).to.contain('an earlier read has not finished');
    expect(reads).to.equal(1);
    const started = Date.now();
    s.close();
    expect(Date.now() - started).to.be.lessThan(50);
    expect(events.map((e) => e.result)).to.deep.equal(['failure', 'failure']);
  });

  it('applies a large file (parsed in a worker), and a close during its parse applies and reports nothing', async function () {
    this.timeout(60_000);
    const file = path.join(dir, 'routes.yaml');
    writeFileSync(file, routesTo('buildbot'));
    const large = (backend: string) => routesTo(backend) + Array.from({ length: 2000 }, (_, i) => `  - jobType: job-${i}\n    backend: ${backend}\n`).join('');
    const s = new ConfigStore(file, loadConfigFileSync(file));
    store = s;
    const events: ReloadEvent[] = [];
    s.on('reload', (e) => events.push(e));
    writeFileSync(file, large('taskservice'));
    expect((await s.reload('signal')).result).to.equal('success');
    expect(s.current().routes).to.have.length(2001);
    expect(backendOfA(s)).to.equal('taskservice');

    writeFileSync(file, large('buildbot'));
    const reloading = s.reload('signal');
    await new Promise((r) => setTimeout(r, 20));
    s.close();
    const event = await reloading;
    expect(event.result).to.equal('failure');
    expect(backendOfA(s)).to.equal('taskservice');
    expect(events).to.have.length(1);
  });

  it('reloads on request even when nothing changed (SIGHUP, admin)', async () => {
    const file = path.join(dir, 'routes.yaml');
    writeFileSync(file, routesTo('buildbot'));
    const { store: s, events } = open(file);
    const event = await s.reload('signal');
    expect(event.result).to.equal('success');
    expect(events.map((e) => e.trigger)).to.deep.equal(['signal']);
  });
});
