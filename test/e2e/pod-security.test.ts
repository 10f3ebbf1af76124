/**
 * The proxy as deploy/kubernetes runs it, without a cluster: the built CLI
 * (`serve`, the image's command) as uid 1000 with no capabilities and no new
 * privileges, in a mount namespace of its own whose root filesystem is
 * read-only (readOnlyRootFilesystem, with no writable volume), its store on a
 * real PostgreSQL (STRANGLER_STORE, from the Secret). It must start, turn
 * ready, route, answer from the store, and drain on SIGTERM with nothing to
 * write anywhere. Needs root to make the namespace (as CI runs).
 */
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startPostgres, type PostgresCluster } from '../support/postgres.js';
import { routesYaml, waitFor } from '../support/proxy.js';
import { freePort, startUpstream, type TestUpstream } from '../support/upstream.js';

const ROOT = new URL('../../', import.meta.url).pathname;
/** The Deployment's pod securityContext: runAsUser and runAsGroup (the image's "node" user). */
const POD_UID = 1000;

/** Runs `command` in a new mount namespace with `/` read-only, as POD_UID, without capabilities or new privileges. */
function spawnLikeThePod(command: string[], env: NodeJS.ProcessEnv, probeDir: string): ChildProcess {
  const script = [
    'mount --bind / / && mount -o remount,bind,ro / || exit 96',
    // The root must really refuse writes, or this test proves nothing.
    'if touch "$0/.write-probe" 2>/dev/null; then exit 97; fi',
    `exec setpriv --reuid=${POD_UID} --regid=${POD_UID} --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs "$@"`,
  ].join('\n');
  return spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, probeDir, ...command], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
}

describe('e2e: the proxy as the Kubernetes pod runs it (uid 1000, no capabilities, read-only root, store on PostgreSQL)', function () {
  this.timeout(60_000);
  let pg: PostgresCluster;
  let legacy: TestUpstream;
  let dir: string;

  before(async function () {
    if (process.getuid?.() !== 0) throw new Error('this test makes a mount namespace and drops to uid 1000: run it as root (CI does)');
    if (!existsSync(path.join(ROOT, 'dist/cli.js'))) throw new Error('dist/cli.js is missing: run `npm run build` first (npm test does)');
    const started = await startPostgres();
    if (started.cluster === undefined) throw new Error(started.reason);
    pg = started.cluster;
    legacy = await startUpstream('buildbot');
    dir = mkdtempSync(path.join(tmpdir(), 'strangler-pod-'));
    chmodSync(dir, 0o755); // kubelet's ConfigMap folder: readable by the pod's user
    writeFileSync(path.join(dir, 'routes.yaml'), routesYaml({ buildbot: { url: legacy.url, legacy: true } }), { mode: 0o644 });
  });
  after(async () => {
    await legacy?.close();
    await pg?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('starts, turns ready, routes, answers from the store and drains on SIGTERM, writing nothing', async () => {
    const [port, adminPort] = [await freePort(), await freePort()];
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      // The image's environment (Dockerfile), on loopback here.
      NODE_ENV: 'production',
      PORT: String(port),
      ADMIN_PORT: String(adminPort),
      HOST: '127.0.0.1',
      ADMIN_HOST: '127.0.0.1',
      STRANGLER_CONFIG: path.join(dir, 'routes.yaml'),
      STRANGLER_DATA_DIR: '/data',
      LOG_FORMAT: 'json',
      // The Secret's.
      STRANGLER_STORE: await pg.createDatabase(),
      TASKCLUSTER_CLIENT_ID: 'pod-test',
      TASKCLUSTER_ACCESS_TOKEN: 'pod-test-token',
      STRANGLER_ADMIN_TOKEN: 'pod-test-admin-token-0123456789',
    };
    const child = spawnLikeThePod([process.execPath, '--heap-growing-percent=50', 'dist/cli.js', 'serve'], env, dir);
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const admin = `http://127.0.0.1:${adminPort}`;
      await waitFor(
        async () => {
          if (child.exitCode !== null) throw new Error(`the proxy exited with ${child.exitCode} (96: no mount namespace, 97: the root was writable):\n${output}`);
          return (await fetch(`${admin}/readyz`).catch(() => undefined))?.status === 200 || undefined;
        },
        20_000,
        'the proxy to turn ready',
      );
      // unshare, sh and setpriv each exec'd the next: the pid is the proxy's.
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      expect(/^Uid:\s+(\d+)/m.exec(status)?.[1], 'the real uid').to.equal(String(POD_UID));
      expect(/^CapEff:\s+(\w+)/m.exec(status)?.[1], 'no effective capabilities').to.match(/^0+$/);
      expect(/^NoNewPrivs:\s+(\d)/m.exec(status)?.[1]).to.equal('1');
      const routed = await fetch(`http://127.0.0.1:${port}/api/v2/builders/linux64-opt/builds`);
      expect(routed.status).to.equal(200);
      expect(routed.headers.get('x-strangler-backend')).to.equal('buildbot');
      await routed.arrayBuffer();
      await waitFor(() => output.includes('store open for work on queues and build tracking') || undefined, 10_000, 'the store to open');
      expect(output).to.match(/"store":"postgres"/);
      const builds = await fetch(`${admin}/builds`);
      expect(builds.status, 'the build comparison, read from PostgreSQL').to.equal(200);
      await builds.arrayBuffer();

      child.kill('SIGTERM');
      expect(await exited, `exit code; output:\n${output}`).to.equal(0);
      expect(output).not.to.match(/EROFS|read-only file system|EACCES/i);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
