/**
 * Real Buildbot 3.7 masters, each with one real worker, for end-to-end tests.
 *
 * Every master lives in its own temp dir, listens only on 127.0.0.1 (HTTP for
 * the REST API, PB for its worker) on ports picked free at start, keeps its
 * state in sqlite, and has a ForceScheduler named "force" over all its
 * builders, whose builds run a trivial shell command on the worker.
 *
 * Processes: the master and the worker each run in the foreground
 * (`buildbot start --nodaemon`, which runs twistd in its own process: the pid we spawn
 * IS the master, and no twistd.pid is written) in a process group of their own
 * (`detached: true`), so stopping means signalling that group: SIGTERM, then
 * SIGKILL after a grace period. Nothing is ever stopped by name. Groups still
 * alive when the Node process exits (process.exit, or SIGINT/SIGTERM/SIGHUP)
 * are killed from exit hooks and their dirs removed, so an interrupted test run
 * leaves no masters behind (only a SIGKILL of Node itself can).
 *
 * Requires the Debian packages `buildbot` and `buildbot-worker`
 * (`bash scripts/install-system-deps.sh buildbot buildbot-worker`).
 * See docs in /work/shared/reference/real-buildbot-for-tests.md.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { onPath } from './on-path.js';

const execFileP = promisify(execFile);

// ---------------------------------------------------------------------------
// Public types

/** One element of `GET /api/v2/builders` (Buildbot 3.7). */
export interface BuilderInfo {
  builderid: number;
  name: string;
  description: string | null;
  masterids: number[];
  tags: string[];
}

/** One element of `GET /api/v2/builds`. `results` is null until complete. */
export interface BuildInfo {
  buildid: number;
  builderid: number;
  buildrequestid: number;
  number: number;
  masterid: number;
  workerid: number;
  started_at: number;
  complete: boolean;
  complete_at: number | null;
  results: number | null;
  state_string: string;
  properties: Record<string, unknown>;
}

/** One element of `GET /api/v2/buildrequests`. `results` is -1 until complete. */
export interface BuildRequestInfo {
  buildrequestid: number;
  builderid: number;
  buildsetid: number;
  claimed: boolean;
  claimed_at: number | null;
  claimed_by_masterid: number | null;
  complete: boolean;
  complete_at: number | null;
  priority: number;
  results: number;
  submitted_at: number;
  waited_for: boolean;
  properties: Record<string, unknown> | null;
}

/** One element of `GET /api/v2/workers`. */
export interface WorkerInfo {
  workerid: number;
  name: string;
  connected_to: Array<{ masterid: number }>;
  configured_on: Array<{ masterid: number; builderid: number }>;
  paused: boolean;
  graceful: boolean;
  workerinfo: Record<string, unknown>;
}

/**
 * The `result` of a successful force: `[buildsetid, {"<builderid>": buildrequestid}]`.
 * The object's keys are builder ids as strings.
 */
export type ForceResult = [number, Record<string, number>];

export interface BuildbotMasterSpec {
  /** Label for messages, the master's title, and the temp dir name. */
  name: string;
  /** Builder names, e.g. ['linux64-opt', 'win32-debug']. */
  builders: string[];
  /**
   * How long each build's single step runs, in seconds. 0 (the default) runs
   * `true`, so a build completes within about a second of being forced; a
   * larger value (`sleep N`) keeps builds running for tests of stop/cancel.
   */
  buildSeconds?: number;
  /**
   * How a builder's builds end, by builder name (default `pass`): `fail`
   * exits 1 after the step's time (FAILURE), `exception` raises in a Python
   * step after it (EXCEPTION).
   */
  outcomes?: Record<string, 'pass' | 'fail' | 'exception'>;
  /**
   * Builders that a change posted to the master's `base` change hook starts
   * (a SingleBranchScheduler named "on-change"): builds the master starts on
   * its own, not through any force. See {@link BuildbotMaster.postChange}.
   */
  changeBuilders?: string[];
}

export interface StartBuildbotOptions {
  /** Per master: until the REST API answers and the worker is connected. Default 60 s. */
  startTimeoutMs?: number;
  /** Grace period after SIGTERM before SIGKILL. Default 10 s. */
  stopTimeoutMs?: number;
  /** Parent of the temp dirs. Default os.tmpdir(). */
  tmpRoot?: string;
  /**
   * Keep the temp dirs (and their twistd.log files) after stopAll(), for
   * debugging. Default: env STRANGLER_KEEP_BUILDBOT_TMP=1.
   */
  keepDirs?: boolean;
}

