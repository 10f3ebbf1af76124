/**
 * `npm run bench -- --smoke` runs end to end and reports every row and every
 * measurement as a number, so the benchmark cannot rot unnoticed. Nothing here
 * judges a timing: the smoke run's sizes are far too small for that (its
 * verdicts read "n/a (smoke)"); docs/performance.md has the real numbers.
 */
import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const THROUGHPUT_TARGETS = { GET: ['direct', 'nginx', 'minimal', 'undici', 'proxy', 'proxy-shadow'], POST: ['direct', 'nginx', 'minimal', 'undici', 'proxy'] } as const;
/** The Node reference proxies: each has a throughput row, paired ratios, an added latency and a download. */
const REFERENCES = [{ id: 'minimal', key: 'Minimal' }, { id: 'undici', key: 'Undici' }];
const ROUTING_CASES = ['exact-10', 'exact-1000', 'exact-10000', 'mix-10', 'mix-1000', 'mix-10000'];
const TARGET_IDS = ['throughput-get', 'throughput-post', 'throughput-get-undici', 'throughput-post-undici', 'latency-p50', 'latency-p99', 'routing-exact', 'routing-mix', 'download-throughput', 'download-memory', 'shadow-cost', 'shadow-copies', 'memory-growth', 'store-p99-embedded', 'store-p99-postgres', 'queue-force-added', 'queue-read-from-store', 'pg-force-added', 'pg-read-ratio', 'tracking-cpu', 'tracking-rss'];

/** Every measurement key the report stands on; nginx's may be null only when nginx could not be installed. */
function expectedKeys(): string[] {
  const keys: string[] = [];
  for (const [method, targets] of Object.entries(THROUGHPUT_TARGETS)) {
    for (const t of targets) for (const k of ['rps', 'p50Ms', 'p99Ms', 'cpuUsPerReq']) keys.push(`throughput.${method}.${t}.${k}`);
    for (const { key } of REFERENCES) keys.push(`ratio.${method}.proxyVs${key}`, `ratio.${method}.nginxVs${key}`);
  }
  for (const { id } of REFERENCES) keys.push(`latency.${id}AddedP50Ms`, `latency.${id}AddedP99Ms`, `download.${id}MiBps`);
  keys.push(
    'latency.direct.p50Ms', 'latency.direct.p99Ms', 'latency.proxy.p50Ms', 'latency.proxy.p99Ms', 'latency.addedP50Ms', 'latency.addedP99Ms',
    'download.directMiBps', 'download.proxyMiBps', 'download.proxyCpuPct', 'download.ratio', 'download.proxyRssGrowthMiB',
    'shadow.withoutRps', 'shadow.withRps', 'shadow.ratio', 'shadow.costPct', 'shadow.copiesPerRequest',
    'memory.rssFirstMiB', 'memory.rssTotalMiB', 'memory.growthMiB', 'accessLog.proxyLines',
    'tracking.inFlight', 'tracking.addedCpuPct', 'tracking.addedRssMiB', 'tracking.queueCallsPerS', 'tracking.masterCallsPerS',
  );
  for (const c of ROUTING_CASES) for (const k of ['nsPerDecision', 'nsPerMatchedDecision', 'nsPerUnmatchedDecision', 'nsPerLookup', 'nsPerColdDecision', 'parseMs']) keys.push(`routing.${c}.${k}`);
  keys.push('routing.ratio.exact', 'routing.ratio.mix', 'routing.likeForLike.exact', 'routing.likeForLike.mix', 'routing.lookupRatio.exact', 'routing.lookupRatio.mix');
  for (const id of TARGET_IDS) keys.push(`target.${id}`);
  return keys;
}

interface SmokeResult {
  mode: string;
  tools: { loadGenerator: string; nginx: string | null; nginxSkipped: string | null };
  measurements: Record<string, number | null>;
  targets: Array<{ id: string; value: number; verdict: string }>;
  throughput: Record<string, Record<string, { errors: number; requests: number }>>;
  shadow: { copiesReceived: number };
  download: { runs: Array<{ complete: boolean }> };
  memory: { points: unknown[]; errors: number; firstAt: number; totalAt: number };
  accessLog: { proxyLines: number; proxyRequests: number };
  routing: { cases: Array<{ key: string; routes: number }> };
  queueTranslation: {
    read: { queueCallsDuringReads: number };
    postgres: { read: { queueCallsDuringReads: number; bytes: number }; force: { samples: number } } | null;
    postgresNote: string | null;
  };
  tracking: {
    builds: { queue: number; legacy: number; total: number };
    inFlight: { before: number; after: number; byBackend: Record<string, number>; reference: number };
    masterCallsBeforeWindow: Record<string, number>;
    queueCallsPerS: { byMethod: Record<string, number> };
    masterCallsPerS: { byKind: Record<string, number> };
  };
}

