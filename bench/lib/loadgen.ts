/**
 * The load generator: Debian's wrk (C, one thread, pinned to the load CPU),
 * or autocannon from npm where wrk is not installed. Each run is one child
 * process; its result comes back as one line of JSON.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { LOAD_CPU, spawnPinned } from './procs.js';

export interface LoadResult {
  requests: number;
  durationS: number;
  rps: number;
  /** Latency percentiles, milliseconds (closed loop: each connection sends its next request on the answer). */
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Connection errors, timeouts and answers outside 2xx/3xx. */
  errors: number;
}

export interface RequestSpec {
  method: 'GET' | 'POST';
  path: string;
  body?: string;
}

export interface LoadGenerator {
  readonly name: string;
  readonly version: string;
  /** For `seconds` (whole seconds for wrk) on `connections` keep-alive connections, the same request over and over. */
  run(port: number, spec: RequestSpec, seconds: number, connections: number): Promise<LoadResult>;
  /** Cycles through `specs`, in order, for `seconds`. */
  runMix(port: number, specs: readonly RequestSpec[], seconds: number, connections: number): Promise<LoadResult>;
}

export function findWrk(): string | null {
  for (const candidate of ['/usr/bin/wrk', '/usr/local/bin/wrk']) if (fs.existsSync(candidate)) return candidate;
  const which = spawnSync('sh', ['-c', 'command -v wrk'], { encoding: 'utf8' });
  return which.status === 0 && which.stdout.trim() ? which.stdout.trim() : null;
}

/** A Lua long string that cannot be closed by the text inside it. */
function luaString(text: string): string {
  let eq = '=';
  while (text.includes(`]${eq}]`)) eq += '=';
  return `[${eq}[${text}]${eq}]`;
}

const LUA_DONE = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCHJSON {"requests":%d,"durationUs":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
`;

export class Wrk implements LoadGenerator {
  readonly name = 'wrk';
  readonly version: string;
  private scripts = new Map<string, string>();
  private seq = 0;

  constructor(private readonly bin: string, private readonly dir: string) {
    const out = spawnSync(bin, ['--version'], { encoding: 'utf8' });
    this.version = /wrk\s+(\S+)/.exec(`${out.stdout}${out.stderr}`)?.[1] ?? 'unknown';
  }

  private script(key: string, text: string): string {
    let file = this.scripts.get(key);
    if (!file) {
      file = path.join(this.dir, `wrk-${++this.seq}.lua`);
      fs.writeFileSync(file, text);
      this.scripts.set(key, file);
    }
    return file;
  }

  run(port: number, spec: RequestSpec, seconds: number, connections: number): Promise<LoadResult> {
    const lua =
      spec.method === 'GET'
        ? LUA_DONE
        : `wrk.method = "POST"\nwrk.body = ${luaString(spec.body ?? '')}\nwrk.headers["Content-Type"] = "application/json"\n${LUA_DONE}`;
    return this.exec(port, spec.path, this.script(`${spec.method} ${spec.path} ${spec.body ?? ''}`, lua), seconds, connections);
  }

  runMix(port: number, specs: readonly RequestSpec[], seconds: number, connections: number): Promise<LoadResult> {
    const list = specs.map((s) => `{ "${s.method}", ${luaString(s.path)}, ${s.body === undefined ? 'nil' : luaString(s.body)} }`).join(',\n');
    const lua = `local list = {\n${list}\n}
local reqs = {}
local n = 0
init = function(args)
  for i, r in ipairs(list) do
    local h = {}
    if r[3] then h["Content-Type"] = "application/json" end
    reqs[i] = wrk.format(r[1], r[2], h, r[3])
  end
  n = #reqs
end
local i = 0
request = function()
  i = i % n + 1
  return reqs[i]
end
${LUA_DONE}`;
    return this.exec(port, specs[0]!.path, this.script(`mix ${specs.length} ${specs[0]!.path}`, lua), seconds, connections);
  }

  private async exec(port: number, urlPath: string, script: string, seconds: number, connections: number): Promise<LoadResult> {
    const s = Math.max(1, Math.round(seconds));
    const proc = spawnPinned('wrk', LOAD_CPU, this.bin, ['-t1', `-c${connections}`, `-d${s}s`, '--timeout', '10s', '-s', script, `http://127.0.0.1:${port}${urlPath}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    proc.child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    proc.child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    const code = await proc.exited;
    const line = out.split('\n').find((l) => l.startsWith('BENCHJSON '));
    if (!line) throw new Error(`wrk exited ${code} without a result: ${err.trim() || out.trim()}`);
    const r = JSON.parse(line.slice('BENCHJSON '.length)) as Record<string, number>;
    const durationS = r.durationUs! / 1e6;
    return {
      requests: r.requests!,
      durationS,
      rps: r.requests! / durationS,
      p50Ms: r.p50! / 1000,
      p90Ms: r.p90! / 1000,
      p99Ms: r.p99! / 1000,
      maxMs: r.max! / 1000,
      errors: r.connect! + r.read! + r.write! + r.status! + r.timeout!,
    };
  }
}

export class Autocannon implements LoadGenerator {
  readonly name = 'autocannon';
  readonly version: string;

  private seq = 0;

  constructor(private readonly runner: string, repo: string, private readonly dir: string) {
    try {
      this.version = (JSON.parse(fs.readFileSync(path.join(repo, 'node_modules/autocannon/package.json'), 'utf8')) as { version: string }).version;
    } catch {
      this.version = 'unknown';
    }
  }

  run(port: number, spec: RequestSpec, seconds: number, connections: number): Promise<LoadResult> {
    return this.exec({ url: `http://127.0.0.1:${port}${spec.path}`, method: spec.method, body: spec.body ?? null, duration: seconds, connections });
  }

  runMix(port: number, specs: readonly RequestSpec[], seconds: number, connections: number): Promise<LoadResult> {
    return this.exec({ url: `http://127.0.0.1:${port}${specs[0]!.path}`, duration: seconds, connections, requests: specs });
  }

  private async exec(job: Record<string, unknown>): Promise<LoadResult> {
    const file = path.join(this.dir, `autocannon-job-${++this.seq}.json`);
    fs.writeFileSync(file, JSON.stringify(job));
    const proc = spawnPinned('autocannon', LOAD_CPU, process.execPath, [this.runner, `@${file}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    proc.child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    await proc.exited;
    fs.rmSync(file, { force: true });
    const line = out.trim().split('\n').pop() ?? '';
    let r: Record<string, number> & { error?: string };
    try {
      r = JSON.parse(line) as typeof r;
    } catch {
      throw new Error(`autocannon gave no result: ${err.trim() || out.trim()}`);
    }
    if (r.error) throw new Error(`autocannon: ${r.error}`);
    return {
      requests: r.requests!,
      durationS: r.durationS!,
      rps: r.requests! / r.durationS!,
      p50Ms: r.p50!,
      p90Ms: r.p90!,
      p99Ms: r.p99!,
      maxMs: r.max!,
      errors: r.errors! + r.timeouts! + r.non2xx!,
    };
  }
}
