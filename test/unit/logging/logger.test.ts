import { expect } from 'chai';
import { PassThrough } from 'node:stream';
import { createLogger, parseLogFormat, parseLogLevel } from '../../../src/logging/logger.js';

function capture(options: Parameters<typeof createLogger>[0] = {}) {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (c: Buffer) => (text += c.toString()));
  const logger = createLogger({ ...options, stream });
  const settle = () => new Promise((r) => setImmediate(() => setImmediate(r)));
  return { logger, text: () => text, lines: async () => (logger.flushAccess(), await settle(), text.split('\n').filter(Boolean)) };
}

describe('logging/logger', () => {
  it('writes JSON lines with level, message, timestamp and the fields, access lines included', async () => {
    const { logger, lines } = capture();
    logger.warn('backend failed', { requestId: 'r1', backend: 'taskservice', kind: 'refused' });
    logger.access({ requestId: 'r2', method: 'GET', path: '/api/v2/builders/x', status: 200, durationMs: 1.5, backend: 'buildbot', jobType: 'x', rule: undefined });
    const parsed = (await lines()).map((l) => JSON.parse(l) as Record<string, unknown>);
    const warn = parsed.find((l) => l.message === 'backend failed')!;
    expect(warn).to.include({ level: 'warn', requestId: 'r1', backend: 'taskservice', kind: 'refused' });
    const access = parsed.find((l) => l.message === 'request')!;
    expect(access).to.include({ level: 'info', requestId: 'r2', method: 'GET', status: 200, backend: 'buildbot', jobType: 'x' });
    expect(access).not.to.have.property('rule'); // undefined fields are left out
    for (const line of parsed) expect(Date.parse(String(line.timestamp))).to.be.a('number').and.not.NaN;
  });

  it('writes one readable line per event in the pretty format', async () => {
    const { logger, lines } = capture({ format: 'pretty' });
    logger.access({ requestId: 'r3', method: 'POST', path: '/api/v2/forceschedulers/force', status: 502, durationMs: 2, backend: 'taskservice', reason: 'route', error: 'refused' });
    logger.error('routes.yaml rejected; the previous routes stay in force', { error: 'routes.yaml:3:5: routes[0].backend: unknown backend "x"' });
    const all = await lines(); // access lines go out batched, so the order between the two kinds is not fixed
    const access = all.find((l) => l.includes(' request '))!;
    const error = all.find((l) => l.includes(' error '))!;
    expect(access).to.match(/^\S+Z info  request requestId=r3 method=POST path=\/api\/v2\/forceschedulers\/force status=502 durationMs=2 backend=taskservice reason=route error=refused$/);
    expect(error).to.match(/^\S+Z error routes\.yaml rejected; the previous routes stay in force error="routes\.yaml:3:5: routes\[0\]\.backend: unknown backend \\"x\\""$/);
  });

  it('honours the level for winston lines and the access log alike', async () => {
    const { logger, lines } = capture({ level: 'warn' });
    logger.info('quiet');
    logger.access({ requestId: 'r4', method: 'GET', path: '/', status: 200, durationMs: 1, backend: 'buildbot' });
    logger.warn('loud');
    expect((await lines()).map((l) => JSON.parse(l).message)).to.deep.equal(['loud']);
  });

  it('escapes whatever a request carries, so one request is always one JSON line', async () => {
    const { logger, lines } = capture();
    const path = '/api/v2/builders/a"b\\c\n{"level":"error"}\u2028\u0000';
    logger.access({ requestId: 'r5', method: 'GET', path, status: 200, durationMs: 0.25, backend: 'buildbot', jobType: 'x\ty' });
    const all = await lines();
    expect(all).to.have.length(1);
    expect(JSON.parse(all[0]!)).to.include({ level: 'info', message: 'request', path, jobType: 'x\ty', durationMs: 0.25 });
  });

  it('writes access lines in batches: within 50 ms, or at once when flushed', async () => {
    const { logger, text } = capture();
    logger.access({ requestId: 'r6', method: 'GET', path: '/', status: 200, durationMs: 1, backend: 'buildbot' });
    logger.access({ requestId: 'r7', method: 'GET', path: '/', status: 200, durationMs: 1, backend: 'buildbot' });
    await new Promise((r) => setImmediate(r));
    expect(text()).to.equal(''); // not one write per line
    await new Promise((r) => setTimeout(r, 120));
    expect(text().split('\n').filter(Boolean).map((l) => JSON.parse(l).requestId)).to.deep.equal(['r6', 'r7']);
    logger.access({ requestId: 'r8', method: 'GET', path: '/', status: 200, durationMs: 1, backend: 'buildbot' });
    logger.flushAccess();
    await new Promise((r) => setImmediate(r));
    expect(text()).to.contain('"requestId":"r8"');
  });

  it('keeps every line whole across batch boundaries, with multi-byte characters and a line longer than a batch', async () => {
    const { logger, lines } = capture();
    const paths: string[] = [];
    for (let i = 0; i < 1500; i++) {
      const path = `/api/v2/builders/b\u00e9\u4e2d\u{1f680}-${i}/${'x'.repeat(i % 97)}${'\u4e2d'.repeat((i * 7) % 600)}`;
      paths.push(path);
      logger.access({ requestId: `r${i}`, method: 'GET', path, status: 200, durationMs: 1, backend: 'buildbot' });
      if (i === 700) {
        const long = '/' + 'y'.repeat(70 * 1024); // longer than a whole 64 KiB batch
        paths.push(long);
        logger.access({ requestId: 'long', method: 'GET', path: long, status: 200, durationMs: 1, backend: 'buildbot' });
      }
    }
    const parsed = (await lines()).map((l) => JSON.parse(l) as { path: string });
    expect(parsed.map((l) => l.path)).to.deep.equal(paths);
  });

  it('parses levels and formats from flags and environment, rejecting unknown ones', () => {
    expect(parseLogLevel('DEBUG')).to.equal('debug');
    expect(parseLogLevel(undefined)).to.equal(undefined);
    expect(() => parseLogLevel('verbose')).to.throw(/unknown log level "verbose"; expected one of: error, warn, info, debug/);
    expect(parseLogFormat('pretty')).to.equal('pretty');
    expect(() => parseLogFormat('xml')).to.throw(/expected json or pretty/);
  });
});
