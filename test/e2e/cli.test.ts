/**
 * The `strangler-proxy` command as users run it: the built bin, in a child process.
 *
 * Commands run in test/fixtures, so "./routes.yaml" is the tests' own copy of the example: the
 * routes.yaml at the repository root belongs to whoever edits it (the README says to), and the
 * variables that would point the command elsewhere (STRANGLER_CONFIG, PORT, ...) are cleared.
 */
import { expect } from 'chai';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import request from 'supertest';
import { CLI, commandEnv, requireBuiltCli, ROOT, runCli, startCli, type CliProcess } from '../support/cli-process.js';
import { freePort, startUpstream, type TestUpstream } from '../support/upstream.js';
import { routesYaml, startTestProxy, waitFor, type TestProxy } from '../support/proxy.js';

const FIXTURES = path.join(ROOT, 'test', 'fixtures');
const VERSION = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

const ENV = commandEnv();

function run(args: string[], env: Record<string, string> = {}) {
  const result = spawnSync(process.execPath, [CLI, ...args], { cwd: FIXTURES, env: { ...ENV, ...env }, encoding: 'utf8', timeout: 20_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** A real listener on 127.0.0.1 holding a port, for the commands that must not start on it. */
async function occupyPort(): Promise<{ port: number; close: () => Promise<void> }> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as net.AddressInfo).port, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

/** Whether a port on 127.0.0.1 can be listened on, i.e. nothing holds it any more. */
async function canListen(port: number): Promise<boolean> {
  const server = net.createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** As run, without blocking this process: for commands that ask a proxy running in this very process. */
const runAsync = (args: string[], env: Record<string, string | undefined> = {}) => runCli(args, { cwd: FIXTURES, env: { ...ENV, ...env } });

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const readText = (file: string) => readFileSync(file, 'utf8');

describe('e2e: command line', function () {
  let dir: string;
  before(function () {
    requireBuiltCli();
  });
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'strangler-cli-'));
  });
  afterEach(() => {
    stopChildren();
    rmSync(dir, { recursive: true, force: true });
  });

  const children: ChildProcess[] = [];
  const stopChildren = () => {
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  };

  /** A command that keeps running (serve, demo), in the test's folder; its stdout and stderr together. */
  function start(args: string[], env: Record<string, string> = {}): CliProcess {
    const c = startCli(args, { cwd: dir, env: { ...ENV, ...env } });
    children.push(c.child);
    return c;
  }

  const write = (name: string, text: string) => {
    const file = path.join(dir, name);
    writeFileSync(file, text);
    return file;
  };

  describe('validate', () => {
    it('exits 0 on the example routes.yaml (the tests\' copy, found as ./routes.yaml)', () => {
      const r = run(['validate', 'routes.yaml']);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout).to.contain(`${path.join(FIXTURES, 'routes.yaml')}: valid — 2 backends (legacy: buildbot, default: buildbot), 3 routes`);
      expect(run(['validate']).stdout, 'the default file').to.equal(r.stdout);
    });

    it('exits 0 on the routes.yaml the repository ships, as committed (not the working copy a user edits)', function () {
      const shipped = spawnSync('git', ['show', 'HEAD:routes.yaml'], { cwd: ROOT, encoding: 'utf8' });
      if (shipped.status !== 0) return this.skip(); // not a git checkout (an installed package)
      const r = run(['validate', write('shipped.yaml', shipped.stdout)]);
      expect(r.code, r.stderr).to.equal(0);
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

    it('exits 2 on a usage error, in one line that says where the help is', () => {
      const r = run(['frobnicate']);
      expect(r.code).to.equal(2);
      expect(r.stderr).to.equal('unknown command "frobnicate"; the commands are serve, validate, explain, routes, plan, report, demo, help (see strangler-proxy --help)\n');
      expect(r.stdout).to.equal('');
    });
  });

  describe('--help, help, --version', () => {
    const COMMAND_NAMES = ['serve', 'validate', 'explain', 'routes', 'plan', 'report', 'demo', 'help'];

    it('--help, -h and help print the synopsis of every command and exit 0', () => {
      const r = run(['--help']);
      expect(r.code, r.stderr).to.equal(0);
      for (const name of COMMAND_NAMES.slice(1)) expect(r.stdout).to.contain(`strangler-proxy ${name}`);
      expect(r.stdout).to.contain('strangler-proxy --version');
      expect(run(['-h']).stdout).to.equal(r.stdout);
      expect(run(['help']).stdout).to.equal(r.stdout);
    });

    it('COMMAND --help and help COMMAND print that command\'s usage and options and exit 0, without running it', function () {
      this.timeout(120_000); // three processes per command
      const expected: Record<string, string[]> = {
        serve: ['Usage: strangler-proxy [serve]', '--config FILE', '--port N', '--host ADDR', '--admin-port N', '--admin-host ADDR', '--log-level', '--log-format', '--protect-admin-reads', 'STRANGLER_ADMIN_TOKEN', 'SIGHUP'],
        validate: ['Usage: strangler-proxy validate [FILE]', '--config FILE', 'Exit codes: 0 valid, 1 invalid'],
        explain: ['Usage: strangler-proxy explain', 'METHOD PATH', '--header', '--body-file FILE', '--json'],
        routes: ['Usage: strangler-proxy routes', '--config FILE', '--admin URL', '--json'],
        plan: ['Usage: strangler-proxy plan CURRENT.yaml NEW.yaml', 'plan --admin URL NEW.yaml', '--job-type NAME', 'Exit codes: 0 no change, 3 changes'],
        report: ['Usage: strangler-proxy report', '--admin URL', '--window', '--format', '--job-type', '--min-builds'],
        demo: ['Usage: strangler-proxy demo', 'stand-in', '--port N', '--admin-port N'],
        help: ['Usage: strangler-proxy help [COMMAND]'],
      };
      for (const name of COMMAND_NAMES) {
        const r = run([name, '--help']);
        expect(r.code, `${name} --help: ${r.stderr}`).to.equal(0);
        for (const text of expected[name]!) expect(r.stdout, `${name} --help`).to.contain(text);
        expect(run([name, '-h']).stdout, `${name} -h`).to.equal(r.stdout);
        expect(run(['help', name]).stdout, `help ${name}`).to.equal(r.stdout);
      }
      // Help wins over whatever else is on the line: nothing is started, nothing is required.
      expect(run(['explain', '--help']).code).to.equal(0);
      expect(run(['serve', '--port', '1', '--help']).stdout).to.contain('Usage: strangler-proxy [serve]');
    });

    it('--version and -v print the package version and exit 0', () => {
      const r = run(['--version']);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout).to.equal(`strangler-proxy ${VERSION} (Node.js ${process.version})\n`);
      expect(run(['-v']).stdout).to.equal(r.stdout);
    });

    it('an unknown option, or one the command does not take, is one line and exit 2', function () {
      this.timeout(60_000);
      const cases: Array<[string[], string]> = [
        [['--frobnicate'], "unknown option --frobnicate (see strangler-proxy --help)"],
        [['validate', '--frobnicate'], "unknown option --frobnicate (see strangler-proxy validate --help)"],
        [['routes', '-x'], "unknown option -x (see strangler-proxy routes --help)"],
        [['validate', '--port', '8010'], "validate does not take --port (see strangler-proxy validate --help)"],
        [['plan', '--config', 'a.yaml', 'b.yaml'], "plan does not take --config (see strangler-proxy plan --help)"],
        [['serve', '--json'], "serve does not take --json (see strangler-proxy serve --help)"],
        [['serve', '--port'], "Option '--port <value>' argument missing (see strangler-proxy serve --help)"],
        [['serve', '--port', 'eighty'], '--port / PORT must be a port number (0-65535), got "eighty" (see strangler-proxy serve --help)'],
        [['help', 'frobnicate'], 'no help for "frobnicate": the commands are serve, validate, explain, routes, plan, report, demo, help (see strangler-proxy --help)'],
      ];
      for (const [args, message] of cases) {
        const r = run(args);
        expect(r.code, args.join(' ')).to.equal(2);
        expect(r.stderr, args.join(' ')).to.equal(`${message}\n`);
      }
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
    let upstream: TestUpstream;
    beforeEach(async () => {
      upstream = await startUpstream('legacy');
    });
    afterEach(async () => {
      stopChildren();
      await upstream.close();
    });

    const serve = start;

    it('takes the admin token from STRANGLER_ADMIN_TOKEN (POSTs need it; STRANGLER_ADMIN_PROTECT_READS=1 guards reads) and never logs it', async () => {
      const token = `cli-token-${randomBytes(12).toString('hex')}`;
      const adminPort = await freePort();
      const file = write('routes.yaml', routesYaml({ legacy: { url: upstream.url, legacy: true } }));
      // With the newline a secret mounted from a file often has: trimmed, as no client would send it.
      const s = serve(['--config', file, '--port', '0', '--admin-port', String(adminPort)], { STRANGLER_ADMIN_TOKEN: `${token}\n`, STRANGLER_ADMIN_PROTECT_READS: '1' });
      await waitFor(() => s.output().includes('strangler-proxy listening'), 10_000, 'the proxy to listen');
      const admin = `http://127.0.0.1:${adminPort}`;
      await request(admin).post('/reload').expect(401);
      await request(admin).post('/reload').set('authorization', `Bearer ${token}`).expect(200);
      await request(admin).get('/routes').expect(401);
      await request(admin).get('/healthz').expect(200);
      // routes --admin sends the token from the environment, and says what is missing without it.
      const shown = await runAsync(['routes', '--admin', admin], { STRANGLER_ADMIN_TOKEN: token });
      expect(shown.code, shown.stderr).to.equal(0);
      expect(shown.stdout).to.contain('default: legacy');
      const refused = await runAsync(['routes', '--admin', admin], { STRANGLER_ADMIN_TOKEN: undefined });
      expect(refused.code).to.equal(1);
      expect(refused.stderr).to.contain('answered 401');
      expect(refused.stderr).to.contain('set STRANGLER_ADMIN_TOKEN');
      expect(s.output()).to.contain('"posts":"enabled: bearer token required"');
      expect(s.output()).not.to.contain(token);
    });

    it('refuses (exit 2) to protect admin reads without a token, and a token no client could send', async () => {
      const file = write('routes.yaml', routesYaml({ legacy: { url: upstream.url, legacy: true } }));
      const s = serve(['--config', file, '--port', '0', '--admin-port', '0', '--protect-admin-reads'], { STRANGLER_ADMIN_TOKEN: '' });
      expect(await s.exited).to.equal(2);
      expect(s.output()).to.contain('needs STRANGLER_ADMIN_TOKEN set');
      const spaced = serve(['--config', file, '--port', '0', '--admin-port', '0'], { STRANGLER_ADMIN_TOKEN: 'two words-secret-value' });
      expect(await spaced.exited).to.equal(2);
      expect(spaced.output()).to.contain('STRANGLER_ADMIN_TOKEN must be printable ASCII without spaces');
      expect(spaced.output()).not.to.contain('two words-secret-value');
    });

    it('exits 1 at startup on an invalid file, with the same message as validate', async () => {
      const file = write('bad.yaml', 'backends:\n  a: { url: http://127.0.0.1:1 }\n');
      const s = serve(['--config', file, '--port', '0', '--admin-port', '0']);
      expect(await s.exited).to.equal(1);
      expect(s.output()).to.contain(`${file}:2:3: backends: no legacy backend`);
    });

    it('exits 1 in one line, leaving nothing listening, when the admin port is taken (never serves without /metrics and /healthz)', async () => {
      const taken = await occupyPort();
      try {
        const port = await freePort();
        const file = write('routes.yaml', routesYaml({ legacy: { url: upstream.url, legacy: true } }));
        const s = serve(['--config', file, '--port', String(port), '--host', '127.0.0.1', '--admin-port', String(taken.port), '--log-level', 'error']);
        // Before the fix the proxy kept running without its admin listener; the timeout says so instead of hanging.
        const code = await Promise.race([s.exited, new Promise<string>((resolve) => setTimeout(() => resolve('still running after 10 s'), 10_000))]);
        expect(code, s.output()).to.equal(1);
        expect(s.output()).to.equal(`cannot listen for the admin API on 127.0.0.1:${taken.port}: the port is already in use (EADDRINUSE); choose another port with --admin-port or ADMIN_PORT\n`);
        expect(await canListen(port), 'the proxy port was let go').to.equal(true);
      } finally {
        await taken.close();
      }
    });

    it('exits 1 in one line when the proxy port is taken, on the default host 0.0.0.0 too', async () => {
      const taken = await occupyPort();
      try {
        const file = write('routes.yaml', routesYaml({ legacy: { url: upstream.url, legacy: true } }));
        const s = serve(['--config', file, '--port', String(taken.port), '--admin-port', '0', '--log-level', 'error']);
        expect(await s.exited, s.output()).to.equal(1);
        expect(s.output()).to.equal(`cannot listen for the proxy on 0.0.0.0:${taken.port}: the port is already in use (EADDRINUSE); choose another port with --port or PORT\n`);
        const byEnv = serve([], { STRANGLER_CONFIG: file, PORT: String(taken.port), HOST: '127.0.0.1', ADMIN_PORT: '0', LOG_LEVEL: 'error' });
        expect(await byEnv.exited, byEnv.output()).to.equal(1);
        expect(byEnv.output()).to.contain(`cannot listen for the proxy on 127.0.0.1:${taken.port}`);
        expect(byEnv.output()).not.to.match(/^\s+at /m);
      } finally {
        await taken.close();
      }
    });

    it('says the addresses it really listens on: the port --port 0 got, and 0.0.0.0 as every interface', async () => {
      const file = write('routes.yaml', routesYaml({ legacy: { url: upstream.url, legacy: true } }));
      const s = serve(['--config', file, '--port', '0', '--admin-port', '0']);
      const banner = await waitFor(() => s.output().split('\n').find((l) => l.includes('strangler-proxy listening')), 10_000, 'the proxy to listen');
      const line = JSON.parse(banner) as { proxy: string; admin: string; listening: { proxy: string; admin: string } };
      const port = Number(new URL(line.proxy).port);
      const adminPort = Number(new URL(line.admin).port);
      expect(port).to.be.greaterThan(0);
      expect(adminPort).to.be.greaterThan(0);
      expect(line.listening).to.deep.equal({ proxy: `0.0.0.0:${port} (all IPv4 interfaces)`, admin: `127.0.0.1:${adminPort}` });
      await request(line.proxy).get('/api/v2/builders/x').expect(200).expect('x-strangler-backend', 'legacy');
      await request(line.admin).get('/healthz').expect(200);
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

  describe('demo', () => {
    const demoRoutes = (buildbotPort: number, taskservicePort: number) =>
      `backends:\n  buildbot: { url: http://127.0.0.1:${buildbotPort}, legacy: true }\n  taskservice: { url: http://127.0.0.1:${taskservicePort} }\nroutes:\n  - jobType: linux64-*\n    backend: taskservice\n`;

    it('starts a stand-in on each port of its routes file and the proxy in front; prints the ports it really got; stops on SIGTERM', async () => {
      const [a, b] = [await freePort(), await freePort()];
      const file = write('demo.yaml', demoRoutes(a, b));
      const s = start(['demo', '--config', file, '--port', '0', '--admin-port', '0']);
      await waitFor(() => s.output().includes('Ctrl-C stops the demo'), 10_000, 'the demo banner');
      const proxyUrl = /^ {2}proxy: +(http:\/\/\S+)/m.exec(s.output())?.[1];
      const adminUrl = /^ {2}status: +(http:\/\/\S+?)\//m.exec(s.output())?.[1];
      expect(Number(new URL(proxyUrl!).port), s.output()).to.be.greaterThan(0);
      expect(Number(new URL(adminUrl!).port), s.output()).to.be.greaterThan(0);
      expect(s.output()).to.contain(`${proxyUrl}  (listening on every IPv4 interface, port ${new URL(proxyUrl!).port})`);
      expect(s.output()).to.contain(`stand-in:  buildbot     http://127.0.0.1:${a}  (legacy)`);
      // The explain line to copy reads the demo's own file, not ./routes.yaml.
      expect(s.output()).to.contain(`npx strangler-proxy explain --config ${file} POST`);
      const moved = await request(proxyUrl!).get('/api/v2/builders/linux64-opt').expect(200);
      expect([moved.headers['x-strangler-backend'], moved.headers['x-served-by']]).to.deep.equal(['taskservice', 'taskservice']);
      await request(proxyUrl!).get('/api/v2/builders/win32-debug').expect(200).expect('x-strangler-backend', 'buildbot');
      await request(adminUrl!).get('/healthz').expect(200);
      s.child.kill('SIGTERM');
      expect(await s.exited).to.equal(0);
      expect([await canListen(a), await canListen(b)]).to.deep.equal([true, true]);
    });

    it('exits 1 in one line when a stand-in\'s port is taken, and lets go of the stand-ins it started', async () => {
      const taken = await occupyPort();
      try {
        const a = await freePort();
        const s = start(['demo', '--config', write('demo.yaml', demoRoutes(a, taken.port)), '--port', '0', '--admin-port', '0']);
        const code = await Promise.race([s.exited, new Promise<string>((resolve) => setTimeout(() => resolve('still running after 10 s'), 10_000))]);
        expect(code, s.output()).to.equal(1);
        expect(s.output()).to.equal(`demo: cannot start the taskservice stand-in on 127.0.0.1:${taken.port}: the port is already in use (EADDRINUSE); stop what uses it, or give the demo a routes file with other ports (--config)\n`);
        expect(await canListen(a)).to.equal(true);
      } finally {
        await taken.close();
      }
    });

    it('exits 1 in one line when the proxy port is taken, and lets go of the stand-ins', async () => {
      const taken = await occupyPort();
      try {
        const [a, b] = [await freePort(), await freePort()];
        const s = start(['demo', '--config', write('demo.yaml', demoRoutes(a, b)), '--port', String(taken.port), '--admin-port', '0', '--log-level', 'error']);
        const code = await Promise.race([s.exited, new Promise<string>((resolve) => setTimeout(() => resolve('still running after 10 s'), 10_000))]);
        expect(code, s.output()).to.equal(1);
        expect(s.output()).to.equal(`cannot listen for the proxy on 0.0.0.0:${taken.port}: the port is already in use (EADDRINUSE); choose another port with --port or PORT\n`);
        expect([await canListen(a), await canListen(b)]).to.deep.equal([true, true]);
      } finally {
        await taken.close();
      }
    });
  });

  describe('routes', () => {
    const FILE_ROUTES = 'routes:\n  - jobType: linux64-*\n    backend: taskservice\n  - jobType: /^android-api-1[56]-/\n    split: { taskservice: 25, buildbot: 75 }\n    stickyBy: [header:X-Push-Id]\n    fallback: buildbot\n';

    it('--config FILE: the effective table as aligned text, then default and backends', () => {
      const file = write('routes.yaml', routesYaml({ buildbot: { url: 'http://127.0.0.1:8011', legacy: true }, taskservice: { url: 'http://127.0.0.1:8012' } }, FILE_ROUTES));
      const r = run(['routes', '--config', file]);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout.split('\n').slice(0, 5)).to.deep.equal([
        `${file}  hash ${sha256(readText(file)).slice(0, 12)}  loaded ${r.stdout.match(/loaded (\S+)/)![1]}`,
        '',
        '  #  JOB TYPE               KIND   BACKEND / SPLIT                STICKY            SHADOW  FALLBACK  RETRIES',
        '  0  linux64-*              glob   taskservice                    -                 -       -         0',
        '  1  /^android-api-1[56]-/  regex  taskservice 25%, buildbot 75%  header:X-Push-Id  -       buildbot  0',
      ]);
      expect(r.stdout).to.contain('default: buildbot (job types no rule matches, and requests that name none)');
      expect(r.stdout).to.match(/\n {2}buildbot {5}http:\/\/127\.0\.0\.1:8011 {2}legacy, default\n {2}taskservice {2}http:\/\/127\.0\.0\.1:8012\n/);
      const json = JSON.parse(run(['routes', '--config', file, '--json']).stdout);
      expect(json.routes[1]).to.deep.include({ jobType: '/^android-api-1[56]-/', kind: 'regex', stickyBy: ['header:X-Push-Id'], fallback: 'buildbot' });
      expect(json.hash).to.equal(sha256(readText(file)));
    });

    it('exits 1 on an invalid file and 2 on bad usage', () => {
      const bad = write('bad.yaml', 'backends:\n  a: { url: http://127.0.0.1:1 }\n');
      const r = run(['routes', '--config', bad]);
      expect(r.code).to.equal(1);
      expect(r.stderr).to.contain(`${bad}:2:3: backends: no legacy backend`);
      expect(run(['routes', '--config', bad, '--admin', 'http://127.0.0.1:1']).code).to.equal(2);
      expect(run(['routes', '--admin', 'not a url']).code).to.equal(2);
      expect(run(['routes', 'extra']).code).to.equal(2);
    });

    it('--admin URL: the table a running proxy has in force (the same as /routes)', async () => {
      const legacy = await startUpstream('buildbot');
      const t = await startTestProxy(routesYaml({ buildbot: { url: legacy.url, legacy: true }, taskservice: { url: 'http://127.0.0.1:9' } }, FILE_ROUTES));
      try {
        const r = await runAsync(['routes', '--admin', t.adminUrl]);
        expect(r.code, r.stderr).to.equal(0);
        expect(r.stdout).to.contain(`${t.configFile}  hash ${sha256(readText(t.configFile)).slice(0, 12)}`);
        expect(r.stdout).to.match(/ {2}1 {2}\/\^android-api-1\[56\]-\/ {2}regex {2}taskservice 25%, buildbot 75%/);
        const json = JSON.parse((await runAsync(['routes', '--admin', t.adminUrl, '--json'])).stdout);
        expect(json).to.deep.equal((await request(t.adminUrl).get('/routes')).body);
      } finally {
        await t.close();
        await legacy.close();
      }
      const gone = await runAsync(['routes', '--admin', t.adminUrl]);
      expect(gone.code).to.equal(1);
      expect(gone.stderr).to.contain('cannot ask the running proxy');
    });
  });

  describe('plan', () => {
    const backends = 'backends:\n  buildbot: { url: http://127.0.0.1:8011, legacy: true }\n  taskservice: { url: http://127.0.0.1:8012 }\n';
    const withSplit = (split: string, more = '') =>
      `${backends}routes:\n  - jobType: linux64-*\n    backend: taskservice\n  - jobType: android-api-16-test\n    split: ${split}\n  - jobType: win32-debug\n    backend: buildbot\n${more}`;

    it('exit 0 when nothing changes routing, 3 when something does; --json', () => {
      const current = write('current.yaml', withSplit('{ taskservice: 25, buildbot: 75 }'));
      const same = write('same.yaml', `# reworded\n${withSplit('{ buildbot: 75, taskservice: 25 }')}`);
      const next = write('next.yaml', withSplit('{ taskservice: 50, buildbot: 50 }', '  - jobType: mac-*\n    backend: taskservice\n'));

      const none = run(['plan', current, same]);
      expect(none.code, none.stderr).to.equal(0);
      expect(none.stdout).to.contain('no job type changes backend or weight (of 2 considered)');
      expect(none.stdout).to.contain('result: no change (exit 0)');

      const changes = run(['plan', current, next, '--job-type', 'mac-opt']);
      expect(changes.code, changes.stderr).to.equal(3);
      expect(changes.stdout).to.match(/android-api-16-test\s+taskservice 25%, buildbot 75%\s+taskservice 50%, buildbot 50%\s+android-api-16-test -> \(same\)\s+25\.0%\s+n\/a/);
      expect(changes.stdout).to.match(/mac-opt\s+buildbot\s+taskservice\s+\(default\) -> mac-\*\s+100\.0%/);
      expect(changes.stdout).to.contain('  + routes[3] mac-*: taskservice');
      expect(changes.stdout).to.contain('traffic: none (two files, no running proxy)');
      expect(changes.stdout).to.contain('job types matched only by glob or regex rules (linux64-*, mac-*) cannot be enumerated');

      const json = JSON.parse(run(['plan', current, next, '--json']).stdout);
      expect(json).to.deep.include({ mode: 'files', changed: true, sample: null, movedShareOfTraffic: null, jobTypesConsidered: 2 });
      expect(json.changes.map((c: { jobType: string; moved: number }) => [c.jobType, c.moved])).to.deep.equal([['android-api-16-test', 0.25]]);
    });

    it("exit 1 with validate's file:line:column messages when either file is invalid (both reported); 2 on bad usage", () => {
      const good = write('good.yaml', withSplit('{ taskservice: 25, buildbot: 75 }'));
      const bad = write('bad.yaml', `${backends}routes:\n  - jobType: /[/\n    backend: buildbot\n`);
      const alsoBad = write('also-bad.yaml', `${backends}default: nowhere\n`);
      const validateMessage = run(['validate', bad]).stderr.trim();
      const r = run(['plan', good, bad]);
      expect(r.code).to.equal(1);
      expect(r.stderr.trim()).to.equal(validateMessage);
      expect(r.stderr).to.match(/bad\.yaml:5:14: routes\[0\]\.jobType: bad regular expression/);
      const both = run(['plan', alsoBad, bad]);
      expect(both.code).to.equal(1);
      expect(both.stderr).to.contain('also-bad.yaml:4:10: default: unknown backend "nowhere"');
      expect(both.stderr).to.contain('bad.yaml:5:14');
      expect(run(['plan', good]).code).to.equal(2);
      expect(run(['plan', good, good, good]).code).to.equal(2);
      expect(run(['plan', '--admin', 'http://127.0.0.1:1', good, good]).code).to.equal(2);
    });

    it("--admin URL: weighs the change by the running proxy's traffic (25/75 -> 50/50 on 40 of 100 requests moves 10%)", async () => {
      const legacy = await startUpstream('buildbot');
      const next = await startUpstream('taskservice');
      const live = `backends:\n  buildbot: { url: ${legacy.url}, legacy: true }\n  taskservice: { url: ${next.url} }\nroutes:\n  - jobType: linux64-*\n    backend: taskservice\n  - jobType: android-api-16-test\n    split: { taskservice: 25, buildbot: 75 }\n  - jobType: win32-debug\n    backend: buildbot\n`;
      let t: TestProxy | undefined;
      try {
        t = await startTestProxy(live);
        // 100 requests: 40 android-api-16-test, 30 linux64-opt, 20 win32-debug, 10 naming no job type.
        const send = async (n: number, p: string) => {
          for (let i = 0; i < n; i++) await request(t!.url).get(p).expect(200);
        };
        await send(40, '/api/v2/builders/android-api-16-test/builds');
        await send(30, '/api/v2/builders/linux64-opt/builds');
        await send(20, '/api/v2/builders/win32-debug');
        await send(10, '/api/v2/builds');
        const file = write('new.yaml', live.replace('split: { taskservice: 25, buildbot: 75 }', 'split: { taskservice: 50, buildbot: 50 }'));

        const r = await runAsync(['plan', '--admin', t.adminUrl, file]);
        expect(r.code, r.stderr).to.equal(3);
        expect(r.stdout).to.contain(`plan: ${t.adminUrl} (in force: ${t.configFile}) (${sha256(live).slice(0, 12)}) -> ${file}`);
        expect(r.stdout).to.match(/android-api-16-test\s+taskservice 25%, buildbot 75%\s+taskservice 50%, buildbot 50%\s+android-api-16-test -> \(same\)\s+25\.0%\s+40 \(moves 10\.0% of all\)/);
        expect(r.stdout).to.contain('traffic: 100 requests in the last hour; 10.0% of them (10 requests) would change backend');
        const json = JSON.parse((await runAsync(['plan', '--admin', t.adminUrl, file, '--json'])).stdout);
        expect(json).to.deep.include({ mode: 'admin', movedShareOfTraffic: 0.1, movedRequests: 10, sample: { window: '1h', requests: 100 }, changed: true });
        expect(json.changes).to.have.length(1);
        expect(json.changes[0]).to.deep.include({ jobType: 'android-api-16-test', moved: 0.25, requests: 40, shareOfAllRequests: 0.1 });

        // The file in force, planned against itself: nothing moves.
        const unchanged = await runAsync(['plan', '--admin', t.adminUrl, t.configFile]);
        expect(unchanged.code, unchanged.stdout).to.equal(0);
        // An invalid new file: exit 1 before asking anything.
        const invalid = await runAsync(['plan', '--admin', t.adminUrl, write('broken.yaml', 'backends: [')]);
        expect(invalid.code).to.equal(1);
        expect(invalid.stderr).to.match(/broken\.yaml:\d+:\d+: YAML syntax: /);
      } finally {
        await t?.close();
        await legacy.close();
        await next.close();
      }
    });
  });
});
