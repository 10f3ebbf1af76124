#!/usr/bin/env node
/**
 * The `strangler-proxy` command: serve (the default), validate, explain,
 * routes, plan, report, demo, help; `COMMAND --help` and `--version` anywhere.
 * Exit codes: 0 success, 1 invalid routes file or failed start (a port that
 * cannot be listened on; or, for routes/plan/report --admin, the running
 * proxy could not be asked), 2 usage error (one line, saying where the help is), 3 (plan only)
 * the new file changes routing.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { buildPlan, formatBuildsCsv, formatBuildsTable, formatPlan, formatRoutes } from './admin/report.js';
import { routesView, type BuildsView, type ProgressView, type RoutesView } from './admin/views.js';
import { forceBody, startDemoWorld, startStandinsFor, walkthroughLines } from './demo/demo.js';
import { isStranglerError, StranglerError } from './errors.js';
import { explainRequest, formatExplanation, type Explanation } from './explain.js';
import { loadConfigFile, parseConfig } from './config/load.js';
import { createLogger, parseLogFormat, parseLogLevel } from './logging/logger.js';
import { DEFAULT_ADMIN_PORT, DEFAULT_PORT, startStrangler, type Strangler } from './main.js';
import { BuilderDirectory } from './ingress/builder-directory.js';
import { Upstream } from './upstream/upstream.js';
import type { RoutingTable } from './routing/table.js';
import { DEFAULT_WINDOW, parseWindow } from './tracking/compare.js';

const SERVE_FLAGS = `  -c, --config FILE        the routes file, followed for changes (STRANGLER_CONFIG; ./routes.yaml)
      --port N             the proxy's port, 0 for any free one (PORT; ${DEFAULT_PORT})
      --host ADDR          the proxy's address (HOST; 0.0.0.0: every IPv4 interface)
      --admin-port N       /metrics, /healthz, /readyz, the status page and API (ADMIN_PORT; ${DEFAULT_ADMIN_PORT})
      --admin-host ADDR    the admin listener's address (ADMIN_HOST; 127.0.0.1)
      --log-level L        error, warn, info or debug (LOG_LEVEL; info)
      --log-format F       json, or pretty for a terminal (LOG_FORMAT; json)
      --protect-admin-reads
                           the admin API's reads need the token too (STRANGLER_ADMIN_PROTECT_READS=1)
      --store URL          where work on Taskcluster queues is kept: a postgres:// URL, or empty for the
                           embedded store (STRANGLER_STORE; embedded)
      --data-dir DIR       the embedded store's folder (STRANGLER_DATA_DIR; ./data)`;

/** What each command says to `COMMAND --help`, and the options it takes (besides --help). */
const COMMANDS = {
  serve: {
    options: ['config', 'port', 'host', 'admin-port', 'admin-host', 'log-level', 'log-format', 'protect-admin-reads', 'store', 'data-dir'],
    help: `Usage: strangler-proxy [serve] [OPTIONS]

Runs the proxy: each request goes to the backend routes.yaml names for its job type. A saved
change to the file applies to the next request; an invalid one is rejected and the old routes stay.

Options (in brackets: the environment variable, and the default; a flag wins over its variable):
${SERVE_FLAGS}
  -h, --help               this help

STRANGLER_ADMIN_TOKEN: the bearer token the admin API's POST endpoints need (unset: they are disabled).
Signals: SIGHUP reloads the routes file; SIGTERM and SIGINT turn /readyz unready (for STRANGLER_SHUTDOWN_DELAY_MS, still taking
requests), then drain requests in flight (up to 10 s) and exit 0.
Exit codes: 1 invalid routes file, or a port that cannot be listened on; 2 usage error.`,
  },
  validate: {
    options: ['config'],
    help: `Usage: strangler-proxy validate [FILE]

Checks a routes file the way a reload would, and runs nothing. Prints a one-line summary, or each
problem as file:line:column: field: reason.

  FILE                     the routes file (default: --config, STRANGLER_CONFIG, or ./routes.yaml)
  -c, --config FILE        the same as FILE
  -h, --help               this help

Exit codes: 0 valid, 1 invalid or unreadable, 2 usage error.`,
  },
  explain: {
    options: ['config', 'admin', 'header', 'body-file', 'json', 'build', 'buildrequest', 'buildset'],
    help: `Usage: strangler-proxy explain [--config FILE | --admin URL] METHOD PATH [--header 'K: V']... [--body-file FILE] [--json]
       strangler-proxy explain [--config FILE | --admin URL] --build ID | --buildrequest ID | --buildset ID [--json]

Runs the proxy's own routing decision on a request you describe, without sending it anywhere:
prints the backend, the job type and where it was found, and the rule that decided (for a split,
the weights and the side this request drew; with stickyBy, the key and the side it hashes to).
For a job type routed to a Taskcluster queue, prints the task a force would create (rendered from
a sample force). For a path naming a build, buildrequest or buildset by id, says which side owns
it: ids below 10^15 are the legacy master's; larger ones the proxy minted for work on a queue, and
with --admin the running proxy's store names that queue, the taskId and its state.

  METHOD PATH              e.g. GET /api/v2/builders/linux64-opt/builds (a query string may follow)
      --build ID           the same as GET /api/v2/builds/ID (likewise --buildrequest, --buildset)
  -c, --config FILE        the routes file (default: STRANGLER_CONFIG, or ./routes.yaml)
      --admin URL          ask a running proxy instead, e.g. http://127.0.0.1:${DEFAULT_ADMIN_PORT}: its routes in force
                           and its store (sends STRANGLER_ADMIN_TOKEN as a bearer token when it is set;
                           with --body-file the proxy's POST /explain, which needs the token)
  -H, --header 'K: V'      a request header, e.g. 'X-Job-Type: linux64-opt'; repeat for more
      --body-file FILE     the request body, e.g. a JSON-RPC force
      --json               the decision as JSON
  -h, --help               this help

Exit codes: 0, 1 invalid routes file or the running proxy could not be asked, 2 usage error.`,
  },
  routes: {
    options: ['config', 'admin', 'json'],
    help: `Usage: strangler-proxy routes [--config FILE | --admin URL] [--json]

Prints the routing table: each rule in order (job type, kind, backend or split, sticky keys,
shadow, fallback, retries), then the default backend and the backends.

  -c, --config FILE        read it from a routes file (default: STRANGLER_CONFIG, or ./routes.yaml)
      --admin URL          ask a running proxy for the table in force, e.g. http://127.0.0.1:${DEFAULT_ADMIN_PORT}
                           (sends STRANGLER_ADMIN_TOKEN as a bearer token when it is set)
      --json               the table as JSON (what the admin API's GET /routes answers)
  -h, --help               this help

Exit codes: 0, 1 invalid routes file or the running proxy could not be asked, 2 usage error.`,
  },
  plan: {
    options: ['admin', 'job-type', 'json'],
    help: `Usage: strangler-proxy plan CURRENT.yaml NEW.yaml [--job-type NAME]... [--json]
       strangler-proxy plan --admin URL NEW.yaml [--job-type NAME]... [--json]

Lists the job types whose backend or weights would change from CURRENT to NEW, and the share of
requests that would move with them. With --admin, CURRENT is the table a running proxy has in
force and the share is weighed by its last hour of traffic. For each changed job type that NEW
sends to a Taskcluster queue, prints the task a force would create there (from a sample force).

      --admin URL          compare with a running proxy, e.g. http://127.0.0.1:${DEFAULT_ADMIN_PORT}
                           (sends STRANGLER_ADMIN_TOKEN as a bearer token when it is set)
      --job-type NAME      consider this job type too (names matched only by a glob or regex
                           cannot be listed otherwise); repeat for more
      --json               the plan as JSON
  -h, --help               this help

Exit codes: 0 no change, 3 changes, 1 an invalid file or the running proxy could not be asked,
2 usage error.`,
  },
  report: {
    options: ['admin', 'window', 'format', 'job-type', 'min-builds'],
    help: `Usage: strangler-proxy report --admin URL [--window 24h] [--format table|json|csv] [--job-type NAME] [--min-builds N]

Compares the two sides by their builds, from a running proxy's admin API (GET /builds): per job
type, the legacy backend's and each new backend's finished builds, pass rate, duration p50/p95,
wait p95 and infrastructure exceptions over the window, the differences, and a verdict per new
backend: better or as good (ready to move), worse (move back), or not enough builds yet.
docs/build-comparison.md says what is counted and how the verdict is reached.

      --admin URL          the running proxy's admin listener, e.g. http://127.0.0.1:${DEFAULT_ADMIN_PORT}
                           (sends STRANGLER_ADMIN_TOKEN as a bearer token when it is set)
      --window W           builds that finished in the last W: a number and m, h or d, up to 90d
                           (default ${DEFAULT_WINDOW}; e.g. 1h, 24h, 7d)
      --format F           table (default: aligned columns, then the reasons), json (what GET /builds
                           answers), or csv (RFC 4180, a header and a row per job type and backend)
      --job-type NAME      only this job type
      --min-builds N       counted builds each side needs for a verdict (default 10)
  -h, --help               this help

Exit codes: 0 printed, 1 the running proxy could not be asked or answered an error (build tracking
off, the store unreadable), 2 usage error.`,
  },
  demo: {
    options: ['config', 'port', 'host', 'admin-port', 'admin-host', 'log-level', 'log-format', 'protect-admin-reads'],
    help: `Usage: strangler-proxy demo [OPTIONS]

Starts the proxy in front of stand-ins on 127.0.0.1 and prints requests to try, Buildbot's API only.
Without --config: a Buildbot look-alike as the legacy master, a stand-in Taskcluster queue whose
worker runs each task for a few seconds and fails some on purpose (credentials made up for it),
and a routes file that moves linux64-* to the queue; the routes file and the store are in a
temporary folder, removed when the demo stops. With --config FILE: a stand-in on each backend's
port in FILE (every backend must be on 127.0.0.1 or localhost). Edit the routes file while it runs
and watch the answers move. Ctrl-C stops it.

Options: as for serve, except --store and --data-dir (the log format is pretty unless --log-format
or LOG_FORMAT says otherwise):
${SERVE_FLAGS.split('\n      --store URL')[0]}
  -h, --help               this help

Exit codes: 1 invalid routes file, or a port that cannot be listened on; 2 usage error.`,
  },
  help: {
    options: [],
    help: `Usage: strangler-proxy help [COMMAND]

Prints the list of commands, or one command's options (the same as strangler-proxy COMMAND --help).`,
  },
} as const satisfies Record<string, { options: readonly OptionName[]; help: string }>;

