/**
 * The `strangler-proxy` command in a child process, as users run it: one that
 * ends (its stdout, stderr and exit code) or one that keeps running (its
 * output so far, its exit, a signal to stop it). The built bin by default
 * (dist/cli.js: `npm run build` makes it); `bin` and `nodeArgs` run another.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CLI = path.join(ROOT, 'dist', 'cli.js');

/** The variables the command reads: where it finds its routes, ports, hosts and logging. */
const COMMAND_VARIABLES = /^(STRANGLER_.*|PORT|ADMIN_PORT|HOST|ADMIN_HOST|LOG_LEVEL|LOG_FORMAT)$/;

/**
 * This process's environment without the variables the command reads, so a
 * developer's shell cannot change what a test sees; `taskcluster: true` also
 * leaves out TASKCLUSTER_* (a developer's real queue credentials).
 */
export function commandEnv(options: { taskcluster?: boolean } = {}): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !COMMAND_VARIABLES.test(name) && !(options.taskcluster === true && name.startsWith('TASKCLUSTER_'))));
}

/** Fails the suite, saying how to build it, where the command is missing or does not run. */
export function requireBuiltCli(bin = CLI): void {
  if (spawnSync(process.execPath, [bin, '--help']).status !== 0) throw new Error(`${bin} is missing: run "npm run build" first (npm test and npm run test:reliability do)`);
}

export interface CliOptions {
  /** The command's whole environment (this process's by default; commandEnv() as a rule). */
  env?: NodeJS.ProcessEnv;
  /** Its working folder (this process's by default). */
  cwd?: string;
  /** The script node runs (dist/cli.js by default). */
  bin?: string;
  /** Node's own options before the script, e.g. `['--import', 'tsx']` to run src/cli.ts. */
  nodeArgs?: string[];
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function spawnCli(args: string[], options: CliOptions, timeoutMs?: number): ChildProcess {
  return spawn(process.execPath, [...(options.nodeArgs ?? []), options.bin ?? CLI, ...args], {
    ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
    ...(options.env !== undefined ? { env: options.env } : {}),
    ...(timeoutMs !== undefined ? { timeout: timeoutMs } : {}),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Runs a command to its end without blocking this process (the proxy it asks may run in this very one); it is killed after `timeoutMs`. */
export function runCli(args: string[], options: CliOptions & { timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawnCli(args, options, options.timeoutMs ?? 20_000);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A command that keeps running (serve, demo). */
export interface CliProcess {
  readonly child: ChildProcess;
  /** Its stdout and stderr so far, together. */
  output(): string;
  /** Its exit code, once it has exited and all of its output has arrived ('close'). */
  readonly exited: Promise<number | null>;
  /** Whether it has neither exited nor been ended by a signal. */
  running(): boolean;
  /** Sends `signal` if it still runs, then waits for its exit. */
  stop(signal: NodeJS.Signals): Promise<void>;
}

/** Starts a command that keeps running; `keepLast` holds only that many characters of its output (a long run's). */
export function startCli(args: string[], options: CliOptions & { keepLast?: number } = {}): CliProcess {
  const child = spawnCli(args, options);
  let output = '';
  const append = (d: Buffer) => {
    output += d.toString();
    if (options.keepLast !== undefined) output = output.slice(-options.keepLast);
  };
  child.stdout!.on('data', append);
  child.stderr!.on('data', append);
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const running = () => child.exitCode === null && child.signalCode === null;
  return {
    child,
    output: () => output,
    exited,
    running,
    stop: async (signal) => {
      if (running()) child.kill(signal);
      await exited;
    },
  };
}
