// The load generator where wrk is not installed: one autocannon run, one JSON
// line out, in the shape bench/run.ts reads from wrk
// ({requests, durationS, p50, p99 (ms), errors, non2xx, timeouts}).
//   node bench/lib/autocannon-run.mjs '{"url":"http://...","method":"GET","connections":50,"duration":5}'
//   ... '{"url":"http://...","connections":50,"amount":100000,"requests":[{"method":"GET","path":"/x"}, ...]}'
//   ... @/tmp/job.json   (the job in a file: a long request list does not fit in argv)
import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';

const arg = process.argv[2] ?? '{}';
const job = JSON.parse(arg.startsWith('@') ? readFileSync(arg.slice(1), 'utf8') : arg);
const opts = { url: job.url, connections: job.connections ?? 50, method: job.method ?? 'GET' };
if (job.amount) opts.amount = job.amount; else opts.duration = job.duration ?? 5;
if (job.body != null) { opts.body = job.body; opts.headers = { 'content-type': 'application/json' }; }
if (job.requests) opts.requests = job.requests.map((r) => ({ ...r, ...(r.body ? { headers: { 'content-type': 'application/json' } } : {}) }));
autocannon(opts, (err, r) => {
  if (err) { process.stdout.write(JSON.stringify({ error: String(err) }) + '\n'); process.exit(1); }
  process.stdout.write(JSON.stringify({
    requests: r.requests.total, durationS: r.duration, p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99,
    max: r.latency.max, mean: r.latency.average, errors: r.errors, timeouts: r.timeouts, non2xx: r.non2xx,
  }) + '\n');
});
