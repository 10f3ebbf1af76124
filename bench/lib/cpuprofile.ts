/**
 * Summarises a V8 .cpuprofile (node --cpu-prof): the functions with the most
 * self time, and the share of samples per component (our code, each npm
 * package, node's internals, GC), both as self time and as "anywhere on the
 * stack" (inclusive) time. Percentages are of the non-idle samples.
 */
import fs from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  /** Microseconds on the monotonic clock (CLOCK_MONOTONIC, as process.hrtime in any process on the machine). */
  startTime: number;
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  samples: number;
  idleShare: number;
  top: Array<{ function: string; where: string; component: string; selfPct: number }>;
  components: Array<{ component: string; selfPct: number; inclusivePct: number }>;
  /** Native leaves (writev, writeLatin1String, ...) by the nearest caller in our code, a package or node's http layer. */
  nativeCallers: Array<{ native: string; caller: string; where: string; selfPct: number }>;
}

/** 'strangler-proxy src/proxy/handler.ts', 'npm:winston', 'node:internal/streams', '(gc)' ... */
export function componentOf(frame: CallFrame): string {
  const { url, functionName } = frame;
  if (!url) {
    if (functionName === '(garbage collector)') return '(gc)';
    if (functionName === '(program)') return '(program: native, not JS)';
    if (functionName === '(idle)') return '(idle)';
    return '(native/builtin)';
  }
  const nm = url.lastIndexOf('/node_modules/');
  if (nm !== -1) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/');
    return `npm:${rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]}`;
  }
  if (url.startsWith('node:')) {
    const parts = url.slice(5).split('/');
    return `node:${parts[0] === 'internal' ? `internal/${parts[1]?.replace(/\.js$/, '') ?? ''}` : parts[0]!.replace(/\.js$/, '')}`;
  }
  const dist = url.lastIndexOf('/dist/');
  if (dist !== -1) return `proxy:${url.slice(dist + 6).replace(/\.js$/, '')}`;
  return url.replace(/^file:\/\//, '');
}

function shortWhere(frame: CallFrame): string {
  const url = frame.url.replace(/^file:\/\//, '');
  const nm = url.lastIndexOf('/node_modules/');
  const short = nm !== -1 ? url.slice(nm + 14) : url.lastIndexOf('/dist/') !== -1 ? `dist/${url.slice(url.lastIndexOf('/dist/') + 6)}` : url;
  return short ? `${short}:${frame.lineNumber + 1}` : '';
}

/** `window`: only the samples taken within it, in microseconds of the monotonic clock (`process.hrtime.bigint() / 1000n`). */
export function summarizeProfile(file: string, topN = 25, window?: { fromUs: number; toUs: number }): ProfileSummary {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as Profile;
  if (window !== undefined) {
    let at = profile.startTime;
    profile.samples = profile.samples.filter((_, i) => {
      at += profile.timeDeltas[i] ?? 0;
      return at >= window.fromUs && at <= window.toUs;
    });
  }
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const c of node.children ?? []) parent.set(c, node.id);
  }
  const selfCount = new Map<number, number>();
  for (const id of profile.samples) selfCount.set(id, (selfCount.get(id) ?? 0) + 1);

  let idle = 0;
  let busy = 0;
  const selfByFn = new Map<string, { fn: string; where: string; component: string; n: number }>();
  const selfByComponent = new Map<string, number>();
  const inclByComponent = new Map<string, number>();
  const nativeBy = new Map<string, { native: string; caller: string; where: string; n: number }>();
  for (const [id, n] of selfCount) {
    const node = byId.get(id)!;
    const frame = node.callFrame;
    if (frame.functionName === '(idle)') {
      idle += n;
      continue;
    }
    busy += n;
    const component = componentOf(frame);
    const key = `${frame.functionName}|${frame.url}|${frame.lineNumber}`;
    const entry = selfByFn.get(key) ?? { fn: frame.functionName || '(anonymous)', where: shortWhere(frame), component, n: 0 };
    entry.n += n;
    selfByFn.set(key, entry);
    selfByComponent.set(component, (selfByComponent.get(component) ?? 0) + n);
    if (!frame.url && !frame.functionName.startsWith('(')) {
      // The nearest caller that says whose write it is: our code, a package, or node's http layer
      // (not the generic stream/socket plumbing in between).
      const telling = (f: CallFrame) => /^(proxy:|npm:|node:_http)/.test(componentOf(f));
      let at = parent.get(id);
      while (at !== undefined && !telling(byId.get(at)!.callFrame)) at = parent.get(at);
      const caller = at === undefined ? undefined : byId.get(at)!.callFrame;
      const k = `${frame.functionName}|${caller?.functionName}|${caller?.url}|${caller?.lineNumber}`;
      const e = nativeBy.get(k) ?? { native: frame.functionName, caller: caller ? caller.functionName || '(anonymous)' : '(none)', where: caller ? shortWhere(caller) : '', n: 0 };
      e.n += n;
      nativeBy.set(k, e);
    }
    // inclusive: each component once per stack
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const f = byId.get(at)!.callFrame;
      if (f.functionName === '(root)') continue;
      seen.add(componentOf(f));
    }
    for (const c of seen) inclByComponent.set(c, (inclByComponent.get(c) ?? 0) + n);
  }
  const pct = (n: number) => Math.round((n / (busy || 1)) * 1000) / 10;
  return {
    samples: busy + idle,
    idleShare: Math.round((idle / (busy + idle || 1)) * 1000) / 10,
    top: [...selfByFn.values()].sort((a, b) => b.n - a.n).slice(0, topN).map((e) => ({ function: e.fn, where: e.where, component: e.component, selfPct: pct(e.n) })),
    components: [...selfByComponent.entries()]
      .map(([component, n]) => ({ component, selfPct: pct(n), inclusivePct: pct(inclByComponent.get(component) ?? n) }))
      .sort((a, b) => b.selfPct - a.selfPct),
    nativeCallers: [...nativeBy.values()].sort((a, b) => b.n - a.n).slice(0, 12).map((e) => ({ native: e.native, caller: e.caller, where: e.where, selfPct: pct(e.n) })),
  };
}
