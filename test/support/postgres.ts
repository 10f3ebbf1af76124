/**
 * A private PostgreSQL cluster for one test run, from Debian's `postgresql`
 * package: initdb into a temp dir, listening on 127.0.0.1 on a free port with
 * trust auth on loopback only, stopped by its data directory (pg_ctl stop -D)
 * afterwards. As root (CI, this machine) it runs as the `postgres` user, since
 * the server refuses to run as root.
 *
 *   const pg = await startPostgres();      // undefined, with pg.reason, when it cannot
 *   const url = await pg.createDatabase(); // a fresh database per caller
 *   await pg.restart({ downMs: 2000 });     // an outage: the same port and data, every connection cut
 *   await pg.stop();
 */
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const POSTGRES_BIN_DIRS = ['/usr/lib/postgresql/17/bin', '/usr/lib/postgresql/16/bin', '/usr/lib/postgresql/15/bin'];

export interface PostgresCluster {
  port: number;
  /** A new, empty database; its URL. */
  createDatabase(): Promise<string>;
  /**
   * Stops the server (`fast`: every session is cut, as a crash or failover
   * does to clients) and, `downMs` later, starts it again on the same port
   * and data directory, resolving once it accepts connections. What a store
   * wrote before survives; its connections and advisory locks do not.
   */
  restart(options?: { downMs?: number }): Promise<void>;
  stop(): Promise<void>;
}

export type StartResult = { cluster: PostgresCluster; reason?: undefined } | { cluster?: undefined; reason: string };

function findBinDir(): string | undefined {
  return POSTGRES_BIN_DIRS.find((dir) => fs.existsSync(path.join(dir, 'initdb')) && fs.existsSync(path.join(dir, 'pg_ctl')));
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Starts a cluster, or says why it cannot (binaries missing and not installable). */
export async function startPostgres(): Promise<StartResult> {
  const bin = findBinDir();
  if (bin === undefined) {
    return { reason: `PostgreSQL binaries not found in ${POSTGRES_BIN_DIRS.join(', ')}: install them with "bash scripts/install-system-deps.sh postgresql" or "sudo apt-get install -y postgresql"` };
  }
  const asRoot = process.getuid?.() === 0;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strangler-pg-'));
  const dataDir = path.join(dir, 'data');
  const logFile = path.join(dir, 'server.log');
  // As root, everything the server touches belongs to the postgres user.
  if (asRoot) fs.chownSync(dir, uidOf('postgres'), gidOf('postgres'));
  const as = (cmd: string, args: string[]): [string, string[]] => (asRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args]);

  const [initCmd, initArgs] = as(path.join(bin, 'initdb'), ['-D', dataDir, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  // SECURITY: trust auth (initdb's pg_hba.conf: local socket and 127.0.0.1/::1 only) is safe because the server
  // listens on loopback and on a socket in our own temp dir, and holds only test data.
  await run(initCmd, initArgs);
  // Asynchronous, so that a test's clients keep running while the server stops and starts.
  const start = (port: number): Promise<boolean> => {
    const options = `-c listen_addresses=127.0.0.1 -p ${port} -k ${dir} -c fsync=on -c max_connections=100`;
    const [cmd, args] = as(path.join(bin, 'pg_ctl'), ['-D', dataDir, '-l', logFile, '-w', '-t', '30', '-o', options, 'start']);
    return run(cmd, args).then(
      () => true,
      () => false,
    );
  };
  const stopServer = async (): Promise<void> => {
    const [cmd, args] = as(path.join(bin, 'pg_ctl'), ['-D', dataDir, '-m', 'fast', '-w', 'stop']);
    await run(cmd, args).catch(() => undefined);
  };
  let port = 0;
  let started = false;
  for (let attempt = 0; attempt < 5 && !started; attempt++) {
    port = await freePort();
    started = await start(port);
  }
  if (!started) throw new Error(`postgres did not start; see ${logFile}`);

  let databases = 0;
  const cluster: PostgresCluster = {
    port,
    async createDatabase() {
      const name = `store_test_${process.pid}_${++databases}`;
      const [cmd, args] = as(path.join(bin, 'createdb'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', name]);
      await run(cmd, args);
      return `postgres://postgres@127.0.0.1:${port}/${name}`;
    },
    async restart({ downMs = 0 } = {}) {
      await stopServer();
      await new Promise((resolve) => setTimeout(resolve, downMs));
      // The port was ours a moment ago; another process taking it meanwhile is a failure to report, not to work around.
      if (!(await start(port))) throw new Error(`postgres did not start again on port ${port}; see ${logFile}`);
    },
    async stop() {
      await stopServer();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  return { cluster };
}

function uidOf(user: string): number {
  return Number(spawnSync('id', ['-u', user], { encoding: 'utf8' }).stdout.trim());
}

function gidOf(user: string): number {
  return Number(spawnSync('id', ['-g', user], { encoding: 'utf8' }).stdout.trim());
}
