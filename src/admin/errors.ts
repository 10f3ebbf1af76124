/**
 * The admin API's one error shape, the same as the proxy's (docs/errors.md):
 * `{"error": "<what happened and what to do>", "code": "<CODE>", ...details}`.
 */
import type { Response } from 'express';

/** Codes only the admin API answers with (BAD_REQUEST, CONFIG_* and STORE_* are the proxy's own). */
export const ADMIN_ERROR_CODES = {
  ADMIN_UNAUTHORIZED: 401,
  ADMIN_DISABLED: 403,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  INTERNAL: 500,
  /** GET /builds with no store open: nothing records finished builds. */
  BUILD_TRACKING_OFF: 503,
} as const;

export type AdminErrorCode = keyof typeof ADMIN_ERROR_CODES | 'BAD_REQUEST' | 'CONFIG_INVALID' | 'CONFIG_UNREADABLE' | 'STORE_UNAVAILABLE' | 'STORE_CORRUPT';

export function sendAdminError(res: Response, status: number, code: AdminErrorCode, message: string, details: Record<string, unknown> = {}): void {
  if (res.headersSent) return;
  res.status(status).set('cache-control', 'no-store').json({ error: message, code, ...details });
}

/** A bad query parameter or body field: answered 400 with the message, never a 500. */
export class BadRequest extends Error {
  constructor(
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'BadRequest';
  }
}
