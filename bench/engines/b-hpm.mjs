// (b) http-proxy-middleware@3 alone, mounted directly on a node:http server.
import http from 'node:http';
import { createProxyMiddleware } from 'http-proxy-middleware';

const PORT = Number(process.env.PORT ?? 8002);
const target = `http://127.0.0.1:${Number(process.env.UPSTREAM_PORT ?? 9000)}`;
const proxy = createProxyMiddleware({ target, agent: new http.Agent({ keepAlive: true }) });

const server = http.createServer((req, res) => {
  proxy(req, res, () => { res.statusCode = 404; res.end(); });
});
server.keepAliveTimeout = 65_000;
server.listen(PORT, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
