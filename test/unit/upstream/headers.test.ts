import { expect } from 'chai';
import type { IncomingMessage } from 'node:http';
import fc from 'fast-check';
import { connectionTokens, endToEndResponseHeaders, upstreamHeaders, type RawHeaders } from '../../../src/upstream/headers.js';

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
  describe('Connection never removes routing or framing headers', () => {
    it('keeps Host when Connection names it, with or without other names', () => {
      for (const connection of ['host', 'Host', 'keep-alive, HOST', 'x-hop, host ,close']) {
        const up = asObject(upstreamHeaders(fakeRequest(['Host', 'ci.test', 'Connection', connection, 'X-Hop', '1', 'Accept', '*/*']), { requestId: 'r' }));
        expect(up.host, connection).to.equal('ci.test');
        expect(up['x-forwarded-host'], connection).to.equal('ci.test');
        expect(up.accept, connection).to.equal('*/*');
        if (connection.includes('x-hop')) expect(up).not.to.have.property('x-hop');
      }
    });

    it('keeps Content-Length when Connection names it (the body keeps its framing)', () => {
      const up = asObject(upstreamHeaders(fakeRequest(['Host', 'ci.test', 'Content-Length', '12', 'Connection', 'content-length, Transfer-Encoding']), { requestId: 'r' }));
      expect(up['content-length']).to.equal('12');
    });

    it('keeps the framing of an answer whose Connection names Content-Length', () => {
      const down = endToEndResponseHeaders({ connection: 'content-length, host, x-hop', 'content-length': '3', 'x-hop': '1' });
      expect(down.list).to.deep.equal(['content-length', '3']);
    });

    it("puts the proxy's own X-Forwarded-* in place of those a Connection header named", () => {
      const up = asObject(upstreamHeaders(fakeRequest(['Host', 'ci.test', 'X-Forwarded-For', '6.6.6.6', 'X-Forwarded-Proto', 'https', 'X-Forwarded-Host', 'evil.test', 'Connection', 'X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host']), { requestId: 'r' }));
      expect(up).to.deep.include({ 'x-forwarded-for': '10.0.0.9', 'x-forwarded-proto': 'http', 'x-forwarded-host': 'ci.test', host: 'ci.test' });
    });

    it('never lists host, content-length or transfer-encoding as per-hop, whatever the Connection values (property)', () => {
      const token = fc.oneof(fc.constantFrom('host', 'HOST', 'Host', 'content-length', 'Content-Length', 'transfer-encoding', 'keep-alive', 'close', 'x-hop', 'upgrade', ''), fc.stringMatching(/^[A-Za-z-]{1,12}$/));
      const value = fc.array(token, { maxLength: 6 }).chain((tokens) => fc.constantFrom(', ', ',', ' ,  ').map((sep) => tokens.join(sep)));
      fc.assert(
        fc.property(fc.array(value, { minLength: 1, maxLength: 3 }), (values) => {
          const tokens = connectionTokens(values);
          for (const never of ['host', 'content-length', 'transfer-encoding']) if (tokens?.has(never)) return false;
          const up = asObject(upstreamHeaders(fakeRequest(['Host', 'ci.test', 'Content-Length', '2', ...values.flatMap((v) => ['Connection', v])]), { requestId: 'r' }));
          return up.host === 'ci.test' && up['content-length'] === '2';
        }),
      );
    });
  });
});
