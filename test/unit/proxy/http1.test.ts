import { expect } from 'chai';
import fc from 'fast-check';
import type { CapturedResponse } from '../../../src/shadow/compare.js';
import { AnswerParser, type AnswerTarget } from '../../../src/proxy/http1.js';

/** What the parser made of a stream: the answers in order, and whether it called the stream malformed. */
function parseAll(stream: Buffer, cuts: number[], bodyless: boolean[], end = false) {
  const answers: (CapturedResponse & { keepAlive: boolean })[] = [];
  const malformed: string[] = [];
  let index = 0;
  let target: (AnswerTarget & { chunks: Buffer[] }) | undefined;
  const parser = new AnswerParser({
    current() {
      if (index >= bodyless.length) return undefined;
      target ??= { bodyless: bodyless[index]!, status: 0, contentType: undefined, chunks: [], addBody(b) { this.chunks.push(Buffer.from(b)); } };
      return target;
    },
    complete(keepAlive) {
      answers.push({ status: target!.status, contentType: target!.contentType, body: Buffer.concat(target!.chunks), keepAlive });
      target = undefined;
      index++;
    },
    malformed(reason) {
      malformed.push(reason);
    },
  });
  let at = 0;
  for (const cut of [...cuts.filter((c) => c > 0 && c < stream.length)].sort((a, b) => a - b).concat(stream.length)) {
    if (cut > at) parser.read(stream.subarray(at, cut));
    at = Math.max(at, cut);
  }
  if (end) parser.end();
  return { answers, malformed };
}

interface Answer {
  status: number;
  contentType: string | undefined;
  body: Buffer;
  framing: 'length' | 'chunked';
  chunkSizes: number[];
  interim: boolean;
  head: boolean;
  upper: boolean;
}

function serialize(a: Answer): Buffer {
  const name = (n: string) => (a.upper ? n.toUpperCase() : n);
  const noBody = a.head || a.status === 204 || a.status === 304;
  let head = a.interim ? 'HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n' : '';
  head += `HTTP/1.1 ${a.status} Whatever\r\nDate: Tue, 01 Dec 2026 10:00:00 GMT\r\n${name('X-Extra')}: a: b\r\n`;
  if (a.contentType !== undefined) head += `${name('Content-Type')}:  ${a.contentType} \r\n`;
  if (a.framing === 'length') head += `${name('Content-Length')}: ${a.body.length}\r\n\r\n`;
  else head += `${name('Transfer-Encoding')}: chunked\r\n\r\n`;
  if (noBody && !(a.head && a.framing === 'length')) return Buffer.from(head.replace(/Content-Length: \d+|Transfer-Encoding: chunked/i, 'X-None: 1'), 'latin1');
  if (noBody) return Buffer.from(head, 'latin1'); // HEAD: Content-Length of the body a GET would get, and no body
  if (a.framing === 'length') return Buffer.concat([Buffer.from(head, 'latin1'), a.body]);
  const parts: Buffer[] = [Buffer.from(head, 'latin1')];
  let at = 0;
  for (const size of a.chunkSizes) {
    if (at >= a.body.length) break;
    const piece = a.body.subarray(at, at + Math.max(1, size));
    at += piece.length;
    parts.push(Buffer.from(`${piece.length.toString(16)}${size % 3 === 0 ? ';ext=1' : ''}\r\n`), piece, Buffer.from('\r\n'));
  }
  if (at < a.body.length) parts.push(Buffer.from(`${(a.body.length - at).toString(16)}\r\n`), a.body.subarray(at), Buffer.from('\r\n'));
  parts.push(Buffer.from(a.body.length % 2 ? '0\r\nX-Trailer: t\r\n\r\n' : '0\r\n\r\n'));
  return Buffer.concat(parts);
}

