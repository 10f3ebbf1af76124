/** The `strangler-proxy` command as users run it: the built bin, in a child process. */
import { expect } from 'chai';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import request from 'supertest';
import { freePort, startUpstream, type TestUpstream } from '../support/upstream.js';
import { routesYaml, waitFor } from '../support/proxy.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.join(ROOT, 'dist', 'cli.js');

function run(args: string[], env: Record<string, string> = {}) {
  const result = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 20_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('e2e: command line', function () {
  let dir: string;
  before(function () {
    if (spawnSync(process.execPath, [BIN, '--help']).status !== 0) throw new Error(`${BIN} is missing: run "npm run build" first (npm test does)`);
  });
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'strangler-cli-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const write = (name: string, text: string) => {
    const file = path.join(dir, name);
    writeFileSync(file, text);
    return file;
  };

  describe('validate', () => {
    it('exits 0 on the repository routes.yaml', () => {
      const r = run(['validate', 'routes.yaml']);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout).to.match(/routes\.yaml: valid — 2 backends \(legacy: buildbot, default: buildbot\), 3 routes/);
    });

    it('exits 1 with file, line, column, field and reason on an invalid file', () => {
      const file = write('bad.yaml', 'backends:\n  buildbot: { url: http://127.0.0.1:1, legacy: true }\nroutes:\n  - jobType: /[/\n    backend: buildbot\n');
      const r = run(['validate', file]);
      expect(r.code).to.equal(1);
      expect(r.stderr).to.match(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:4:14: routes\\[0\\]\\.jobType: bad regular expression`));
    });

    it('exits 1 on a missing file and takes STRANGLER_CONFIG', () => {
      expect(run(['validate', path.join(dir, 'none.yaml')]).stderr).to.contain('no such file');
      const file = write('ok.yaml', 'backends:\n  b: { url: http://127.0.0.1:1, legacy: true }\n');
      expect(run(['validate'], { STRANGLER_CONFIG: file }).code).to.equal(0);
    });

    it('exits 2 on a usage error', () => {
      const r = run(['frobnicate']);
      expect(r.code).to.equal(2);
      expect(r.stderr).to.contain('unknown command "frobnicate"');
      expect(r.stderr).to.contain('Usage:');
    });
  });

  describe('explain', () => {
    it('prints the backend, the job type and the rule that decided', () => {
      const r = run(['explain', 'GET', '/api/v2/builders/linux64-opt/builds']);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout).to.contain('backend:  taskservice (http://127.0.0.1:8012)');
      expect(r.stdout).to.contain('job type: linux64-opt (from the path)');
      expect(r.stdout).to.contain('routes[0] (glob "linux64-*") matches job type "linux64-opt"');
    });

    it('reads a force body from a file and headers from --header', () => {
      const body = write('force.json', JSON.stringify({ jsonrpc: '2.0', method: 'force', id: 1, params: { builderNames: ['linux64-opt', 'win32-debug'] } }));
      const mixed = run(['explain', 'POST', '/api/v2/forceschedulers/force', '--body-file', body, '--json']);
      expect(JSON.parse(mixed.stdout)).to.include({ backend: 'buildbot', reason: 'mixed-builders', jobType: 'linux64-opt,win32-debug' });
      const header = run(['explain', 'GET', '/api/v2/builds/5', '--header', 'X-Job-Type: linux64-debug', '--json']);
      expect(JSON.parse(header.stdout)).to.include({ backend: 'taskservice', reason: 'header', source: 'header' });
    });

    it('shows the sticky key of a sticky split and the side it hashes to, the same every time', () => {
      const file = write('sticky.yaml', 'backends:\n  buildbot: { url: http://127.0.0.1:1, legacy: true }\n  taskservice: { url: http://127.0.0.1:2 }\nroutes:\n  - jobType: android-*\n    split: { taskservice: 50, buildbot: 50 }\n    stickyBy: [header:X-Push-Id, query:revision]\n');
      const answers = [1, 2, 3].map(() => run(['explain', '--config', file, 'GET', '/api/v2/builders/android-x?revision=r42', '--json']));
      const first = JSON.parse(answers[0]!.stdout);
      expect(first.sticky).to.deep.include({ source: 'query:revision', key: 'r42' });
      for (const a of answers) expect(JSON.parse(a.stdout).sticky).to.deep.equal(first.sticky);
      const text = run(['explain', '--config', file, 'GET', '/api/v2/builders/android-x', '--header', 'X-Push-Id: p1']).stdout;
      expect(text).to.match(/sticky:   header:X-Push-Id="p1" -> (taskservice|buildbot)/);
    });

    it('shows a split and which side this request drew', () => {
      const r = run(['explain', 'GET', '/api/v2/builders/android-api-15-test']);
      expect(r.stdout).to.match(/split taskservice 25%, buildbot 75%, this request drew (taskservice|buildbot)/);
    });
  });

  describe('serve', () => {
    let child: ChildProcess | undefined;
    let upstream: TestUpstream;
    beforeEach(async () => {
      upstream = await startUpstream('legacy');
    });
    afterEach(async () => {
      if (child && child.exitCode === null) child.kill('SIGKILL');
      child = undefined;
      await upstream.close();
    });

    function serve(args: string[], env: Record<string, string> = {}): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
      let output = '';
      const c = spawn(process.execPath, [BIN, ...args], { cwd: dir, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      c.stdout!.on('data', (d: Buffer) => (output += d.toString()));
      c.stderr!.on('data', (d: Buffer) => (output += d.toString()));
      child = c;
      const exited = new Promise<number | null>((resolve) => c.on('exit', (code) => resolve(code)));
      return { child: c, output: () => output, exited };
    }

    it('exits 1 at startup on an invalid file, with the same message as validate', async () => {
      const file = write('bad.yaml', 'backends:\n  a: { url: http://127.0.0.1:1 }\n');
      const s = serve(['--config', file, '--port', '0', '--admin-port', '0']);
      expect(await s.exited).to.equal(1);
      expect(s.output()).to.contain(`${file}:2:3: backends: no legacy backend`);
    });

    it('listens on --port/--admin-port (or PORT/ADMIN_PORT), reloads on SIGHUP, drains and exits 0 on SIGTERM', async () => {
      const [port, adminPort] = [await freePort(), await freePort()];
      const file = write('routes.yaml', routesYaml({ legacy: { url: upstream.url, legacy: true } }));
      const s = serve([], { STRANGLER_CONFIG: file, PORT: String(port), ADMIN_PORT: String(adminPort) });
      const proxyUrl = `http://127.0.0.1:${port}`;
      await waitFor(() => s.output().includes('strangler-proxy listening'), 10_000, 'the proxy to listen');
      await request(proxyUrl).get('/api/v2/builders/x').expect(200).expect('x-strangler-backend', 'legacy');
      await request(`http://127.0.0.1:${adminPort}`).get('/healthz').expect(200);

      writeFileSync(file, routesYaml({ legacy: { url: upstream.url, legacy: true }, other: { url: upstream.url } }, 'routes:\n  - jobType: x\n    backend: other\n'));
      s.child.kill('SIGHUP');
      await waitFor(async () => (await request(proxyUrl).get('/api/v2/builders/x')).headers['x-strangler-backend'] === 'other', 3000, 'the SIGHUP reload');
      expect(s.output()).to.match(/"trigger":"(signal|file-change)"/);

      s.child.kill('SIGTERM');
      expect(await s.exited).to.equal(0);
      expect(s.output()).to.contain('shutting down');
    });
  });
});
