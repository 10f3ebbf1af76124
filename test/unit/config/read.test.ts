/** Reading routes.yaml: regular files only, never a read that blocks for good. */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConfigFileReader, readRegularFile, readRegularFileSync } from '../../../src/config/read.js';
import { isStranglerError, type StranglerError } from '../../../src/errors.js';

async function rejection(promise: Promise<unknown>): Promise<StranglerError> {
  try {
    await promise;
  } catch (error) {
    expect(isStranglerError(error, 'CONFIG_UNREADABLE'), String(error)).to.equal(true);
    return error as StranglerError;
  }
  expect.fail('the read succeeded');
}

describe('config/read: reading the routes file', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'strangler-read-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('reads a regular file, also through a symlink, and stops just past the size limit', async () => {
    const file = path.join(dir, 'routes.yaml');
    writeFileSync(file, 'x'.repeat(200_000));
    symlinkSync(file, path.join(dir, 'link.yaml'));
    expect((await readRegularFile(path.join(dir, 'link.yaml'), 1_000_000)).length).to.equal(200_000);
    expect((await readRegularFile(file, 100_000)).length).to.equal(100_001);
    expect(readRegularFileSync(file, 100_000).length).to.equal(100_001);
    expect(readRegularFileSync(file, 1_000_000).toString()).to.equal('x'.repeat(200_000));
  });

  it('refuses a FIFO at once, naming the file and what it is, also behind a symlink', async () => {
    const fifo = path.join(dir, 'routes.yaml');
    execFileSync('mkfifo', [fifo]);
    symlinkSync(fifo, path.join(dir, 'link.yaml'));
    const error = await rejection(readRegularFile(fifo, 1000));
    expect(error.message).to.equal(`${fifo}: cannot read the routes file: it is a FIFO (named pipe); expected a regular file`);
    expect(error.details).to.deep.equal({ file: fifo });
    expect((await rejection(readRegularFile(path.join(dir, 'link.yaml'), 1000))).message).to.contain('it is a FIFO (named pipe)');
    expect(() => readRegularFileSync(fifo, 1000)).to.throw(/it is a FIFO \(named pipe\); expected a regular file/);
  });

  it('refuses a directory and a device, and says "no such file" for a missing one', async () => {
    mkdirSync(path.join(dir, 'sub'));
    expect((await rejection(readRegularFile(path.join(dir, 'sub'), 1000))).message).to.contain('it is a directory; expected a regular file');
    expect((await rejection(readRegularFile('/dev/null', 1000))).message).to.contain('it is a character device; expected a regular file');
    expect((await rejection(readRegularFile(path.join(dir, 'none.yaml'), 1000))).message).to.match(/none\.yaml: cannot read the routes file: no such file$/);
  });

  it('gives up on a read past its deadline, starts no second read while it hangs, and reads again once it ends', async () => {
    let calls = 0;
    let finishHung: (bytes: Buffer) => void = () => undefined;
    const reader = new ConfigFileReader('/mnt/hung/routes.yaml', {
      maxBytes: 1000,
      timeoutMs: 100,
      read: () => {
        calls++;
        if (calls === 1) return new Promise<Buffer>((resolve) => (finishHung = resolve));
        return Promise.resolve(Buffer.from('fresh'));
      },
    });
    const started = Date.now();
    const late = await rejection(reader.read());
    expect(Date.now() - started).to.be.within(90, 1000);
    expect(late.message).to.equal('/mnt/hung/routes.yaml: cannot read the routes file: the read did not finish within 0.1 s (a hung network filesystem?)');

    const refused = await rejection(reader.read());
    expect(refused.message).to.match(/an earlier read has not finished after \d+ s \(a hung network filesystem\?\); not starting another$/);
    expect(calls).to.equal(1);

    finishHung(Buffer.from('stale'));
    await new Promise((r) => setImmediate(r));
    expect((await reader.read()).toString()).to.equal('fresh');
    expect(calls).to.equal(2);
  });
});
