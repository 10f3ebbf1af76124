// The reference: the smallest reasonable Node reverse proxy. node:http server,
// http.request through a keep-alive http.Agent, bodies piped both ways; no
// routing, no logs, no metrics. `npm run bench` measures strangler-proxy
// against it (target: >= 1.2x its throughput). Keep it this small.
//   PORT=8001 UPSTREAM_PORT=9000 node bench/reference/minimal-proxy.mjs
import http from 'node:http';

const upstream = { host: '127.0.0.1', port: Number(process.env.UPSTREAM_PORT ?? 9000) };
const agent = new http.Agent({ keepAlive: true });

const server = http.createServer((req, res) => {
  const up = http.request({ ...upstream, method: req.method, path: req.url, headers: req.headers, agent }, (ur) => {
    res.writeHead(ur.statusCode ?? 502, ur.headers);
    ur.pipe(res);
  });
  up.on('error', () => { if (!res.headersSent) res.writeHead(502); res.end(); });
  req.pipe(up);
});
server.keepAliveTimeout = 65_000;
server.listen(Number(process.env.PORT ?? 8001), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
