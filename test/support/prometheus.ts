/**
 * A real Prometheus for end-to-end tests: Debian's `prometheus` package
 * (/usr/bin/prometheus, with promtool alongside) started in a temp folder,
 * scraping one target every second and evaluating a rule file every second,
 * listening on 127.0.0.1 only, with no remote write/read and no Alertmanager:
 * nothing leaves the machine. Alerts are read from its own HTTP API.
 *
 * Missing Prometheus makes the suite fail with the install command, or skip
 * with a warning when STRANGLER_SKIP_PROMETHEUS=1 (never set on CI).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, closeSync, constants as fsConstants, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from './upstream.js';
import { onPath } from './on-path.js';
import { waitFor } from './proxy.js';

const INSTALL_HINT = 'install it with `apt-get install -y prometheus` or `bash scripts/install-system-deps.sh prometheus`';

/** One element of an instant vector. */
export interface PromSample {
  metric: Record<string, string>;
  value: number;
}

export interface PromAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: 'pending' | 'firing' | 'inactive';
  activeAt?: string;
  value: string;
}

export interface PromRule {
  name: string;
  query: string;
  type: 'alerting' | 'recording';
  health: string;
  lastError?: string;
  state?: string;
}

export interface TestPrometheus {
  /** http://127.0.0.1:PORT */
  readonly url: string;
  readonly pid: number;
  readonly dir: string;
  /** Instant query at "now"; throws with Prometheus's own message if the expression is rejected. */
  query(expr: string): Promise<PromSample[]>;
  /** Every alert in pending or firing state (`/api/v1/alerts`). */
  alerts(): Promise<PromAlert[]>;
  /** Every rule of the rule file with its last evaluation's health. */
  rules(): Promise<PromRule[]>;
  /** Names of every series Prometheus holds. */
  metricNames(): Promise<string[]>;
  /** Prometheus's own log so far (for failure messages). */
  log(): string;
  /** Kills the process group and removes the temp dir. Safe to call twice. */
  stop(): Promise<void>;
}

export interface PrometheusOptions {
  /** The full URL to scrape, e.g. `${adminUrl}/metrics`. */
  scrapeUrl: string;
  /** The rule file's text (alerting/recording rules); none when absent. */
  rules?: string;
  /** Job label of the scraped target (default "strangler-proxy"). */
  job?: string;
}

/** Where a binary is: on PATH, else in Debian's /usr/bin (for runs with a trimmed PATH). */
function locate(command: string): string | undefined {
  const found = onPath(command);
  if (found) return found;
  try {
    accessSync(`/usr/bin/${command}`, fsConstants.X_OK);
    return `/usr/bin/${command}`;
  } catch {
    return undefined;
  }
}

/** Whether `prometheus` and `promtool` exist, and if not, how to get them. */
export function prometheusAvailable(): { ok: true; prometheus: string; promtool: string } | { ok: false; message: string } {
  const prometheus = locate('prometheus');
  const promtool = locate('promtool');
  if (prometheus && promtool) return { ok: true, prometheus, promtool };
  const missing = [prometheus ? undefined : 'prometheus', promtool ? undefined : 'promtool'].filter(Boolean).join(' and ');
  return { ok: false, message: `real Prometheus is not available: ${missing} not found; ${INSTALL_HINT}` };
}

/**
 * For a mocha `before` hook: returns when Prometheus is installed; otherwise
 * skips (STRANGLER_SKIP_PROMETHEUS=1, with a printed warning) or throws the
 * install instructions.
 */
export function requirePrometheus(ctx: Mocha.Context): void {
  const available = prometheusAvailable();
  if (available.ok) return;
  if (process.env['STRANGLER_SKIP_PROMETHEUS'] === '1') {
    console.warn(`WARNING: skipping real-Prometheus tests (STRANGLER_SKIP_PROMETHEUS=1): ${available.message}`);
    ctx.skip();
  }
  throw new Error(available.message);
}

