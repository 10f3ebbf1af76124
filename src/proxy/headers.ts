/**
 * Header rules for a transparent proxy: what crosses it unchanged, what is
 * hop-by-hop (RFC 9110 §7.6.1) and dropped, and the X-Forwarded-* it adds.
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';

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

export type HeaderMap = Record<string, string | string[]>;

/** Headers listed in a Connection header apply to that hop only. */
function connectionTokens(value: string | string[] | undefined): Set<string> | undefined {
  if (value === undefined) return undefined;
  const text = Array.isArray(value) ? value.join(',') : value;
  const tokens = text.split(',').map((t) => t.trim().toLowerCase()).filter(Boolean);
  return tokens.length > 0 ? new Set(tokens) : undefined;
}

function copyEndToEnd(headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>, out: HeaderMap, skip?: Set<string>): void {
  const perHop = connectionTokens(headers.connection);
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || HOP_BY_HOP.has(name) || perHop?.has(name) || skip?.has(name)) continue;
    out[name] = value;
  }
}

/** Never sent upstream: `expect` because the proxy itself answered any 100-continue. */
const NOT_FORWARDED = new Set(['expect']);

export interface UpstreamHeaderOptions {
  requestId: string;
  /** Host to send when the backend does not want the client's own. */
  backendHost?: string;
}

/** The headers sent to the backend: the client's end-to-end headers plus X-Forwarded-* and X-Request-Id. */
export function upstreamHeaders(req: IncomingMessage, options: UpstreamHeaderOptions): HeaderMap {
  const out: HeaderMap = {};
  copyEndToEnd(req.headers, out, NOT_FORWARDED);
  const client = clientAddress(req);
  const priorFor = req.headers['x-forwarded-for'];
  out['x-forwarded-for'] = priorFor ? `${Array.isArray(priorFor) ? priorFor.join(', ') : priorFor}, ${client}` : client;
  out['x-forwarded-proto'] ??= (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http';
  if (req.headers.host !== undefined) out['x-forwarded-host'] ??= req.headers.host;
  out['x-request-id'] = options.requestId;
  if (options.backendHost !== undefined) out.host = options.backendHost;
  return out;
}

/** The backend's end-to-end response headers, ready for `res.writeHead`. */
export function downstreamHeaders(headers: Record<string, string | string[] | undefined>): HeaderMap {
  const out: HeaderMap = {};
  copyEndToEnd(headers, out);
  return out;
}

function clientAddress(req: IncomingMessage): string {
  const address = req.socket.remoteAddress ?? 'unknown';
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}
