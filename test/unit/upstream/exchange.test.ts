import { expect } from 'chai';
import type { Dispatcher } from 'undici';
import { Exchange, type AnswerSink } from '../../../src/upstream/exchange.js';
import type { UpstreamFailure } from '../../../src/upstream/failure.js';

/** A controller as undici hands one to a handler, recording what the handler asked of it. */
function controller(): Dispatcher.DispatchController & { aborts: Error[]; pauses: number; resumes: number } {
  const c = {
    aborts: [] as Error[],
    pauses: 0,
    resumes: 0,
    aborted: false,
    paused: false,
    reason: null as Error | null,
    abort(reason: Error) {
      c.aborts.push(reason);
      c.aborted = true;
    },
    pause() {
      c.pauses++;
    },
    resume() {
      c.resumes++;
    },
  };
  return c;
}

class RecordingSink implements AnswerSink {
  heads: Array<{ status: number; text: string | undefined; headers: string[] }> = [];
  chunks: Buffer[] = [];
  ended = 0;
  failures: UpstreamFailure[] = [];
  refuseHead = false;
  acceptData = true;
  head(status: number, text: string | undefined, headers: string[]): void {
    if (this.refuseHead) throw new TypeError('Invalid character in header content');
    this.heads.push({ status, text, headers });
  }
  data(chunk: Buffer): boolean {
    this.chunks.push(chunk);
    return this.acceptData;
  }
  end(): void {
    this.ended++;
  }
  failed(failure: UpstreamFailure): void {
    this.failures.push(failure);
  }
}

describe('upstream/exchange', () => {
  it('passes a reason phrase node can write, and drops one it cannot (node then writes the standard one)', () => {
    for (const [given, passed] of [['Okay', 'Okay'], ['O\x01K', undefined], ['a\nb', undefined], ['caf\xe9', 'caf\xe9']] as const) {
      const sink = new RecordingSink();
      const exchange = new Exchange(sink);
      const c = controller();
      exchange.onRequestStart(c);
      exchange.onResponseStart(c, 200, { 'content-length': '0' }, given);
      expect(sink.heads[0]!.text, JSON.stringify(given)).to.equal(passed);
    }
  });

  it('fails an answer whose head the sink refuses as a bad response that may have reached the backend, and discards its connection', () => {
    const sink = new RecordingSink();
    sink.refuseHead = true;
    const exchange = new Exchange(sink);
    const c = controller();
    exchange.onRequestStart(c);
    exchange.onResponseStart(c, 200, { 'x-a': 'b' }, 'OK');
    expect(c.aborts).to.have.length(1);
    exchange.onResponseError(c, c.aborts[0]!);
    expect(sink.failures).to.deep.equal([{ kind: 'bad-response', code: 'BACKEND_BAD_RESPONSE', mayHaveReachedBackend: true, message: 'the backend sent an answer that is not valid HTTP/1.1' }]);
  });

  it('ends a 204 or 304 at its head and closes its connection rather than reuse it', () => {
    for (const status of [204, 304]) {
      const sink = new RecordingSink();
      const exchange = new Exchange(sink);
      const c = controller();
      exchange.onRequestStart(c);
      exchange.onResponseStart(c, status, {}, '');
      expect([sink.ended, c.aborts.length], String(status)).to.deep.equal([1, 1]);
      exchange.onResponseData(c, Buffer.from('late'));
      exchange.onResponseError(c, c.aborts[0]!);
      expect([sink.chunks.length, sink.failures.length], String(status)).to.deep.equal([0, 0]);
    }
  });

  it('says a request that failed before undici began writing it never reached the backend, whatever the error', () => {
    const sink = new RecordingSink();
    new Exchange(sink).onResponseError(undefined, Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' }));
    expect(sink.failures[0]).to.include({ kind: 'reset', mayHaveReachedBackend: false });
  });

  it('applies an abort asked for before the request had a connection as soon as it gets one, before a byte is written', () => {
    const sink = new RecordingSink();
    const exchange = new Exchange(sink);
    exchange.abort(Object.assign(new Error('gone'), { code: 'ECLIENTABORTED' }));
    const c = controller();
    exchange.onRequestStart(c);
    expect(c.aborts).to.have.length(1);
    exchange.onResponseError(c, c.aborts[0]!);
    expect(sink.failures[0]).to.include({ kind: 'client-aborted', mayHaveReachedBackend: false });
  });

  it('ignores informational answers, pauses the backend when the sink says so, and tells the sink once', () => {
    const sink = new RecordingSink();
    const exchange = new Exchange(sink);
    const c = controller();
    exchange.onRequestStart(c);
    exchange.onResponseStart(c, 100, {}, 'Continue');
    exchange.onResponseStart(c, 200, { 'content-type': 'text/plain' }, 'OK');
    sink.acceptData = false;
    exchange.onResponseData(c, Buffer.from('a'));
    exchange.resume();
    exchange.onResponseEnd();
    exchange.onResponseError(c, new Error('late'));
    expect([sink.heads.length, c.pauses, c.resumes, sink.ended, sink.failures.length]).to.deep.equal([1, 1, 1, 1, 0]);
  });
});
