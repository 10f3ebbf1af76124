/**
 * Shadow traffic: a copy of a request goes to a second backend, fire and
 * forget, while the client is answered by the primary alone. The two answers
 * are compared and the result counted; a bounded sample of mismatches is
 * logged with the fields that differ.
 *
 * The copy never delays or fails the client's request: it is sent alongside,
 * with its own timeout, a cap on copies in flight (beyond it copies are
 * dropped and counted) and a cap on the bytes it buffers. Mutating calls
 * (every POST: Buildbot's force, rebuild, stop, cancel) are copied only where
 * the route says `mutating: true`, since the shadow side would run them.
 */
import type { Logger } from '../logging/logger.js';
import type { ProxyMetrics } from '../metrics/metrics.js';
import type { Decision } from '../routing/decide.js';
import type { Backend, RoutingTable, ShadowSpec } from '../routing/table.js';
import { compareResponses, type CapturedResponse } from './compare.js';
import type { RequestBody } from '../upstream/to-client.js';
import type { Upstream } from '../upstream/upstream.js';
import { isSafeMethod } from '../resilience/replay.js';
import { rawHeaderValue, upstreamHeaders } from '../upstream/headers.js';
import type { IncomingMessage } from 'node:http';

/** Marks a copy, so a backend (and its logs) can tell shadow traffic from real. */
const SHADOW_MARK = ['x-strangler-shadow', '1'];


/** What happened to a request's copy, for the access log. */
export type ShadowNote = 'sent' | 'dropped' | 'skipped-mutating' | 'skipped-body' | 'not-sampled';

export interface ShadowTicket {
  note: 'sent';
  /** How many response bytes of the primary to keep for the comparison. */
  captureBytes: number;
  /** Hand over the primary's answer (undefined if it failed); the comparison runs once both are in. */
  primaryDone(primary: CapturedResponse | undefined): void;
}

export interface ShadowRequest {
  method: string;
  url: string;
  pathname: string;
  /** The client's request, for its headers (built for the shadow backend only when a copy is sent). */
  client: Pick<IncomingMessage, 'rawHeaders' | 'socket'>;
  body: RequestBody;
  requestId: string;
  jobTypeLabel: string;
}

/**
 * Sends a copy to a backend the proxy translates for (a Taskcluster queue) and
 * records the answer the translation gives; undefined when the translation
 * has nothing to say (a call it leaves to the legacy master).
 */
export type TranslatedCopy = (backend: Backend, decision: Decision, table: RoutingTable, request: { method: string; pathname: string; search: string; body: Buffer | null; accept: string | undefined }, limit: number) => Promise<CapturedResponse | undefined>;

export class Shadower {
  private inFlight = 0;
  /** Set once a translator exists (src/main.ts); until then copies to a queue fail and are counted as errors. */
  translatedCopy: TranslatedCopy | undefined;
  private logWindowStart = 0;
  private logsInWindow = 0;

  constructor(
    private readonly upstream: Upstream,
    private readonly metrics: ProxyMetrics,
    private readonly logger: Logger,
  ) {
    metrics.countShadowsInFlightWith(() => this.inFlight);
  }

  inFlightCount(): number {
    return this.inFlight;
  }

  /** Sends a copy if the route shadows this request; says what it did. */
  start(table: RoutingTable, decision: Decision, request: ShadowRequest, draw = Math.random()): ShadowTicket | { note: Exclude<ShadowNote, 'sent'> } | undefined {
    const spec = decision.route?.shadow;
    if (!spec || spec.backend === decision.backend.name) return undefined;
    const shadowBackend = table.backends.get(spec.backend)!;
    const settings = table.settings.shadow;
    const count = (result: string) => this.metrics.shadowResult(spec.backend, request.jobTypeLabel, result);

    if (!isSafeMethod(request.method) && !spec.mutating) {
      count('skipped_mutating');
      return { note: 'skipped-mutating' };
    }
    if (draw * 100 >= spec.percent) return { note: 'not-sampled' };
    if (request.body !== null && !(Buffer.isBuffer(request.body) && request.body.length <= settings.maxBodyBytes)) {
      count('skipped_body');
      return { note: 'skipped-body' };
    }
    if (this.inFlight >= settings.maxInFlight) {
      count('dropped');
      return { note: 'dropped' };
    }

    this.inFlight++;
    if (shadowBackend.kind === 'taskcluster') {
      const pair = new ShadowPair(this, decision, spec, request, settings.maxBodyBytes, settings.mismatchLogsPerMinute);
      const at = request.url.indexOf('?');
      const copy = { method: request.method, pathname: request.pathname, search: at === -1 ? '' : request.url.slice(at + 1), body: request.body as Buffer | null, accept: rawHeaderValue(request.client.rawHeaders, 'accept') };
      const translated = this.translatedCopy?.(shadowBackend, decision, table, copy, settings.maxBodyBytes) ?? Promise.reject(new Error('no store is open for the queue'));
      translated.then(
        (answer) => (answer === undefined ? pair.copyDone(new Error('the translation leaves this call to the legacy master'), undefined) : pair.copyDone(undefined, answer)),
        (error: Error) => pair.copyDone(error, undefined),
      );
      return pair;
    }
    const headers = upstreamHeaders(request.client, shadowBackend.preserveHost ? { requestId: request.requestId, extra: SHADOW_MARK } : { requestId: request.requestId, backendHost: shadowBackend.host, extra: SHADOW_MARK });
    const pair = new ShadowPair(this, decision, spec, request, settings.maxBodyBytes, settings.mismatchLogsPerMinute);
    this.upstream.copy(shadowBackend, { method: request.method, url: request.url, headers, body: request.body as Buffer | null }, settings.maxBodyBytes, settings.timeoutMs).then(
      (answer) => pair.copyDone(undefined, answer),
      (error: Error) => pair.copyDone(error, undefined),
    );
    return pair;
  }