type Command = keyof typeof COMMANDS;

const USAGE = `Usage:
  strangler-proxy [serve] [--config FILE] [--port N] [--admin-port N] [--host ADDR] [--admin-host ADDR]
                          [--log-level error|warn|info|debug] [--log-format json|pretty] [--protect-admin-reads]
  strangler-proxy validate [FILE]
  strangler-proxy explain [--config FILE | --admin URL] METHOD PATH [--header 'K: V']... [--body-file FILE] [--json]
  strangler-proxy explain [--config FILE | --admin URL] --build ID | --buildrequest ID | --buildset ID [--json]
  strangler-proxy routes [--config FILE | --admin URL] [--json]
  strangler-proxy plan CURRENT.yaml NEW.yaml [--job-type NAME]... [--json]
  strangler-proxy plan --admin URL NEW.yaml [--job-type NAME]... [--json]
  strangler-proxy report --admin URL [--window 24h] [--format table|json|csv] [--job-type NAME] [--min-builds N]
  strangler-proxy demo [serve's options]
  strangler-proxy help [COMMAND]          or: strangler-proxy COMMAND --help
  strangler-proxy --version

Environment: STRANGLER_CONFIG (default ./routes.yaml), PORT (${DEFAULT_PORT}), ADMIN_PORT (${DEFAULT_ADMIN_PORT}),
             HOST (0.0.0.0), ADMIN_HOST (127.0.0.1), LOG_LEVEL (info), LOG_FORMAT (json),
             STRANGLER_ADMIN_TOKEN (bearer token for the admin API's POST endpoints; unset: they are disabled;
             sent by routes/plan/report --admin), STRANGLER_ADMIN_PROTECT_READS=1 (the admin API's reads need it too),
             STRANGLER_REPLICA (this replica's name in admin answers; the host name),
             STRANGLER_SHUTDOWN_DELAY_MS (on SIGTERM, /readyz is unready this long while requests are still taken; 0).
Exit codes: 0 ok, 1 invalid routes file, failed start, or admin API unreachable, 2 usage error,
            3 plan: the new file changes routing.`;

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  port: { type: 'string' },
  'admin-port': { type: 'string' },
  host: { type: 'string' },
  'admin-host': { type: 'string' },
  'log-level': { type: 'string' },
  'log-format': { type: 'string' },
  store: { type: 'string' },
  'data-dir': { type: 'string' },
  header: { type: 'string', short: 'H', multiple: true },
  'body-file': { type: 'string' },
  json: { type: 'boolean' },
  admin: { type: 'string' },
  'job-type': { type: 'string', multiple: true },
  window: { type: 'string' },
  format: { type: 'string' },
  'min-builds': { type: 'string' },
  build: { type: 'string' },
  buildrequest: { type: 'string' },
  buildset: { type: 'string' },
  'protect-admin-reads': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
} satisfies ParseArgsConfig['options'];

