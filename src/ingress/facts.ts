/**
 * Gathers what a request says about its job type, in order of precedence:
 * the X-Job-Type header, the builder in the path (by name, or by id looked up
 * on the legacy master), the builders named in a force call's body. Shared by
 * the proxy and `strangler-proxy explain`, so both decide alike.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { RequestFacts } from '../routing/decide.js';
import { builderFromPath, buildersFromForceBody, isForceCall } from '../routing/extract.js';
import { namesLegacyObject } from '../routing/owner.js';
import type { RoutingTable, StickySource } from '../routing/table.js';
import type { BuilderDirectory } from './builder-directory.js';
import type { PeekedBody } from './peek.js';

export interface RequestView {
  method: string;
  pathname: string;
  /** The query string without "?", or "". */
  search: string;
  headers: IncomingHttpHeaders;
  /** Reads up to `limit` bytes of the body, keeping every byte for the backend. */
  peekBody(limit: number): Promise<PeekedBody>;
}

export interface GatheredFacts {
  facts: RequestFacts;
  /** Set when the body was read to find builder names: forward this instead of the raw stream. */
  peeked?: PeekedBody;
}

type NameLookup = Pick<BuilderDirectory, 'nameFor'>;

/**
 * The facts of a request that needs no I/O to find them (the common case: a
 * name in the path, an X-Job-Type header, no body to read), or undefined
 * when the body must be read or a builder id looked up: then `gatherFacts`.
 * Kept synchronous so most requests go through without a promise.
 */
export function factsAtOnce(request: RequestView): GatheredFacts | undefined {
  const header = request.headers['x-job-type'];
  const headerJobType = typeof header === 'string' ? header : undefined;
  const inPath = builderFromPath(request.pathname);
  if (inPath?.kind === 'id') return undefined;
  if (inPath?.kind === 'name') return { facts: { headerJobType, jobTypes: [inPath.name], sticky: stickyLookup(request, () => undefined) } };
  if (headerJobType !== undefined || !isForceCall(request.method, request.pathname)) {
    const legacyObject = namesLegacyObject(request.pathname);
    return { facts: { headerJobType, sticky: stickyLookup(request, () => undefined), ...(legacyObject ? { legacyObject } : {}) } };
  }
  return undefined;
}

export async function gatherFacts(request: RequestView, table: RoutingTable, builders: NameLookup): Promise<GatheredFacts> {
  const atOnce = factsAtOnce(request);
  if (atOnce !== undefined) return atOnce;

  const header = request.headers['x-job-type'];
  const headerJobType = typeof header === 'string' ? header : undefined;
  const byId = async (id: number): Promise<string[]> => {
    const name = await builders.nameFor(id, table.legacy);
    return name === undefined ? [] : [name];
  };

  let params: Readonly<Record<string, unknown>> | undefined;
  const sticky = stickyLookup(request, () => params);

  const inPath = builderFromPath(request.pathname);
  if (inPath?.kind === 'id') return { facts: { headerJobType, jobTypes: await byId(inPath.id), sticky } };

  const peeked = await request.peekBody(table.settings.bodyPeekLimitBytes);
  if (!peeked.complete) return { facts: { unparsedBody: true, sticky }, peeked };
  const named = buildersFromForceBody(peeked.body);
  if (named.kind !== 'unparsed') params = named.params;
  switch (named.kind) {
    case 'names':
      return { facts: { jobTypes: named.names, sticky }, peeked };
    case 'id':
      return { facts: { jobTypes: await byId(named.id), sticky }, peeked };
    case 'unparsed':
      return { facts: { unparsedBody: true, sticky }, peeked };
    case 'none':
      return { facts: { sticky }, peeked };
  }
}

/** Finds sticky keys in a request: a header, a query parameter, or a param of the force call. */
function stickyLookup(request: RequestView, params: () => Readonly<Record<string, unknown>> | undefined): (source: StickySource) => string | undefined {
  let query: URLSearchParams | undefined;
  return (source) => {
    switch (source.from) {
      case 'header': {
        const value = request.headers[source.name.toLowerCase()];
        return Array.isArray(value) ? value[0] : value;
      }
      case 'query':
        query ??= new URLSearchParams(request.search);
        return query.get(source.name) ?? undefined;
      case 'param': {
        const p = params();
        // SECURITY: own properties only.
        const value = p && Object.hasOwn(p, source.name) ? p[source.name] : undefined;
        return typeof value === 'string' || typeof value === 'number' ? String(value) : undefined;
      }
    }
  };
}
