/**
 * "Where would this request go, and why?" — the proxy's own decision path,
 * run on a request described by hand (the `explain` command).
 */
import type { IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import { decide, type DecisionReason } from './routing/decide.js';
import { builderFromPath, isForceCall } from './routing/extract.js';
import type { RoutingTable } from './routing/table.js';
import type { BuilderDirectory } from './ingress/builder-directory.js';
import { gatherFacts } from './ingress/facts.js';

export interface ExplainInput {
  method: string;
  /** Path and optional query. */
  path: string;
  headers?: IncomingHttpHeaders;
  body?: Buffer;
}

export interface Explanation {
  method: string;
  path: string;
  backend: string;
  backendUrl: string;
  jobType: string | null;
  /** Where the job type came from. */
  source: 'header' | 'path' | 'path-builderid' | 'body' | 'none';
  reason: DecisionReason;
  rule: { index: number; jobType: string; kind: string; split: Record<string, number> | null } | null;
  /** For a sticky split: the source that gave the key, the key, and the side it hashes to. */
  sticky: { source: string; key: string; backend: string } | null;
  why: string;
}

export async function explainRequest(table: RoutingTable, input: ExplainInput, builders: Pick<BuilderDirectory, 'nameFor'>, draw = Math.random()): Promise<Explanation> {
  const method = input.method.toUpperCase();
  const headers: IncomingHttpHeaders = {};
  for (const [k, v] of Object.entries(input.headers ?? {})) headers[k.toLowerCase()] = v;
  const pathname = input.path.split('?', 1)[0]!;
  const search = input.path.slice(pathname.length + 1);
  const body = input.body ?? Buffer.alloc(0);
  const gathered = await gatherFacts(
    {
      method,
      pathname,
      search,
      headers,
      peekBody: async (limit) => (body.length <= limit ? { complete: true, body } : { complete: false, body: Readable.from([body]) }),
    },
    table,
    builders,
  );
  const decision = decide(table, gathered.facts, draw);
  const inPath = builderFromPath(pathname);
  const source: Explanation['source'] =
    decision.reason === 'header' ? 'header' : inPath?.kind === 'name' ? 'path' : inPath?.kind === 'id' ? 'path-builderid' : isForceCall(method, pathname) && gathered.facts.jobTypes?.length ? 'body' : 'none';

  const route = decision.route;
  const rule = route
    ? { index: route.index, jobType: route.pattern, kind: route.kind, split: route.isSplit ? Object.fromEntries(route.targets.map((t) => [t.backend, t.weight])) : null }
    : null;

  let why: string;
  switch (decision.reason) {
    case 'mixed-builders':
      why = `the force names builders on different backends (${decision.jobType}); the whole request goes to the legacy backend, which runs them all`;
      break;
    case 'unparsed-body':
      why = 'the force body could not be read (larger than the peek limit, or not JSON-RPC); it goes to the default backend unparsed';
      break;
    default:
      if (route) {
        const weights = route.targets.map((t) => `${t.backend} ${Math.round((100 * t.weight) / route.totalWeight)}%`).join(', ');
        const share = !route.isSplit
          ? ''
          : decision.sticky
            ? `; split ${weights}, sticky key ${decision.sticky.source}=${JSON.stringify(decision.sticky.key)} hashes to ${decision.backend.name} (always, for these weights)`
            : `; split ${weights}, this request drew ${decision.backend.name}${route.stickyBy.length ? ` at random: it carries none of the sticky sources (${route.stickyBy.map((s) => `${s.from}:${s.name}`).join(', ')})` : ''}`;
        why = `routes[${route.index}] (${route.kind} "${route.pattern}") matches job type "${decision.jobType}"${share}`;
      } else if (decision.jobType !== undefined) {
        why = `no route matches job type "${decision.jobType}"; the default backend serves it`;
      } else if (inPath?.kind === 'id') {
        why = `builder id ${inPath.id} is unknown to the legacy master (or it could not be asked); the default backend serves it`;
      } else {
        why = 'the request names no job type; the default backend serves it';
      }
      if (decision.reason === 'header') why += ' (job type from the X-Job-Type header)';
  }

  return {
    method,
    path: input.path,
    backend: decision.backend.name,
    backendUrl: decision.backend.url,
    jobType: decision.jobType ?? null,
    source,
    reason: decision.reason,
    rule,
    sticky: decision.sticky ? { ...decision.sticky, backend: decision.backend.name } : null,
    why,
  };
}

export function formatExplanation(e: Explanation): string {
  return [
    `${e.method} ${e.path}`,
    `  backend:  ${e.backend} (${e.backendUrl})`,
    `  job type: ${e.jobType ?? '(none)'}${e.source !== 'none' ? ` (from the ${e.source === 'path-builderid' ? 'builder id in the path' : e.source})` : ''}`,
    `  reason:   ${e.reason}`,
    ...(e.sticky ? [`  sticky:   ${e.sticky.source}=${JSON.stringify(e.sticky.key)} -> ${e.sticky.backend}`] : []),
    `  why:      ${e.why}`,
  ].join('\n');
}