type OptionName = keyof typeof OPTIONS;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

/** A command line that was not understood: one line on stderr (main adds where to find help), exit 2. */
function usageError(message: string): StranglerError {
  return new StranglerError('USAGE', message);
}

function isCommand(name: string | undefined): name is Command {
  return name !== undefined && Object.hasOwn(COMMANDS, name);
}

/** The version in package.json, next to dist/ (and src/) wherever the package is installed. */
function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string };
  return pkg.version ?? 'unknown';
}

function configPath(values: Values, positional?: string): string {
  return path.resolve(positional ?? values.config ?? process.env.STRANGLER_CONFIG ?? 'routes.yaml');
}

function hostOf(values: Values): string {
  return values.host || process.env.HOST || '0.0.0.0';
}

function portOf(flag: string | undefined, env: string | undefined, fallback: number, name: string): number {
  const text = flag ?? env;
  if (text === undefined || text === '') return fallback;
  const port = Number(text);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw usageError(`${name} must be a port number (0-65535), got "${text}"`);
  return port;
}

function storeSpec(values: Values): string | undefined {
  const spec = values.store ?? process.env.STRANGLER_STORE;
  return spec === undefined || spec === '' ? undefined : spec;
}

async function serve(values: Values): Promise<Strangler> {
  let level, format;
  try {
    level = parseLogLevel(values['log-level'] ?? process.env.LOG_LEVEL);
    format = parseLogFormat(values['log-format'] ?? process.env.LOG_FORMAT);
  } catch (error) {
    throw usageError((error as Error).message);
  }
  // SECURITY: the token comes from the environment only: a command-line flag would show in `ps` and shell history.
  const adminToken = adminTokenFromEnv();
  const protectAdminReads = values['protect-admin-reads'] === true || envFlag('STRANGLER_ADMIN_PROTECT_READS');
  if (protectAdminReads && !adminToken) {
    throw usageError('--protect-admin-reads / STRANGLER_ADMIN_PROTECT_READS needs STRANGLER_ADMIN_TOKEN set: without a token nobody could read the admin API');
  }
  const logger = createLogger({ ...(level ? { level } : {}), ...(format ? { format } : {}) });
  let proxy: Strangler;
  try {
    proxy = await startStrangler({
      configFile: configPath(values),
      port: portOf(values.port, process.env.PORT, DEFAULT_PORT, '--port / PORT'),
      adminPort: portOf(values['admin-port'], process.env.ADMIN_PORT, DEFAULT_ADMIN_PORT, '--admin-port / ADMIN_PORT'),
      host: hostOf(values),
      adminHost: values['admin-host'] || process.env.ADMIN_HOST || '127.0.0.1',
      logger,
      ...(adminToken ? { adminToken } : {}),
      protectAdminReads,
      guardUnhandledRejections: true,
      // SECURITY: a store URL may carry a password: it is passed on, never logged.
      ...(storeSpec(values) !== undefined ? { store: storeSpec(values)! } : {}),
      ...(values['data-dir'] || process.env.STRANGLER_DATA_DIR ? { dataDir: (values['data-dir'] || process.env.STRANGLER_DATA_DIR)! } : {}),
      ...(process.env.STRANGLER_SHUTDOWN_DELAY_MS ? { shutdownDelayMs: millisecondsOf(process.env.STRANGLER_SHUTDOWN_DELAY_MS, 'STRANGLER_SHUTDOWN_DELAY_MS') } : {}),
    });
  } catch (error) {
    if (!isStranglerError(error, 'LISTEN_FAILED')) throw error;
    const which = error.details.listener === 'admin' ? '--admin-port or ADMIN_PORT' : '--port or PORT';
    throw new StranglerError('LISTEN_FAILED', `${error.message}; choose another port with ${which}`, { cause: error, details: error.details });
  }
  // SECURITY: says whether a token is set, never the token.
  logger.info('admin API access', {
    posts: adminToken ? 'enabled: bearer token required' : 'disabled: set STRANGLER_ADMIN_TOKEN to enable POST /reload and POST /explain',
    reads: protectAdminReads ? 'bearer token required' : 'open (metrics and health are always open)',
  });
  if (adminToken && adminToken.length < 16) logger.warn('STRANGLER_ADMIN_TOKEN is shorter than 16 characters; use a long random value, e.g. `openssl rand -hex 32`');
  process.on('SIGHUP', () => void proxy.reload('signal'));
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info('shutting down: draining requests in flight', { signal });
    proxy.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  return proxy;
}

