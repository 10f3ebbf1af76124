/**
 * Reloading a large routes file without stalling requests.
 *
 * Parsing and validating YAML is the bulk of a reload and cannot be split up,
 * so for a large file it runs in a worker thread (src/config/parse-worker.ts).
 * The worker cannot hand over the table itself (its matchers are functions),
 * so it sends the validated document back, and the main thread compiles it
 * again in slices of a few milliseconds, yielding to requests in between.
 * The table is still built whole before the store swaps one reference to it.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { StranglerError, type ErrorCode } from '../errors.js';
import type { RoutingTable } from '../routing/table.js';
import { compileSteps } from './compile.js';
import { runInSlices } from './slices.js';
import type { RawConfig, RawRoute } from './schema.js';

/**
 * Files up to this size are parsed on the main thread: they take a few
 * milliseconds, less than starting a worker.
 */
export const OFF_THREAD_MIN_BYTES = 8 * 1024;

export interface ParseRequest {
  bytes: Uint8Array;
  file: string;
  /** When the reload started (ms since the epoch): the table's loadedAt. */
  at: number;
}

export type ParseReply =
  | { ok: true; head: Omit<RawConfig, 'routes'>; routeChunks: string[] }
  | { ok: false; code: ErrorCode; message: string; details: Record<string, unknown> };

/**
 * Parses, validates and compiles `bytes` as parseConfig (src/config/load.ts)
 * does, without holding the event loop for more than a slice ({@link runInSlices})
 * at a time. Throws the same CONFIG_INVALID errors; rejects with the signal's
 * reason when aborted (the worker is stopped). `hash`: the bytes' sha256, when
 * the caller has it already.
 */
export async function parseConfigOffThread(bytes: Buffer, file: string, at: Date, options: { hash?: string; signal?: AbortSignal } = {}): Promise<RoutingTable> {
  const { signal } = options;
  const reply = await parseInWorker({ bytes, file, at: at.getTime() }, signal);
  if (!reply.ok) throw new StranglerError(reply.code, reply.message, { details: reply.details });

  const { routeChunks } = reply;
  // Each chunk is parsed when the compiler reaches it, so its objects are dropped young.
  function* routes(): Generator<RawRoute> {
    for (const chunk of routeChunks) yield* JSON.parse(chunk) as RawRoute[];
  }
  const hash = options.hash ?? createHash('sha256').update(bytes).digest('hex');
  const steps = compileSteps(reply.head, { file, hash, loadedAt: at, text: bytes.toString('utf8') }, routes());
  const result = await runInSlices(steps, signal);
  if (result.ok) return result.table;
  // The worker compiled the same document without a problem: reaching this is a bug, not a bad file.
  throw new StranglerError('CONFIG_INVALID', `${file}: ${result.problems.map((p) => p.message).join('; ')}`, { details: { file } });
}

function parseInWorker(request: ParseRequest, signal: AbortSignal | undefined): Promise<ParseReply> {
  signal?.throwIfAborted();
  return new Promise((resolve, reject) => {
    const worker = startWorker(request);
    // A reload in progress never keeps the process alive on its own.
    worker.unref();
    const settle = (done: () => void) => {
      signal?.removeEventListener('abort', onAbort);
      worker.removeAllListeners();
      worker.on('error', () => undefined);
      done();
    };
    const onAbort = () => settle(() => {
      void worker.terminate();
      reject(signal!.reason);
    });
    signal?.addEventListener('abort', onAbort, { once: true });
    worker.once('message', (reply: ParseReply) => settle(() => resolve(reply)));
    worker.once('error', (error) => settle(() => reject(failed(request.file, error.message))));
    worker.once('exit', (code) => settle(() => reject(failed(request.file, `the parser stopped (exit code ${code})`))));
  });
}

function failed(file: string, reason: string): StranglerError {
  return new StranglerError('CONFIG_INVALID', `${file}:1:1: (file): could not be parsed: ${reason}`, { details: { file } });
}

const fromSources = import.meta.url.endsWith('.ts');

function startWorker(request: ParseRequest): Worker {
  if (!fromSources) return new Worker(new URL('./parse-worker.js', import.meta.url), { workerData: request });
  // Run from the TypeScript sources (tests, the bench), the worker needs tsx registered in its own
  // thread: Node 20 does not carry a parent's --import hooks over to workers, and code evaluated in a
  // worker resolves package names from the working directory, so tsx's API is located from here.
  const tsxPackage = createRequire(import.meta.url).resolve('tsx/package.json');
  const { exports } = JSON.parse(readFileSync(tsxPackage, 'utf8')) as { exports: Record<string, { import: { default: string } }> };
  const tsx = new URL(exports['./esm/api']!.import.default, pathToFileURL(tsxPackage)).href;
  const entry = new URL('./parse-worker.ts', import.meta.url).href;
  return new Worker(`import(${JSON.stringify(tsx)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry)}); });`, { eval: true, workerData: request });
}
