#!/usr/bin/env node
/**
 * The `strangler-proxy` command: serve (the default), validate, explain, demo.
 * Exit codes: 0 success, 1 invalid routes file or failed start, 2 usage error.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { startStandinBackend, type StandinBackend } from './demo/standin.js';
import { isStranglerError, StranglerError } from './errors.js';
import { explainRequest, formatExplanation } from './explain.js';
import { loadConfigFile } from './config/load.js';
import { createLogger, parseLogFormat, parseLogLevel } from './logging/logger.js';
import { DEFAULT_ADMIN_PORT, DEFAULT_PORT, startStrangler, type Strangler } from './main.js';
import { BuilderDirectory } from './proxy/builder-directory.js';

const USAGE = `Usage:
  strangler-proxy [serve] [--config FILE] [--port N] [--admin-port N] [--host ADDR] [--admin-host ADDR]
                          [--log-level error|warn|info|debug] [--log-format json|pretty]
  strangler-proxy validate [FILE]
  strangler-proxy explain [--config FILE] METHOD PATH [--header 'K: V']... [--body-file FILE] [--json]
  strangler-proxy demo

Environment: STRANGLER_CONFIG (default ./routes.yaml), PORT (${DEFAULT_PORT}), ADMIN_PORT (${DEFAULT_ADMIN_PORT}),
             HOST (0.0.0.0), ADMIN_HOST (127.0.0.1), LOG_LEVEL (info), LOG_FORMAT (json).
Exit codes: 0 ok, 1 invalid routes file or failed start, 2 usage error.`;

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  port: { type: 'string' },
  'admin-port': { type: 'string' },
  host: { type: 'string' },
  'admin-host': { type: 'string' },
  'log-level': { type: 'string' },
  'log-format': { type: 'string' },
  header: { type: 'string', short: 'H', multiple: true },
  'body-file': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} satisfies ParseArgsConfig['options'];

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

function usageError(message: string): StranglerError {
  return new StranglerError('USAGE', `${message}\n\n${USAGE}`);
}

function configPath(values: Values, positional?: string): string {
  return path.resolve(positional ?? values.config ?? process.env.STRANGLER_CONFIG ?? 'routes.yaml');
}

function portOf(flag: string | undefined, env: string | undefined, fallback: number, name: string): number {
  const text = flag ?? env;
  if (text === undefined || text === '') return fallback;
  const port = Number(text);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw usageError(`${name} must be a port number (0-65535), got "${text}"`);
  return port;
}

async function serve(values: Values): Promise<Strangler> {
  let level, format;
  try {
    level = parseLogLevel(values['log-level'] ?? process.env.LOG_LEVEL);
    format = parseLogFormat(values['log-format'] ?? process.env.LOG_FORMAT);
  } catch (error) {
    throw usageError((error as Error).message);
  }
  const logger = createLogger({ ...(level ? { level } : {}), ...(format ? { format } : {}) });
  const proxy = await startStrangler({
    configFile: configPath(values),
    port: portOf(values.port, process.env.PORT, DEFAULT_PORT, '--port / PORT'),
    adminPort: portOf(values['admin-port'], process.env.ADMIN_PORT, DEFAULT_ADMIN_PORT, '--admin-port / ADMIN_PORT'),
    host: values.host ?? process.env.HOST ?? '0.0.0.0',
    adminHost: values['admin-host'] ?? process.env.ADMIN_HOST ?? '127.0.0.1',
    logger,
  });
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

async function explain(positionals: string[], values: Values): Promise<number> {
  const [method, requestPath] = positionals;
  if (!method || !requestPath) throw usageError('explain needs METHOD and PATH, e.g. explain GET /api/v2/builders/linux64-opt');
  if (!requestPath.startsWith('/')) throw usageError(`PATH must start with "/", got "${requestPath}"`);
  const table = await loadConfigFile(configPath(values));
  const body = values['body-file'] ? readFileSync(values['body-file']) : undefined;
  const result = await explainRequest(table, { method, path: requestPath, headers: parseHeaders(values.header), ...(body ? { body } : {}) }, new BuilderDirectory());
  console.log(values.json ? JSON.stringify(result, null, 2) : formatExplanation(result));
  return 0;
}

/**
 * Two stand-in backends on the ports routes.yaml names, and the proxy in
 * front of them: a first run that shows routing working, nothing else needed.
 */
async function demo(values: Values): Promise<void> {
  const file = configPath(values);
  const table = await loadConfigFile(file);
  const builderNames = ['linux64-opt', 'linux64-debug', 'win32-debug', 'android-api-15-test', 'android-api-16-test', 'mac-opt'];
  const standins: StandinBackend[] = [];
  for (const backend of table.backends.values()) {
    const url = new URL(backend.url);
    if (!['127.0.0.1', 'localhost'].includes(url.hostname)) {
      throw new StranglerError('USAGE', `demo: backend ${backend.name} (${backend.url}) is not on this machine; the demo starts stand-ins on 127.0.0.1 ports only`);
    }
    try {
      standins.push(await startStandinBackend({ name: backend.name, builders: builderNames, port: Number(url.port || 80) }));
    } catch (error) {
      throw new StranglerError('USAGE', `demo: cannot start the ${backend.name} stand-in on ${backend.url}: ${(error as Error).message} (is something else using that port?)`);
    }
  }
  const proxy = await serve({ ...values, 'log-format': values['log-format'] ?? process.env.LOG_FORMAT ?? 'pretty' });
  const p = proxy.proxyUrl;
  console.log(`
strangler-proxy demo — the proxy in front of two stand-in backends that answer like Buildbot
  proxy:     ${p}        (routes: ${file})
  admin:     ${proxy.adminUrl}/metrics
${standins.map((s) => `  stand-in:  ${s.name.padEnd(12)} ${s.url}${table.backends.get(s.name)?.legacy ? '  (legacy)' : ''}`).join('\n')}

Try (X-Strangler-Backend says who answered):
  curl -si ${p}/api/v2/builders/linux64-opt | grep -i '^x-strangler'
  curl -si ${p}/api/v2/builders/win32-debug | grep -i '^x-strangler'
  npx strangler-proxy explain POST /api/v2/forceschedulers/force --body-file <(echo '{"jsonrpc":"2.0","method":"force","id":1,"params":{"builderNames":["linux64-opt"]}}')

Edit ${path.basename(file)} and save: the next request follows the new routes. Ctrl-C stops the demo.
`);
  const closeStandins = () => void Promise.all(standins.map((s) => s.close()));
  process.on('exit', closeStandins);
}

export async function main(argv: string[]): Promise<number | undefined> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    throw usageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const [command = 'serve', ...rest] = positionals;
  switch (command) {
    case 'serve':
      if (rest.length) throw usageError(`serve takes no arguments, got "${rest.join(' ')}"`);
      await serve(values);
      return undefined; // keeps running
    case 'validate':
      return validate(rest, values);
    case 'explain':
      return explain(rest, values);
    case 'demo':
      await demo(values);
      return undefined;
    case 'help':
      console.log(USAGE);
      return 0;
    default:
      throw usageError(`unknown command "${command}"`);
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
