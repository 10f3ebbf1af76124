// Persistent load generator (one process, pinned by run.mjs to the load CPU):
// reads one JSON job per stdin line, runs autocannon programmatically, writes
// one JSON result per stdout line. Avoids ~0.4 s of node + autocannon start-up
// per measurement slice.
//   job:    {"id":1,"url":"http://...","method":"GET","body":null,"duration":3,"connections":50}
//   result: {"id":1,"result":{...autocannon result...}} | {"id":1,"error":"..."}
import { createRequire } from 'node:module';
import readline from 'node:readline';

const AUTOCANNON = process.env.AUTOCANNON;
if (!AUTOCANNON) { console.error('AUTOCANNON env (path to autocannon.js) required'); process.exit(2); }
const autocannon = createRequire(import.meta.url)(AUTOCANNON);

const rl = readline.createInterface({ input: process.stdin });
const queue = [];
let busy = false;
rl.on('line', (l) => { if (l.trim()) { queue.push(JSON.parse(l)); next(); } });
rl.on('close', () => { if (!busy && queue.length === 0) process.exit(0); });

function next() {
  if (busy || queue.length === 0) return;
  busy = true;
  const job = queue.shift();
  const opts = { url: job.url, connections: job.connections, duration: job.duration, method: job.method };
  if (job.body != null) { opts.body = job.body; opts.headers = { 'content-type': 'application/json' }; }
  autocannon(opts, (err, result) => {
    if (err) process.stdout.write(JSON.stringify({ id: job.id, error: String(err) }) + '\n');
    else {
      const { requests, latency, errors, timeouts, non2xx, duration } = result;
      process.stdout.write(JSON.stringify({ id: job.id, result: { requests, latency, errors, timeouts, non2xx, duration } }) + '\n');
    }
    busy = false;
    next();
  });
}
