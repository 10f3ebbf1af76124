/**
 * Child processes of the bench: started pinned to a CPU (taskset), tracked by
 * pid, stopped by pid (SIGTERM, then SIGKILL). Nothing is ever killed by name.
 * Also: free ports, readiness probes, CPU time and RSS from /proc.
 */
import { spawn, spawnSync, type ChildProcess, type StdioOptions } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';

export const NCPU = os.cpus().length;
export const HAVE_TASKSET = spawnSync('taskset', ['-c', '0', 'true']).status === 0;
/** Servers under test on CPU 0; the upstreams, the load generator and the bench itself on CPU 1. */
export const PIN = HAVE_TASKSET && NCPU >= 2;
export const SERVER_CPU = '0';
export const LOAD_CPU = '1';
export const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim()) || 100;

export interface Proc {
  name: string;
  child: ChildProcess;
  pid: number;
  /** Resolves with the exit code (or signal name) once the process is gone. */
  exited: Promise<number | string>;
}

const live = new Map<number, Proc>();
/** Extra pids to kill on an emergency exit (nginx workers, which are not our children). */
const extraPids = new Set<number>();

export function spawnPinned(name: string, cpu: string | null, command: string, args: string[], options: { env?: NodeJS.ProcessEnv; stdio?: StdioOptions; cwd?: string } = {}): Proc {
  const pinned = PIN && cpu !== null;
  // taskset exec()s the command, so the child's pid is the command's own.
  const child = spawn(pinned ? 'taskset' : command, pinned ? ['-c', cpu, command, ...args] : args, {
    env: { ...process.env, ...(options.env ?? {}) },
    stdio: options.stdio ?? ['ignore', 'ignore', 'pipe'],
    ...(options.cwd ? { cwd: options.cwd } : {}),
  });
  if (child.pid === undefined) throw new Error(`could not start ${name} (${command})`);
  const pid = child.pid;
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => {
      live.delete(pid);
      resolve(code ?? signal ?? 'unknown');
    });
    child.once('error', (error) => {
      live.delete(pid);
      resolve(String(error));
    });
  });
  const proc: Proc = { name, child, pid, exited };
  live.set(pid, proc);
  return proc;
}

export function trackExtraPid(pid: number): void {
  extraPids.add(pid);
}

export function isAlive(proc: Proc): boolean {
  return live.has(proc.pid);
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
export async function stopProc(proc: Proc | undefined, graceMs = 5000, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!proc || !live.has(proc.pid)) return;
  try {
    process.kill(proc.pid, signal);
  } catch {
    return;
  }
  const timer = setTimeout(() => {
    try {
      process.kill(proc.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }, graceMs);
  await proc.exited;
  clearTimeout(timer);
}

/** Emergency stop of everything we started (on errors and signals). */
export function killAllSync(): void {
  for (const pid of [...live.keys(), ...extraPids]) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  live.clear();
  extraPids.clear();
}

export function livePids(): number[] {
  return [...live.keys()];
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

export function httpGet(url: string, timeoutMs = 2000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/** Polls `url` until it answers `status`; throws when the process dies or time runs out. */
export async function waitHttp(url: string, proc: Proc | undefined, timeoutMs = 30_000, status = 200): Promise<void> {
  const until = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < until) {
    if (proc && !live.has(proc.pid)) throw new Error(`${proc.name} exited before answering ${url}`);
    try {
      const res = await httpGet(url, 1000);
      if (res.status === status) return;
      last = `status ${res.status}`;
    } catch (error) {
      last = (error as Error).message;
    }
    await sleep(100);
  }
  throw new Error(`${proc?.name ?? url}: no ${status} from ${url} within ${timeoutMs} ms (${last})`);
}

/** utime + stime of one process, in clock ticks (NaN when it is gone). */
export function cpuTicks(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return NaN;
  }
}

/** stime alone: the part of `cpuTicks` spent in the kernel (NaN when it is gone). */
export function systemTicks(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[12]);
  } catch {
    return NaN;
  }
}

/** This process's own CPU plus that of its reaped children (wrk runs that have ended), in ticks. */
export function selfAndReapedTicks(): number {
  const stat = fs.readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
}

/** CPU busy ticks of the whole machine. */
export function busyTicks(): number {
  const l = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  return l[0]! + l[1]! + l[2]! + l[5]! + l[6]! + l[7]!;
}

/** Everything we started, plus the bench itself, in ticks. */
export function ourTicks(): number {
  let t = selfAndReapedTicks();
  for (const pid of [...live.keys(), ...extraPids]) {
    const x = cpuTicks(pid);
    if (Number.isFinite(x)) t += x;
  }
  return t;
}

/** A field of /proc/<pid>/status in bytes (VmRSS, VmHWM); NaN when unreadable. */
export function procStatusBytes(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Pids whose parent is `ppid` (nginx's workers). */
export function childPids(ppid: number): number[] {
  const out: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === ppid) out.push(Number(entry));
    } catch {
      /* raced with an exit */
    }
  }
  return out;
}

export function pinSelf(cpu: string): boolean {
  if (!PIN) return false;
  return spawnSync('taskset', ['-a', '-cp', cpu, String(process.pid)], { stdio: 'ignore' }).status === 0;
}

export const median = (xs: readonly number[]): number => {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
};
