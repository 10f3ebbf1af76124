import { expect } from 'chai';
import type { IncomingMessage } from 'node:http';
import { downstreamHeaders, downstreamHeadersOfHead, upstreamHeaders, type RawHeaders } from '../../../src/upstream/headers.js';

function fakeRequest(rawHeaders: RawHeaders, remoteAddress = '::ffff:10.0.0.9'): Pick<IncomingMessage, 'rawHeaders' | 'socket'> {
  return { rawHeaders, socket: { remoteAddress } } as unknown as IncomingMessage;
}

/** Raw pairs as an object of lower-cased names (values of repeated names in a list), to assert on. */
function asObject(raw: RawHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const prior = out[name];
    out[name] = prior === undefined ? raw[i + 1]! : [...(Array.isArray(prior) ? prior : [prior]), raw[i + 1]!];
  }
  return out;
}

const buffers = (...pairs: string[]) => pairs.map((p) => Buffer.from(p, 'latin1'));

describe('proxy/headers', () => {
  it('drops hop-by-hop headers and those named in Connection, both ways', () => {
    const up = upstreamHeaders(fakeRequest(['Connection', 'close, X-Hop', 'X-Hop', '1', 'Keep-Alive', 'timeout=5', 'TE', 'trailers', 'Upgrade', 'h2c', 'Transfer-Encoding', 'chunked', 'Expect', '100-continue', 'X-Keep', 'yes']), { requestId: 'r' });
    expect(Object.keys(asObject(up)).sort()).to.deep.equal(['x-forwarded-for', 'x-forwarded-proto', 'x-keep', 'x-request-id']);
    const down = downstreamHeaders(buffers('Connection', 'x-hop', 'x-hop', '1', 'Transfer-Encoding', 'chunked', 'Set-Cookie', 'a=1', 'Set-Cookie', 'b=2', 'Content-Type', 'text/plain'));
    expect(down).to.deep.equal(['Set-Cookie', 'a=1', 'Set-Cookie', 'b=2', 'Content-Type', 'text/plain']);
  });

  it('reads the headers of a response head the same way, keeping every byte of a value but the spaces and tabs around it', () => {
    const head = 'HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nSet-Cookie: a=1\r\nSet-Cookie:b=2\r\nX-Pad: \t v a l \t\r\nX-Latin: \u00a0caf\u00e9\u00a0\r\nX-Empty:';
    const { headers, keepAlive } = downstreamHeadersOfHead(head, head.indexOf('\r\n'));
    expect(headers).to.deep.equal(['Set-Cookie', 'a=1', 'Set-Cookie', 'b=2', 'X-Pad', 'v a l', 'X-Latin', '\u00a0caf\u00e9\u00a0', 'X-Empty', '']);
    expect(keepAlive).to.equal('timeout=5');
  });

  it("keeps the client's spelling, order and repeated headers", () => {
    const up = upstreamHeaders(fakeRequest(['Host', 'ci.test', 'Accept', 'application/json', 'X-Trace', 'a', 'x-trace', 'b']), { requestId: 'r' });
    expect(up.slice(0, 8)).to.deep.equal(['Host', 'ci.test', 'Accept', 'application/json', 'X-Trace', 'a', 'x-trace', 'b']);
  });

  it("appends to X-Forwarded-For (every line of it) and keeps an upstream proxy's -Proto and -Host", () => {
    const up = upstreamHeaders(fakeRequest(['Host', 'ci.test', 'X-Forwarded-For', '1.2.3.4', 'X-Forwarded-For', '5.6.7.8', 'X-Forwarded-Proto', 'https', 'X-Forwarded-Host', 'public.test']), { requestId: 'r' });
    expect(asObject(up)).to.deep.include({ 'x-forwarded-for': '1.2.3.4, 5.6.7.8, 10.0.0.9', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'public.test', host: 'ci.test' });
  });

  it("replaces the client's X-Request-Id with the proxy's", () => {
    const up = asObject(upstreamHeaders(fakeRequest(['X-Request-Id', 'from-client']), { requestId: 'ours' }));
    expect(up['x-request-id']).to.equal('ours');
  });

  it("sends the backend's own Host when asked to, and extra headers as given", () => {
    const up = upstreamHeaders(fakeRequest(['Host', 'ci.test']), { requestId: 'r', backendHost: 'backend:8012', extra: ['x-strangler-shadow', '1'] });
    expect(asObject(up)).to.deep.include({ host: 'backend:8012', 'x-forwarded-host': 'ci.test', 'x-strangler-shadow': '1' });
  });
});
