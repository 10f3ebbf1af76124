/**
 * Gathers what a request says about its job type, in order of precedence:
 * the X-Job-Type header, the builder in the path (by name, or by id looked up
 * on the legacy master), the builders named in a force call's body. Shared by
 * the proxy and `strangler-proxy explain`, so both decide alike.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { RequestFacts } from '../routing/decide.js';
import { builderFromPath, buildersFromForceBody, isForceCall } from '../routing/extract.js';
import type { RoutingTable } from '../routing/table.js';
import type { BuilderDirectory } from './builder-directory.js';
import type { PeekedBody } from './peek.js';

export interface RequestView {
  method: string;
  pathname: string;
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

export async function gatherFacts(request: RequestView, table: RoutingTable, builders: NameLookup): Promise<GatheredFacts> {
  const header = request.headers['x-job-type'];
  const headerJobType = typeof header === 'string' ? header : undefined;
  const byId = async (id: number): Promise<string[]> => {
    const name = await builders.nameFor(id, table.legacy);
    return name === undefined ? [] : [name];
  };

  const inPath = builderFromPath(request.pathname);
  if (inPath?.kind === 'name') return { facts: { headerJobType, jobTypes: [inPath.name] } };
  if (inPath?.kind === 'id') return { facts: { headerJobType, jobTypes: await byId(inPath.id) } };

  if (headerJobType !== undefined || !isForceCall(request.method, request.pathname)) return { facts: { headerJobType } };

  const peeked = await request.peekBody(table.settings.bodyPeekLimitBytes);
  if (!peeked.complete) return { facts: { unparsedBody: true }, peeked };
  const named = buildersFromForceBody(peeked.body);
  switch (named.kind) {
    case 'names':
      return { facts: { jobTypes: named.names }, peeked };
    case 'id':
      return { facts: { jobTypes: await byId(named.id) }, peeked };
    case 'unparsed':
      return { facts: { unparsedBody: true }, peeked };
    case 'none':
      return { facts: {}, peeked };
  }
}
