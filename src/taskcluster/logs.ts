/**
 * A build's log is its task's log artifact, streamed to the client as it
 * arrives (never held whole): as is for `/raw`, or inside Buildbot's logchunk
 * envelope for `/contents`. The queue answers an artifact with a 303 to where
 * it is stored, which may be another host: that host is reached through the
 * same engine, as a backend of its own.
 */
import { STATUS_CODES } from 'node:http';
import type { ClientResponse } from './answers.js';
import { StringDecoder } from 'node:string_decoder';
import type { Backend } from '../routing/table.js';
import type { AnswerSink, Exchange } from '../upstream/exchange.js';
import type { UpstreamFailure } from '../upstream/failure.js';
import type { RawHeaders } from '../upstream/headers.js';
import type { Upstream } from '../upstream/upstream.js';

export type LogForm = 'raw' | 'contents';

/** Streams an artifact's bytes to the client; resolves when the answer ends either way. */
export class LogStream implements AnswerSink {
  readonly done: Promise<number>;
  private resolve!: (status: number) => void;
  private exchange: Exchange | undefined;
  private readonly decoder = new StringDecoder('utf8');
  private status = 0;

  constructor(
    private readonly res: ClientResponse,
    private readonly form: LogForm,
    private readonly logid: number,
    private readonly filename: string,
    private readonly tags: RawHeaders,
  ) {
    this.done = new Promise((resolve) => (this.resolve = resolve));
    res.once('close', () => {
      if (!res.writableFinished) this.exchange?.abort(Object.assign(new Error('the client went away'), { code: 'ECLIENTABORTED' }));
    });
  }

  start(upstream: Pick<Upstream, 'stream'>, storage: Backend, path: string): void {
    this.exchange = upstream.stream(storage, { path, headers: ['user-agent', 'strangler-proxy', 'accept', '*/*'] }, this);
  }

  head(status: number): void {
    this.status = status;
    if (status !== 200) throw Object.assign(new Error(`the artifact store answered ${status}`), { code: 'EBADANSWER' });
    const headers =
      this.form === 'raw'
        ? [...this.tags, 'content-type', 'text/plain; charset=utf-8', 'content-disposition', `attachment; filename=${this.filename}`]
        : [...this.tags, 'content-type', 'application/json; charset=utf-8'];
    this.res.writeHead(200, STATUS_CODES[200]!, headers);
    if (this.form === 'contents') this.res.write(`{"logchunks": [{"content": "`);
  }

  data(chunk: Buffer): boolean {
    const text = this.form === 'raw' ? chunk : jsonEscape(this.decoder.write(chunk));
    const more = this.res.write(text);
    if (!more) this.res.once('drain', () => this.exchange?.resume());
    return more;
  }

  end(): void {
    if (this.form === 'contents') this.res.write(`${jsonEscape(this.decoder.end())}", "firstline": 0, "logid": ${this.logid}}], "meta": {"total": 1}}`);
    this.res.end();
    this.resolve(200);
  }

  failed(failure: UpstreamFailure): void {
    if (!this.res.headersSent) {
      const status = this.status === 404 ? 404 : 502;
      const body = JSON.stringify({ error: status === 404 ? 'log not found' : `the log artifact could not be read: ${failure.message}` });
      this.res.writeHead(status, STATUS_CODES[status]!, [...this.tags, 'content-type', 'text/plain; charset=utf-8', 'content-length', String(Buffer.byteLength(body))]);
      this.res.end(body);
      this.resolve(status);
      return;
    }
    // Part of the log is out: cutting the connection is the only honest signal left.
    this.res.destroy();
    this.resolve(this.status || 502);
  }
}

function jsonEscape(text: string): string {
  return JSON.stringify(text).slice(1, -1);
}

/** A backend for an artifact store's origin, with the queue backend's timeouts; reused per origin. */
export class ArtifactStores {
  private readonly byOrigin = new Map<string, Backend>();

  for(url: URL, queue: Backend): Backend {
    const key = `${url.origin}|${queue.name}`;
    let backend = this.byOrigin.get(key);
    if (backend === undefined) {
      backend = Object.freeze({
        ...queue,
        name: `${queue.name}-artifacts`,
        kind: 'buildbot' as const,
        url: url.origin,
        origin: url.origin,
        host: url.host,
        basePath: '',
        preserveHost: false,
      });
      if (this.byOrigin.size > 64) this.byOrigin.clear();
      this.byOrigin.set(key, backend);
    }
    return backend;
  }
}