/** A whole number of milliseconds from 0 to 10 minutes, or a usage error naming the variable. */
function millisecondsOf(text: string, name: string): number {
  const ms = Number(text);
  if (!/^\d+$/.test(text.trim()) || ms > 600_000) throw usageError(`${name} must be a whole number of milliseconds from 0 to 600000, got "${text}"`);
  return ms;
}

/**
 * SECURITY: STRANGLER_ADMIN_TOKEN, trimmed (a secret mounted from a file often ends in a newline, which no
 * client would send); a token with inner whitespace or control characters could never be sent as
 * "Bearer <token>", so it is refused rather than silently locking everyone out. Never echoed.
 */
function adminTokenFromEnv(): string | undefined {
  const token = (process.env.STRANGLER_ADMIN_TOKEN ?? '').trim();
  if (token === '') return undefined;
  if (!/^[\x21-\x7e]+$/.test(token)) throw usageError('STRANGLER_ADMIN_TOKEN must be printable ASCII without spaces (it is sent as "Authorization: Bearer <token>"), e.g. the output of `openssl rand -hex 32`');
  return token;
}

function envFlag(name: string): boolean {
  const value = (process.env[name] ?? '').trim().toLowerCase();
  if (['', '0', 'false', 'no', 'off'].includes(value)) return false;
  if (['1', 'true', 'yes', 'on'].includes(value)) return true;
  throw usageError(`${name} must be 1/true/yes/on or 0/false/no/off, got "${process.env[name]}"`);
}

