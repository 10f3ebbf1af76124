/**
 * `strangler-proxy demo` as a user meets it: the built bin in a child process,
 * then every `curl` line it prints, run as written (parsed, and sent with
 * fetch, not through a shell): a build forced on the stand-in Taskcluster
 * queue and one on the legacy look-alike, each polled through its
 * buildrequest to its end, its build found and its log read, all through the
 * one proxy address with Buildbot's API.
 *
 * STRANGLER_TEST_BIN runs another build of the command than dist/cli.js.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CLI, commandEnv, requireBuiltCli, startCli, type CliProcess } from '../support/cli-process.js';

const BIN = process.env.STRANGLER_TEST_BIN ?? CLI;

/** Without the variables the command reads (a developer's real Taskcluster credentials included). */
const ENV = commandEnv({ taskcluster: true });

interface Curl {
  line: string;
  method: string;
  url: string;
  headers: Record<string, string>;
  body?: string;
  /** `-i`: the line shows the answer's headers too. */
  include: boolean;
  /** What the line pipes the answer through, e.g. `grep -i '^x-strangler'`. */
  pipe?: string;
}

/** The words of a shell line that quotes with single quotes only (what the demo prints). */
function shellWords(text: string): string[] {
  const words: string[] = [];
  const re = /'([^']*)'|(\S+)/g;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) words.push(m[1] ?? m[2]!);
  return words;
}