export interface PromtoolResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs promtool with `args` (and `input` on stdin), synchronously: it is short-lived and local. */
export function promtool(args: string[], input?: string): PromtoolResult {
  const available = prometheusAvailable();
  if (!available.ok) throw new Error(available.message);
  const result = spawnSync(available.promtool, args, { input: input ?? '', encoding: 'utf8', timeout: 30_000 });
  if (result.error) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

// Process groups started here and not yet seen exit: killed on process exit
// too, so an aborted run (mocha --exit, a crashed hook) leaves nothing behind.
const liveGroups = new Set<number>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // 'exit' handlers must be synchronous; a signal is.
  process.on('exit', () => {
    for (const pgid of liveGroups) signalGroup(pgid, 'SIGKILL');
  });
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // ESRCH: the group is already gone.
  }
}

function prometheusYml(target: URL, job: string, ruleFile: string | undefined): string {
  // JSON is YAML: no quoting surprises from paths or hosts.
  const config = {
    global: { scrape_interval: '1s', evaluation_interval: '1s', scrape_timeout: '1s' },
    rule_files: ruleFile ? [ruleFile] : [],
    scrape_configs: [
      {
        job_name: job,
        scheme: target.protocol.replace(':', ''),
        metrics_path: target.pathname,
        static_configs: [{ targets: [target.host] }],
      },
    ],
  };
  return JSON.stringify(config, null, 2) + '\n';
}

interface Started {
  child: ChildProcess;
  pid: number;
  exited: Promise<void>;
  hasExited: () => boolean;
}

function spawnPrometheus(bin: string, args: string[], logFile: string): Started {
  // Log to a file, not a pipe: a pipe nobody drains could block Prometheus.
  const fd = openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    // detached: its own process group, so stop() can signal the whole group.
    child = spawn(bin, args, { detached: true, stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd); // the child holds its own copy
  }
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not spawn ${bin}`);
  liveGroups.add(pid);
  installExitHook();
  let done = false;
  const exited = new Promise<void>((resolve) => {
    const finish = () => {
      done = true;
      liveGroups.delete(pid);
      resolve();
    };
    child.once('exit', finish);
    child.once('error', finish);
  });
  child.unref();
  return { child, pid, exited, hasExited: () => done };
}

async function api<T>(base: string, pathAndQuery: string, body?: URLSearchParams): Promise<T> {
  const res = await fetch(base + pathAndQuery, {
    method: body ? 'POST' : 'GET',
    ...(body ? { body, headers: { 'content-type': 'application/x-www-form-urlencoded' } } : {}),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  let parsed: { status?: string; data?: T; error?: string; errorType?: string };
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    throw new Error(`Prometheus ${pathAndQuery}: HTTP ${res.status}, not JSON: ${text.slice(0, 500)}`);
  }
  if (parsed.status !== 'success' || parsed.data === undefined) {
    throw new Error(`Prometheus ${pathAndQuery}: ${parsed.errorType ?? `HTTP ${res.status}`}: ${parsed.error ?? text.slice(0, 500)}`);
  }
  return parsed.data;
}

export async function startPrometheus(options: PrometheusOptions): Promise<TestPrometheus> {
  const available = prometheusAvailable();
  if (!available.ok) throw new Error(available.message);
  const dir = mkdtempSync(path.join(tmpdir(), 'strangler-prometheus-'));
  const logFile = path.join(dir, 'prometheus.log');
  const readLog = () => {
    try {
      return readFileSync(logFile, 'utf8');
    } catch {
      return '';
    }
  };
  let ruleFile: string | undefined;
  if (options.rules !== undefined) {
    ruleFile = path.join(dir, 'rules.yml');
    writeFileSync(ruleFile, options.rules);
  }
  const configFile = path.join(dir, 'prometheus.yml');
  writeFileSync(configFile, prometheusYml(new URL(options.scrapeUrl), options.job ?? 'strangler-proxy', ruleFile));

  // A free port can be taken between picking and binding; then try another.
  let started: Started | undefined;
  let url = '';
  let lastError: Error | undefined;
  for (let attempt = 0; attempt < 3 && !started; attempt++) {
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    const proc = spawnPrometheus(
      available.prometheus,
      [
        `--config.file=${configFile}`,
        `--storage.tsdb.path=${path.join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        // Debian's defaults point the console pages at /etc; unneeded here.
        `--web.console.templates=${dir}`,
        `--web.console.libraries=${dir}`,
        '--log.level=info',
      ],
      logFile,
    );
    try {
      await waitReady(url, proc, readLog);
      started = proc;
    } catch (error) {
      lastError = error as Error;
      signalGroup(proc.pid, 'SIGKILL');
      await proc.exited;
      if (!/address already in use/.test(readLog())) break;
    }
  }
  if (!started) {
    const log = readLog();
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`${lastError?.message ?? 'Prometheus did not start'}\n--- prometheus log ---\n${log.slice(-4000)}`);
  }

  const proc = started;
  let stopped = false;
  return {
    url,
    pid: proc.pid,
    dir,
    async query(expr) {
      const data = await api<{ resultType: string; result: unknown }>(url, '/api/v1/query', new URLSearchParams({ query: expr }));
      if (data.resultType === 'vector') {
        return (data.result as Array<{ metric: Record<string, string>; value: [number, string] }>).map((s) => ({ metric: s.metric, value: Number(s.value[1]) }));
      }
      if (data.resultType === 'scalar') {
        const [, value] = data.result as [number, string];
        return [{ metric: {}, value: Number(value) }];
      }
      throw new Error(`query ${expr}: result type ${data.resultType}, expected an instant vector`);
    },
    async alerts() {
      const data = await api<{ alerts: PromAlert[] }>(url, '/api/v1/alerts');
      return data.alerts;
    },
    async rules() {
      const data = await api<{ groups: Array<{ rules: PromRule[] }> }>(url, '/api/v1/rules');
      return data.groups.flatMap((g) => g.rules);
    },
    async metricNames() {
      return api<string[]>(url, '/api/v1/label/__name__/values');
    },
    log: readLog,
    async stop() {
      if (stopped) return;
      stopped = true;
      if (!proc.hasExited()) {
        signalGroup(proc.pid, 'SIGTERM');
        const timer = setTimeout(() => signalGroup(proc.pid, 'SIGKILL'), 5_000);
        await proc.exited;
        clearTimeout(timer);
      }
      // Anything else left in the group (Prometheus forks nothing, but be sure).
      signalGroup(proc.pid, 'SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function waitReady(url: string, proc: Started, readLog: () => string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (proc.hasExited()) throw new Error(`prometheus exited before it was ready`);
    try {
      const res = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(1_000) });
      await res.arrayBuffer();
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`prometheus not ready within 30 s at ${url}/-/ready; log tail:\n${readLog().slice(-2000)}`);
}

