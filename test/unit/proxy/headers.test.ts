import { expect } from 'chai';
import type { IncomingMessage } from 'node:http';
import { downstreamHeaders, upstreamHeaders } from '../../../src/proxy/headers.js';

function fakeRequest(headers: Record<string, string | string[]>, remoteAddress = '::ffff:10.0.0.9'): IncomingMessage {
  return { headers, socket: { remoteAddress } } as unknown as IncomingMessage;
}

describe('proxy/headers', () => {
  it('drops hop-by-hop headers and those named in Connection, both ways', () => {
    const up = upstreamHeaders(fakeRequest({ connection: 'close, x-hop', 'x-hop': '1', 'keep-alive': 'timeout=5', te: 'trailers', upgrade: 'h2c', 'transfer-encoding': 'chunked', expect: '100-continue', 'x-keep': 'yes' }), { requestId: 'r' });
    expect(Object.keys(up).sort()).to.deep.equal(['x-forwarded-for', 'x-forwarded-proto', 'x-keep', 'x-request-id']);
    const down = downstreamHeaders({ connection: 'x-hop', 'x-hop': '1', 'transfer-encoding': 'chunked', 'set-cookie': ['a=1', 'b=2'], 'content-type': 'text/plain' });
    expect(down).to.deep.equal({ 'set-cookie': ['a=1', 'b=2'], 'content-type': 'text/plain' });
  });

  it('appends to X-Forwarded-For and keeps an upstream proxy\'s -Proto and -Host', () => {
    const up = upstreamHeaders(fakeRequest({ host: 'ci.test', 'x-forwarded-for': '1.2.3.4', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'public.test' }), { requestId: 'r' });
    expect(up).to.include({ 'x-forwarded-for': '1.2.3.4, 10.0.0.9', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'public.test', host: 'ci.test' });
  });

  it("sends the backend's own Host when asked to", () => {
    const up = upstreamHeaders(fakeRequest({ host: 'ci.test' }), { requestId: 'r', backendHost: 'backend:8012' });
    expect(up).to.include({ host: 'backend:8012', 'x-forwarded-host': 'ci.test' });
  });
});
