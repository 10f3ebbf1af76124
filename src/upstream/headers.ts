/**
 * Header rules for a transparent proxy: what crosses it unchanged, what is
 * hop-by-hop (RFC 9110 §7.6.1) and dropped, and the X-Forwarded-* it adds.
 *
 * Headers stay in the flat `[name, value, name, value, ...]` form both node
 * (`req.rawHeaders`) and undici (raw response headers) hand over and accept,
 * with the sender's spelling and order: building objects per request costs
 * more than the rest of the header work (docs/performance.md).
 */
import type { IncomingMessage } from 'node:http';

/** `[name, value, name, value, ...]`, names in any case. */
export type RawHeaders = string[];

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
]);

/**
 * SECURITY: names a Connection header can never remove, whoever sends it: the
 * message's framing (RFC 9112 §6) and where it goes. `Connection: host` would
 * otherwise send a request on without the Host it was routed by, and
 * `Connection: content-length` would change how its body is delimited.
 */
const NEVER_PER_HOP = new Set(['host', 'content-length', 'transfer-encoding']);

/** Names in a Connection header (other than keep-alive/close and {@link NEVER_PER_HOP}) that apply to that hop only, or undefined. */
export function connectionTokens(values: string[] | undefined): Set<string> | undefined {
  if (values === undefined) return undefined;
  if (values.length === 1 && /^\s*(keep-alive|close)\s*$/i.test(values[0]!)) return undefined; // the usual one, no list to split
  const tokens = values
    .join(',')
    .split(',')
    .map((t) => t.trim().toLowerCase())
    .filter((t) => t !== '' && t !== 'keep-alive' && t !== 'close' && !NEVER_PER_HOP.has(t));
  return tokens.length > 0 ? new Set(tokens) : undefined;
}

/** Removes the headers a Connection header named (rare: a second pass only when there are any). */
export function dropPerHop(out: RawHeaders, perHop: Set<string> | undefined): RawHeaders {
  if (perHop === undefined) return out;
  const kept: RawHeaders = [];
  for (let i = 0; i < out.length; i += 2) if (!perHop.has(out[i]!.toLowerCase())) kept.push(out[i]!, out[i + 1]!);
  return kept;
}

export interface UpstreamHeaderOptions {
  requestId: string;
  /** Host to send when the backend does not want the client's own. */
  backendHost?: string;
  /** Extra headers appended as given (the shadow marker). */
  extra?: RawHeaders;
}

/**
 * The headers sent to the backend: the client's end-to-end headers (not
 * `Expect`: the proxy itself answered any 100-continue), X-Forwarded-For
 * extended with the client's address, X-Forwarded-Proto and -Host unless an
 * earlier proxy set them, and our X-Request-Id in place of the client's.
 */
export function upstreamHeaders(req: Pick<IncomingMessage, 'rawHeaders' | 'socket'>, options: UpstreamHeaderOptions): RawHeaders {
  const raw = req.rawHeaders;
  const out: RawHeaders = [];
  let connection: string[] | undefined;
  let forwardedFor: string | undefined;
  let host: string | undefined;
  let hasProto = false;
  let hasForwardedHost = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower)) {
      if (lower === 'connection') (connection ??= []).push(value);
      continue;
    }
    switch (lower) {
      case 'expect':
      case 'x-request-id':
        continue;
      case 'x-forwarded-for':
        forwardedFor = forwardedFor === undefined ? value : `${forwardedFor}, ${value}`;
        continue;
      case 'host':
        host ??= value;
        if (options.backendHost !== undefined) continue;
        break;
      case 'x-forwarded-proto':
        hasProto = true;
        break;
      case 'x-forwarded-host':
        hasForwardedHost = true;
        break;
    }
    out.push(name, value);
  }
  const perHop = connectionTokens(connection);
  const result = dropPerHop(out, perHop);
  // An earlier hop's X-Forwarded-* named in Connection is gone: the proxy's own takes its place.
  if (perHop !== undefined) {
    if (perHop.has('x-forwarded-for')) forwardedFor = undefined;
    if (perHop.has('x-forwarded-proto')) hasProto = false;
    if (perHop.has('x-forwarded-host')) hasForwardedHost = false;
  }
  const client = clientAddress(req);
  result.push('x-forwarded-for', forwardedFor === undefined ? client : `${forwardedFor}, ${client}`);
  if (!hasProto) result.push('x-forwarded-proto', (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http');
  if (!hasForwardedHost && host !== undefined) result.push('x-forwarded-host', host);
  result.push('x-request-id', options.requestId);
  if (options.backendHost !== undefined) result.push('host', options.backendHost);
  if (options.extra !== undefined) result.push(...options.extra);
  return result;
}

/**
 * The backend's end-to-end response headers, as undici hands them over (names
 * lower-cased, repeated headers as arrays), flattened for `res.writeHead`, and
 * the Content-Type (kept for shadow comparison).
 */
export function endToEndResponseHeaders(headers: Readonly<Record<string, string | string[] | undefined>>): { list: RawHeaders; contentType: string | undefined } {
  const list: RawHeaders = [];
  let connection: string[] | undefined;
  let contentType: string | undefined;
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    if (HOP_BY_HOP.has(name)) {
      if (name === 'connection') connection = typeof value === 'string' ? [value] : value;
      continue;
    }
    if (typeof value === 'string') {
      list.push(name, value);
      if (name === 'content-type') contentType = value;
    } else for (const one of value) list.push(name, one);
  }
  return { list: dropPerHop(list, connectionTokens(connection)), contentType };
}

function clientAddress(req: Pick<IncomingMessage, 'socket'>): string {
  const address = req.socket.remoteAddress ?? 'unknown';
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

/** The first value of a header in a raw `[name, value, ...]` list (names compared case-insensitively). */
export function rawHeaderValue(headers: readonly string[], name: string): string | undefined {
  for (let i = 0; i < headers.length; i += 2) if (headers[i]!.toLowerCase() === name) return headers[i + 1];
  return undefined;
}
