/**
 * A response that is never sent: it records what a translated backend (a
 * Taskcluster queue, src/taskcluster/) answers a shadow copy, so the copy can
 * be compared with the primary's answer like any other.
 */
import { EventEmitter } from 'node:events';
import type { OutgoingHttpHeaders } from 'node:http';
import type { ClientResponse } from '../taskcluster/answers.js';
import type { CapturedResponse } from './compare.js';

export class RecordingResponse extends EventEmitter {
  headersSent = false;
  destroyed = false;
  writableFinished = false;
  private status = 0;
  private contentType: string | undefined;
  private chunks: Buffer[] | undefined = [];
  private size = 0;

  constructor(private readonly limit: number) {
    super();
  }

  writeHead(status: number, ...rest: unknown[]): this {
    this.status = status;
    this.headersSent = true;
    const headers = rest.find((r) => typeof r === 'object' && r !== null) as OutgoingHttpHeaders | string[] | undefined;
    if (Array.isArray(headers)) {
      for (let i = 0; i < headers.length; i += 2) if (String(headers[i]).toLowerCase() === 'content-type') this.contentType = String(headers[i + 1]);
    } else if (headers !== undefined) {
      const value = headers['content-type'];
      if (value !== undefined) this.contentType = String(value);
    }
    return this;
  }

  write(chunk: string | Uint8Array, ...rest: unknown[]): boolean {
    void rest;
    this.keep(chunk);
    return true;
  }

  end(...args: unknown[]): this {
    const chunk = args[0];
    if (typeof chunk === 'string' || chunk instanceof Uint8Array) this.keep(chunk);
    this.writableFinished = true;
    this.emit('finish');
    this.emit('close');
    return this;
  }

  destroy(): this {
    this.destroyed = true;
    this.emit('close');
    return this;
  }

  /** What was answered; the body is left out when it was larger than the limit. */
  captured(): CapturedResponse {
    return { status: this.status, contentType: this.contentType, body: this.chunks === undefined ? undefined : Buffer.concat(this.chunks) };
  }

  private keep(chunk: string | Uint8Array): void {
    if (this.chunks === undefined) return;
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk);
    this.size += bytes.length;
    if (this.size > this.limit) this.chunks = undefined;
    else this.chunks.push(bytes);
  }
}

/** The recorder as the translation sees it. */
export function asClientResponse(recording: RecordingResponse): ClientResponse {
  return recording as unknown as ClientResponse;
}
