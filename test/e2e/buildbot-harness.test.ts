/**
 * The real-Buildbot harness itself: two real Buildbot 3.7 masters, each with a
 * real worker, as the proxy's end-to-end tests will use them (one the legacy
 * master, one standing in for a Buildbot-compatible new service).
 *
 * Needs the Debian packages buildbot and buildbot-worker. Without them the
 * suite fails with the install command, or is skipped when
 * STRANGLER_SKIP_BUILDBOT=1.
 */
import { expect } from 'chai';
import {
  requireBuildbot,
  startBuildbotMasters,
  type BuildbotMaster,
  type BuildbotMasters,
  type BuilderInfo,
} from '../support/buildbot.js';

const BUILDERS = ['linux64-opt', 'win32-debug', 'android-api-15-test'];

/** Whether anything answers TCP on the master's HTTP port. */
async function answers(m: BuildbotMaster): Promise<boolean> {
  try {
    const res = await fetch(`${m.apiUrl}/builders`, { signal: AbortSignal.timeout(2000) });
    await res.arrayBuffer();
    return res.ok;
  } catch {
    return false;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('e2e: real Buildbot harness', function () {
  let bb: BuildbotMasters | undefined;
  let legacy: BuildbotMaster;
  let newservice: BuildbotMaster;

  before(async function () {
    this.timeout(120_000);
    requireBuildbot(this);
    bb = await startBuildbotMasters([
      { name: 'legacy', builders: BUILDERS },
      { name: 'newservice', builders: BUILDERS },
    ]);
    legacy = bb.byName('legacy');
    newservice = bb.byName('newservice');
    const phases = bb.masters.map((m) => `${m.name}: ${JSON.stringify(m.timings)}`).join('; ');
    console.log(`      (two Buildbot masters + workers started in ${bb.startupMs} ms; ${phases})`);
  });

  after(async function () {
    this.timeout(60_000);
    if (!bb) return;
    const pids = bb.masters.flatMap((m) => m.pids());
    await bb.stopAll();
    // The harness must not leave any master or worker behind.
    expect(pids.filter(isAlive), 'processes still alive after stopAll').to.deep.equal([]);
  });

  it('serves both REST APIs on loopback with the configured builders', async function () {
    expect(legacy.url).to.match(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(legacy.httpPort).to.not.equal(newservice.httpPort);
    for (const m of [legacy, newservice]) {
      const builders: BuilderInfo[] = await m.builders();
      expect(builders.map((b) => b.name).sort()).to.deep.equal([...BUILDERS].sort());
      for (const b of builders) {
        expect(b.builderid).to.be.a('number');
        expect(b.masterids).to.have.length(1);
      }
      const workers = await m.workers();
      expect(workers).to.have.length(1);
      expect(workers[0]?.connected_to).to.have.length(1);
    }
  });

  it('runs a build forced directly on one master, and only there', async function () {
    this.timeout(60_000);
    const [bsid, brids] = await legacy.forceDirect(['linux64-opt']);
    expect(bsid).to.be.a('number');
    const linuxId = await legacy.builderId('linux64-opt');
    // The result maps builder id (as a string key) to build request id.
    expect(Object.keys(brids)).to.deep.equal([String(linuxId)]);

    const builds = await legacy.waitForBuilds(1, 30_000);
    expect(builds).to.have.length(1);
    expect(builds[0]).to.include({ builderid: linuxId, number: 1, complete: true, results: 0 });
    const requests = await legacy.buildrequests();
    expect(requests.map((r) => r.buildrequestid)).to.deep.equal(Object.values(brids));

    expect(await newservice.builds()).to.deep.equal([]);
    expect(await newservice.buildrequests()).to.deep.equal([]);
  });

  it('answers the raw JSON-RPC force the way the proxy will see it', async function () {
    this.timeout(60_000);
    const res = await fetch(`${newservice.apiUrl}/forceschedulers/force`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', method: 'force', id: 7, params: { builderNames: ['win32-debug'] } }),
    });
    expect(res.status).to.equal(200);
    const body = (await res.json()) as { id: number; jsonrpc: string; result: [number, Record<string, number>] };
    expect(body).to.include({ id: 7, jsonrpc: '2.0' });
    const winId = await newservice.builderId('win32-debug');
    expect(body.result[1]).to.have.all.keys(String(winId));
    const builds = await newservice.waitForBuilds(1, 30_000);
    expect(builds[0]).to.include({ builderid: winId, results: 0 });
    // Still exactly the one build on the other master.
    expect(await legacy.builds()).to.have.length(1);
  });

  it('stops and restarts a master on the same port, keeping its state', async function () {
    this.timeout(120_000);
    const port = legacy.httpPort;
    await legacy.stop();
    expect(legacy.running).to.equal(false);
    expect(legacy.pids()).to.deep.equal([]);
    expect(await answers(legacy)).to.equal(false);
    expect(await answers(newservice), 'the other master is unaffected').to.equal(true);

    const began = Date.now();
    await legacy.start();
    console.log(`      (master + worker restarted in ${Date.now() - began} ms)`);
    expect(legacy.httpPort).to.equal(port);
    expect(await answers(legacy)).to.equal(true);
    // sqlite state survives the restart.
    expect(await legacy.builds()).to.have.length(1);

    await legacy.forceDirect(['android-api-15-test']);
    const builds = await legacy.waitForBuilds(2, 30_000);
    expect(builds.every((b) => b.results === 0)).to.equal(true);
  });
});
