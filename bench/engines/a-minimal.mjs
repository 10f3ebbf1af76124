// (a) Reference: the "minimal Node proxy" — node:http server + http.request
// with a keep-alive http.Agent, piping req->upstream and upstream->res.
import http from 'node:http';

const PORT = Number(process.env.PORT ?? 8001);
const UPSTREAM = { host: '127.0.0.1', port: Number(process.env.UPSTREAM_PORT ?? 9000) };
const agent = new http.Agent({ keepAlive: true });

const server = http.createServer((req, res) => {
  const up = http.request({ ...UPSTREAM, method: req.method, path: req.url, headers: req.headers, agent }, (ur) => {
    res.writeHead(ur.statusCode, ur.headers);
    ur.pipe(res);
  });
  up.on('error', () => { if (!res.headersSent) res.writeHead(502); res.end(); });
  req.pipe(up);
});
server.keepAliveTimeout = 65_000;
server.listen(PORT, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