async function validate(positionals: string[], values: Values): Promise<number> {
  const file = configPath(values, positionals[0]);
  const table = await loadConfigFile(file);
  const legacy = table.legacy.name;
  console.log(`${file}: valid — ${table.backends.size} backends (legacy: ${legacy}, default: ${table.defaultBackend.name}), ${table.routes.length} routes`);
  return 0;
}

function parseHeaders(lines: string[] | undefined): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const line of lines ?? []) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw usageError(`--header expects "Name: value", got "${line}"`);
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return headers;
}

/** METHOD and PATH, from the positionals or from one of --build, --buildrequest, --buildset. */
function explainTarget(positionals: string[], values: Values): { method: string; path: string } {
  const byId = (['build', 'buildrequest', 'buildset'] as const).filter((k) => values[k] !== undefined);
  if (byId.length > 1) throw usageError(`explain takes one of --build, --buildrequest, --buildset, got ${byId.map((k) => `--${k}`).join(' and ')}`);
  if (byId.length === 1) {
    const kind = byId[0]!;
    const id = values[kind]!;
    if (positionals.length) throw usageError(`explain --${kind} ID takes no METHOD PATH, got "${positionals.join(' ')}"`);
    if (!/^[0-9]{1,16}$/.test(id) || !Number.isSafeInteger(Number(id))) throw usageError(`--${kind} expects a numeric id, e.g. --${kind} 1000000000000005, got "${id}"`);
    return { method: 'GET', path: `/api/v2/${kind}s/${Number(id)}` };
  }
  const [method, requestPath, ...extra] = positionals;
  if (!method || !requestPath) throw usageError('explain needs METHOD and PATH (e.g. explain GET /api/v2/builders/linux64-opt), or --build ID');
  if (extra.length) throw usageError(`explain takes METHOD and PATH, got more: "${extra.join(' ')}"`);
  if (!requestPath.startsWith('/')) throw usageError(`PATH must start with "/", got "${requestPath}"`);
  return { method, path: requestPath };
}

async function explain(positionals: string[], values: Values): Promise<number> {
  const { method, path: requestPath } = explainTarget(positionals, values);
  if (values.admin !== undefined && values.config !== undefined) throw usageError('explain takes --config FILE or --admin URL, not both');
  const body = values['body-file'] ? readFileSync(values['body-file']) : undefined;
  const headers = parseHeaders(values.header);
  let result: Explanation;
  if (values.admin !== undefined) {
    const base = adminBase(values.admin);
    try {
      // GET is a read (open unless reads are protected); a body needs POST, which always needs the token.
      result = body
        ? await adminJson<Explanation>(base, '/explain', { method, path: requestPath, headers, body: body.toString('utf8') })
        : await adminGet<Explanation>(base, `/explain?${new URLSearchParams([['method', method], ['path', requestPath], ...Object.entries(headers).map(([k, v]) => ['header', `${k}: ${v}`])])}`);
    } catch (error) {
      if (!(error instanceof AdminUnavailable)) throw error;
      console.error(error.message);
      return 1;
    }
  } else {
    const table = await loadConfigFile(configPath(values));
    const upstream = new Upstream();
    result = await explainRequest(table, { method, path: requestPath, headers, ...(body ? { body } : {}) }, new BuilderDirectory(upstream)).finally(() => upstream.close());
  }
  console.log(values.json ? JSON.stringify(result, null, 2) : formatExplanation(result));
  if (!values.json && values.admin === undefined && result.owner?.side === 'queue') {
    console.log(`  ask:      which queue and task: strangler-proxy explain --admin http://127.0.0.1:${DEFAULT_ADMIN_PORT} ${method} ${requestPath} (the running proxy's store has them)`);
  }
  return 0;
}

/** A reachable problem of `routes`/`plan`/`report --admin` (not a usage error): printed, exit 1. */
class AdminUnavailable extends Error {}

function adminBase(url: string): URL {
  let base: URL;
  try {
    base = new URL(url);
  } catch {
    throw usageError(`--admin expects the admin listener's URL, e.g. http://127.0.0.1:8081, got "${url}"`);
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') throw usageError(`--admin expects an http:// or https:// URL, got "${url}"`);
  if (base.username || base.password) throw usageError('--admin: put no credentials in the URL; the token is read from STRANGLER_ADMIN_TOKEN');
  return base;
}

function isLoopback(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '');
  return host === 'localhost' || (isIP(host) === 4 && host.startsWith('127.')) || host === '::1';
}