  /** Both answers of a pair are in (or the copy failed): count, compare, maybe log. */
  settle(pair: ShadowPair, primary: CapturedResponse | undefined, shadowError: Error | undefined, shadow: CapturedResponse | undefined): void {
    this.inFlight--;
    const { spec, request, decision } = pair;
    const count = (result: string) => this.metrics.shadowResult(spec.backend, request.jobTypeLabel, result);
    if (shadowError !== undefined || shadow === undefined) {
      count('error');
      this.logger.debug('shadow copy failed', { requestId: request.requestId, backend: spec.backend, error: shadowError?.message });
      return;
    }
    if (primary === undefined) return count('primary_failed'); // nothing to compare; counted so the results add up to the copies sent
    const comparison = compareResponses(primary, shadow, spec.ignoreFields);
    count(comparison.match ? 'match' : 'mismatch');
    if (!comparison.match && this.mayLogMismatch(pair.mismatchLogsPerMinute)) {
      this.logger.warn('shadow mismatch', {
        requestId: request.requestId,
        method: request.method,
        path: request.pathname,
        jobType: decision.jobType,
        primary: decision.backend.name,
        shadow: spec.backend,
        compared: comparison.compared,
        differences: comparison.differences.map((d) => ({ path: d.path, primary: truncate(d.primary), shadow: truncate(d.shadow) })),
      });
    }
  }

  private mayLogMismatch(perMinute: number): boolean {
    const now = Date.now();
    if (now - this.logWindowStart >= 60_000) {
      this.logWindowStart = now;
      this.logsInWindow = 0;
    }
    if (this.logsInWindow >= perMinute) return false;
    this.logsInWindow++;
    return true;
  }
}

/**
 * One shadowed request, where the primary's answer and the copy's meet;
 * whichever comes second has the Shadower settle the pair. One object per
 * copy (it is the ticket and the copy's handler), not a closure for each part.
 */
class ShadowPair implements ShadowTicket {
  readonly note = 'sent' as const;
  /** null until the primary's answer is handed over (undefined: the primary failed). */
  private primary: CapturedResponse | undefined | null = null;
  private copyIn = false;
  private shadowError: Error | undefined;
  private shadow: CapturedResponse | undefined;

  constructor(
    private readonly shadower: Shadower,
    readonly decision: Decision,
    readonly spec: ShadowSpec,
    readonly request: ShadowRequest,
    readonly captureBytes: number,
    readonly mismatchLogsPerMinute: number,
  ) {}

  primaryDone(answer: CapturedResponse | undefined): void {
    if (this.primary !== null) return;
    this.primary = answer;
    if (this.copyIn) this.shadower.settle(this, answer, this.shadowError, this.shadow);
  }

  copyDone(error: Error | undefined, answer: CapturedResponse | undefined): void {
    this.copyIn = true;
    this.shadowError = error;
    this.shadow = answer;
    if (this.primary !== null) this.shadower.settle(this, this.primary, error, answer);
  }
}

/** A differing value as the log shows it: at most 200 characters of its JSON. */
function truncate(value: unknown): unknown {
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value); // a huge number parses to Infinity, which JSON writes as null
  let text: string | undefined;
  try {
    text = typeof value === 'string' ? value : JSON.stringify(value);
  } catch {
    return '(too deeply nested to show)'; // JSON.stringify recurses; a body can nest deeper than the stack
  }
  if (text === undefined) return value;
  return text.length > 200 ? `${text.slice(0, 200)}…` : value;
}