export interface BuildbotMaster {
  readonly name: string;
  /** `http://127.0.0.1:PORT`, no trailing slash. */
  readonly url: string;
  /** `http://127.0.0.1:PORT/api/v2`, no trailing slash. */
  readonly apiUrl: string;
  readonly httpPort: number;
  readonly pbPort: number;
  /** The temp dir holding `master/` and `worker/`. */
  readonly dir: string;
  readonly builderNames: readonly string[];
  builders(): Promise<BuilderInfo[]>;
  /** Builder id by name, from the master's own `/api/v2/builders`. */
  builderId(name: string): Promise<number>;
  builds(): Promise<BuildInfo[]>;
  buildrequests(): Promise<BuildRequestInfo[]>;
  workers(): Promise<WorkerInfo[]>;
  /** Any REST read, path relative to apiUrl (e.g. '/builders/linux64-opt'). */
  getJson<T = unknown>(apiPath: string): Promise<T>;
  /**
   * Forces builds on this master, bypassing any proxy: JSON-RPC `force` to
   * `POST /api/v2/forceschedulers/force`. Throws on a JSON-RPC error.
   */
  forceDirect(builderNames: string[]): Promise<ForceResult>;
  /**
   * Waits until the master has at least `count` builds, all complete (unless
   * `complete: false`), and returns them. Throws with the builds seen and the
   * log tail on timeout.
   */
  waitForBuilds(count: number, timeoutMs: number, opts?: { complete?: boolean }): Promise<BuildInfo[]>;
  /** Posts a change to the `base` change hook: the "on-change" scheduler starts a build of each of `changeBuilders`. */
  postChange(revision: string): Promise<void>;
  /** Stops master and worker (SIGTERM to their process groups, then SIGKILL). Keeps the dir. */
  stop(): Promise<void>;
  /** Starts again after stop(), same dir, same ports, same sqlite state. */
  start(): Promise<void>;
  readonly running: boolean;
  /** Pids of the master and worker processes currently held (for leak checks). */
  pids(): number[];
  /** The last `lines` lines of the master's and the worker's twistd.log. */
  logTail(lines?: number): string;
  /** How long the phases of the last create/start took, in ms (for tuning the suite). */
  readonly timings: StartupTimings;
}

export interface StartupTimings {
  /** create-master + create-worker + config. */
  createMs?: number;
  /** Spawn until `GET /api/v2/builders` answers. */
  apiUpMs?: number;
  /** From there until the worker shows as connected. */
  workerConnectMs?: number;
}

export interface BuildbotMasters {
  masters: BuildbotMaster[];
  byName(name: string): BuildbotMaster;
  /** Wall time of the whole start, all masters and workers, in ms. */
  startupMs: number;
  /** Stops every master and worker and removes the temp dirs (unless keepDirs). */
  stopAll(): Promise<void>;
}

// ---------------------------------------------------------------------------
// Availability

const INSTALL_HINT =
  'install them with `apt-get install -y buildbot buildbot-worker` ' +
  'or `bash scripts/install-system-deps.sh buildbot buildbot-worker`';

/**
 * For a suite's before hook: skips it (with a warning) when Buildbot is missing and
 * STRANGLER_SKIP_BUILDBOT=1, fails it with the install command when missing otherwise.
 */
export function requireBuildbot(context: Mocha.Context): void {
  const available = buildbotAvailable();
  if (available.ok) return;
  if (process.env['STRANGLER_SKIP_BUILDBOT'] === '1') {
    console.warn(`WARNING: skipping real-Buildbot tests (STRANGLER_SKIP_BUILDBOT=1): ${available.message}`);
    context.skip();
  }
  throw new Error(available.message);
}

/** Whether the `buildbot` and `buildbot-worker` commands exist, and if not, how to get them. */
export function buildbotAvailable(): { ok: boolean; message: string } {
  const missing = ['buildbot', 'buildbot-worker'].filter((c) => onPath(c) === undefined);
  if (missing.length === 0) return { ok: true, message: 'buildbot and buildbot-worker found on PATH' };
  return {
    ok: false,
    message: `real Buildbot is not available: ${missing.join(' and ')} not found on PATH; ${INSTALL_HINT}`,
  };
}

// ---------------------------------------------------------------------------
// Process bookkeeping: every process group we started and have not yet seen exit.