/** GET a JSON endpoint of a running proxy's admin API, with the bearer token from STRANGLER_ADMIN_TOKEN when set. */
function adminGet<T>(base: URL, endpoint: string): Promise<T> {
  return adminJson<T>(base, endpoint);
}

/** GET, or with `send` POST it as JSON, to the admin API, with the bearer token from STRANGLER_ADMIN_TOKEN when set. */
async function adminJson<T>(base: URL, endpoint: string, send?: unknown): Promise<T> {
  const url = new URL(base.pathname.replace(/\/+$/, '') + endpoint, base);
  const headers: Record<string, string> = { accept: 'application/json', ...(send !== undefined ? { 'content-type': 'application/json' } : {}) };
  const token = adminTokenFromEnv();
  if (token) {
    // SECURITY: the token goes to the URL given and nowhere else (no redirects followed); plain http off this machine is warned about.
    if (url.protocol === 'http:' && !isLoopback(url.hostname)) console.error(`warning: sending the admin token over plain http to ${url.host}`);
    headers.authorization = `Bearer ${token}`;
  }
  let res: Response;
  try {
    res = await fetch(url, { headers, redirect: 'error', signal: AbortSignal.timeout(10_000), ...(send !== undefined ? { method: 'POST', body: JSON.stringify(send) } : {}) });
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    throw new AdminUnavailable(`cannot ask the running proxy at ${url.origin}: ${cause?.code ?? cause?.message ?? (error as Error).message}`);
  }
  const text = await res.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new AdminUnavailable(`${url.href} answered ${res.status} with something that is not JSON: is ${base.origin} the admin port?`);
  }
  if (!res.ok) {
    const message = typeof body === 'object' && body !== null ? (body as { error?: unknown }).error : undefined;
    const hint = res.status === 401 ? (token ? ' (STRANGLER_ADMIN_TOKEN does not match the proxy\'s token)' : ' (set STRANGLER_ADMIN_TOKEN to the proxy\'s admin token)') : '';
    throw new AdminUnavailable(`${url.href} answered ${res.status}: ${typeof message === 'string' ? message : text.slice(0, 200)}${hint}`);
  }
  return body as T;
}

/** The routing table a running proxy has in force, compiled here from the file text it reports. */
function tableFromAdmin(view: RoutesView, base: URL): RoutingTable {
  try {
    return parseConfig(Buffer.from(view.text, 'utf8'), `${base.origin} (${view.file})`, new Date(view.loadedAt));
  } catch (error) {
    throw new AdminUnavailable(`the running proxy's routes (${view.file}) do not compile here: ${(error as Error).message}`);
  }
}

async function routes(positionals: string[], values: Values): Promise<number> {
  if (positionals.length) throw usageError(`routes takes no arguments, got "${positionals.join(' ')}"; use --config FILE or --admin URL`);
  if (values.admin !== undefined && values.config !== undefined) throw usageError('routes takes --config FILE or --admin URL, not both');
  let view: RoutesView;
  if (values.admin !== undefined) {
    const base = adminBase(values.admin);
    try {
      view = await adminGet<RoutesView>(base, '/routes');
    } catch (error) {
      if (!(error instanceof AdminUnavailable)) throw error;
      console.error(error.message);
      return 1;
    }
  } else {
    view = routesView(await loadConfigFile(configPath(values)));
  }
  console.log(values.json ? JSON.stringify(view, null, 2) : formatRoutes(view));
  return 0;
}

/** Loads every file given and reports every invalid one (not just the first), like validate does. */
async function loadAll(files: string[]): Promise<RoutingTable[] | undefined> {
  const results = await Promise.allSettled(files.map((f) => loadConfigFile(path.resolve(f))));
  let failed = false;
  for (const r of results) {
    if (r.status === 'rejected') {
      if (!isStranglerError(r.reason)) throw r.reason;
      console.error(r.reason.message);
      failed = true;
    }
  }
  return failed ? undefined : results.map((r) => (r as PromiseFulfilledResult<RoutingTable>).value);
}

