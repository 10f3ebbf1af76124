/**
 * The one error type of strangler-proxy. Every failure the proxy reports to a
 * person or a client carries a `code` from {@link ERROR_CODES}, which fixes its
 * HTTP status (where it reaches a client) and what it means. docs/errors.md
 * documents each code; a unit test keeps the two in step.
 */
export const ERROR_CODES = {
  CONFIG_INVALID: { status: 500, meaning: 'routes.yaml failed to parse or validate; the previous routes stay in force' },
  CONFIG_UNREADABLE: { status: 500, meaning: 'routes.yaml could not be read (missing file, permissions, not a regular file, a read past its deadline)' },
  BACKEND_REFUSED: { status: 502, meaning: 'the backend refused the connection: nothing reached it' },
  BACKEND_DNS: { status: 502, meaning: "the backend's host name did not resolve: nothing reached it" },
  BACKEND_RESET: { status: 502, meaning: 'the connection to the backend broke after the request was sent; it may have been received' },
  BACKEND_CONNECT_TIMEOUT: { status: 504, meaning: 'no connection to the backend within its connect timeout: nothing reached it' },
  BACKEND_TIMEOUT: { status: 504, meaning: 'the backend did not answer within its response timeout; the request may have been received' },
  BACKEND_UNAVAILABLE: { status: 503, meaning: 'the backend is marked unavailable (circuit open or health probes failing) and the route has no fallback: nothing was sent' },
  BACKEND_BAD_RESPONSE: { status: 502, meaning: 'the backend answered with something that is not valid HTTP/1.1 (status line, header, framing); the request may have been received' },
  BACKEND_ERROR: { status: 502, meaning: 'the backend failed in another way' },
  INTERNAL: { status: 500, meaning: 'a fault in the proxy itself; logged with the request id and counted, the process keeps serving' },
  BAD_REQUEST: { status: 400, meaning: 'the request could not be read (malformed URL, broken body, more than one Host header)' },
  CLIENT_BODY_TIMEOUT: { status: 408, meaning: 'the client stalled its request body longer than the body idle timeout; nothing was sent to a backend' },
  PROXY_BUSY: { status: 503, meaning: 'the request body did not fit the budget of body bytes the proxy holds in memory at once; nothing was sent to a backend' },
  USAGE: { status: 400, meaning: 'a command line was not understood' },
  STORE_UNAVAILABLE: { status: 503, meaning: 'the store could not be opened or written (data directory not writable, database unreachable, file held by another process); nothing was answered as done' },
  STORE_CORRUPT: { status: 500, meaning: 'the store holds something it cannot read back (a damaged file, an id outside the minted range, a schema newer than this proxy knows); the proxy refuses to guess' },
  LISTEN_FAILED: { status: 500, meaning: 'the proxy or admin listener could not bind its address (port in use, no permission); nothing is left listening' },
} as const satisfies Record<string, { status: number; meaning: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export class StranglerError extends Error {
  readonly code: ErrorCode;
  /** Structured detail for logs and JSON answers; never holds secrets. */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'StranglerError';
    this.code = code;
    this.details = Object.freeze({ ...options.details });
  }

  get status(): number {
    return ERROR_CODES[this.code].status;
  }
}

export function isStranglerError(value: unknown, code?: ErrorCode): value is StranglerError {
  return value instanceof StranglerError && (code === undefined || value.code === code);
}
