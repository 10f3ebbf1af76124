// Constant-rate (open-loop) HTTP client: sends `rate` requests per second for
// `seconds`, whatever the answers do (no coordinated omission: a slow answer
// does not delay the next request), over keep-alive connections, and prints
// one JSON line with latency percentiles in milliseconds. Latency is measured
// from the moment each request is written to the moment its last byte
// arrives. The first `warmup` seconds are sent but not counted.
//   node bench/lib/rate-client.mjs '{"url":"http://127.0.0.1:9000/x","rate":1000,"seconds":5,"warmup":1}'
import http from 'node:http';

const job = JSON.parse(process.argv[2] ?? '{}');
const url = new URL(job.url);
const rate = Number(job.rate ?? 1000);
const seconds = Number(job.seconds ?? 5);
const warmup = Number(job.warmup ?? 1);
const method = job.method ?? 'GET';
const body = job.body == null ? null : Buffer.from(job.body);
const headers = body ? { 'content-type': 'application/json', 'content-length': String(body.length) } : {};
const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });

const total = Math.round(rate * (seconds + warmup));
const skip = Math.round(rate * warmup);
const latencies = new Float64Array(total);
let sent = 0;
let done = 0;
let errors = 0;
let non2xx = 0;
let maxLagMs = 0;
const intervalNs = 1e9 / rate;
const t0 = process.hrtime.bigint();
const now = () => Number(process.hrtime.bigint() - t0);

function fire(i) {
  const start = now();
  const req = http.request({ host: url.hostname, port: url.port, path: url.pathname + url.search, method, headers, agent }, (res) => {
    if (res.statusCode < 200 || res.statusCode > 299) non2xx++;
    res.on('data', () => {});
    res.on('end', () => { latencies[i] = (now() - start) / 1e6; finish(); });
  });
  req.on('error', () => { errors++; latencies[i] = NaN; finish(); });
  req.end(body ?? undefined);
}

function finish() {
  if (++done < total) return;
  const counted = Array.from(latencies.subarray(skip)).filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  const q = (p) => (counted.length ? counted[Math.min(counted.length - 1, Math.floor((p / 100) * counted.length))] : NaN);
  const elapsedS = (now() - skip * intervalNs) / 1e9;
  process.stdout.write(JSON.stringify({
    requests: counted.length, errors, non2xx, rate, seconds,
    achievedRate: counted.length / elapsedS,
    p50: q(50), p90: q(90), p99: q(99), p999: q(99.9), max: counted[counted.length - 1] ?? NaN,
    mean: counted.reduce((s, x) => s + x, 0) / (counted.length || 1),
    maxSendLagMs: maxLagMs,
  }) + '\n');
  agent.destroy();
  process.exit(0);
}

// Sends every request whose time has come, then sleeps until the next one is due
// (timers have ~1 ms granularity; at 1,000 req/s that is one request per tick).
function tick() {
  const t = now();
  while (sent < total && sent * intervalNs <= t) {
    maxLagMs = Math.max(maxLagMs, (t - sent * intervalNs) / 1e6);
    fire(sent++);
  }
  if (sent < total) setTimeout(tick, Math.max(0, (sent * intervalNs - now()) / 1e6));
}
tick();
setTimeout(() => { process.stderr.write(`rate-client: gave up waiting for ${total - done} answers\n`); for (let i = done; i < total; i++) finish(); }, (seconds + warmup + 30) * 1000).unref();
