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

/**
 * Rejects when the client breaks off the body (the caller answers nothing:
 * nobody is listening). Plain 'data'/'end' listeners, not an async iterator:
 * every force call comes this way, and the iterator's machinery cost more
 * than reading the body.
 */
export function peekBody(req: IncomingMessage, limit: number): Promise<PeekedBody> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.resolve({ complete: false, body: req });

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
