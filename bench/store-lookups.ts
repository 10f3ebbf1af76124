/**
 * The store with a million mapped ids: fills the embedded store (and
 * PostgreSQL, from a private cluster, when its binaries are installed) with
 * `count` tasks through the Store interface (1,000 per recordBuildset), then
 * times `count`-sized random lookups by buildrequest id and by taskId, and
 * reads the process's RSS before the fill, after it and after the lookups.
 * The target: p99 under 1 ms, memory bounded (RSS not growing with
 * the number of rows: SQLite's page cache and pg's pool are fixed-size).
 *
 *   node --import tsx bench/store-lookups.ts '{"count":1000000,"lookups":100000}'
 * Prints one JSON line; progress goes to stderr.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openStore } from '../src/store/open.js';
import type { Store, TaskRecord } from '../src/store/store.js';
import { startPostgres } from '../test/support/postgres.js';

interface Options {
  count: number;
  lookups: number;
  postgres: boolean;
}

const given = JSON.parse(process.argv[2] ?? '{}') as Partial<Options>;
const P: Options = { count: given.count ?? 1_000_000, lookups: given.lookups ?? 100_000, postgres: given.postgres ?? true };
const BATCH = 1000;
const MiB = 2 ** 20;
const rssMiB = () => Math.round((process.memoryUsage().rss / MiB) * 10) / 10;
const log = (line: string) => process.stderr.write(`${line}\n`);

export interface StoreLookupResult {
  kind: string;
  rows: number;
  fillS: number;
  byBuildrequest: { p50Ms: number; p99Ms: number; maxMs: number };
  byTaskId: { p50Ms: number; p99Ms: number; maxMs: number };
  rssMiB: { start: number; afterFill: number; afterLookups: number };
}

function quantiles(samples: number[]) {
  samples.sort((a, b) => a - b);
  const at = (q: number) => Math.round(samples[Math.min(samples.length - 1, Math.floor(q * samples.length))]! * 1e4) / 1e4;
  return { p50Ms: at(0.5), p99Ms: at(0.99), maxMs: at(1) };
}

async function measure(store: Store): Promise<StoreLookupResult> {
  // The ids written, in a typed array allocated before the first reading, so that RSS shows the store, not the bench.
  const brids = new Float64Array(P.count);
  let filled = 0;
  const taskIdOf = (brid: number) => `t${brid.toString(36)}`;
  const start = rssMiB();
  const t0 = performance.now();
  const definition = JSON.stringify({ taskQueueId: 'proj/linux64', payload: { command: ['run', 'x'.repeat(400)] }, metadata: { name: 'bench' } });
  // A few batches in flight: PostgreSQL then overlaps round trips; the embedded store runs them one by one anyway.
  const inFlight = 4;
  for (let done = 0; done < P.count; done += BATCH * inFlight) {
    await Promise.all(Array.from({ length: inFlight }, async (_, k) => {
      const n = Math.min(BATCH, P.count - done - k * BATCH);
      if (n <= 0) return;
      const [bsid] = await store.allocateIds('buildset', 1);
      const ids = await store.allocateIds('buildrequest', n);
      const tasks = ids.map((brid): TaskRecord => ({
        taskId: taskIdOf(brid), buildrequestId: brid, buildsetId: bsid!, backend: 'queue', builderName: `builder-${brid % 500}`,
        builderid: brid % 500, definition, state: 'created', stateReason: null, submittedAt: Date.now(), status: null, statusAt: null, final: true,
      }));
      await store.recordBuildset({ bsid: bsid!, backend: 'queue', reason: 'bench', submittedAt: Date.now(), externalIdstring: null, sourcestamps: [], properties: '{}', rebuildOf: null }, tasks);
      for (const t of tasks) brids[filled++] = t.buildrequestId;
    }));
    if ((done / (BATCH * inFlight)) % 50 === 0) log(`  ${store.kind}: ${filled.toLocaleString('en')} rows, RSS ${rssMiB()} MiB`);
  }
  const fillS = Math.round((performance.now() - t0) / 100) / 10;
  const afterFill = rssMiB();
  const time = async (lookup: (i: number) => Promise<unknown>) => {
    const samples: number[] = [];
    for (let k = 0; k < P.lookups; k++) {
      const i = Math.floor(Math.random() * filled);
      const s = performance.now();
      const found = await lookup(i);
      samples.push(performance.now() - s);
      if (found === undefined) throw new Error(`lookup ${i} found nothing`);
    }
    return quantiles(samples);
  };
  const byBuildrequest = await time((i) => store.task(brids[i]!));
  const byTaskId = await time((i) => store.taskById(taskIdOf(brids[i]!)));
  return { kind: store.kind, rows: filled, fillS, byBuildrequest, byTaskId, rssMiB: { start, afterFill, afterLookups: rssMiB() } };
}

export interface StoreLookupReport {
  node: string;
  count: number;
  lookups: number;
  results: StoreLookupResult[];
  postgresNote: string | null;
}

async function main(): Promise<void> {
  const results: StoreLookupResult[] = [];
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'strangler-store-bench-'));
  try {
    log(`store lookups: embedded, ${P.count.toLocaleString('en')} mapped ids`);
    const embedded = await openStore(undefined, { dataDir });
    results.push(await measure(embedded));
    await embedded.close();
  } finally {
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
  let postgresNote: string | null = null;
  if (P.postgres) {
    const started = await startPostgres();
    if (started.cluster === undefined) {
      postgresNote = started.reason;
    } else {
      try {
        log(`store lookups: postgres, ${P.count.toLocaleString('en')} mapped ids`);
        const store = await openStore(await started.cluster.createDatabase());
        results.push(await measure(store));
        await store.close();
      } finally {
        await started.cluster.stop();
      }
    }
  }
  const report: StoreLookupReport = { node: process.version, count: P.count, lookups: P.lookups, results, postgresNote };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

await main();
