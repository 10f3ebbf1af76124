// Quick A/B of throughput only (dev aid, not committed yet).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Wrk, findWrk } from './lib/loadgen.js';
import { spawnPinned, freePort, waitHttp, cpuTicks, CLK_TCK, LOAD_CPU, SERVER_CPU, stopProc, killAllSync, median, pinSelf, type Proc } from './lib/procs.js';
import { generateRoutes, routesYaml, type GeneratedRoute } from './lib/routes.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..');
process.on('exit', killAllSync);
const argv = process.argv.slice(2);
const slice = Number(process.env.SLICE ?? 3), cycles = Number(process.env.CYCLES ?? 3);
const withShadow = argv.includes('shadow');
const extra = (process.env.EXTRA ?? '').split(',').filter(Boolean); // extra node server scripts "name=path"
pinSelf(LOAD_CPU);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'quick-'));
const [up, mir, p1, a1, p2, a2, pm, ...rest] = await Promise.all(Array.from({ length: 12 }, () => freePort()));
const upstream = spawnPinned('up', LOAD_CPU, process.execPath, [path.join(HERE, 'lib/upstream.mjs')], { env: { PORT: String(up) } });
const mirror = spawnPinned('mirror', LOAD_CPU, process.execPath, [path.join(HERE, 'lib/upstream.mjs')], { env: { PORT: String(mir) } });
const backends = { buildbot: { url: `http://127.0.0.1:${up}`, legacy: true }, taskservice: { url: `http://127.0.0.1:${up}` }, mirror: { url: `http://127.0.0.1:${mir}` } };
const pinned: GeneratedRoute = { pattern: 'linux64-opt', kind: 'exact', backend: 'taskservice' };
const routes = generateRoutes({ count: 300, mix: 'mix', pinned: [pinned] });
fs.writeFileSync(path.join(tmp, 'r.yaml'), routesYaml({ backends, routes, defaultBackend: 'buildbot' }));
fs.writeFileSync(path.join(tmp, 's.yaml'), (process.env.SHADOW_SETTINGS ?? '') + routesYaml({ backends, routes: routes.map((r) => (r === pinned ? { ...r, shadow: { backend: 'mirror', percent: 100 } } : r)), defaultBackend: 'buildbot' }));
await waitHttp(`http://127.0.0.1:${up}/`, upstream);
await waitHttp(`http://127.0.0.1:${mir}/`, mirror);
const servers: Array<{ id: string; port: number; proc: Proc }> = [];
const strangler = (id: string, file: string, port: number, admin: number) => {
  const out = fs.openSync(path.join(tmp, `${id}.log`), 'w');
  const proc = spawnPinned(id, SERVER_CPU, process.execPath, [path.join(REPO, 'dist/cli.js'), 'serve', '--config', file, '--port', String(port), '--admin-port', String(admin), '--host', '127.0.0.1', '--log-level', 'info'], { stdio: ['ignore', out, 'inherit'], env: { STRANGLER_ADMIN_TOKEN: '', LOG_FORMAT: 'json', NODE_OPTIONS: id === 'proxy2' ? (process.env.P2_NODE_OPTIONS ?? '') : '' } });
  servers.push({ id, port, proc });
};
servers.push({ id: 'minimal', port: pm!, proc: spawnPinned('minimal', SERVER_CPU, process.execPath, [path.join(HERE, 'reference/minimal-proxy.mjs')], { env: { PORT: String(pm), UPSTREAM_PORT: String(up) } }) });
strangler('proxy', path.join(tmp, 'r.yaml'), p1!, a1!);
if (withShadow) strangler('shadow', path.join(tmp, 's.yaml'), p2!, a2!);
if (process.env.P2_NODE_OPTIONS) strangler('proxy2', path.join(tmp, 'r.yaml'), p2!, a2!);
extra.forEach((e, i) => { const [id, file] = e.split('='); const port = rest[i]!; servers.push({ id: id!, port, proc: spawnPinned(id!, SERVER_CPU, process.execPath, [file!], { env: { PORT: String(port), UPSTREAM_PORT: String(up), ...Object.fromEntries((process.env.EXTRA_ENV ?? '').split(' ').filter(Boolean).map((kv) => kv.split('='))) } }) }); });
const GET = { method: 'GET' as const, path: '/api/v2/builders/linux64-opt/builds?limit=1' };
const POST = { method: 'POST' as const, path: '/api/v2/forceschedulers/force', body: JSON.stringify({ jsonrpc: '2.0', method: 'force', id: 1, params: { builderNames: ['linux64-opt'], reason: 're-run after infra failure', owner: 'Release Engineering <releng@example.org>', branch: 'main', revision: '3f1c2e9a7b5d4c6e8f0a1b2c3d4e5f6a7b8c9d0e', project: 'autoland', properties: { priority: 'normal' } } }) };
for (const s of servers) await waitHttp(`http://127.0.0.1:${s.port}${GET.path}`, s.proc, 30000);
const wrk = new Wrk(findWrk()!, tmp);
const methods = (process.env.METHODS ?? 'GET,POST').split(',');
for (const s of servers) for (const m of methods) await wrk.run(s.port, m === 'GET' ? GET : POST, 2, 50);
const res: Record<string, number[]> = {}, cpu: Record<string, number[]> = {};
for (let c = 0; c < cycles; c++) for (const m of methods) for (let k = 0; k < servers.length; k++) {
  const s = servers[(k + c) % servers.length]!;
  if (m === 'POST' && s.id === 'shadow') continue;
  const t0 = cpuTicks(s.proc.pid);
  const r = await wrk.run(s.port, m === 'GET' ? GET : POST, slice, 50);
  const us = ((cpuTicks(s.proc.pid) - t0) * 1e6) / CLK_TCK / r.requests;
  (res[`${s.id} ${m}`] ??= []).push(r.rps); (cpu[`${s.id} ${m}`] ??= []).push(us);
  if (r.errors) console.log(`!! ${s.id} ${m} errors ${r.errors}`);
}
for (const m of methods) for (const s of servers) {
  const k = `${s.id} ${m}`; if (!res[k]) continue;
  const ratios = res[k]!.map((x, i) => x / res[`minimal ${m}`]![i]!);
  console.log(`${k.padEnd(16)} ${median(res[k]!).toFixed(0).padStart(6)} req/s  ${median(cpu[k]!).toFixed(0).padStart(4)} µs/req  ×min ${median(ratios).toFixed(2)} [${ratios.map((r) => r.toFixed(2)).join(' ')}]`);
}
if (withShadow) { const r = res['shadow GET']!.map((x, i) => x / res['proxy GET']![i]!); console.log(`shadow cost ${(100 * (1 - median(r))).toFixed(1)}% [${r.map((x) => x.toFixed(2)).join(' ')}]`); }
if (withShadow) { const r = await fetch(`http://127.0.0.1:${a2}/metrics`); console.log((await r.text()).split('\n').filter((l) => l.startsWith('strangler_shadow_requests_total')).join('\n')); }
for (const s of [...servers]) await stopProc(s.proc);
await stopProc(upstream); await stopProc(mirror);
fs.rmSync(tmp, { recursive: true, force: true });