function parseCurl(line: string): Curl {
  const [command, pipe] = line.trim().split(/ \| (?=(?:[^']*'[^']*')*[^']*$)/);
  const words = shellWords(command!);
  expect(words[0], line).to.equal('curl');
  const curl: Curl = { line, method: 'GET', url: '', headers: {}, include: false, ...(pipe ? { pipe } : {}) };
  for (let i = 1; i < words.length; i++) {
    const w = words[i]!;
    if (w === '-s') continue;
    if (w === '-si') curl.include = true;
    else if (w === '-H') {
      const [k, ...v] = words[++i]!.split(':');
      curl.headers[k!.trim().toLowerCase()] = v.join(':').trim();
    } else if (w === '-d') {
      curl.body = words[++i]!;
      curl.method = 'POST';
    } else if (/^https?:\/\//.test(w)) curl.url = w;
    else throw new Error(`a curl option this test does not know: ${w} in ${line}`);
  }
  expect(curl.url, line).to.not.equal('');
  return curl;
}

async function send(curl: Curl): Promise<{ status: number; headers: Headers; text: string }> {
  const res = await fetch(curl.url, { method: curl.method, headers: curl.headers, ...(curl.body !== undefined ? { body: curl.body } : {}) });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

async function sendJson<T>(curl: Curl): Promise<T> {
  const r = await send(curl);
  expect(r.status, `${curl.line}\n${r.text}`).to.equal(200);
  return JSON.parse(r.text) as T;
}

interface Buildrequest {
  buildrequestid: number;
  builderid: number;
  complete: boolean;
  results: number;
}
interface Build {
  buildid: number;
  buildrequestid: number;
  number: number;
  complete: boolean;
  results: number | null;
  state_string: string;
}

async function pollUntilComplete(curl: Curl, timeoutMs: number): Promise<Buildrequest> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { buildrequests } = await sendJson<{ buildrequests: Buildrequest[] }>(curl);
    expect(buildrequests, curl.line).to.have.length(1);
    if (buildrequests[0]!.complete) return buildrequests[0]!;
    if (Date.now() > deadline) throw new Error(`${curl.line}: not complete after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

describe('e2e: npm run demo (the queue demo)', function () {
  this.timeout(60_000);
  let demo: CliProcess | undefined;
  const output = () => demo?.output() ?? '';
  let cwd: string;

  before(async function () {
    requireBuiltCli(BIN);
    cwd = mkdtempSync(path.join(tmpdir(), 'strangler-demo-test-'));
    demo = startCli(['demo', '--port', '0', '--admin-port', '0', '--host', '127.0.0.1', '--log-level', 'warn'], { bin: BIN, cwd, env: ENV });
    const deadline = Date.now() + 20_000;
    while (!output().includes('Ctrl-C stops the demo')) {
      if (!demo.running() || Date.now() > deadline) throw new Error(`the demo did not start:\n${output()}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  });

  after(async () => {
    await demo?.stop('SIGKILL');
    rmSync(cwd, { recursive: true, force: true });
  });

  const curlLines = () => output().split('\n').filter((l) => /^\s+curl /.test(l)).map(parseCurl);
  /** The printed walk-throughs: a heading "<builder> runs on ..." and its four curl lines. */
  const walkthroughs = () => {
    const lines = output().split('\n');
    const out: Array<{ builder: string; where: string; force: Curl; poll: Curl; builds: Curl; log: Curl }> = [];
    lines.forEach((line, i) => {
      const m = /^ {2}(\S+) runs (on .*):$/.exec(line);
      if (!m) return;
      const [force, poll, builds, log] = lines.slice(i + 1, i + 5).map(parseCurl);
      out.push({ builder: m[1]!, where: m[2]!, force: force!, poll: poll!, builds: builds!, log: log! });
    });
    return out;
  };

  it('starts a stand-in queue, a legacy look-alike and the proxy on its own routes file, and never prints the queue credentials', () => {
    expect(output()).to.match(/^ {2}stand-in: +queue +http:\/\/127\.0\.0\.1:\d+ +\(a Taskcluster queue/m);
    expect(output()).to.match(/^ {2}stand-in: +buildbot +http:\/\/127\.0\.0\.1:\d+ +\(legacy/m);
    const routes = /^ {2}routes: +(\S+)/m.exec(output())?.[1];
    expect(routes, output()).to.be.a('string');
    expect(existsSync(routes!), routes).to.equal(true);
    // SECURITY: the made-up access token (44 base64url characters) appears nowhere.
    expect(output()).to.not.match(/[A-Za-z0-9_-]{44}/);
  });

  it('the builder lines: linux64-opt is answered by the queue side, win32-debug by the legacy master', async () => {
    const lines = curlLines().filter((c) => c.pipe !== undefined);
    expect(lines.map((c) => new URL(c.url).pathname)).to.deep.equal(['/api/v2/builders/linux64-opt/builds', '/api/v2/builders/win32-debug/builds']);
    for (const [curl, backend] of [[lines[0]!, 'queue'], [lines[1]!, 'buildbot']] as const) {
      expect(curl.include).to.equal(true);
      expect(curl.pipe).to.equal("grep -i '^x-strangler'");
      const r = await send(curl);
      expect(r.status, r.text).to.equal(200);
      expect(r.headers.get('x-strangler-backend'), curl.line).to.equal(backend);
      expect(JSON.parse(r.text)).to.have.property('builds');
    }
  });

  it('the explain line decides as the proxy does: the force of linux64-opt goes to the queue', () => {
    const line = output().split('\n').find((l) => l.includes('npx strangler-proxy explain'))!;
    const m = /explain --config (\S+) (POST) (\S+) --body-file <\(echo '([^']*)'\)$/.exec(line.trim());
    expect(m, line).to.not.equal(null);
    const bodyFile = path.join(cwd, 'force.json');
    writeFileSync(bodyFile, m![4]!);
    const r = spawnSync(process.execPath, [BIN, 'explain', '--config', m![1]!, m![2]!, m![3]!, '--body-file', bodyFile, '--json'], { cwd, env: ENV, encoding: 'utf8', timeout: 20_000 });
    expect(r.status, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout)).to.deep.include({ backend: 'queue', jobType: 'linux64-opt' });
  });

  it('each walk-through, run line by line: the force, its buildrequest polled to its end, its build, its log', async () => {
    const walks = walkthroughs();
    expect(walks.map((w) => [w.builder, w.where])).to.deep.equal([
      ['linux64-opt', 'on the Taskcluster queue (backend queue)'],
      ['win32-debug', 'on the legacy master (buildbot)'],
    ]);
    // Both sides at once, as a client with builds on both would.
    await Promise.all(walks.map(async (w) => {
      const backend = w.builder === 'linux64-opt' ? 'queue' : 'buildbot';
      const forced = await send(w.force);
      expect(forced.status, forced.text).to.equal(200);
      expect(forced.headers.get('x-strangler-backend')).to.equal(backend);
      const { result } = JSON.parse(forced.text) as { result: [number, Record<string, number>] };
      const brids = Object.values(result[1]);
      // The printed ids are the ones this first force got.
      expect(brids, w.force.line).to.deep.equal([Number(/buildrequests\/(\d+)$/.exec(w.poll.url)![1])]);

      const br = await pollUntilComplete(w.poll, 20_000);
      expect(br.buildrequestid).to.equal(brids[0]);
      expect(br.results, `${w.builder}: the worker's seed makes the first task succeed`).to.equal(0);

      const { builds } = await sendJson<{ builds: Build[] }>(w.builds);
      expect(builds, w.builds.line).to.have.length(1);
      expect(builds[0]).to.include({ buildrequestid: brids[0], complete: true, results: 0, state_string: 'build successful' });
      expect(w.log.url).to.contain(`/api/v2/builds/${builds[0]!.buildid}/steps/0/logs/stdio/raw`);

      const log = await send(w.log);
      expect(log.status, log.text).to.equal(200);
      expect(log.headers.get('content-type')).to.match(/^text\/plain/);
      expect(log.text).to.contain(backend === 'queue' ? 'make all BUILDER=linux64-opt' : 'make all (win32-debug');
      expect(log.text).to.contain(backend === 'queue' ? 'exit code 0' : 'program finished with exit code 0');
    }));
  });

  it('the queue fails some tasks on purpose: the next force of linux64-opt ends in FAILURE, read the same way', async () => {
    const w = walkthroughs().find((x) => x.builder === 'linux64-opt')!;
    const { result } = await sendJson<{ result: [number, Record<string, number>] }>(w.force);
    const brid = Object.values(result[1])[0]!;
    expect(brid).to.be.greaterThan(Number(/buildrequests\/(\d+)$/.exec(w.poll.url)![1]));
    const br = await pollUntilComplete(parseCurl(w.poll.line.replace(/buildrequests\/\d+/, `buildrequests/${brid}`)), 20_000);
    expect(br.results).to.equal(2);
    const { builds } = await sendJson<{ builds: Build[] }>(parseCurl(w.builds.line.replace(/buildrequests\/\d+/, `buildrequests/${brid}`)));
    expect(builds[0]).to.include({ buildrequestid: brid, complete: true, results: 2, state_string: 'failed' });
    const log = await send(parseCurl(w.log.line.replace(/builds\/\d+/, `builds/${builds[0]!.buildid}`)));
    expect(log.status).to.equal(200);
    expect(log.text).to.contain('exit code 1');
  });

  it('stops on SIGTERM with exit 0 and removes its temporary folder (routes file and store)', async () => {
    const routes = /^ {2}routes: +(\S+)/m.exec(output())![1]!;
    demo!.child.kill('SIGTERM');
    expect(await demo!.exited, output()).to.equal(0);
    expect(existsSync(path.dirname(routes)), path.dirname(routes)).to.equal(false);
  });
});