/**
 * alerts.yml with every `for:` cut to 1 s, so alerts fire within a test (at
 * the second evaluation, evaluation_interval being 1 s). Only the `for:`
 * lines change: test/e2e/prometheus.test.ts checks that every expression is
 * exactly the one of deploy/prometheus/alerts.yml. Windows stay as written:
 * a test's few minutes of data all fall inside them.
 */
export function rulesForTest(original: string): string {
  return original.replace(/^(\s*)for:\s*\S+\s*$/gm, '$1for: 1s');
}

/** The firing alert called `name` with these labels, if any. */
export function firing(alerts: PromAlert[], name: string, labels: Record<string, string> = {}): PromAlert | undefined {
  return alerts.find((a) => a.state === 'firing' && a.labels['alertname'] === name && Object.entries(labels).every(([k, v]) => a.labels[k] === v));
}

/** Waits for `probe` to find what it wants among the alerts; on timeout, says which alerts there were. */
export async function waitForAlerts<T>(p: TestPrometheus, probe: (alerts: PromAlert[]) => T | undefined, what: string, timeoutMs = 30_000): Promise<T> {
  let last: PromAlert[] = [];
  try {
    return await waitFor(
      async () => {
        last = await p.alerts();
        return probe(last);
      },
      timeoutMs,
      what,
    );
  } catch (error) {
    const seen = last.map((a) => `${a.labels['alertname']}{${Object.entries(a.labels).filter(([k]) => k !== 'alertname').map(([k, v]) => `${k}=${v}`).join(',')}} ${a.state} ${a.value}`);
    throw new Error(`${(error as Error).message}; alerts at the end: ${seen.length ? seen.join('; ') : 'none'}`);
  }
}