describe('e2e: npm run bench -- --smoke', function () {
  // < 2 min on a quiet 2-core machine (build tracking alone takes 25 s); generous here because the suite may share the machine.
  this.timeout(600_000);
  let dir: string;
  let stdout = '';
  let stderr = '';
  let code: number | null = null;
  let result: SmokeResult;

  before(async function () {
    if (!existsSync(path.join(ROOT, 'dist/cli.js'))) {
      const build = spawnSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, encoding: 'utf8' });
      if (build.status !== 0) throw new Error(`npm run build failed:\n${build.stdout}${build.stderr}`);
    }
    dir = mkdtempSync(path.join(tmpdir(), 'strangler-bench-smoke-'));
    const out = path.join(dir, 'smoke.json');
    code = await new Promise<number | null>((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench/run.ts'), '--smoke', '--out', out], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', reject);
      child.on('close', (c) => resolve(c));
    });
    if (code === 0) result = JSON.parse(readFileSync(out, 'utf8')) as SmokeResult;
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('runs to the end and exits 0', () => {
    expect(code, `${stdout.slice(-3000)}\n${stderr.slice(-3000)}`).to.equal(0);
    expect(result.mode).to.equal('smoke');
  });

  it('reports every measurement, each a number', () => {
    expect(result, 'no result file').to.not.equal(undefined);
    const nginxSkipped = result.tools.nginx === null;
    if (nginxSkipped) expect(result.tools.nginxSkipped, 'nginx missing without a note saying why').to.be.a('string').and.match(/apt-get install/);
    const problems: string[] = [];
    for (const key of expectedKeys()) {
      const value = result.measurements[key];
      if (value === null && nginxSkipped && key.includes('nginx')) continue;
      if (typeof value !== 'number' || !Number.isFinite(value)) problems.push(`${key}: ${String(value)}`);
    }
    expect(problems, 'missing or non-numeric measurements').to.deep.equal([]);
    expect(result.routing.cases.map((c) => c.key)).to.deep.equal(ROUTING_CASES);
  });

  it('judges every target, and judges none in smoke mode', () => {
    expect(result.targets.map((t) => t.id)).to.deep.equal(TARGET_IDS);
    for (const t of result.targets) {
      expect(t.value, t.id).to.be.a('number').and.satisfy(Number.isFinite);
      expect(t.verdict, t.id).to.equal('n/a (smoke)');
    }
  });

  it('prints every row of the table', () => {
    const rows = [
      'direct (upstream, no proxy)', 'minimal Node proxy (reference)', 'bare undici proxy (reference)', 'strangler-proxy   ', 'strangler-proxy, shadow 100%',
      'added by the proxy', 'added by the minimal proxy', 'added by the bare undici proxy', '10 exact', '1,000 exact', '10,000 exact', '10 mix', '1,000 mix', '10,000 mix',
      'log download', 'Shadow 100 % of GETs', '6. Memory', 'store lookups:', 'queue translation', '7. Build tracking', 'TARGETS',
      result.tools.nginx === null ? 'skipped: nginx not installed' : 'nginx (keep-alive upstream)',
    ];
    for (const row of rows) expect(stdout, row).to.include(row);
    expect(stdout.match(/n\/a \(smoke\)/g)?.length ?? 0).to.equal(TARGET_IDS.length);
  });

  it('measured what it says: no errors, whole downloads, shadow copies sent, an access line per request', () => {
    for (const [method, rows] of Object.entries(result.throughput)) {
      for (const [target, row] of Object.entries(rows)) {
        expect(row.requests, `${method} ${target} requests`).to.be.greaterThan(0);
        expect(row.errors, `${method} ${target} errors`).to.equal(0);
      }
    }
    expect(result.download.runs.every((r) => r.complete)).to.equal(true);
    expect(result.shadow.copiesReceived, 'the mirror backend received no shadow copies').to.be.greaterThan(0);
    expect(result.accessLog.proxyLines, 'access log lines').to.be.at.least(result.accessLog.proxyRequests);
    expect(result.memory.errors).to.equal(0);
    expect(result.memory.totalAt).to.be.greaterThan(result.memory.firstAt);
  });

  it('measured the translation with the PostgreSQL store as with the embedded one, reads from the stores alone', () => {
    const q = result.queueTranslation;
    // The suite installs PostgreSQL (scripts/test.sh): without it the section says why, and that is a failure here.
    expect(q.postgresNote, 'the PostgreSQL store was not measured').to.equal(null);
    expect(q.postgres, 'no PostgreSQL comparison').to.not.equal(null);
    expect(q.postgres!.force.samples).to.be.greaterThan(0);
    expect(q.read.queueCallsDuringReads, 'queue calls during reads from the embedded store').to.equal(0);
    expect(q.postgres!.read.queueCallsDuringReads, 'queue calls during reads from PostgreSQL').to.equal(0);
    expect(stdout).to.match(/PostgreSQL store \(\d+\.\d+.*\): force p50/);
  });

  it('tracked every build it put in flight, on both backends, and none on the reference proxy', () => {
    const t = result.tracking;
    expect(t.inFlight.before, 'the in-flight gauge before the window').to.equal(t.builds.total);
    expect(t.inFlight.after, 'the in-flight gauge after the window').to.equal(t.builds.total);
    expect(t.inFlight.byBackend).to.deep.equal({ queue: t.builds.queue, buildbot: t.builds.legacy });
    expect(t.inFlight.reference, 'the reference proxy\'s gauge').to.equal(0);
    expect(t.masterCallsBeforeWindow.force, 'forces the stand-in master answered').to.equal(t.builds.legacy);
    // Followed while measured: the queue's task statuses, and the master's list of unfinished builds.
    expect(t.queueCallsPerS.byMethod.status, 'queue status calls per second').to.be.greaterThan(0);
    expect(t.masterCallsPerS.byKind['builds?complete=false'], 'unfinished-builds reads per second').to.be.greaterThan(0);
  });
});
