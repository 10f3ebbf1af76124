// (d)/(e) node:http server + undici Pool, hop-by-hop header filtering.
//   API = stream | request | dispatch | dispatch-v2   (undici API used to forward;
//         dispatch = raw legacy handler, dispatch-v2 = undici 7 controller handler)
// Feature toggles (routing / metrics / access log) come from ./features.mjs
// (METRICS, LOG, ROUTE env vars); with none set this is variant (d).
import http from 'node:http';
import { Pool } from 'undici';
import { routeByPath, routeByBody, done, hasFeatures, ROUTE, describe } from './features.mjs';

const PORT = Number(process.env.PORT ?? 8004);
const API = process.env.API ?? 'stream';
const origin = `http://127.0.0.1:${Number(process.env.UPSTREAM_PORT ?? 9000)}`;
const poolOpts = { connections: 128, pipelining: 1, keepAliveTimeout: 60_000, keepAliveMaxTimeout: 600_000 };
const pools = { legacy: new Pool(origin, poolOpts), tasks: ROUTE ? new Pool(origin, poolOpts) : null };
if (!ROUTE) pools.tasks = pools.legacy;

// RFC 9110 §7.6.1 hop-by-hop headers (+ proxy-connection, http2-settings).
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te',
  'trailer', 'upgrade', 'proxy-authorization', 'proxy-authenticate', 'http2-settings']);

/** Filter node's flat rawHeaders (strings) for the upstream request. */
function requestHeaders(raw) {
  const out = [];
  let connection = null;
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i];
    const lk = k.length <= 19 ? k.toLowerCase() : k; // longest hop header is 19 chars
    if (HOP.has(lk)) { if (lk === 'connection') connection = raw[i + 1]; continue; }
    out.push(k, raw[i + 1]);
  }
  if (connection !== null) stripConnectionTokens(out, connection);
  return out;
}
/** Remove headers named in a Connection header (other than keep-alive/close). */
function stripConnectionTokens(out, value) {
  const names = value.toLowerCase().split(',').map((s) => s.trim()).filter((s) => s && s !== 'keep-alive' && s !== 'close');
  if (names.length === 0) return;
  for (let i = out.length - 2; i >= 0; i -= 2) {
    if (names.includes(String(out[i]).toLowerCase())) out.splice(i, 2);
  }
}
/** Filter undici's raw response headers (Buffers) into a flat string array for res.writeHead. */
function responseHeaders(raw) {
  const out = [];
  let connection = null;
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i].toString('latin1');
    const lk = k.length <= 19 ? k.toLowerCase() : k;
    if (HOP.has(lk)) { if (lk === 'connection') connection = raw[i + 1].toString('latin1'); continue; }
    out.push(k, raw[i + 1].toString('latin1'));
  }
  if (connection !== null) stripConnectionTokens(out, connection);
  return out;
}

function fail(res, err) {
  if (!res.headersSent) { res.writeHead(502, { 'content-type': 'text/plain' }); res.end('bad gateway\n'); } else res.destroy(err);
}

// ------------------------------------------------------------ forwarders
// Each forwarder: (req, res, pool, body, finish(status)) ; body is null | Buffer | req stream.
function viaStream(req, res, pool, body, finish) {
  let status = 502;
  pool.stream(
    { path: req.url, method: req.method, headers: requestHeaders(req.rawHeaders), body, responseHeaders: 'raw' },
    ({ statusCode, headers }) => { status = statusCode; res.writeHead(statusCode, responseHeaders(headers)); return res; },
    (err) => { if (err) fail(res, err); if (finish !== null) finish(err ? 502 : status); },
  );
}

function viaRequest(req, res, pool, body, finish) {
  pool.request(
    { path: req.url, method: req.method, headers: requestHeaders(req.rawHeaders), body, responseHeaders: 'raw' },
    (err, data) => {
      if (err) { fail(res, err); if (finish !== null) finish(502); return; }
      res.writeHead(data.statusCode, responseHeaders(data.headers));
      data.body.pipe(res);
      if (finish !== null) data.body.once('end', () => finish(data.statusCode));
    },
  );
}

