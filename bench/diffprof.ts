// Dev aid: differential CPU profile (µs per request by function) of the proxy vs the engines prototype.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Wrk, findWrk } from './lib/loadgen.js';
import { spawnPinned, freePort, waitHttp, LOAD_CPU, SERVER_CPU, stopProc, killAllSync, pinSelf, sleep } from './lib/procs.js';
import { generateRoutes, routesYaml, type GeneratedRoute } from './lib/routes.js';
import { componentOf } from './lib/cpuprofile.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..');
process.on('exit', killAllSync);
pinSelf(LOAD_CPU);
const METHOD = process.env.METHOD ?? 'GET';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'diffprof-'));
const [up, p1, a1, p2] = await Promise.all(Array.from({ length: 4 }, () => freePort()));
const upstream = spawnPinned('up', LOAD_CPU, process.execPath, [path.join(HERE, 'lib/upstream.mjs')], { env: { PORT: String(up) } });
const backends = { buildbot: { url: `http://127.0.0.1:${up}`, legacy: true }, taskservice: { url: `http://127.0.0.1:${up}` } };
const pinned: GeneratedRoute = { pattern: 'linux64-opt', kind: 'exact', backend: 'taskservice' };
fs.writeFileSync(path.join(tmp, 'r.yaml'), routesYaml({ backends, routes: generateRoutes({ count: 300, mix: 'mix', pinned: [pinned] }), defaultBackend: 'buildbot' }));
await waitHttp(`http://127.0.0.1:${up}/`, upstream);
const out = fs.openSync(path.join(tmp, 'proxy.log'), 'w');
const servers = [
  { id: 'proxy', port: p1!, proc: spawnPinned('proxy', SERVER_CPU, process.execPath, ['--cpu-prof', '--cpu-prof-dir', path.join(tmp, 'proxy'), path.join(REPO, 'dist/cli.js'), 'serve', '--config', path.join(tmp, 'r.yaml'), '--port', String(p1), '--admin-port', String(a1), '--host', '127.0.0.1'], { stdio: ['ignore', out, 'inherit'], env: { STRANGLER_ADMIN_TOKEN: '', LOG_FORMAT: 'json' } }) },
  { id: 'proto', port: p2!, proc: spawnPinned('proto', SERVER_CPU, process.execPath, ['--cpu-prof', '--cpu-prof-dir', path.join(tmp, 'proto'), path.join(HERE, 'engines/d-undici.mjs')], { env: { PORT: String(p2), UPSTREAM_PORT: String(up), API: 'dispatch', ROUTE: '1', METRICS: 'fast', LOG: 'hand' } }) },
];
const GET = { method: 'GET' as const, path: '/api/v2/builders/linux64-opt/builds?limit=1' };
const POST = { method: 'POST' as const, path: '/api/v2/forceschedulers/force', body: JSON.stringify({ jsonrpc: '2.0', method: 'force', id: 1, params: { builderNames: ['linux64-opt'], reason: 're-run after infra failure', owner: 'Release Engineering <releng@example.org>', branch: 'main', revision: '3f1c2e9a7b5d4c6e8f0a1b2c3d4e5f6a7b8c9d0e', project: 'autoland', properties: { priority: 'normal' } } }) };
const spec = METHOD === 'GET' ? GET : POST;
for (const s of servers) await waitHttp(`http://127.0.0.1:${s.port}${GET.path}`, s.proc, 30000);
const wrk = new Wrk(findWrk()!, tmp);
const requests: Record<string, number> = {};
for (const s of servers) { await wrk.run(s.port, spec, 2, 50); requests[s.id] = 0; }
for (let i = 0; i < 2; i++) for (const s of servers) requests[s.id]! += (await wrk.run(s.port, spec, 5, 50)).requests;
for (const s of servers) await stopProc(s.proc);
await sleep(300);
type Node = { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] };
const table = new Map<string, Record<string, number>>();
const comps = new Map<string, Record<string, number>>();
for (const s of servers) {
  const dir = path.join(tmp, s.id);
  const file = fs.readdirSync(dir).find((f) => f.endsWith('.cpuprofile'))!;
  const prof = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as { nodes: Node[]; samples: number[]; timeDeltas: number[] };
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const n = requests[s.id]! + 2 * 0; // warm-up excluded from counts but included in profile: approximate
  for (let i = 0; i < prof.samples.length; i++) {
    const node = byId.get(prof.samples[i]!)!;
    const f = node.callFrame;
    if (f.functionName === '(idle)') continue;
    const us = (prof.timeDeltas[i + 1] ?? prof.timeDeltas[i]!) / n;
    const key = `${f.functionName || '(anon)'} ${f.url.replace(/.*node_modules\//, '').replace(/.*\/dist\//, 'dist/')}:${f.lineNumber + 1}`;
    (table.get(key) ?? table.set(key, {}).get(key)!)[s.id] = ((table.get(key)![s.id] ?? 0) + us);
    const c = componentOf(f as never);
    (comps.get(c) ?? comps.set(c, {}).get(c)!)[s.id] = ((comps.get(c)![s.id] ?? 0) + us);
  }
}
const total = (id: string) => [...comps.values()].reduce((a, r) => a + (r[id] ?? 0), 0);
console.log(`requests: ${JSON.stringify(requests)}; µs/req (incl warm-up share) proxy ${total('proxy').toFixed(1)} proto ${total('proto').toFixed(1)}`);
console.log('--- components (self µs/req): proxy  proto  diff');
for (const [c, r] of [...comps].sort((a, b) => ((b[1].proxy ?? 0) - (b[1].proto ?? 0)) - ((a[1].proxy ?? 0) - (a[1].proto ?? 0))).slice(0, 25)) console.log(`${c.padEnd(34)} ${(r.proxy ?? 0).toFixed(2).padStart(6)} ${(r.proto ?? 0).toFixed(2).padStart(6)} ${((r.proxy ?? 0) - (r.proto ?? 0)).toFixed(2).padStart(6)}`);
console.log('--- functions (self µs/req): proxy  proto  diff');
for (const [k, r] of [...table].sort((a, b) => ((b[1].proxy ?? 0) - (b[1].proto ?? 0)) - ((a[1].proxy ?? 0) - (a[1].proto ?? 0))).slice(0, 45)) console.log(`${k.slice(0, 70).padEnd(70)} ${(r.proxy ?? 0).toFixed(2).padStart(6)} ${(r.proto ?? 0).toFixed(2).padStart(6)} ${((r.proxy ?? 0) - (r.proto ?? 0)).toFixed(2).padStart(6)}`);
await stopProc(upstream);
