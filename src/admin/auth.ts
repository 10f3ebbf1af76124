/**
 * Access control for the admin API: a single shared bearer token
 * (STRANGLER_ADMIN_TOKEN). POST endpoints always need it and are disabled
 * without one; read endpoints need it when `protectReads` is set.
 *
 * SECURITY: nothing here logs, echoes or stores the token anywhere but the
 * closure it was given in; error answers name the header expected, never the
 * value received or configured.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { sendAdminError } from './errors.js';

export interface AdminAuth {
  token: string | undefined;
  protectReads: boolean;
}

/**
 * SECURITY: whether `given` equals `expected`, in time that depends on
 * neither. Both are hashed to 32-byte SHA-256 digests first, so
 * timingSafeEqual always compares equal-length buffers (it throws on unequal
 * lengths, and a length check before it would leak the token's length).
 * `equal` is there for the unit test to watch the comparison; callers leave it.
 */
export function tokensMatch(given: string, expected: string, equal: (a: Buffer, b: Buffer) => boolean = timingSafeEqual): boolean {
  const a = createHash('sha256').update(given, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return equal(a, b);
}

/** The token of an `Authorization: Bearer <token>` header (scheme case-insensitive, RFC 6750), or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const match = /^Bearer[ ]+([^\s]+)\s*$/i.exec(header);
  return match?.[1];
}

const HOW_TO_ENABLE = 'start strangler-proxy with STRANGLER_ADMIN_TOKEN set to a long random value (e.g. `openssl rand -hex 32`)';
const HEADER_EXPECTED = 'Authorization: Bearer <token>';

export type TokenCheck = { ok: true } | { ok: false; status: 401 | 403; code: 'ADMIN_UNAUTHORIZED' | 'ADMIN_DISABLED'; message: string; wwwAuthenticate?: string };

/**
 * SECURITY: may this request use an endpoint of this kind? `write`
 * endpoints (every POST) need the token and are refused with 403 when none
 * is configured; `read` endpoints need it only when reads are protected (and
 * then fail closed with 403 if, against the CLI's check, no token is set).
 */
export function checkToken(auth: AdminAuth, kind: 'read' | 'write', authorization: string | undefined): TokenCheck {
  if (kind === 'read' && !auth.protectReads) return { ok: true };
  if (auth.token === undefined || auth.token === '') {
    const message = kind === 'write' ? `admin POST endpoints are disabled: no admin token is set; to enable them, ${HOW_TO_ENABLE}` : `admin reads are protected but no admin token is set; ${HOW_TO_ENABLE}`;
    return { ok: false, status: 403, code: 'ADMIN_DISABLED', message };
  }
  const given = bearerToken(authorization);
  if (given === undefined) {
    const why = authorization === undefined ? 'missing Authorization header' : 'the Authorization header is not "Bearer <token>"';
    return { ok: false, status: 401, code: 'ADMIN_UNAUTHORIZED', message: `${why}: this endpoint needs "${HEADER_EXPECTED}" with the value of STRANGLER_ADMIN_TOKEN`, wwwAuthenticate: 'Bearer realm="strangler-admin"' };
  }
  if (!tokensMatch(given, auth.token)) {
    return {
      ok: false,
      status: 401,
      code: 'ADMIN_UNAUTHORIZED',
      message: `wrong bearer token: this endpoint needs "${HEADER_EXPECTED}" with the value of STRANGLER_ADMIN_TOKEN`,
      wwwAuthenticate: 'Bearer realm="strangler-admin", error="invalid_token"',
    };
  }
  return { ok: true };
}

/** SECURITY: {@link checkToken} as middleware answering JSON errors. */
export function requireToken(auth: AdminAuth, kind: 'read' | 'write'): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    const check = checkToken(auth, kind, req.headers.authorization);
    if (check.ok) return next();
    if (check.wwwAuthenticate) res.set('WWW-Authenticate', check.wwwAuthenticate);
    sendAdminError(res, check.status, check.code, check.message, { header: HEADER_EXPECTED });
  };
}
