import { expect } from 'chai';
import { constants, performance, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import { BYTES_PER_SCAVENGE, GcPacer } from '../../../src/proxy/gc-pacer.js';

describe('proxy/gc-pacer', () => {
  it('asks for one collection per threshold of bytes forwarded, not before', () => {
    let collections = 0;
    const pacer = new GcPacer(() => collections++, 1000);
    pacer.forwarded(999);
    expect(collections).to.equal(0);
    pacer.forwarded(1);
    expect(collections).to.equal(1);
    for (let i = 0; i < 25; i++) pacer.forwarded(100); // 2,500 more bytes
    expect(collections).to.equal(3);
  });

  it('counts a chunk larger than the threshold as one collection', () => {
    let collections = 0;
    const pacer = new GcPacer(() => collections++, 1000);
    pacer.forwarded(5000);
    expect(collections).to.equal(1);
  });

  it('keeps counting without a collector (a runtime that refuses --expose-gc)', () => {
    const pacer = new GcPacer(undefined, 10);
    expect(() => pacer.forwarded(100)).not.to.throw();
  });

  it('runs a real minor GC by default, and leaves gc() as it found it', async () => {
    const hadGc = typeof (globalThis as { gc?: unknown }).gc;
    const minorGcs: number[] = [];
    const observer = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) if ((entry as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR) minorGcs.push(entry.startTime);
    });
    observer.observe({ entryTypes: ['gc'] });
    try {
      const before = performance.now();
      new GcPacer().forwarded(BYTES_PER_SCAVENGE);
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(minorGcs.filter((t) => t >= before)).to.have.length.greaterThan(0);
    } finally {
      observer.disconnect();
    }
    expect(typeof (globalThis as { gc?: unknown }).gc).to.equal(hadGc);
  });
});