const liveGroups = new Set<number>();
/** Temp dirs to remove if the process ends before stopAll() (those not kept). */
const ownedDirs = new Set<string>();
let exitHooksInstalled = false;

/**
 * Synchronous, for 'exit' and signal handlers: SIGKILL what we started, then
 * remove our dirs. Not SIGTERM: there is no waiting for a graceful shutdown
 * here, and a master whose dir is removed while it shuts down hangs (seen: its
 * sqlite db is gone), while a killed one is gone at once.
 */
function emergencyCleanup(): void {
  for (const pgid of liveGroups) {
    const offspring = descendants(pgid);
    signalGroup(pgid, 'SIGKILL');
    killIfSame(offspring);
  }
  liveGroups.clear();
  for (const dir of ownedDirs) rmSync(dir, { recursive: true, force: true });
  ownedDirs.clear();
}

/**
 * The children run in process groups of their own, so neither a Ctrl-C at the
 * terminal nor the end of the Node process reaches them: without these hooks
 * an interrupted or crashed test run would leave masters running.
 */
function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  // mocha's --exit ends with process.exit(), which runs this.
  process.on('exit', emergencyCleanup);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = () => {
      emergencyCleanup();
      process.removeListener(signal, onSignal);
      // Our listener suppressed Node's default action (exit). With nobody
      // else listening, raise the signal again to get it; otherwise the other
      // listeners, already called for this signal, decide.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // ESRCH: the group is already gone.
  }
}

interface Proc {
  child: ChildProcess;
  pid: number;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  hasExited: () => boolean;
}

/**
 * Spawns `command` in its own process group, stdout/stderr to `consoleLog`
 * (a file rather than a pipe: twistd logs to twistd.log anyway, and a pipe
 * nobody drains could block the child).
 */
function spawnGroup(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, consoleLog: string): Proc {
  const fd = openSync(consoleLog, 'a');
  let child: ChildProcess;
  try {
    child = spawn(command, args, { cwd, env, detached: true, stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd); // the child holds its own copy
  }
  const pid = child.pid;
  if (pid === undefined) {
    // spawn failed (e.g. ENOENT); the error event still comes, and must be handled.
    child.once('error', () => undefined);
    throw new Error(`could not spawn ${command} ${args.join(' ')}`);
  }
  liveGroups.add(pid);
  installExitHooks();
  let done = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    const finish = (code: number | null, signal: NodeJS.Signals | null) => {
      done = true;
      liveGroups.delete(pid);
      resolve({ code, signal });
    };
    child.once('exit', finish);
    child.once('error', () => finish(null, null));
  });
  // Let a script that forgot stop() still end; the 'exit' hook then stops the group.
  child.unref();
  return { child, pid, exited, hasExited: () => done };
}

/** A process as seen in /proc: its pid and start time (to tell it from a later process reusing the pid). */
interface ProcId {
  pid: number;
  start: string;
}

/** Fields of /proc/PID/stat after the command name: [state, ppid, pgrp, ...]; index 19 is starttime. */
function procStat(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name is in parentheses and may hold spaces; fields follow the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/**
 * Every live descendant of `root` (Linux /proc; empty elsewhere). The worker
 * runs each build step in a process group of its own, so signalling the
 * worker's group does not reach a running step: these are found and ended by pid.
 */
function descendants(root: number): ProcId[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return [];
  }
  const children = new Map<number, ProcId[]>();
  for (const entry of entries) {
    const pid = Number(entry);
    const fields = procStat(pid);
    const ppid = Number(fields?.[1]);
    const start = fields?.[19];
    if (fields === undefined || start === undefined || !Number.isFinite(ppid)) continue;
    const list = children.get(ppid) ?? [];
    list.push({ pid, start });
    children.set(ppid, list);
  }
  const found: ProcId[] = [];
  const queue = [root];
  for (let pid = queue.shift(); pid !== undefined; pid = queue.shift()) {
    for (const child of children.get(pid) ?? []) {
      found.push(child);
      queue.push(child.pid);
    }
  }
  return found;
}

async function stopGroup(proc: Proc, graceMs: number): Promise<void> {
  if (proc.hasExited()) return;
  const offspring = descendants(proc.pid);
  signalGroup(proc.pid, 'SIGTERM');
  const timer = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), graceMs).unref());
  if ((await Promise.race([proc.exited, timer])) === 'timeout') {
    signalGroup(proc.pid, 'SIGKILL');
    await proc.exited;
  }
  // What it started and left behind (a running build step).
  killIfSame(offspring);
}

