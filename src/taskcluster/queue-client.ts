/**
 * The Queue v1 calls the proxy makes, Hawk-signed, through the one upstream
 * engine. Each call is sent once: the answer says whether the queue answered
 * (with what), or failed and whether the request may have reached it, and
 * the caller decides what may be sent again (only createTask's identical
 * body is ever resent; see forces.ts).
 */
import hawk from 'hawk';
import type { Backend } from '../routing/table.js';
import { classifyUpstreamError, type UpstreamFailure } from '../upstream/failure.js';
import { rawHeaderValue, type RawHeaders } from '../upstream/headers.js';
import { UpstreamError, type HeldAnswer, type Upstream } from '../upstream/upstream.js';
import type { QueueErrorBody, QueueTaskDefinition, QueueTaskStatus } from './queue-types.js';

export type QueueMethod = 'createTask' | 'task' | 'status' | 'cancelTask' | 'rerunTask' | 'artifact';

export type QueueOutcome<T> =
  | { ok: true; status: number; body: T; headers: RawHeaders }
  /** The queue answered with an error status. */
  | { ok: false; answered: true; status: number; error: QueueErrorBody }
  /** No usable answer: `failure.mayHaveReachedBackend` tells whether the call may have taken effect. */
  | { ok: false; answered: false; failure: UpstreamFailure };

/** Told of every call, for metrics. `outcome`: a status class or the failure's kind. */
export type QueueObserver = (backend: string, method: QueueMethod, outcome: string, seconds: number) => void;

const QUEUE_PATH = '/api/queue/v1';
/** Queue answers the proxy reads are small; a task definition is at most a few hundred KiB. */
const MAX_ANSWER_BYTES = 8 * 1024 * 1024;

