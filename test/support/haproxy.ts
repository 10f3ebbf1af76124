/**
 * HAProxy (Debian's `haproxy` package) in front of proxy replicas on
 * loopback, as a fleet runs behind a load balancer: round robin over the
 * replicas, each health-checked on its admin `/readyz`, short timeouts.
 *
 * What it retries, and why: a request that never reached a replica (the
 * connection was refused or timed out) is sent to another one, whatever its
 * method; a GET whose replica died before answering is sent again too. A
 * POST that reached a replica is never resent: a force sent twice is two
 * builds. Its client gets HAProxy's own 502 instead.
 *
 * The process runs in the foreground (`-db`) in a process group of its own,
 * and is stopped by its pid; one still running when this process exits is
 * killed from an exit hook.
 *
 *   const lb = await startHaproxy({ servers: [{ name: 'r1', port, checkPort: adminPort }] });
 *   await lb.states();   // Map { 'r1' => 'UP' }
 *   await lb.stop();
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { onPath } from './on-path.js';
import { freePort } from './upstream.js';

const run = promisify(execFile);

export interface HaproxyServer {
  name: string;
  /** Where requests go. */
  port: number;
  /** Where `/readyz` is asked (the replica's admin port). */
  checkPort: number;
}

export interface HaproxyOptions {
  servers: HaproxyServer[];
  /** How often each replica's `/readyz` is asked; two failures in a row mark it down, two successes up. Default 500 ms. */
  checkIntervalMs?: number;
  /** How long a replica may take to answer a request before HAProxy gives up on it. Default 15 s. */
  serverTimeoutMs?: number;
}

export interface Haproxy {
  port: number;
  /** `http://127.0.0.1:PORT`. */
  url: string;
  pid: number;
  /** Each server's state as HAProxy sees it now (`UP`, `DOWN`, `UP 1/2`, ...), by name. */
  states(): Promise<Map<string, string>>;
  /** HAProxy's log so far: health check changes and every request that was not plain (errors, retries, redispatches). */
  output(): string;
  stop(): Promise<void>;
}

/** How long HAProxy keeps a client's idle connection open: clients should close theirs sooner. */
export const HTTP_KEEP_ALIVE_MS = 10_000;

const INSTALL_HINT = 'install it with `bash scripts/install-system-deps.sh haproxy` or `sudo apt-get install -y haproxy`';

/** The haproxy binary (Debian puts it in /usr/sbin, which a non-root PATH often lacks), or undefined. */
export function haproxyBinary(): string | undefined {
  const found = onPath('haproxy');
  if (found !== undefined) return found;
  try {
    accessSync('/usr/sbin/haproxy', fsConstants.X_OK);
    return '/usr/sbin/haproxy';
  } catch {
    return undefined;
  }
}

/** For a suite's before hook: fails it with the install command when HAProxy is missing. */
export function requireHaproxy(): string {
  const binary = haproxyBinary();
  if (binary === undefined) throw new Error(`HAProxy is not available: haproxy not found on PATH nor in /usr/sbin; ${INSTALL_HINT}`);
  return binary;
}

/** The configuration: see the header for what is retried and why. */
export function haproxyConfig(port: number, socket: string, options: HaproxyOptions): string {
  const inter = options.checkIntervalMs ?? 500;
  return `# Written by test/support/haproxy.ts.
global
  log stdout format raw local0 info
  stats socket ${socket} mode 600 level admin
  nbthread 1

defaults
  mode http
  log global
  option httplog
  # Plain requests are not logged: only errors, retries and redispatches, and health check changes.
  option dontlog-normal
  option log-health-checks
  timeout connect 500ms
  timeout client 30s
  # A client's idle connection is closed after this: a client must let its own go sooner, or a request it sends
  # on one just as it closes is lost (the race every keep-alive client has with its server).
  timeout http-keep-alive ${HTTP_KEEP_ALIVE_MS}ms
  timeout server ${options.serverTimeoutMs ?? 15_000}ms
  timeout check 1s
  # A request that could not be delivered goes to another replica.
  retries 3
  option redispatch 1
  retry-on conn-failure empty-response response-timeout

frontend fleet
  bind 127.0.0.1:${port}
  default_backend replicas

backend replicas
  balance roundrobin
  # A POST that reached a replica is never sent again (a force twice is two builds); one that never reached it still is.
  http-request disable-l7-retry if METH_POST
  option httpchk GET /readyz
  http-check expect status 200
  default-server check inter ${inter}ms fall 2 rise 2
${options.servers.map((s) => `  server ${s.name} 127.0.0.1:${s.port} port ${s.checkPort}`).join('\n')}
`;
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;

function killOnExit(child: ChildProcess): void {
  running.add(child);
  child.once('exit', () => running.delete(child));
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const c of running) if (c.pid !== undefined) process.kill(c.pid, 'SIGKILL');
  });
}

/** Starts HAProxy once its configuration checks out; resolves when it takes connections. */
export async function startHaproxy(options: HaproxyOptions): Promise<Haproxy> {
  const binary = requireHaproxy();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'strangler-haproxy-'));
  const socket = path.join(dir, 'admin.sock');
  const file = path.join(dir, 'haproxy.cfg');
  const port = await freePort();
  writeFileSync(file, haproxyConfig(port, socket, options));
  try {
    await run(binary, ['-c', '-q', '-f', file]);
  } catch (error) {
    const e = error as Error & { stderr?: string };
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`haproxy refused its configuration: ${e.stderr ?? e.message}`);
  }

  const child = spawn(binary, ['-db', '-f', file], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${binary}`);
  killOnExit(child);
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const states = async (): Promise<Map<string, string>> => {
    const csv = await statsCommand(socket, 'show stat');
    const found = new Map<string, string>();
    const lines = csv.split('\n');
    const header = lines[0]!.replace(/^# /, '').split(',');
    const [pxname, svname, status] = ['pxname', 'svname', 'status'].map((h) => header.indexOf(h));
    for (const line of lines.slice(1)) {
      const fields = line.split(',');
      if (fields[pxname!] === 'replicas' && fields[svname!] !== 'BACKEND' && fields[svname!] !== undefined) found.set(fields[svname!]!, fields[status!]!);
    }
    return found;
  };

  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`haproxy exited at start: ${output}`);
    }
    const ready = await states().then(
      () => true,
      () => false,
    );
    if (ready) break;
    if (Date.now() > deadline) throw new Error(`haproxy did not open its stats socket within 10 s: ${output}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }

  return {
    port,
    url: `http://127.0.0.1:${port}`,
    pid,
    states,
    output: () => output,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        process.kill(pid, 'SIGTERM');
        const timer = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 5_000).unref());
        if ((await Promise.race([exited, timer])) === 'timeout') process.kill(pid, 'SIGKILL');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** One command on HAProxy's stats socket; its whole answer. */
function statsCommand(socket: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const connection = net.createConnection(socket);
    let answer = '';
    connection.setEncoding('utf8');
    connection.on('connect', () => connection.end(`${command}\n`));
    connection.on('data', (d: string) => (answer += d));
    connection.on('end', () => resolve(answer));
    connection.on('error', reject);
  });
}