/** SIGKILL each process that is still the one we saw (same pid and start time). */
function killIfSame(procs: ProcId[]): void {
  for (const p of procs) {
    if (procStat(p.pid)?.[19] !== p.start) continue;
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

// ---------------------------------------------------------------------------
// Helpers

/**
 * `n` distinct free loopback ports: bind port 0 n times, holding every socket
 * until all are bound so the kernel cannot hand out the same port twice, then
 * close them. Another process may still take one before Buildbot binds it;
 * startup retries with new ports when that happens.
 */
async function freePorts(n: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const server = net.createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve());
      });
    }
    return servers.map((s) => {
      const address = s.address();
      if (address === null || typeof address === 'string') throw new Error('unexpected server address');
      return address.port;
    });
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

function tailFile(file: string, lines: number): string {
  try {
    const all = readFileSync(file, 'utf8').split('\n');
    return all.slice(-lines - 1).join('\n').trimEnd();
  } catch {
    return '(no log)';
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A Python string literal for `s` (a JSON string is one, \u escapes included). */
const py = (s: string) => JSON.stringify(s);

/**
 * The environment for master and worker: Debian's /usr/bin/python3 runs them
 * (their shebang), so anything from a pyenv or virtualenv in our environment
 * must not leak in. PYTHONPATH carries only the placeholder UI plugin.
 */
function buildbotEnv(pythonPath: string | undefined): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of ['PYTHONHOME', 'PYTHONPATH', 'PYTHONSTARTUP', 'VIRTUAL_ENV', 'PYTHONUSERBASE']) delete env[key];
  if (pythonPath) env['PYTHONPATH'] = pythonPath;
  env['PYTHONDONTWRITEBYTECODE'] = '1';
  env['PYTHONUNBUFFERED'] = '1';
  return env;
}

/**
 * The placeholder `buildbot_www` plugin: Debian's buildbot lacks the web UI
 * package, and without an entry point `base` in group `buildbot.www` the master
 * will not start its web server, and so serves no REST API.
 */
async function writePlaceholderWww(pylib: string): Promise<void> {
  const pkg = path.join(pylib, 'buildbot_www');
  const dist = path.join(pylib, 'buildbot_www-0.0.0.dist-info');
  await mkdir(path.join(pkg, 'static'), { recursive: true });
  await mkdir(dist, { recursive: true });
  await Promise.all([
    writeFile(
      path.join(pkg, '__init__.py'),
      'from buildbot.www.plugin import Application\nep = Application(__name__, "placeholder UI")\n',
    ),
    writeFile(path.join(pkg, 'VERSION'), '0.0.0\n'),
    writeFile(path.join(pkg, 'static', 'index.html'), '<!doctype html><title>placeholder</title>\n'),
    writeFile(path.join(dist, 'METADATA'), 'Metadata-Version: 2.1\nName: buildbot-www\nVersion: 0.0.0\n'),
    writeFile(path.join(dist, 'entry_points.txt'), '[buildbot.www]\nbase = buildbot_www:ep\n'),
  ]);
}

const WORKER_NAME = 'w1';
const WORKER_PASSWORD = 'pass';

