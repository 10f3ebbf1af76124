// (c) express@5 + http-proxy-middleware@3 — the asked-for stack.
// FEATURES=1 turns on the same routing / metrics / access log as the undici
// variants (via ./features.mjs env: METRICS, LOG, ROUTE), done the idiomatic
// express way: express.json() for the JSON-RPC endpoint, hpm `router`,
// fixRequestBody, res.on('finish') for metrics + log.
import http from 'node:http';
import express from 'express';
import { createProxyMiddleware, fixRequestBody } from 'http-proxy-middleware';
import { routeByPath, routeByMessage, done, hasFeatures, ROUTE } from './features.mjs';

const PORT = Number(process.env.PORT ?? 8003);
const target = `http://127.0.0.1:${Number(process.env.UPSTREAM_PORT ?? 9000)}`;
const targets = { legacy: target, tasks: target }; // same upstream, different names
const agent = new http.Agent({ keepAlive: true });

const app = express();
app.disable('x-powered-by');
app.set('etag', false);

if (hasFeatures || ROUTE) {
  app.use((req, res, next) => {
    const t0 = performance.now();
    const { route, target: tgt } = routeByPath(req.url);
    req.benchRoute = route;
    req.benchTarget = tgt;
    if (hasFeatures) {
      res.on('finish', () => done(req.method, req.originalUrl, res.statusCode, t0, route, req.benchTarget ?? 'legacy'));
    }
    next();
  });
  if (ROUTE) app.use('/api/v2/forceschedulers', express.json({ limit: '64kb' }));
}

const proxy = createProxyMiddleware({
  target,
  agent,
  ...(ROUTE ? {
    router: (req) => {
      if (req.benchTarget == null) req.benchTarget = routeByMessage(req.body);
      return targets[req.benchTarget];
    },
    on: { proxyReq: fixRequestBody },
  } : {}),
});
app.use(proxy);

const server = http.createServer(app);
server.keepAliveTimeout = 65_000;
server.listen(PORT, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