async function plan(positionals: string[], values: Values): Promise<number> {
  const extra = values['job-type'] ?? [];
  for (const name of extra) if (!name) throw usageError('--job-type needs a job type name');
  let report;
  if (values.admin !== undefined) {
    if (positionals.length !== 1) throw usageError(`plan --admin URL takes one file, NEW.yaml; got ${positionals.length}`);
    const base = adminBase(values.admin);
    const tables = await loadAll([positionals[0]!]);
    if (!tables) return 1;
    let current: RoutingTable;
    let progress: ProgressView;
    let view: RoutesView;
    try {
      view = await adminGet<RoutesView>(base, '/routes');
      progress = await adminGet<ProgressView>(base, '/progress');
      current = tableFromAdmin(view, base);
    } catch (error) {
      if (!(error instanceof AdminUnavailable)) throw error;
      console.error(error.message);
      return 1;
    }
    const traffic = new Map<string, number>();
    const nonJobTypes = new Set<string>();
    for (const j of progress.jobTypes) {
      if (j.requests['1h'].requests > 0) traffic.set(j.jobType, j.requests['1h'].requests);
      if (j.label !== 'job-type') nonJobTypes.add(j.jobType);
    }
    report = buildPlan({
      mode: 'admin',
      current,
      next: tables[0]!,
      currentSource: `${base.origin} (in force: ${view.file})`,
      nextSource: path.resolve(positionals[0]!),
      extraJobTypes: [...progress.knownJobTypeNames, ...extra],
      considered: "the running proxy's known job types and traffic, the exact names in both files, --job-type",
      traffic,
      trafficWindow: '1h',
      nonJobTypeLabels: nonJobTypes,
    });
  } else {
    if (positionals.length !== 2) throw usageError(`plan needs CURRENT.yaml NEW.yaml (or --admin URL NEW.yaml); got ${positionals.length} file${positionals.length === 1 ? '' : 's'}`);
    const tables = await loadAll(positionals);
    if (!tables) return 1;
    report = buildPlan({
      mode: 'files',
      current: tables[0]!,
      next: tables[1]!,
      currentSource: path.resolve(positionals[0]!),
      nextSource: path.resolve(positionals[1]!),
      extraJobTypes: extra,
      considered: 'the exact names in both files, --job-type',
    });
  }
  console.log(values.json ? JSON.stringify(report, null, 2) : formatPlan(report));
  return report.changed ? 3 : 0;
}

const REPORT_FORMATS = ['table', 'json', 'csv'] as const;

/** The build comparison of a running proxy (GET /builds), printed as a table, JSON or CSV. */
async function report(positionals: string[], values: Values): Promise<number> {
  if (positionals.length) throw usageError(`report takes no arguments, got "${positionals.join(' ')}"`);
  if (values.admin === undefined) throw usageError(`report needs --admin URL: the builds are counted by a running proxy, e.g. --admin http://127.0.0.1:${DEFAULT_ADMIN_PORT}`);
  const window = values.window ?? DEFAULT_WINDOW;
  try {
    parseWindow(window);
  } catch (error) {
    throw usageError(`--window: ${(error as Error).message}`);
  }
  const format = values.format ?? 'table';
  if (!(REPORT_FORMATS as readonly string[]).includes(format)) throw usageError(`--format must be ${REPORT_FORMATS.join(', ')}; got "${format}"`);
  const jobTypes = values['job-type'] ?? [];
  if (jobTypes.length > 1) throw usageError('report takes one --job-type NAME (or none, for every job type)');
  if (jobTypes[0] === '') throw usageError('--job-type needs a job type name');
  const minBuilds = values['min-builds'];
  if (minBuilds !== undefined && !/^[1-9][0-9]{0,5}$/.test(minBuilds)) throw usageError(`--min-builds must be a whole number from 1 to 999999, got "${minBuilds}"`);
  const base = adminBase(values.admin);
  const query = new URLSearchParams({ window });
  if (jobTypes[0] !== undefined) query.set('jobType', jobTypes[0]);
  if (minBuilds !== undefined) query.set('minBuilds', minBuilds);
  let view: BuildsView;
  try {
    view = await adminGet<BuildsView>(base, `/builds?${query}`);
  } catch (error) {
    if (!(error instanceof AdminUnavailable)) throw error;
    console.error(error.message);
    return 1;
  }
  if (format === 'json') console.log(JSON.stringify(view, null, 2));
  else if (format === 'csv') process.stdout.write(formatBuildsCsv(view));
  else console.log(formatBuildsTable(view));
  return 0;
}

/**
 * The proxy in front of stand-ins, nothing else needed: by default the demo's
 * own world (a Buildbot look-alike as the legacy master and a stand-in
 * Taskcluster queue that one job type moved to); with --config, a stand-in on
 * each backend's port of that file. Prints what to try.
 */