function masterCfg(spec: BuildbotMasterSpec, httpPort: number, pbPort: number): string {
  const seconds = spec.buildSeconds ?? 0;
  const outcomes = spec.outcomes ?? {};
  const changeBuilders = spec.changeBuilders ?? [];
  return `# Generated by test/support/buildbot.ts for end-to-end tests.
from buildbot.plugins import schedulers, steps, util, worker
from buildbot.process import buildstep

c = BuildmasterConfig = {}
NAMES = [${spec.builders.map(py).join(', ')}]
SECONDS = ${py(String(seconds))}

c['title'] = ${py(spec.name)}
c['buildbotURL'] = ${py(`http://127.0.0.1:${httpPort}/`)}
# Required: otherwise the master sends usage data to buildbot.net, and nothing
# here may reach outside hosts.
c['buildbotNetUsageData'] = None

c['workers'] = [worker.Worker(${py(WORKER_NAME)}, ${py(WORKER_PASSWORD)})]
c['protocols'] = {'pb': {'port': ${py(`tcp:${pbPort}:interface=127.0.0.1`)}}}


class Boom(buildstep.BuildStep):
    """A step that raises: its build ends with EXCEPTION, as when the master itself breaks."""
    name = "boom"

    def run(self):
        raise RuntimeError("raised on purpose by the test master")


RUN = ["sleep", SECONDS] if SECONDS != "0" else ["true"]
FACTORIES = {
    'pass': util.BuildFactory([steps.ShellCommand(name="run", command=RUN)]),
    'fail': util.BuildFactory([steps.ShellCommand(name="run", command=["sh", "-c", "sleep " + SECONDS + "; exit 1"])]),
    'exception': util.BuildFactory([steps.ShellCommand(name="run", command=RUN), Boom()]),
}
OUTCOMES = {${Object.entries(outcomes).map(([name, outcome]) => `${py(name)}: ${py(outcome)}`).join(', ')}}
c['builders'] = [util.BuilderConfig(name=n, workernames=[${py(WORKER_NAME)}], factory=FACTORIES[OUTCOMES.get(n, 'pass')]) for n in NAMES]
c['schedulers'] = [schedulers.ForceScheduler(name="force", builderNames=NAMES)]
CHANGE_BUILDERS = [${changeBuilders.map(py).join(', ')}]
if CHANGE_BUILDERS:
    c['schedulers'].append(schedulers.AnyBranchScheduler(name="on-change", treeStableTimer=None, builderNames=CHANGE_BUILDERS))

# change_hook 'base' so tests can also post changes (they start builds only of CHANGE_BUILDERS).
c['www'] = dict(port=${py(`tcp:${httpPort}:interface=127.0.0.1`)}, plugins={},
                change_hook_dialects={'base': True})
c['db'] = {'db_url': "sqlite:///state.sqlite"}
`;
}

class StartupError extends Error {
  constructor(
    message: string,
    readonly portInUse: boolean,
  ) {
    super(message);
  }
}

function looksLikePortInUse(log: string): boolean {
  return /CannotListenError|Address already in use/.test(log);
}

// ---------------------------------------------------------------------------
// One master + worker

class RealBuildbotMaster implements BuildbotMaster {
  readonly name: string;
  readonly dir: string;
  readonly builderNames: readonly string[];
  httpPort = 0;
  pbPort = 0;
  readonly timings: StartupTimings = {};
  private master: Proc | undefined;
  private worker: Proc | undefined;
  private readonly masterDir: string;
  private readonly workerDir: string;
  private readonly pylib: string;

  constructor(
    private readonly spec: BuildbotMasterSpec,
    dir: string,
    private readonly startTimeoutMs: number,
    private readonly stopTimeoutMs: number,
  ) {
    this.name = spec.name;
    this.dir = dir;
    this.builderNames = [...spec.builders];
    this.masterDir = path.join(dir, 'master');
    this.workerDir = path.join(dir, 'worker');
    this.pylib = path.join(dir, 'pylib');
  }

  get url(): string {
    return `http://127.0.0.1:${this.httpPort}`;
  }

  get apiUrl(): string {
    return `${this.url}/api/v2`;
  }

  get running(): boolean {
    return this.master !== undefined && !this.master.hasExited();
  }

  pids(): number[] {
    return [this.master, this.worker].filter((p): p is Proc => p !== undefined && !p.hasExited()).map((p) => p.pid);
  }

  logTail(lines = 40): string {
    return [
      `--- ${this.name}: master twistd.log (last ${lines} lines) ---`,
      tailFile(path.join(this.masterDir, 'twistd.log'), lines),
      `--- ${this.name}: master console ---`,
      tailFile(path.join(this.masterDir, 'console.log'), 10),
      `--- ${this.name}: worker twistd.log (last ${lines} lines) ---`,
      tailFile(path.join(this.workerDir, 'twistd.log'), lines),
    ].join('\n');
  }

  /**
   * Creates the master and worker dirs and the config, on the given ports. Run
   * once, before the first start. `templateMasterDir`: a master dir that
   * create-master made (and that has not started yet) to copy instead of
   * running create-master again: that takes a second or more of CPU for
   * Python imports, and the fresh sqlite db it makes is the same for every master.
   */
  async create(httpPort: number, pbPort: number, templateMasterDir?: Promise<string>): Promise<void> {
    const began = Date.now();
    this.httpPort = httpPort;
    this.pbPort = pbPort;
    const env = buildbotEnv(undefined);
    const makeMaster = async () => {
      if (templateMasterDir === undefined) {
        // -r: relocatable (buildbot.tac finds its dir itself). create-master
        // also creates the sqlite db at the current schema: no upgrade-master.
        await this.run('buildbot', ['create-master', '-r', this.masterDir], env);
        return;
      }
      const template = await templateMasterDir;
      await mkdir(this.masterDir, { recursive: true });
      await Promise.all(
        ['buildbot.tac', 'state.sqlite'].map((f) => copyFile(path.join(template, f), path.join(this.masterDir, f))),
      );
    };
    await Promise.all([
      writePlaceholderWww(this.pylib),
      makeMaster(),
      this.run('buildbot-worker', ['create-worker', '-r', this.workerDir, `127.0.0.1:${pbPort}`, WORKER_NAME, WORKER_PASSWORD], env),
    ]);
    await this.writeConfig();
    this.timings.createMs = Date.now() - began;
  }

  /** The master dir, for `create(..., templateMasterDir)` of other masters. */
  get masterDirectory(): string {
    return this.masterDir;
  }

  /** New ports and config, after a port we picked was taken before Buildbot bound it. */
  async repickPorts(): Promise<void> {
    const [httpPort, pbPort] = await freePorts(2);
    if (httpPort === undefined || pbPort === undefined) throw new Error('no free ports');
    this.httpPort = httpPort;
    this.pbPort = pbPort;
    await this.writeConfig();
    // The worker's buildbot.tac names the PB port: make the worker anew
    // (create-worker --force would leave buildbot.tac and write buildbot.tac.new).
    await rm(this.workerDir, { recursive: true, force: true });
    await this.run(
      'buildbot-worker',
      ['create-worker', '-r', this.workerDir, `127.0.0.1:${pbPort}`, WORKER_NAME, WORKER_PASSWORD],
      buildbotEnv(undefined),
    );
  }

  private async writeConfig(): Promise<void> {
    await writeFile(path.join(this.masterDir, 'master.cfg'), masterCfg(this.spec, this.httpPort, this.pbPort));
  }

  private async run(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<void> {
    try {
      await execFileP(command, args, { env, timeout: 60_000 });
    } catch (err) {
      const e = err as Error & { stdout?: string; stderr?: string };
      throw new Error(`${this.name}: \`${command} ${args.join(' ')}\` failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
    }
  }

  async start(): Promise<void> {
    if (this.running) return;
    const deadline = Date.now() + this.startTimeoutMs;
    const master = spawnGroup(
      'buildbot',
      ['start', '--nodaemon', this.masterDir],
      this.masterDir,
      buildbotEnv(this.pylib),
      path.join(this.masterDir, 'console.log'),
    );
    this.master = master;
    const spawnedAt = Date.now();
    try {
      // Ready when the REST API answers as this master: Buildbot names a
      // master "<hostname>:<basedir>". Any answer on the port is not enough,
      // as another server may have taken the port we picked (our master then
      // halts with CannotListenError, and start is retried on new ports).
      await this.waitUntil(deadline, 'REST API to answer', master, async () => {
        const res = await fetch(`${this.apiUrl}/masters`, { signal: AbortSignal.timeout(2000) });
        if (!res.ok) {
          await res.arrayBuffer();
          return false;
        }
        const body = (await res.json()) as { masters?: Array<{ name: string; active: boolean }> };
        return (body.masters ?? []).some((m) => m.active && m.name.endsWith(`:${this.masterDir}`));
      });
      this.timings.apiUpMs = Date.now() - spawnedAt;
      const apiUpAt = Date.now();
      // The worker only after the PB port is open: it retries with growing
      // delays, so starting it early costs time rather than saving it.
      const worker = spawnGroup(
        'buildbot-worker',
        ['start', '--nodaemon', this.workerDir],
        this.workerDir,
        buildbotEnv(undefined),
        path.join(this.workerDir, 'console.log'),
      );
      this.worker = worker;
      await this.waitUntil(deadline, 'worker to connect', worker, async () => {
        const workers = await this.workers();
        return workers.some((w) => w.name === WORKER_NAME && w.connected_to.length > 0);
      });
      this.timings.workerConnectMs = Date.now() - apiUpAt;
    } catch (err) {
      const log = this.logTail(60);
      await this.stop();
      const message = err instanceof Error ? err.message : String(err);
      throw new StartupError(`${message}\n${log}`, looksLikePortInUse(log));
    }
  }

  /** Polls `ready` every 100 ms; fails fast when `proc` exits, or at the deadline. */
  private async waitUntil(deadline: number, what: string, proc: Proc, ready: () => Promise<boolean>): Promise<void> {
    let lastError = '';
    for (;;) {
      if (proc.hasExited()) {
        const { code, signal } = await proc.exited;
        throw new Error(`${this.name}: process exited (code ${code}, signal ${signal}) while waiting for ${what}`);
      }
      try {
        if (await ready()) return;
      } catch (err) {
        lastError = err instanceof Error ? `${err.message}${err.cause instanceof Error ? `: ${err.cause.message}` : ''}` : String(err);
      }
      if (Date.now() > deadline) {
        throw new Error(`${this.name}: timed out after ${this.startTimeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${lastError})` : ''}`);
      }
      await sleep(100);
    }
  }

  async stop(): Promise<void> {
    const procs = [this.worker, this.master].filter((p): p is Proc => p !== undefined);
    this.worker = undefined;
    this.master = undefined;
    await Promise.all(procs.map((p) => stopGroup(p, this.stopTimeoutMs)));
  }

  async getJson<T = unknown>(apiPath: string): Promise<T> {
    const res = await fetch(`${this.apiUrl}${apiPath}`, { signal: AbortSignal.timeout(10_000) });
    const text = await res.text();
    if (!res.ok) throw new Error(`${this.name}: GET ${apiPath} -> ${res.status}: ${text}`);
    return JSON.parse(text) as T;
  }

  /** A collection read: `{"<key>": [...], "meta": {...}}`. */
  private async collection<T>(apiPath: string, key: string): Promise<T[]> {
    const body = await this.getJson<Record<string, unknown>>(apiPath);
    const list = body[key];
    if (!Array.isArray(list)) throw new Error(`${this.name}: GET ${apiPath}: no "${key}" list in ${JSON.stringify(body)}`);
    return list as T[];
  }

  builders(): Promise<BuilderInfo[]> {
    return this.collection<BuilderInfo>('/builders', 'builders');
  }

  async builderId(name: string): Promise<number> {
    const found = (await this.builders()).find((b) => b.name === name);
    if (!found) throw new Error(`${this.name}: no builder named ${name}`);
    return found.builderid;
  }

  builds(): Promise<BuildInfo[]> {
    return this.collection<BuildInfo>('/builds', 'builds');
  }

  buildrequests(): Promise<BuildRequestInfo[]> {
    return this.collection<BuildRequestInfo>('/buildrequests', 'buildrequests');
  }

  workers(): Promise<WorkerInfo[]> {
    return this.collection<WorkerInfo>('/workers', 'workers');
  }

  async forceDirect(builderNames: string[]): Promise<ForceResult> {
    const res = await fetch(`${this.apiUrl}/forceschedulers/force`, {
      method: 'POST',
      // Buildbot answers 400 (-32600) without exactly this content type.
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', method: 'force', id: 1, params: { builderNames } }),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    let body: { result?: unknown; error?: { code: number; message: string } };
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      throw new Error(`${this.name}: force ${builderNames.join(',')} -> ${res.status}, not JSON: ${text}`);
    }
    if (!res.ok || body.error !== undefined || !Array.isArray(body.result)) {
      throw new Error(`${this.name}: force ${builderNames.join(',')} -> ${res.status}: ${text}`);
    }
    return body.result as ForceResult;
  }

  async postChange(revision: string): Promise<void> {
    const res = await fetch(`${this.url}/change_hook/base`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ revision, branch: 'main', repository: 'https://example.invalid/repo', project: 'e2e', author: 'e2e <e2e@example.invalid>', comments: `change ${revision}` }),
      signal: AbortSignal.timeout(10_000),
    });
    if (!res.ok) throw new Error(`${this.name}: change hook -> ${res.status}: ${await res.text()}`);
  }

  async waitForBuilds(count: number, timeoutMs: number, opts: { complete?: boolean } = {}): Promise<BuildInfo[]> {
    const wantComplete = opts.complete ?? true;
    const deadline = Date.now() + timeoutMs;
    let builds: BuildInfo[] = [];
    for (;;) {
      builds = await this.builds();
      if (builds.length >= count && (!wantComplete || builds.every((b) => b.complete))) return builds;
      if (Date.now() > deadline) {
        throw new Error(
          `${this.name}: timed out after ${timeoutMs} ms waiting for ${count} ${wantComplete ? 'complete ' : ''}build(s); ` +
            `have ${JSON.stringify(builds.map((b) => ({ buildid: b.buildid, builderid: b.builderid, complete: b.complete, results: b.results })))}\n` +
            this.logTail(),
        );
      }
      await sleep(200);
    }
  }
}

