/**
 * One pure mapping from what went wrong talking to a backend to the error a
 * client gets, and to whether the request can have reached the backend.
 * That second answer is what keeps builds from being triggered twice: only a
 * request that provably never arrived may ever be sent elsewhere.
 */
import { isStranglerError, type ErrorCode } from '../errors.js';

export type UpstreamErrorKind = 'refused' | 'dns' | 'connect-timeout' | 'timeout' | 'reset' | 'client-aborted' | 'other';

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

/** Our own client's failures (src/proxy/backend-client.ts) already carry the code a client gets. */
const OWN_FAILURES: Partial<Record<ErrorCode, Omit<UpstreamFailure, 'message'>>> = {
  BACKEND_CONNECT_TIMEOUT: { kind: 'connect-timeout', code: 'BACKEND_CONNECT_TIMEOUT', mayHaveReachedBackend: false },
  BACKEND_TIMEOUT: { kind: 'timeout', code: 'BACKEND_TIMEOUT', mayHaveReachedBackend: true },
  BACKEND_RESET: { kind: 'reset', code: 'BACKEND_RESET', mayHaveReachedBackend: true },
  BACKEND_ERROR: { kind: 'other', code: 'BACKEND_ERROR', mayHaveReachedBackend: true },
};

export function classifyUpstreamError(error: unknown): UpstreamFailure {
  if (isStranglerError(error)) {
    const known = OWN_FAILURES[error.code];
    if (known !== undefined) return { ...known, message: error.message };
  }
  const codes = codesOf(error);
  const has = (...names: string[]) => names.some((n) => codes.includes(n));
  if (has('UND_ERR_ABORTED', 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH', 'ERR_STREAM_PREMATURE_CLOSE', 'ECLIENTABORTED')) {
    return { kind: 'client-aborted', code: 'BAD_REQUEST', mayHaveReachedBackend: true, message: 'the client went away before the exchange finished' };
  }
  if (has('ECONNREFUSED')) return { kind: 'refused', code: 'BACKEND_REFUSED', mayHaveReachedBackend: false, message: 'connection refused' };
  if (has('ENOTFOUND', 'EAI_AGAIN', 'EAI_NONAME', 'EAI_FAIL')) return { kind: 'dns', code: 'BACKEND_DNS', mayHaveReachedBackend: false, message: 'host name did not resolve' };
  if (has('UND_ERR_CONNECT_TIMEOUT', 'ETIMEDOUT')) return { kind: 'connect-timeout', code: 'BACKEND_CONNECT_TIMEOUT', mayHaveReachedBackend: false, message: 'no connection within the connect timeout' };
  if (has('UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT')) return { kind: 'timeout', code: 'BACKEND_TIMEOUT', mayHaveReachedBackend: true, message: 'no answer within the response timeout' };
  if (has('UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE', 'UND_ERR_CLOSED')) return { kind: 'reset', code: 'BACKEND_RESET', mayHaveReachedBackend: true, message: 'connection closed by the backend' };
  return { kind: 'other', code: 'BACKEND_ERROR', mayHaveReachedBackend: true, message: error instanceof Error ? error.message : 'unknown upstream error' };
}
