// The second reference: the smallest correct Node reverse proxy on the engine
// strangler-proxy forwards with. node:http server, one undici Pool per upstream
// origin (this proxy has one), undici's dispatch handler API (onRequestStart ...
// onResponseEnd); hop-by-hop headers dropped both ways, bodies streamed both
// ways with backpressure, the backend's exchange aborted when the client goes.
// No routing, no logs, no metrics. `npm run bench` measures strangler-proxy
// against it (target: >= 0.75x its throughput). Keep it this small.
//   PORT=8002 UPSTREAM_PORT=9000 node bench/reference/bare-undici-proxy.mjs
import http from 'node:http';
import { Pool } from 'undici';

const pool = new Pool(`http://127.0.0.1:${Number(process.env.UPSTREAM_PORT ?? 9000)}`);

// Hop-by-hop (RFC 9110 §7.6.1), and Expect: node's server has answered any 100-continue (undici refuses to send it).
const DROPPED = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings', 'expect']);

/**
 * Appends to `out` the end-to-end headers of a flat [name, value, ...] list (node's strings or
 * undici's Buffers): not the dropped ones, nor those the Connection header names.
 * Returns whether the list frames a body (Content-Length or Transfer-Encoding).
 */
function endToEnd(raw, toString, out) {
  let framed = false;
  let perHop = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = toString(raw[i]);
    const lower = name.toLowerCase();
    if (lower === 'content-length' || lower === 'transfer-encoding') framed = true;
    if (lower === 'connection') {
      const value = toString(raw[i + 1]).toLowerCase();
      if (value !== 'keep-alive' && value !== 'close') perHop = value.split(',').map((t) => t.trim());
    } else if (!DROPPED.has(lower)) out.push(name, toString(raw[i + 1]));
  }
  if (perHop !== null) for (let i = out.length - 2; i >= 0; i -= 2) if (perHop.includes(out[i].toLowerCase())) out.splice(i, 2);
  return framed;
}
const asIs = (s) => s;
const latin1 = (b) => b.toString('latin1');

class Exchange {
  constructor(res) {
    this.res = res;
    this.controller = null;
  }

  onRequestStart(controller) {
    this.controller = controller;
    if (this.res.destroyed) controller.abort(new Error('client gone'));
  }

  onResponseStart(controller, statusCode) {
    if (statusCode < 200) return; // 1xx: the final answer follows
    const headers = [];
    endToEnd(controller.rawHeaders, latin1, headers);
    this.res.writeHead(statusCode, headers);
  }

  onResponseData(controller, chunk) {
    if (!this.res.write(chunk)) {
      controller.pause();
      this.res.once('drain', () => controller.resume());
    }
  }

  onResponseEnd() {
    this.res.end();
  }

  onResponseError(controller, error) {
    if (this.res.headersSent || this.res.destroyed) this.res.destroy(error);
    else this.res.writeHead(502, { 'content-type': 'text/plain' }).end('bad gateway\n');
  }
}

const server = http.createServer((req, res) => {
  const headers = [];
  const framed = endToEnd(req.rawHeaders, asIs, headers);
  const exchange = new Exchange(res);
  res.once('close', () => {
    if (!res.writableFinished) exchange.controller?.abort(new Error('client gone'));
  });
  pool.dispatch({ method: req.method, path: req.url, headers, body: framed ? req : null }, exchange);
});
server.keepAliveTimeout = 65_000;
server.listen(Number(process.env.PORT ?? 8002), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