// ---------------------------------------------------------------------------
// Entry point

/**
 * Starts one master + worker per spec, in parallel, and resolves when every
 * REST API answers and every worker is connected. On any failure, stops what
 * did start and rejects with the failing master's log tail.
 */
export async function startBuildbotMasters(
  specs: BuildbotMasterSpec[],
  opts: StartBuildbotOptions = {},
): Promise<BuildbotMasters> {
  const available = buildbotAvailable();
  if (!available.ok) throw new Error(available.message);
  const names = new Set(specs.map((s) => s.name));
  if (names.size !== specs.length) throw new Error('master names must be unique');
  for (const spec of specs) {
    if (spec.builders.length === 0) throw new Error(`${spec.name}: at least one builder is needed`);
  }

  const startTimeoutMs = opts.startTimeoutMs ?? 60_000;
  const stopTimeoutMs = opts.stopTimeoutMs ?? 10_000;
  const keepDirs = opts.keepDirs ?? process.env['STRANGLER_KEEP_BUILDBOT_TMP'] === '1';
  const tmpRoot = opts.tmpRoot ?? os.tmpdir();
  const began = Date.now();

  // Built in spec order, so `masters[i]` is `specs[i]` whatever order they come up in.
  const masters: RealBuildbotMaster[] = [];
  const removeDirs = async () => {
    if (keepDirs) return;
    await Promise.all(
      masters.map(async (m) => {
        await rm(m.dir, { recursive: true, force: true });
        ownedDirs.delete(m.dir);
      }),
    );
  };
  const stopAll = async () => {
    await Promise.all(masters.map((m) => m.stop()));
    await removeDirs();
  };

  try {
    for (const spec of specs) {
      const dir = await mkdtemp(path.join(tmpRoot, `strangler-bb-${spec.name.replace(/[^A-Za-z0-9_.-]/g, '_')}-`));
      if (!keepDirs) ownedDirs.add(dir);
      masters.push(new RealBuildbotMaster(spec, dir, startTimeoutMs, stopTimeoutMs));
    }
    // All ports in one go, so no two masters can be handed the same one.
    const ports = await freePorts(2 * masters.length);
    // allSettled, not all: on a failure, stopAll() must not run while another
    // master is still starting (it would spawn processes after the stop).
    const rejected = async (work: Array<Promise<void>>) =>
      (await Promise.allSettled(work)).filter((o): o is PromiseRejectedResult => o.status === 'rejected');

    // Phase 1, create: create-master runs once, for the first master; the
    // others copy its dir (see create()). All copies are made before any
    // master starts, as a started master writes to its sqlite db.
    const creates: Array<Promise<void>> = [];
    let template: Promise<string> | undefined;
    masters.forEach((m, i) => {
      const httpPort = ports[2 * i];
      const pbPort = ports[2 * i + 1];
      if (httpPort === undefined || pbPort === undefined) throw new Error('no free ports');
      const created = m.create(httpPort, pbPort, template);
      if (template === undefined) {
        template = created.then(() => m.masterDirectory);
        // Its failure is reported through `created`; the copies only follow it.
        template.catch(() => undefined);
      }
      creates.push(created);
    });
    let failures = await rejected(creates);

    // Phase 2, start, all at once: each start is mostly waiting on Python imports.
    if (failures.length === 0) {
      failures = await rejected(
        masters.map(async (m) => {
          try {
            await m.start();
          } catch (err) {
            // A port picked free was taken by someone else before twistd bound it: once more with new ones.
            if (!(err instanceof StartupError && err.portInUse)) throw err;
            await m.repickPorts();
            await m.start();
          }
        }),
      );
    }
    if (failures.length > 0) {
      const messages = failures.map((f) => (f.reason instanceof Error ? f.reason.message : String(f.reason)));
      throw new Error(`could not start Buildbot: ${messages.join('\n\n')}`);
    }
  } catch (err) {
    await stopAll();
    throw err;
  }

  const startupMs = Date.now() - began;
  return {
    masters,
    startupMs,
    byName(name: string): BuildbotMaster {
      const m = masters.find((x) => x.name === name);
      if (!m) throw new Error(`no master named ${name}`);
      return m;
    },
    stopAll,
  };
}
