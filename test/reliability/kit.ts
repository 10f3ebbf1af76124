/**
 * Shared pieces of the reliability suite. Sizes scale with
 * STRANGLER_RELIABILITY: "full" (npm run test:reliability) or the short
 * default that runs inside npm test.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const FULL = process.env.STRANGLER_RELIABILITY === 'full';
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Open file descriptors of this process (Linux). */
export function openFds(pid: number | 'self' = 'self'): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Resident memory of a process in MiB (Linux). */
export function rssMiB(pid: number | 'self' = 'self'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return kb / 1024;
}

/** This process's live JS heap in MiB (call global.gc() first for a steady reading). */
export function heapMiB(): number {
  return process.memoryUsage().heapUsed / (1024 * 1024);
}

export interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request; resolves with status 0 and the error's code when the exchange fails. */
export function send(agent: http.Agent, url: string, options: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<Response & { error?: string }> {
  return new Promise((resolve) => {
    const req = http.request(url, { method: options.method ?? 'GET', headers: options.headers, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', (e: NodeJS.ErrnoException) => resolve({ status: 0, headers: {}, body, error: e.code ?? e.message }));
    });
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ status: 0, headers: {}, body: '', error: e.code ?? e.message }));
    req.end(options.body);
  });
}

/** A stand-in backend in a child process (test/support/backend-process.ts), which can be killed with SIGKILL. */
export class BackendProcess {
  private child: ChildProcess | undefined;
  constructor(
    readonly port: number,
    readonly name: string,
    readonly forceLog: string,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const child = fork(path.join(ROOT, 'test/support/backend-process.ts'), [String(this.port), this.name, this.forceLog], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    });
    this.child = child;
    await new Promise<void>((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('exit', (code) => reject(new Error(`backend ${this.name} exited with ${code} before listening`)));
    });
  }

  /** SIGKILL: no goodbye, sockets die mid-flight. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    this.child = undefined;
  }

  /** The reasons of every force this backend received, in order. */
  forces(): string[] {
    try {
      return readFileSync(this.forceLog, 'utf8').split('\n').filter(Boolean);
    } catch {
      return [];
    }
  }
}
