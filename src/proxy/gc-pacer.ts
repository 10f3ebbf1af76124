/**
 * Keeps large downloads from paying for full garbage collections.
 *
 * Every socket read gives Node a fresh 64 KiB buffer. V8 counts those as
 * external memory, and once 64 MB of it has built up since the last full
 * collection it runs a full mark-compact: while a 1 GiB log streams at ~1 GB/s
 * that is one every ~60 ms, measured at 25-40 % of the proxy's CPU (perf and
 * --trace-gc, docs/performance.md). The buffers die young, and a scavenge
 * (minor GC) frees them for a fraction of that, but V8 only scavenges when the
 * JS heap's young generation fills, which streaming bytes barely touches.
 * So after every BYTES_PER_SCAVENGE body bytes forwarded, the pacer asks for a
 * scavenge itself: about 1 ms per 16 MiB, where small JSON answers reach that
 * only every ~80,000 requests.
 */
import v8 from 'node:v8';
import vm from 'node:vm';

export const BYTES_PER_SCAVENGE = 16 * 2 ** 20;

type Collector = () => void;

/** V8's own gc() without starting node with --expose-gc; undefined where the runtime refuses. */
function minorCollector(): Collector | undefined {
  try {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as ((options: { type: 'minor' }) => void) | undefined;
    return typeof gc === 'function' ? () => gc({ type: 'minor' }) : undefined;
  } catch {
    return undefined;
  }
}

export class GcPacer {
  private pending = 0;

  constructor(
    private readonly collect: Collector | undefined = minorCollector(),
    private readonly every = BYTES_PER_SCAVENGE,
  ) {}

  /** Counts `bytes` of body forwarded; collects once `every` bytes have gone by since the last time. */
  forwarded(bytes: number): void {
    this.pending += bytes;
    if (this.pending < this.every) return;
    this.pending = 0;
    this.collect?.();
  }
}

/** The process-wide pacer the forwarding path feeds. */
export const gcPacer = new GcPacer();
