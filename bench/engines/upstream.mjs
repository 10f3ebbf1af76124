// Upstream stand-in for both the legacy Buildbot master and the new task
// service: a plain node:http server.
//   GET  -> ~200-byte JSON body
//   POST -> reads the JSON-RPC request, answers a small JSON-RPC result
// Usage: PORT=9000 node bench/engines/upstream.mjs
import http from 'node:http';

const port = Number(process.env.PORT ?? 9000);

const GET_BODY = Buffer.from(JSON.stringify({
  builds: [{ buildid: 4242, builderid: 17, number: 311, complete: true,
    results: 0, state_string: 'build successful', started_at: 1732400000,
    complete_at: 1732400321, workerid: 3 }],
  meta: { total: 1 },
}));

const server = http.createServer((req, res) => {
  if (req.method === 'GET' || req.method === 'HEAD') {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': GET_BODY.length });
    res.end(req.method === 'HEAD' ? undefined : GET_BODY);
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let id = null;
    let method = 'unknown';
    try {
      const msg = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      id = msg.id ?? null;
      method = msg.method ?? 'unknown';
    } catch { /* answer anyway */ }
    const body = Buffer.from(JSON.stringify({ jsonrpc: '2.0', id, result: [1017, { method, accepted: true }] }));
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
    res.end(body);
  });
});
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;
server.listen(port, '127.0.0.1', () => {
  if (process.env.BENCH_VERBOSE) console.error(`upstream listening on ${port} (pid ${process.pid})`);
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
console.log(`GET body ${GET_BODY.length} bytes`);