// Raw dispatcher handler (undici's legacy/raw handler interface: raw Buffer
// headers, no per-request Readable). Backpressure via resume/drain.
class RawHandler {
  constructor(res, finish) { this.res = res; this.finish = finish; this.status = 502; this.abort = null; this.resume = null; }
  onConnect(abort) {
    this.abort = abort;
    if (this.res.destroyed) abort(new Error('client gone'));
  }
  onHeaders(statusCode, rawHeaders, resume) {
    if (statusCode < 200) return true; // 1xx informational: not forwarded in this sketch
    this.status = statusCode;
    this.resume = resume;
    this.res.writeHead(statusCode, responseHeaders(rawHeaders));
    return true;
  }
  onData(chunk) {
    const ok = this.res.write(chunk);
    if (!ok) this.res.once('drain', this.resume);
    return ok;
  }
  onComplete() { this.res.end(); if (this.finish !== null) this.finish(this.status); }
  onError(err) { fail(this.res, err); if (this.finish !== null) this.finish(502); }
  onUpgrade() {}
  onBodySent() {}
  onRequestSent() {}
}
function viaDispatch(req, res, pool, body, finish) {
  pool.dispatch({ path: req.url, method: req.method, headers: requestHeaders(req.rawHeaders), body }, new RawHandler(res, finish));
}

// Same thing with undici 7's controller-style handler API (onRequestStart /
// onResponseStart ...). undici wraps it (UnwrapHandler) and parses the raw
// headers into an object on every response; we still read controller.rawHeaders.
class ControllerHandler {
  constructor(res, finish) { this.res = res; this.finish = finish; this.status = 502; this.controller = null; }
  onRequestStart(controller) {
    this.controller = controller;
    if (this.res.destroyed) controller.abort(new Error('client gone'));
  }
  onResponseStart(controller, statusCode) {
    if (statusCode < 200) return; // 1xx informational
    this.status = statusCode;
    this.res.writeHead(statusCode, responseHeaders(controller.rawHeaders));
  }
  onResponseData(controller, chunk) {
    if (!this.res.write(chunk)) { controller.pause(); this.res.once('drain', () => controller.resume()); }
  }
  onResponseEnd() { this.res.end(); if (this.finish !== null) this.finish(this.status); }
  onResponseError(controller, err) { fail(this.res, err); if (this.finish !== null) this.finish(502); }
}
function viaDispatchV2(req, res, pool, body, finish) {
  pool.dispatch({ path: req.url, method: req.method, headers: requestHeaders(req.rawHeaders), body }, new ControllerHandler(res, finish));
}

const forward = { stream: viaStream, request: viaRequest, dispatch: viaDispatch, 'dispatch-v2': viaDispatchV2 }[API];
if (!forward) throw new Error(`unknown API=${API}`);

function handle(req, res) {
  const method = req.method;
  const hasBody = method !== 'GET' && method !== 'HEAD';
  if (!hasFeatures && !ROUTE) { forward(req, res, pools.legacy, hasBody ? req : null, null); return; }

  const t0 = performance.now();
  const url = req.url;
  const { route, target } = routeByPath(url);
  if (target !== null || !hasBody) {
    const tgt = target ?? 'legacy';
    forward(req, res, pools[tgt], hasBody ? req : null,
      hasFeatures ? (status) => done(method, url, status, t0, route, tgt) : null);
    return;
  }
  // Body-based routing (JSON-RPC force): buffer the (small, capped) body.
  const chunks = [];
  let size = 0;
  req.on('data', (c) => { size += c.length; if (size > 65536) { req.destroy(); return; } chunks.push(c); });
  req.on('end', () => {
    const buf = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    const tgt = routeByBody(buf);
    forward(req, res, pools[tgt], buf,
      hasFeatures ? (status) => done(method, url, status, t0, route, tgt) : null);
  });
}

const server = http.createServer(handle);
server.keepAliveTimeout = 65_000;
server.listen(PORT, '127.0.0.1', () => {
  if (process.env.BENCH_VERBOSE) console.error(`d-undici API=${API} ${describe()} on ${PORT}`);
});
process.on('SIGTERM', () => process.exit(0));
