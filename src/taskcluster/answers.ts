/**
 * Answers in Buildbot 3.7's own form, so a client cannot tell which side
 * answered: REST data in the `{"<plural>": [...], "meta": {...}}` envelope
 * (compact JSON when the client accepts application/json, indented
 * text/plain otherwise, keys sorted, as www/rest.py writes them), REST errors
 * as `{"error": "..."}`, and JSON-RPC replies and errors.
 */
import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { RawHeaders } from '../upstream/headers.js';

export const JSONRPC_CODES = {
  parseError: -32700,
  invalidRequest: -32600,
  methodNotFound: -32601,
  invalidParams: -32602,
  internalError: -32603,
} as const;

import { pythonJsonDumps, renderAnswer, type BuildbotAnswer } from '../buildbot-api/collection.js';

/**
 * What the translation writes its answer to: a client's ServerResponse, or a
 * recorder when the answer is a shadow copy's (src/shadow/recording.ts).
 */
export type ClientResponse = Pick<ServerResponse, 'headersSent' | 'destroyed' | 'writableFinished' | 'writeHead' | 'write' | 'end' | 'once' | 'destroy'>;

export interface AnswerContext {
  res: ClientResponse;
  /** The proxy's own headers (X-Request-Id, X-Strangler-*). */
  tags: RawHeaders;
  /** The client's Accept header. */
  accept: string | undefined;
  method: string;
  /** Told of each whole answer written here (a shadowed request's primary answer, for the comparison). */
  onAnswer?: (status: number, contentType: string, body: Buffer) => void;
}

function write(ctx: AnswerContext, status: number, contentType: string, body: string, extra: RawHeaders = []): number {
  const { res } = ctx;
  if (res.headersSent || res.destroyed) return status;
  const bytes = Buffer.from(body);
  const headers = [...ctx.tags, ...extra, 'content-type', contentType, 'content-length', String(bytes.length)];
  res.writeHead(status, STATUS_CODES[status] ?? 'Unknown', headers);
  res.end(ctx.method === 'HEAD' ? undefined : bytes);
  ctx.onAnswer?.(status, contentType, bytes);
  return status;
}

/** A REST answer: one object or a collection, in Buildbot's envelope. */
export function sendData(ctx: AnswerContext, plural: string, items: readonly unknown[], total?: number): number {
  const meta = total === undefined ? {} : { total };
  return sendAnswer(ctx, renderAnswer({ [plural]: items, meta }, ctx.accept));
}

/** An answer rendered as Buildbot would (collection.ts), success or error. */
export function sendAnswer(ctx: AnswerContext, answer: BuildbotAnswer): number {
  return write(ctx, answer.status, answer.contentType, answer.body);
}

/** A REST error as Buildbot writes it: text/plain carrying `{"error": "..."}`. */
export function sendRestError(ctx: AnswerContext, status: number, message: string): number {
  return write(ctx, status, 'text/plain; charset=utf-8', JSON.stringify({ error: message }));
}

export function sendJsonRpcResult(ctx: AnswerContext, id: unknown, result: unknown): number {
  return write(ctx, 200, 'application/json', pythonJsonDumps({ id, jsonrpc: '2.0', result }, 'compact'));
}

export function sendJsonRpcError(ctx: AnswerContext, id: unknown, status: number, code: number, message: string, extra: RawHeaders = []): number {
  return write(ctx, status, 'application/json', JSON.stringify({ jsonrpc: '2.0', id: id ?? null, error: { code, message } }), extra);
}

/** A JSON-RPC call as Buildbot reads one: `{jsonrpc: "2.0", method, id, params?}`. */
export type JsonRpcCall = { ok: true; id: unknown; method: string; params: Record<string, unknown> } | { ok: false; id: unknown; message: string; code: number };

export function parseJsonRpc(body: Buffer | null): JsonRpcCall {
  let call: unknown;
  try {
    call = JSON.parse((body ?? Buffer.alloc(0)).toString('utf8'));
  } catch (error) {
    return { ok: false, id: null, code: JSONRPC_CODES.parseError, message: `JSON parse error: ${(error as Error).message}` };
  }
  if (call === null || typeof call !== 'object' || Array.isArray(call)) return { ok: false, id: null, code: JSONRPC_CODES.invalidRequest, message: 'JSONRPC root object must be an object' };
  const c = call as Record<string, unknown>;
  const id = Object.hasOwn(c, 'id') ? c.id : null;
  if (c.jsonrpc !== '2.0') return { ok: false, id, code: JSONRPC_CODES.invalidRequest, message: 'only JSONRPC 2.0 is supported' };
  if (typeof c.method !== 'string') return { ok: false, id, code: JSONRPC_CODES.invalidRequest, message: "'method' must be str" };
  const params = Object.hasOwn(c, 'params') ? c.params : {};
  if (params === null || typeof params !== 'object' || Array.isArray(params)) return { ok: false, id, code: JSONRPC_CODES.invalidRequest, message: "'params' must be dict" };
  return { ok: true, id, method: c.method, params: params as Record<string, unknown> };
}