export class QueueClient {
  constructor(
    private readonly upstream: Pick<Upstream, 'send'>,
    private readonly observe: QueueObserver = () => undefined,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {}

  /** createTask: `definition` is the exact JSON text stored before the call, so that a resend is identical. */
  createTask(backend: Backend, taskId: string, definition: string): Promise<QueueOutcome<{ status: QueueTaskStatus }>> {
    return this.call(backend, 'createTask', 'PUT', `/task/${encodeURIComponent(taskId)}`, Buffer.from(definition));
  }

  task(backend: Backend, taskId: string): Promise<QueueOutcome<QueueTaskDefinition>> {
    return this.call(backend, 'task', 'GET', `/task/${encodeURIComponent(taskId)}`, null);
  }

  status(backend: Backend, taskId: string): Promise<QueueOutcome<{ status: QueueTaskStatus }>> {
    return this.call(backend, 'status', 'GET', `/task/${encodeURIComponent(taskId)}/status`, null);
  }

  cancel(backend: Backend, taskId: string): Promise<QueueOutcome<{ status: QueueTaskStatus }>> {
    return this.call(backend, 'cancelTask', 'POST', `/task/${encodeURIComponent(taskId)}/cancel`, Buffer.from('{}'));
  }

  rerun(backend: Backend, taskId: string): Promise<QueueOutcome<{ status: QueueTaskStatus }>> {
    return this.call(backend, 'rerunTask', 'POST', `/task/${encodeURIComponent(taskId)}/rerun`, Buffer.from('{}'));
  }

  /** Where an artifact of a run is stored: the queue answers 303 with its URL. */
  async artifactUrl(backend: Backend, taskId: string, runId: number, name: string): Promise<QueueOutcome<{ url: string }>> {
    const path = `/task/${encodeURIComponent(taskId)}/runs/${runId}/artifacts/${name.split('/').map(encodeURIComponent).join('/')}`;
    const answer = await this.call<unknown>(backend, 'artifact', 'GET', path, null, [303]);
    if (!answer.ok) return answer;
    const location = rawHeaderValue(answer.headers, 'location');
    if (location === undefined) return { ok: false, answered: true, status: 502, error: { code: 'NoLocation', message: 'the queue answered 303 without a Location' } };
    return { ok: true, status: answer.status, headers: answer.headers, body: { url: new URL(location, backend.url).toString() } };
  }

  /** Whether credentials are set for this backend (the status page says so; never what they are). */
  hasCredentials(backend: Backend): boolean {
    const queue = backend.queue;
    return queue !== undefined && Boolean(this.env[queue.clientIdEnv]) && Boolean(this.env[queue.accessTokenEnv]);
  }

  private async call<T>(backend: Backend, method: QueueMethod, verb: string, path: string, body: Buffer | null, expected: number[] = []): Promise<QueueOutcome<T>> {
    const started = performance.now();
    const full = QUEUE_PATH + path;
    const headers: RawHeaders = ['accept', 'application/json', 'user-agent', 'strangler-proxy'];
    if (body !== null) headers.push('content-type', 'application/json');
    let outcome: QueueOutcome<T>;
    try {
      const authorization = this.authorization(backend, verb, full);
      if (authorization !== undefined) headers.push('authorization', authorization);
      const answer = await this.upstream.send(backend, { method: verb, path: full, headers, body, timeoutMs: backend.responseTimeoutMs, maxBytes: MAX_ANSWER_BYTES });
      outcome = parseAnswer<T>(answer, expected);
    } catch (error) {
      if (error instanceof CredentialsError) {
        // Answered as the queue would answer bad credentials: refused, nothing created, the cause named.
        outcome = { ok: false, answered: true, status: 401, error: { code: 'AuthenticationFailed', message: error.message } };
        this.observe(backend.name, method, 'credentials', (performance.now() - started) / 1000);
        return outcome;
      }
      const failure = error instanceof UpstreamError ? error.failure : classifyUpstreamError(error, true);
      outcome = { ok: false, answered: false, failure };
    }
    this.observe(backend.name, method, outcome.ok || outcome.answered ? `${Math.floor(outcome.status / 100)}xx` : outcome.failure.kind, (performance.now() - started) / 1000);
    return outcome;
  }

  /** A Hawk header for the call, or none when no credentials are set (the queue then treats it as anonymous). */
  private authorization(backend: Backend, method: string, path: string): string | undefined {
    const queue = backend.queue;
    if (queue === undefined) return undefined;
    // SECURITY: the secrets come from the environment at each call and go only into the signature.
    const id = this.env[queue.clientIdEnv];
    const key = this.env[queue.accessTokenEnv];
    if (!id || !key) return undefined;
    const certificate = this.env[queue.certificateEnv];
    let ext: string | undefined;
    if (certificate) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(certificate);
      } catch {
        // SECURITY: the message names the variable, never its content.
        throw new CredentialsError(`${queue.certificateEnv} is set but is not JSON (a Taskcluster temporary credentials certificate); nothing was sent`);
      }
      ext = Buffer.from(JSON.stringify({ certificate: parsed })).toString('base64');
    }
    const url = new URL(backend.basePath + path, backend.origin).toString();
    return hawk.client.header(url, method, { credentials: { id, key, algorithm: 'sha256' }, ...(ext ? { ext } : {}) }).header;
  }
}

/** Credentials in the environment that cannot be used: the call is not sent. */
class CredentialsError extends Error {}

function parseAnswer<T>(answer: HeldAnswer, expected: number[]): QueueOutcome<T> {
  let parsed: unknown;
  try {
    parsed = answer.body.length === 0 ? undefined : JSON.parse(answer.body.toString('utf8'));
  } catch {
    parsed = undefined;
  }
  if ((answer.status >= 200 && answer.status < 300) || expected.includes(answer.status)) {
    if (parsed === undefined && !expected.includes(answer.status)) {
      return { ok: false, answered: true, status: 502, error: { code: 'BadAnswer', message: `the queue answered ${answer.status} with a body that is not JSON` } };
    }
    return { ok: true, status: answer.status, body: parsed as T, headers: answer.headers };
  }
  const error = parsed as Partial<QueueErrorBody> | undefined;
  return {
    ok: false,
    answered: true,
    status: answer.status,
    error: {
      code: typeof error?.code === 'string' ? error.code : `HTTP${answer.status}`,
      message: typeof error?.message === 'string' ? error.message : `the queue answered ${answer.status}`,
    },
  };
}
