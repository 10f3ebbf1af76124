// Per-request "features" shared by the feature-on proxies (c-full, e-*):
// routing, prom-client metrics, access log. Selected by env vars:
//   METRICS = none | labels | child | fast
//             labels: counter.inc({..}) + histogram.observe({..}, v)
//             child:  counter.labels(..)/histogram.labels(..) cached per key
//                     (prom-client 15's labels() still hashes on every call)
//             fast:   pre-aggregated per-series Float64Array, exported to the
//                     prom-client Registry at scrape time
//   LOG     = none | winston | hand | stdout
//             winston: winston json logger -> Stream transport on LOG_FILE
//             hand:    hand-built JSON line -> in-process buffer, one async
//                      fs.write per 64 KiB or 100 ms (batched)
//             stdout:  hand-built JSON line -> process.stdout.write per request
//   LOG_FILE = /dev/null (default)
//   ROUTE   = 0 | 1   (1: path-prefix routing for GETs, JSON-RPC body parse +
//                      builder-name glob routing for POST force)
import fs from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export const METRICS = process.env.METRICS ?? 'none';
export const LOG = process.env.LOG ?? 'none';
export const ROUTE = process.env.ROUTE === '1';
const LOG_FILE = process.env.LOG_FILE ?? '/dev/null';

// ---------------------------------------------------------------- metrics
let recordMetrics = null;
if (METRICS !== 'none') {
  const client = require('prom-client');
  const registry = new client.Registry();
  const labelNames = ['route', 'method', 'status'];
  const counter = new client.Counter({ name: 'proxy_requests_total', help: 'requests', labelNames, registers: [registry] });
  const hist = new client.Histogram({
    name: 'proxy_request_duration_seconds', help: 'latency', labelNames, registers: [registry],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  });
  if (METRICS === 'labels') {
    recordMetrics = (route, method, status, seconds) => {
      const labels = { route, method, status };
      counter.inc(labels);
      hist.observe(labels, seconds);
    };
  } else if (METRICS === 'child') {
    const cache = new Map();
    recordMetrics = (route, method, status, seconds) => {
      const key = route + '\0' + method + '\0' + status;
      let c = cache.get(key);
      if (c === undefined) {
        const labels = { route, method, status };
        c = { counter: counter.labels(labels), hist: hist.labels(labels) };
        cache.set(key, c);
      }
      c.counter.inc();
      c.hist.observe(seconds);
    };
  } else if (METRICS === 'fast') {
    // Pre-aggregated: the hot path bumps plain numbers in a per-series
    // Float64Array (no label hashing, no objects); prom-client only reads
    // them at scrape time through two custom metric objects registered in
    // the same Registry (so /metrics output and default metrics are unchanged).
    registry.removeSingleMetric('proxy_requests_total');
    registry.removeSingleMetric('proxy_request_duration_seconds');
    const bounds = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
    const nb = bounds.length;
    const series = []; // {labels, a: Float64Array([count, sum, b0..bn])}
    const byRoute = new Map();
    const newSeries = (route, method, status) => {
      const s = { labels: { route, method, status }, a: new Float64Array(nb + 3) };
      series.push(s);
      return s.a;
    };
    recordMetrics = (route, method, status, seconds) => {
      let m = byRoute.get(route);
      if (m === undefined) { m = new Map(); byRoute.set(route, m); }
      let st = m.get(method);
      if (st === undefined) { st = new Map(); m.set(method, st); }
      let a = st.get(status);
      if (a === undefined) { a = newSeries(route, method, status); st.set(status, a); }
      a[0]++;
      a[1] += seconds;
      let i = 0;
      while (i < nb && seconds > bounds[i]) i++;
      a[2 + i]++; // non-cumulative; made cumulative at scrape
    };
    registry.registerMetric({
      name: 'proxy_requests_total', help: 'requests', type: 'counter', aggregator: 'sum',
      get: async () => ({ name: 'proxy_requests_total', help: 'requests', type: 'counter', aggregator: 'sum',
        values: series.map((s) => ({ labels: s.labels, value: s.a[0] })) }),
    });
    registry.registerMetric({
      name: 'proxy_request_duration_seconds', help: 'latency', type: 'histogram', aggregator: 'sum',
      get: async () => {
        const values = [];
        for (const s of series) {
          let cum = 0;
          for (let i = 0; i <= nb; i++) {
            cum += s.a[2 + i];
            values.push({ metricName: 'proxy_request_duration_seconds_bucket', labels: { ...s.labels, le: i < nb ? bounds[i] : '+Inf' }, value: cum });
          }
          values.push({ metricName: 'proxy_request_duration_seconds_sum', labels: s.labels, value: s.a[1] });
          values.push({ metricName: 'proxy_request_duration_seconds_count', labels: s.labels, value: s.a[0] });
        }
        return { name: 'proxy_request_duration_seconds', help: 'latency', type: 'histogram', aggregator: 'sum', values };
      },
    });
  } else {
    throw new Error(`unknown METRICS=${METRICS}`);
  }
  // Expose a way to sanity-check the registry in tests.
  globalThis.__benchRegistry = registry;
}