async function demo(values: Values): Promise<void> {
  const given = values.config ?? process.env.STRANGLER_CONFIG;
  const world = given === undefined || given === '' ? await startDemoWorld() : await startStandinsFor(path.resolve(given), await loadConfigFile(path.resolve(given)));
  // The temporary folder (the demo's routes file, the store) goes whichever way the process ends.
  process.on('exit', () => world.removeSync());
  let proxy: Strangler;
  try {
    proxy = await serve({ ...values, config: world.file, 'data-dir': world.dataDir, 'log-format': values['log-format'] ?? process.env.LOG_FORMAT ?? 'pretty' });
  } catch (error) {
    await world.close();
    world.removeSync();
    throw error;
  }
  const file = world.file;
  const table = proxy.store.current();
  const p = proxy.proxyUrl;
  const host = hostOf(values);
  const everywhere = host === '0.0.0.0' ? 'every IPv4 interface' : host === '::' ? 'every interface' : undefined;
  const config = file === path.resolve('routes.yaml') ? '' : ` --config ${file}`;
  const [moved, stayed] = ['linux64-opt', 'win32-debug'];
  console.log(`
strangler-proxy demo — the proxy in front of stand-ins${world.ownFile ? ': linux64-* moved to a Taskcluster queue, the rest on a Buildbot look-alike' : ' that answer like Buildbot'}
  proxy:     ${p}${everywhere ? `  (listening on ${everywhere}, port ${new URL(p).port})` : ''}
  status:    ${proxy.adminUrl}/  (metrics: ${proxy.adminUrl}/metrics)
  routes:    ${file}${world.ownFile ? '  (removed when the demo stops)' : ''}
${world.standins.map((s) => `  stand-in:  ${s.name.padEnd(12)} ${s.url}${s.note ? `  ${s.note}` : ''}`).join('\n')}

Try (X-Strangler-Backend says who answered):
  curl -si ${p}/api/v2/builders/${moved}/builds | grep -i '^x-strangler'
  curl -si ${p}/api/v2/builders/${stayed}/builds | grep -i '^x-strangler'
  npx strangler-proxy explain${config} POST /api/v2/forceschedulers/force --body-file <(echo '${forceBody(moved)}')
${walkthroughLines(p, world.sides(table))}
Edit ${path.basename(file)} and save: the next request follows the new routes. Ctrl-C stops the demo.
`);
}

/** A parseArgs complaint in one line: Node's unknown-option message goes on about positionals starting with "-". */
function argsMessage(error: unknown): string {
  const { code, message } = error as { code?: string; message?: string };
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return `unknown option ${/'([^']+)'/.exec(message ?? '')?.[1] ?? message}`;
  return (message ?? String(error)).split('\n')[0]!;
}

export async function main(argv: string[]): Promise<number | undefined> {
  // Which command this is, before the strict parse, so that even a usage error can say where its help is.
  const first = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: false }).positionals[0];
  const named = isCommand(first) ? first : undefined;
  try {
    return await run(argv);
  } catch (error) {
    if (!isStranglerError(error, 'USAGE')) throw error;
    const help = named === undefined || named === 'help' ? 'strangler-proxy --help' : `strangler-proxy ${named} --help`;
    throw new StranglerError('USAGE', `${error.message} (see ${help})`, { cause: error });
  }
}

async function run(argv: string[]): Promise<number | undefined> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    throw usageError(argsMessage(error));
  }
  const { values, positionals } = parsed;
  if (values.version) {
    console.log(`strangler-proxy ${packageVersion()} (Node.js ${process.version})`);
    return 0;
  }
  const [command = 'serve', ...rest] = positionals;
  if (!isCommand(command)) throw usageError(`unknown command "${command}"; the commands are ${Object.keys(COMMANDS).join(', ')}`);
  if (values.help) {
    console.log(positionals.length === 0 ? USAGE : COMMANDS[command].help);
    return 0;
  }
  const allowed: readonly string[] = COMMANDS[command].options;
  for (const option of Object.keys(values)) {
    if (!allowed.includes(option)) throw usageError(`${command} does not take --${option}`);
  }
  switch (command) {
    case 'serve':
      if (rest.length) throw usageError(`serve takes no arguments, got "${rest.join(' ')}"`);
      await serve(values);
      return undefined; // keeps running
    case 'validate':
      if (rest.length > 1) throw usageError(`validate takes one FILE, got ${rest.length}`);
      return validate(rest, values);
    case 'explain':
      return explain(rest, values);
    case 'routes':
      return routes(rest, values);
    case 'plan':
      return plan(rest, values);
    case 'report':
      return report(rest, values);
    case 'demo':
      if (rest.length) throw usageError(`demo takes no arguments, got "${rest.join(' ')}"`);
      await demo(values);
      return undefined;
    case 'help': {
      if (rest.length > 1) throw usageError(`help takes one COMMAND, got "${rest.join(' ')}"`);
      const topic = rest[0];
      if (topic === undefined) console.log(USAGE);
      else if (isCommand(topic)) console.log(COMMANDS[topic].help);
      else throw usageError(`no help for "${topic}": the commands are ${Object.keys(COMMANDS).join(', ')}`);
      return 0;
    }
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== undefined) process.exitCode = code;
  },
  (error: unknown) => {
    if (isStranglerError(error)) {
      console.error(error.message);
      process.exitCode = error.code === 'USAGE' ? 2 : 1;
    } else {
      console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
      process.exitCode = 1;
    }
  },
);