const answerArb: fc.Arbitrary<Answer> = fc.record({
  status: fc.oneof(fc.constantFrom(200, 201, 204, 304, 404, 500), fc.integer({ min: 200, max: 599 })),
  contentType: fc.option(fc.constantFrom('application/json', 'text/plain; charset=utf-8'), { nil: undefined }),
  body: fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
  framing: fc.constantFrom('length' as const, 'chunked' as const),
  chunkSizes: fc.array(fc.integer({ min: 1, max: 120 }), { maxLength: 5 }),
  interim: fc.boolean(),
  head: fc.boolean(),
  upper: fc.boolean(),
});

describe('proxy/http1: AnswerParser', () => {
  it('reads pipelined answers the same wherever the stream is cut (property)', () => {
    fc.assert(
      fc.property(fc.array(answerArb, { minLength: 1, maxLength: 6 }), fc.array(fc.nat({ max: 3000 }), { maxLength: 12 }), (answers, cuts) => {
        const stream = Buffer.concat(answers.map(serialize));
        const { answers: got, malformed } = parseAll(stream, cuts, answers.map((a) => a.head));
        expect(malformed).to.deep.equal([]);
        expect(got.map((g) => ({ status: g.status, contentType: g.contentType, body: g.body!.toString('hex') }))).to.deep.equal(
          answers.map((a) => ({ status: a.status, contentType: a.contentType, body: a.head || a.status === 204 || a.status === 304 ? '' : a.body.toString('hex') })),
        );
      }),
      { numRuns: 400 },
    );
  });

  it('reads a body that runs to the end of the stream, and says the connection is done', () => {
    const { answers } = parseAll(Buffer.from('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it'), [20, 40], [false], true);
    expect(answers).to.have.length(1);
    expect(answers[0]!.body!.toString()).to.equal('all of it');
    expect(answers[0]!.keepAlive).to.equal(false);
  });

  it('keeps a connection only when the answer allows it (HTTP/1.1 unless close, HTTP/1.0 only with keep-alive)', () => {
    const keep = (text: string) => parseAll(Buffer.from(text), [], [false]).answers[0]!.keepAlive;
    expect(keep('HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n')).to.equal(true);
    expect(keep('HTTP/1.1 200 OK\r\nConnection: Close\r\ncontent-length: 0\r\n\r\n')).to.equal(false);
    expect(keep('HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n')).to.equal(false);
    expect(keep('HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n')).to.equal(true);
  });

  it('passes over empty lines before a status line', () => {
    const { answers, malformed } = parseAll(Buffer.from('HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\na\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n'), [16, 42, 43], [false, false]);
    expect(malformed).to.deep.equal([]);
    expect(answers.map((a) => a.status)).to.deep.equal([200, 201]);
  });

  it('calls anything else malformed, once, and reads nothing after it', () => {
    const cases = [
      'HTTP/2 200 OK\r\n\r\n',
      'HTTP/1.1 20 OK\r\n\r\n',
      'ICY 200 OK\r\n\r\n',
      'HTTP/1.1 200 OK\r\ncontent-length: 12x\r\n\r\n',
      'HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab',
      'HTTP/1.1 200 OK\r\nno colon here\r\n\r\n',
      'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n',
      'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabXX0\r\n\r\n',
      'HTTP/1.1 101 Switching Protocols\r\n\r\n',
      'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 2\r\n\r\n0\r\n\r\n',
    ];
    for (const text of cases) {
      const { answers, malformed } = parseAll(Buffer.from(`${text}HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n`), [], [false, false]);
      expect(malformed, text).to.have.length(1);
      expect(answers, text).to.have.length(0);
    }
    const unasked = parseAll(Buffer.from('HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n'), [], [false]);
    expect(unasked.answers).to.have.length(1);
    expect(unasked.malformed).to.deep.equal(['an answer with no request waiting for it']);
  });

  it('refuses a response head without end instead of buffering it without bound', () => {
    const { malformed } = parseAll(Buffer.from(`HTTP/1.1 200 OK\r\nx: ${'a'.repeat(70_000)}`), [1000, 30_000, 60_000], [false]);
    expect(malformed).to.deep.equal(['response head too large']);
  });
});
