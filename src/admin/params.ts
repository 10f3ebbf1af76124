/**
 * Reading the admin API's query parameters and JSON bodies. Everything here
 * is client input: anything unexpected throws {@link BadRequest} with a
 * message saying what was expected, which the app answers with 400.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { isStranglerError } from '../errors.js';
import type { ExplainInput } from '../explain.js';
import { DEFAULT_WINDOW, parseWindow } from '../tracking/compare.js';
import { BadRequest } from './errors.js';

/** An HTTP method token (RFC 9110), kept short. */
const METHOD = /^[A-Za-z]{1,20}$/;
/** A header field name (RFC 9110 token). */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$/;
const MAX_PATH = 8192;
/** Builder names are short identifiers: a longer value is a mistake, not a name. */
const MAX_JOB_TYPE = 256;
/** As large as the proxy ever reads from a force body (settings.bodyPeekLimitBytes' default) and a bit. */
export const MAX_EXPLAIN_BODY_BYTES = 2 * 1024 * 1024;

type Query = Record<string, unknown>;

/** One optional string parameter; repeated or non-string is a 400. */
export function single(query: Query, name: string): string | undefined {
  const value = query[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw new BadRequest(`query parameter "${name}" must be given once as a string`, { parameter: name });
  return value;
}

/** An integer parameter within [min, max]; `fallback` when absent. */
export function intParam(query: Query, name: string, min: number, max: number, fallback: number): number {
  const text = single(query, name);
  if (text === undefined || text === '') return fallback;
  if (!/^[0-9]{1,9}$/.test(text) || Number(text) < min || Number(text) > max) {
    throw new BadRequest(`query parameter "${name}" must be an integer from ${min} to ${max}, got ${JSON.stringify(text.slice(0, 50))}`, { parameter: name });
  }
  return Number(text);
}

/** A job type (builder name) parameter, or null when absent or empty. */
export function jobTypeParam(query: Query, name: string): string | null {
  const text = single(query, name);
  if (text === undefined || text === '') return null;
  if (text.length > MAX_JOB_TYPE || /[\u0000-\u001f\u007f]/.test(text)) {
    throw new BadRequest(`query parameter "${name}" must be a job type (a builder name of at most ${MAX_JOB_TYPE} characters, no control characters)`, { parameter: name });
  }
  return text;
}

/** A time window such as `1h`, `24h`, `7d` (tracking/compare.ts parseWindow); DEFAULT_WINDOW when absent or empty. */
export function windowParam(query: Query, name: string): { name: string; ms: number } {
  const text = single(query, name);
  const window = text === undefined || text === '' ? DEFAULT_WINDOW : text;
  try {
    return { name: window, ms: parseWindow(window) };
  } catch (error) {
    if (!isStranglerError(error, 'BAD_REQUEST')) throw error;
    throw new BadRequest(`query parameter "${name}": ${error.message}`, { parameter: name });
  }
}

/** Refuses parameters the endpoint does not know, so that a typo is not silently ignored. */
export function onlyParams(query: Query, allowed: readonly string[]): void {
  for (const name of Object.keys(query)) {
    if (!allowed.includes(name)) {
      throw new BadRequest(`unknown query parameter "${name.slice(0, 50)}"; expected ${allowed.length ? allowed.map((a) => `"${a}"`).join(', ') : 'none'}`, { parameter: name.slice(0, 50) });
    }
  }
}

function checkMethod(method: unknown): string {
  if (typeof method !== 'string' || !METHOD.test(method)) throw new BadRequest('"method" must be an HTTP method such as GET or POST', { field: 'method' });
  return method.toUpperCase();
}

function checkPath(path: unknown): string {
  if (typeof path !== 'string' || !path.startsWith('/') || path.length > MAX_PATH) {
    throw new BadRequest(`"path" must be a request path starting with "/" (at most ${MAX_PATH} characters), e.g. /api/v2/builders/linux64-opt/builds`, { field: 'path' });
  }
  return path;
}

function addHeader(headers: IncomingHttpHeaders, name: string, value: string): void {
  // SECURITY: "__proto__" is a valid token but, written as a key, would touch the object's prototype.
  if (!HEADER_NAME.test(name) || name.toLowerCase() === '__proto__') throw new BadRequest(`"${name.slice(0, 50)}" is not a header name`, { field: 'headers' });
  headers[name.toLowerCase()] = value;
}

/** `GET /explain?method=GET&path=/api/v2/...&header=X-Job-Type:%20linux64-opt` (header repeatable). */
export function explainFromQuery(query: Query): ExplainInput {
  onlyParams(query, ['method', 'path', 'header']);
  const method = single(query, 'method');
  const path = single(query, 'path');
  if (method === undefined || path === undefined) {
    throw new BadRequest('GET /explain needs "method" and "path" query parameters, e.g. /explain?method=GET&path=/api/v2/builders/linux64-opt/builds');
  }
  const raw = query.header;
  const lines = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw];
  const headers: IncomingHttpHeaders = {};
  for (const line of lines) {
    if (typeof line !== 'string') throw new BadRequest('query parameter "header" must be "Name: value"', { parameter: 'header' });
    const colon = line.indexOf(':');
    if (colon <= 0) throw new BadRequest(`query parameter "header" must be "Name: value", got ${JSON.stringify(line.slice(0, 80))}`, { parameter: 'header' });
    addHeader(headers, line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  return { method: checkMethod(method), path: checkPath(path), headers };
}

/** `POST /explain` with `{"method", "path", "headers": {"Name": "value"}, "body": "<text>"}`. */
export function explainFromBody(body: unknown): ExplainInput {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new BadRequest('expected a JSON object {"method", "path", "headers", "body"} with content-type application/json');
  }
  const input = body as Record<string, unknown>;
  for (const key of Object.keys(input)) {
    if (!['method', 'path', 'headers', 'body'].includes(key)) throw new BadRequest(`unknown field "${key.slice(0, 50)}"; expected method, path, headers, body`, { field: key.slice(0, 50) });
  }
  const headers: IncomingHttpHeaders = {};
  if (input.headers !== undefined) {
    if (typeof input.headers !== 'object' || input.headers === null || Array.isArray(input.headers)) {
      throw new BadRequest('"headers" must be an object of header names to string values', { field: 'headers' });
    }
    // Own keys only (Object.entries); addHeader refuses "__proto__".
    for (const [name, value] of Object.entries(input.headers)) {
      if (typeof value !== 'string') throw new BadRequest(`header "${name.slice(0, 50)}" must have a string value`, { field: 'headers' });
      addHeader(headers, name, value);
    }
  }
  if (input.body !== undefined && typeof input.body !== 'string') throw new BadRequest('"body" must be a string (the request body as text)', { field: 'body' });
  return {
    method: checkMethod(input.method),
    path: checkPath(input.path),
    headers,
    ...(input.body !== undefined ? { body: Buffer.from(input.body as string, 'utf8') } : {}),
  };
}
