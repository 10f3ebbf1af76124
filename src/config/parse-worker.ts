/**
 * The worker thread of src/config/off-thread.ts: parses and validates one
 * routes file and posts back the validated document (routes as JSON text in
 * chunks, so that the main thread can turn them back into objects a few at a
 * time), or the located error.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { isStranglerError } from '../errors.js';
import { validateConfig } from './load.js';
import type { ParseReply, ParseRequest } from './off-thread.js';

const ROUTES_PER_CHUNK = 500;

function parse({ bytes, file, at }: ParseRequest): ParseReply {
  try {
    const { routes, ...head } = validateConfig(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), file, new Date(at));
    const list = routes ?? [];
    const chunks: string[] = [];
    for (let i = 0; i < list.length; i += ROUTES_PER_CHUNK) chunks.push(JSON.stringify(list.slice(i, i + ROUTES_PER_CHUNK)));
    return { ok: true, head, routeChunks: chunks };
  } catch (error) {
    if (isStranglerError(error)) return { ok: false, code: error.code, message: error.message, details: { ...error.details } };
    return { ok: false, code: 'CONFIG_INVALID', message: `${file}:1:1: (file): could not be parsed: ${(error as Error)?.message ?? String(error)}`, details: { file } };
  }
}

parentPort!.postMessage(parse(workerData as ParseRequest));
