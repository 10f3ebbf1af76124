// The bench's backend: stands in for both the Buildbot master and the task
// service. Plain node:http, as cheap as it can be, so that what is measured
// is whatever sits in front of it.
//   GET  /api/v2/builders                       the builder list (the proxy's id lookup reads it)
//   GET  .../logs/<slug>/raw?size=N             N bytes of text/plain, streamed with backpressure
//   GET  /__bench/stats                         {"requests":N,"builderRequests":M}: requests answered, and
//                                               those on /api/v2/builders/{name}/... (not health probes)
//   GET / HEAD anything else                    a ~200-byte Buildbot-like JSON answer
//   POST anything                               reads the JSON-RPC body, answers a small JSON-RPC result
//   PORT=9000 node bench/lib/upstream.mjs
import http from 'node:http';

const port = Number(process.env.PORT ?? 9000);
let requests = 0;
let builderRequests = 0;

const GET_BODY = Buffer.from(JSON.stringify({
  builds: [{ buildid: 4242, builderid: 17, number: 311, complete: true, results: 0,
    state_string: 'build successful', started_at: 1732400000, complete_at: 1732400321, workerid: 3 }],
  meta: { total: 1 },
}));
const BUILDERS_BODY = Buffer.from(JSON.stringify({
  builders: [{ builderid: 17, name: 'linux64-opt' }, { builderid: 18, name: 'linux64-debug' }, { builderid: 19, name: 'win32-opt' }],
  meta: { total: 3 },
}));
const LOG_CHUNK = Buffer.alloc(64 * 1024, 'build step output: all tests passed, nothing to see here\n');

function sendLog(res, size) {
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': size });
  let left = size;
  const pump = () => {
    while (left > 0) {
      const n = Math.min(left, LOG_CHUNK.length);
      left -= n;
      const more = res.write(n === LOG_CHUNK.length ? LOG_CHUNK : LOG_CHUNK.subarray(0, n));
      if (!more && left > 0) return void res.once('drain', pump);
    }
    res.end();
  };
  res.on('close', () => { left = 0; });
  pump();
}

const server = http.createServer((req, res) => {
  requests++;
  const url = req.url ?? '/';
  if (req.method === 'GET' || req.method === 'HEAD') {
    const q = url.indexOf('?');
    const pathname = q === -1 ? url : url.slice(0, q);
    if (pathname.startsWith('/api/v2/builders/')) builderRequests++;
    if (pathname.endsWith('/raw') && pathname.includes('/logs/')) {
      const size = Number(new URLSearchParams(url.slice(q + 1)).get('size') ?? 1024 * 1024);
      return sendLog(res, size);
    }
    const body = pathname === '/api/v2/builders' ? BUILDERS_BODY : pathname === '/__bench/stats' ? Buffer.from(JSON.stringify({ requests, builderRequests })) : GET_BODY;
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
    res.end(req.method === 'HEAD' ? undefined : body);
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let id = null;
    try { id = JSON.parse(Buffer.concat(chunks).toString('utf8')).id ?? null; } catch { /* answer anyway */ }
    const body = Buffer.from(JSON.stringify({ jsonrpc: '2.0', id, result: [1017, { brid: 2718, builderIds: [17] }] }));
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
    res.end(body);
  });
});
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
