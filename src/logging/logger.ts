/**
 * winston, set up once: JSON lines by default (for log shippers), or a
 * readable single-line format for a person at a terminal.
 *
 * The access log (one line per proxied request, the hot path) is written by
 * `logger.access()`: the same fields and formats, the same stream, but built
 * by hand and written in batches (up to 50 ms late), because winston's format pipeline per line
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

/** One proxied request, as the access log records it; undefined fields are left out of the line. */
export interface AccessRecord {
  requestId: string;
  method: string;
  path: string;
  status: number;
  durationMs: number;
  backend: string;
  jobType?: string | undefined;
  rule?: string | undefined;
  reason?: string | undefined;
  sticky?: string | undefined;
  fallback?: string | undefined;
  retries?: number | undefined;
  shadow?: string | undefined;
  error?: string | undefined;
}

export interface Logger extends winston.Logger {
  /** One access-log line (message "request", level info). */
  access(record: AccessRecord): void;
  /** Writes out access lines still in the batch (at shutdown; tests, before reading the log). */
  flushAccess(): void;
}

/** Access lines are written when this many bytes are waiting, or ACCESS_FLUSH_MS after the first of them. */
const ACCESS_BATCH_BYTES = 64 * 1024;
const ACCESS_FLUSH_MS = 50;

/** What JSON must escape (and lone surrogates, which JSON.stringify escapes too). */
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/**
 * `,"key":value` for a JSON line. Request data is never trusted: any string
 * with a character JSON escapes goes through JSON.stringify; the rest (nearly
 * all: ids, paths, names) is quoted as is, which is cheaper.
 */
function jsonField(key: string, value: string | number | undefined): string {
  if (value === undefined) return '';
  if (typeof value === 'number') return `,"${key}":${value}`;
  return NEEDS_ESCAPE.test(value) ? `,"${key}":${JSON.stringify(value)}` : `,"${key}":"${value}"`;
}

/** The JSON access line, field for field what winston's json format would write for the same record. */
function accessJson(r: AccessRecord, timestamp: string): string {
  return (
    `{"level":"info","message":"request"` +
    jsonField('requestId', r.requestId) +
    jsonField('method', r.method) +
    jsonField('path', r.path) +
    jsonField('status', r.status) +
    jsonField('durationMs', r.durationMs) +
    jsonField('backend', r.backend) +
    jsonField('jobType', r.jobType) +
    jsonField('rule', r.rule) +
    jsonField('reason', r.reason) +
    jsonField('sticky', r.sticky) +
    jsonField('fallback', r.fallback) +
    jsonField('retries', r.retries) +
    jsonField('shadow', r.shadow) +
    jsonField('error', r.error) +
    `,"timestamp":"${timestamp}"}\n`
  );
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

/**
 * Lines encoded into one buffer as they come, written out as one chunk. Each
 * line is encoded at once, so nothing of it outlives the request: a string
 * built up over hundreds of requests (one `+=` per line) has to be flattened
 * at the write and keeps its pieces alive for the collector meanwhile
 * (measurements in docs/performance.md).
 */
class LineBatch {
  private buffer = Buffer.allocUnsafe(ACCESS_BATCH_BYTES);
  private used = 0;

  constructor(private readonly stream: Writable) {}

  /** Adds a line (ending in a newline); true when the batch is full and should be flushed. */
  add(line: string): boolean {
    const free = this.buffer.length - this.used;
    // A UTF-16 code unit takes at most 3 bytes in UTF-8; the exact size is counted only near the end.
    if (line.length * 3 > free && Buffer.byteLength(line) > free) {
      this.flush();
      if (Buffer.byteLength(line) > this.buffer.length) {
        this.stream.write(line); // longer than a whole batch (a very long path): on its own
        return false;
      }
    }
    this.used += this.buffer.write(line, this.used);
    return this.used >= this.buffer.length - 1024;
  }

  flush(): void {
    if (this.used === 0) return;
    const chunk = this.buffer.subarray(0, this.used);
    // A fresh buffer, not this one again: the stream may hold the chunk until it is written.
    this.buffer = Buffer.allocUnsafe(ACCESS_BATCH_BYTES);
    this.used = 0;
    this.stream.write(chunk);
  }
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const format = options.format ?? 'json';
  const stream = options.stream ?? process.stdout;
  const logger = winston.createLogger({
    level: options.level ?? 'info',
    format: winston.format.combine(winston.format.timestamp(), format === 'json' ? winston.format.json() : pretty),
    transports: [new winston.transports.Stream({ stream })],
  }) as Logger;

  // Access lines go out in batches: one write per 64 KiB or 50 ms, not one per request.
  const batch = new LineBatch(stream);
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    batch.flush();
  };
  // The timestamp string is made once per millisecond, not once per line.
  let stampedAt = 0;
  let stamp = '';
  const accessEnabled = logger.isLevelEnabled('info');
  logger.access = (record) => {
    if (!accessEnabled) return;
    const now = Date.now();
    if (now !== stampedAt) {
      stampedAt = now;
      stamp = new Date(now).toISOString();
    }
    const full = batch.add(format === 'json' ? accessJson(record, stamp) : prettyLine({ level: 'info', message: 'request', ...record, timestamp: stamp }) + '\n');
    if (full) flush();
    else timer ??= setTimeout(flush, ACCESS_FLUSH_MS).unref();
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
