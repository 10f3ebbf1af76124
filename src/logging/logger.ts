/**
 * winston, set up once: JSON lines by default (for log shippers), or a
 * readable single-line format for a person at a terminal.
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

export type Logger = winston.Logger;

const pretty = winston.format.printf((info) => {
  const { level, message, timestamp, ...fields } = info;
  const rest = Object.entries(fields)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v)}`)
    .join(' ');
  return `${String(timestamp)} ${level.padEnd(5)} ${String(message)}${rest ? ' ' + rest : ''}`;
});

export function createLogger(options: LoggerOptions = {}): Logger {
  const format = options.format ?? 'json';
  return winston.createLogger({
    level: options.level ?? 'info',
    format: winston.format.combine(
      winston.format.timestamp(),
      format === 'json' ? winston.format.json() : pretty,
    ),
    transports: [
      options.stream
        ? new winston.transports.Stream({ stream: options.stream })
        : new winston.transports.Console(),
    ],
  });
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
