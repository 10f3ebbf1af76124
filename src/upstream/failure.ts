/**
 * One pure mapping from what went wrong talking to a backend to the error a
 * client gets, and to whether the request can have reached the backend.
 * That second answer is what keeps builds from being triggered twice: only a
 * request that provably never arrived may ever be sent elsewhere
 * (src/resilience/replay.ts decides what happens next).
 */
import type { ErrorCode } from '../errors.js';

export type UpstreamErrorKind = 'refused' | 'dns' | 'connect-timeout' | 'timeout' | 'reset' | 'bad-response' | 'client-aborted' | 'other';

export interface UpstreamFailure {
  kind: UpstreamErrorKind;
  code: ErrorCode;
  /** False only when the backend provably never received a byte of the request. */
  mayHaveReachedBackend: boolean;
  message: string;
}

function codesOf(error: unknown): string[] {
  const codes: string[] = [];
  let current: unknown = error;
  for (let depth = 0; depth < 4 && current && typeof current === 'object'; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string') codes.push(code);
    // Happy-eyeballs connects fail with an AggregateError of per-address errors.
    const inner = (current as { errors?: unknown[] }).errors;
    if (Array.isArray(inner)) for (const e of inner) if (e && typeof (e as { code?: unknown }).code === 'string') codes.push((e as { code: string }).code);
    current = (current as { cause?: unknown }).cause;
  }
  return codes;
}

type Classified = Omit<UpstreamFailure, 'mayHaveReachedBackend'> & { reached: boolean };

function classify(error: unknown): Classified {
  const codes = codesOf(error);
  const has = (...names: string[]) => names.some((n) => codes.includes(n));
  if (has('ECLIENTABORTED', 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH', 'ERR_STREAM_PREMATURE_CLOSE')) {
    return { kind: 'client-aborted', code: 'BAD_REQUEST', reached: true, message: 'the client went away before the exchange finished' };
  }
  if (has('ECONNREFUSED')) return { kind: 'refused', code: 'BACKEND_REFUSED', reached: false, message: 'connection refused' };
  if (has('ENOTFOUND', 'EAI_AGAIN', 'EAI_NONAME', 'EAI_FAIL')) return { kind: 'dns', code: 'BACKEND_DNS', reached: false, message: 'host name did not resolve' };
  if (has('UND_ERR_CONNECT_TIMEOUT', 'ETIMEDOUT')) return { kind: 'connect-timeout', code: 'BACKEND_CONNECT_TIMEOUT', reached: false, message: 'no connection within the connect timeout' };
  if (has('UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'EUPSTREAMTIMEOUT')) return { kind: 'timeout', code: 'BACKEND_TIMEOUT', reached: true, message: 'no answer within the response timeout' };
  if (has('EBADANSWER', 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH', 'UND_ERR_RES_EXCEEDED_MAX_SIZE') || codes.some((c) => c.startsWith('HPE_'))) {
    return { kind: 'bad-response', code: 'BACKEND_BAD_RESPONSE', reached: true, message: 'the backend sent an answer that is not valid HTTP/1.1' };
  }
  if (has('UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE', 'UND_ERR_CLOSED')) return { kind: 'reset', code: 'BACKEND_RESET', reached: true, message: 'connection closed by the backend' };
  return { kind: 'other', code: 'BACKEND_ERROR', reached: true, message: error instanceof Error ? error.message : 'unknown upstream error' };
}

/**
 * What a failure means for the client and for replaying the request.
 * `requestStarted` says whether the engine began writing the request to a
 * connection: a request that failed before that provably never reached the
 * backend, whatever the error was.
 */
export function classifyUpstreamError(error: unknown, requestStarted = true): UpstreamFailure {
  const { reached, ...failure } = classify(error);
  return { ...failure, mayHaveReachedBackend: reached && requestStarted };
}
