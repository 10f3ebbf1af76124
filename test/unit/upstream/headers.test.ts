import { expect } from 'chai';
import type { IncomingMessage } from 'node:http';
import { endToEndResponseHeaders, upstreamHeaders, type RawHeaders } from '../../../src/upstream/headers.js';

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

describe('upstream/headers', () => {
  it('drops hop-by-hop headers and those named in Connection, both ways', () => {
    const up = upstreamHeaders(fakeRequest(['Connection', 'close, X-Hop', 'X-Hop', '1', 'Keep-Alive', 'timeout=5', 'TE', 'trailers', 'Upgrade', 'h2c', 'Transfer-Encoding', 'chunked', 'Expect', '100-continue', 'X-Keep', 'yes']), { requestId: 'r' });
    expect(Object.keys(asObject(up)).sort()).to.deep.equal(['x-forwarded-for', 'x-forwarded-proto', 'x-keep', 'x-request-id']);
    const down = endToEndResponseHeaders({ connection: 'x-hop', 'x-hop': '1', 'transfer-encoding': 'chunked', 'keep-alive': 'timeout=5', 'set-cookie': ['a=1', 'b=2'], 'content-type': 'text/plain' });
    expect(down).to.deep.equal({ list: ['set-cookie', 'a=1', 'set-cookie', 'b=2', 'content-type', 'text/plain'], contentType: 'text/plain' });
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
