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

/** Rejects when the client breaks off the body (the caller answers nothing: nobody is listening). */
export async function peekBody(req: IncomingMessage, limit: number): Promise<PeekedBody> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return { complete: false, body: req };

  const iterator = req[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const chunks: Buffer[] = [];
  let size = 0;
  for (;;) {
    const next = await iterator.next();
    if (next.done) return { complete: true, body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size) };
    chunks.push(next.value);
    size += next.value.length;
    if (size > limit) return { complete: false, body: Readable.from(replay(chunks, iterator), { objectMode: false }) };
  }
}

async function* replay(head: Buffer[], rest: AsyncIterator<Buffer>): AsyncIterable<Buffer> {
  yield* head;
  for (let next = await rest.next(); !next.done; next = await rest.next()) yield next.value;
}