// ---------------------------------------------------------------- access log
let writeLog = null;
if (LOG === 'winston') {
  const winston = require('winston');
  const logger = winston.createLogger({
    level: 'info',
    format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
    transports: [new winston.transports.Stream({ stream: fs.createWriteStream(LOG_FILE, { flags: 'a' }) })],
  });
  writeLog = (method, url, status, ms, route, upstream) => {
    logger.info('request', { method, url, status, duration_ms: ms, route, upstream });
  };
} else if (LOG === 'hand' || LOG === 'stdout') {
  // ISO timestamp formatted at most once per millisecond.
  let lastMs = 0;
  let lastIso = '';
  const iso = () => {
    const n = Date.now();
    if (n !== lastMs) { lastMs = n; lastIso = new Date(n).toISOString(); }
    return lastIso;
  };
  const line = (method, url, status, ms, route, upstream) =>
    '{"level":"info","message":"request","method":"' + method +
    '","url":' + JSON.stringify(url) +
    ',"status":' + status +
    ',"duration_ms":' + ms.toFixed(3) +
    ',"route":"' + route + '","upstream":"' + upstream +
    '","timestamp":"' + iso() + '"}\n';
  if (LOG === 'stdout') {
    // one write(2) per request (process.stdout is synchronous for files and
    // pipes on Linux)
    writeLog = (...a) => { process.stdout.write(line(...a)); };
  } else {
    // Batched: append to an in-memory string; flush with one async fs.write
    // when 64 KiB are pending or every 100 ms (unref'd timer), one write in
    // flight at a time (keeps order), bounded (drops past 4 MiB pending).
    const fd = fs.openSync(LOG_FILE, 'a');
    const FLUSH_BYTES = 64 * 1024;
    const MAX_PENDING = 4 * 1024 * 1024;
    let pending = '';
    let writing = false;
    let dropped = 0;
    const flush = () => {
      if (writing || pending.length === 0) return;
      const buf = Buffer.from(pending, 'utf8');
      pending = '';
      writing = true;
      const writeFrom = (off) => fs.write(fd, buf, off, buf.length - off, null, (err, n) => {
        if (!err && off + n < buf.length) return writeFrom(off + n);
        writing = false;
        if (pending.length >= FLUSH_BYTES) flush();
      });
      writeFrom(0);
    };
    setInterval(flush, 100).unref();
    process.on('exit', () => { if (pending) try { fs.writeSync(fd, pending); } catch { /* ignore */ } });
    writeLog = (...a) => {
      if (pending.length > MAX_PENDING) { dropped++; return; }
      pending += line(...a);
      if (pending.length >= FLUSH_BYTES) flush();
    };
    globalThis.__benchLogDropped = () => dropped;
  }
} else if (LOG !== 'none') {
  throw new Error(`unknown LOG=${LOG}`);
}

// ---------------------------------------------------------------- routing
// A routes.yaml-like table: GET routes by path prefix, POST force routes by
// builder-name glob (the "job type"). Both targets are the same upstream in
// the benchmark, but they are separate connection pools / agents.
let matchBuilder = null;
if (ROUTE) {
  const picomatch = require('picomatch');
  const builderRules = [
    ['linux64-*', 'tasks'], ['win*-*', 'legacy'], ['mac*', 'legacy'],
    ['android-*', 'tasks'], ['*-asan', 'tasks'], ['*', 'legacy'],
  ].map(([glob, target]) => ({ isMatch: picomatch(glob), target }));
  const memo = new Map();
  matchBuilder = (name) => {
    let t = memo.get(name);
    if (t === undefined) {
      t = builderRules.find((r) => r.isMatch(name))?.target ?? 'legacy';
      if (memo.size < 10_000) memo.set(name, t);
    }
    return t;
  };
}
const PATH_RULES = [
  ['/api/v2/forceschedulers/', 'force', null],
  ['/api/v2/tasks/', 'tasks', 'tasks'],
  ['/api/v2/builders/', 'builders', 'legacy'],
  ['/api/v2/builds/', 'builds', 'legacy'],
  ['/api/v2/workers', 'workers', 'legacy'],
  ['/', 'other', 'legacy'],
];
/** @returns {{route:string, target:string|null}} target null => needs body */
export function routeByPath(url) {
  if (!ROUTE) return { route: 'all', target: 'legacy' };
  for (let i = 0; i < PATH_RULES.length; i++) {
    const r = PATH_RULES[i];
    if (url.startsWith(r[0])) return { route: r[1], target: r[2] };
  }
  return { route: 'other', target: 'legacy' };
}
/** Route a buffered JSON-RPC body; returns target name. */
export function routeByBody(buf) {
  let msg;
  try { msg = JSON.parse(buf.toString('utf8')); } catch { return 'legacy'; }
  return routeByMessage(msg);
}
/** Route an already-parsed JSON-RPC message; returns target name. */
export function routeByMessage(msg) {
  if (msg && msg.method === 'force' && Array.isArray(msg.params?.builderNames) && msg.params.builderNames.length) {
    return matchBuilder(String(msg.params.builderNames[0]));
  }
  return 'legacy';
}

export const hasFeatures = recordMetrics !== null || writeLog !== null;

/** Call once per completed request. */
export function done(method, url, status, t0, route, upstream) {
  const ms = performance.now() - t0;
  if (recordMetrics !== null) recordMetrics(route, method, status, ms / 1000);
  if (writeLog !== null) writeLog(method, url, status, ms, route, upstream);
}

export function describe() {
  return `METRICS=${METRICS} LOG=${LOG} ROUTE=${ROUTE ? 1 : 0}`;
}
