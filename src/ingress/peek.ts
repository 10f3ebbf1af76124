/**
 * Reads the start of a request body without losing it: the backend still
 * receives exactly the bytes the client sent, buffered or streamed.
 */
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';

export type PeekedBody =
  /** The whole body, at most `limit` bytes. */
  | { complete: true; body: Buffer }
  /** Larger than `limit`: the bytes read so far followed by the rest of the stream. */
  | { complete: false; body: Readable };

class ClientAbortedError extends Error {
  readonly code = 'ECLIENTABORTED';
  constructor() {
    super('the client broke off the request body');
  }
}

/** The body would not fit the held-body budget: nothing of it is kept, nothing was sent. */
export class BodyBudgetExceeded extends Error {
  readonly code = 'PROXY_BUSY';
  constructor() {
    super('too many request bodies are held in memory right now');
  }
}

/**
 * Rejects when the client breaks off the body (the caller answers nothing:
 * nobody is listening), or when the body does not fit the held-body budget:
 * `reserve` is asked for the bytes the peek will hold, a declared
 * Content-Length at once, a chunked body as it arrives, and false refuses the
 * body ({@link BodyBudgetExceeded}). Plain 'data'/'end' listeners, not an
 * async iterator: every force call comes this way, and the iterator's
 * machinery cost more than reading the body.
 */
export function peekBody(req: IncomingMessage, limit: number, reserve?: (bytes: number) => boolean): Promise<PeekedBody> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.resolve({ complete: false, body: req });
  // SECURITY: the bytes are reserved before any is read, so a declared body the budget cannot hold is never buffered.
  const declaredKnown = Number.isFinite(declared);
  if (declaredKnown && declared > 0 && reserve !== undefined && !reserve(declared)) return Promise.reject(new BodyBudgetExceeded());

  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const stop = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('close', onClose);
      req.off('error', onClose);
    };
    const onData = (chunk: Buffer) => {
      if (!declaredKnown && reserve !== undefined && !reserve(chunk.length)) {
        stop();
        return reject(new BodyBudgetExceeded());
      }
      chunks.push(chunk);
      size += chunk.length;
      if (size <= limit) return;
      stop();
      req.pause();
      resolve({ complete: false, body: Readable.from(replay(chunks, req), { objectMode: false }) });
    };
    const onEnd = () => {
      stop();
      resolve({ complete: true, body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size) });
    };
    const onClose = () => {
      stop();
      reject(new ClientAbortedError());
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('close', onClose);
    req.on('error', onClose);
  });
}

async function* replay(head: Buffer[], rest: AsyncIterable<Buffer>): AsyncIterable<Buffer> {
  yield* head;
  yield* rest;
}
