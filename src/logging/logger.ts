/**
 * winston, set up once: JSON lines by default (for log shippers), or a
 * readable single-line format for a person at a terminal.
 *
 * The access log (one line per proxied request, the hot path) is written by
 * `logger.access()`: the same fields and formats, the same stream, but built
 * by hand and written in batches, because winston's format pipeline per line
 * cost more than the rest of the proxy's work per request (measurements in
 * docs/decisions/0001-forwarding-engine.md).
 */
import type { Writable } from 'node:stream';
import winston from 'winston';

export type LogFormat = 'json' | 'pretty';
export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LoggerOptions {
  level?: LogLevel;
  format?: LogFormat;
  /** Where lines go; stdout by default. Tests pass a stream to read them back. */
  stream?: Writable;
}

export interface Logger extends winston.Logger {
  /** One access-log line (message "request", level info) with these fields; undefined fields are left out. */
  access(fields: Record<string, unknown>): void;
  /** Writes out access lines still in the batch (at shutdown). */
  flushAccess(): void;
}

function prettyLine(info: Record<string, unknown>): string {
  const { level, message, timestamp, ...fields } = info;
  const rest = Object.entries(fields)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v)}`)
    .join(' ');
  return `${String(timestamp)} ${String(level).padEnd(5)} ${String(message)}${rest ? ' ' + rest : ''}`;
}

const pretty = winston.format.printf((info) => prettyLine(info));

export function createLogger(options: LoggerOptions = {}): Logger {
  const format = options.format ?? 'json';
  const stream = options.stream ?? process.stdout;
  const logger = winston.createLogger({
    level: options.level ?? 'info',
    format: winston.format.combine(winston.format.timestamp(), format === 'json' ? winston.format.json() : pretty),
    transports: [new winston.transports.Stream({ stream })],
  }) as Logger;

  // Lines of one event-loop turn go out in one write.
  let batch: string[] = [];
  const flush = () => {
    if (batch.length === 0) return;
    const text = batch.join('');
    batch = [];
    stream.write(text);
  };
  const accessEnabled = logger.isLevelEnabled('info');
  logger.access = (fields) => {
    if (!accessEnabled) return;
    const info = { level: 'info', message: 'request', ...fields, timestamp: new Date().toISOString() };
    if (batch.length === 0) setImmediate(flush);
    batch.push(format === 'json' ? JSON.stringify(info) + '\n' : prettyLine(info) + '\n');
  };
  logger.flushAccess = flush;
  return logger;
}

export function parseLogLevel(value: string | undefined): LogLevel | undefined {
  if (value === undefined || value === '') return undefined;
  const level = value.toLowerCase();
  if ((LOG_LEVELS as readonly string[]).includes(level)) return level as LogLevel;
  throw new Error(`unknown log level "${value}"; expected one of: ${LOG_LEVELS.join(', ')}`);
}

export function parseLogFormat(value: string | undefined): LogFormat | undefined {
  if (value === undefined || value === '') return undefined;
  if (value === 'json' || value === 'pretty') return value;
  throw new Error(`unknown log format "${value}"; expected json or pretty`);
}
