/**
 * Reading routes.yaml so that no read can stop reloads, or shutdown, for good.
 *
 * A path that turns into a FIFO, a device, or a file on a hung network mount
 * would otherwise leave a read waiting forever in libuv's thread pool; reloads
 * queue behind it, and `process.exit()` waits for that thread, so SIGTERM never
 * finishes. So: only regular files are read (after following symlinks), they
 * are opened non-blocking (a FIFO swapped in after the check opens at once and
 * is refused), every read has a deadline, and a reader never starts a second
 * read while one is still outstanding.
 */
import { closeSync, constants, fstatSync, openSync, readSync, statSync, type Stats } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { StranglerError } from '../errors.js';

/** How long a read may take before the reload counts as failed. */
export const READ_TIMEOUT_MS = 5_000;
const CHUNK_BYTES = 64 * 1024;
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK;

export function unreadable(file: string, reason: string, cause?: unknown): StranglerError {
  return new StranglerError('CONFIG_UNREADABLE', `${file}: cannot read the routes file: ${reason}`, { ...(cause === undefined ? {} : { cause }), details: { file } });
}

function fromFsError(file: string, error: unknown): StranglerError {
  if (error instanceof StranglerError) return error;
  const code = (error as NodeJS.ErrnoException).code;
  return unreadable(file, code === 'ENOENT' ? 'no such file' : (error as Error).message, error);
}

function kindOf(stats: Stats): string {
  if (stats.isDirectory()) return 'a directory';
  if (stats.isFIFO()) return 'a FIFO (named pipe)';
  if (stats.isSocket()) return 'a socket';
  if (stats.isCharacterDevice()) return 'a character device';
  if (stats.isBlockDevice()) return 'a block device';
  return 'not a regular file';
}

function refuseUnlessFile(file: string, stats: Stats): void {
  if (!stats.isFile()) throw unreadable(file, `it is ${kindOf(stats)}; expected a regular file`);
}

/**
 * The bytes of `file`, a regular file (symlinks followed), at most `maxBytes + 1`
 * of them so that an oversized file is reported as such without being read whole.
 * No deadline of its own: see {@link ConfigFileReader}.
 */
export async function readRegularFile(file: string, maxBytes: number): Promise<Buffer> {
  try {
    refuseUnlessFile(file, await stat(file));
    const handle = await open(file, OPEN_FLAGS);
    try {
      refuseUnlessFile(file, await handle.stat());
      const chunks: Buffer[] = [];
      let total = 0;
      while (total <= maxBytes) {
        const { bytesRead, buffer } = await handle.read(Buffer.allocUnsafe(CHUNK_BYTES), 0, CHUNK_BYTES, null);
        if (bytesRead === 0) break;
        chunks.push(buffer.subarray(0, bytesRead));
        total += bytesRead;
      }
      return Buffer.concat(chunks, Math.min(total, maxBytes + 1));
    } finally {
      await handle.close();
    }
  } catch (error) {
    throw fromFsError(file, error);
  }
}

/** {@link readRegularFile}, blocking: for one-shot reads before anything is served (tests, tools). */
export function readRegularFileSync(file: string, maxBytes: number): Buffer {
  try {
    refuseUnlessFile(file, statSync(file));
    const fd = openSync(file, OPEN_FLAGS);
    try {
      refuseUnlessFile(file, fstatSync(fd));
      const chunks: Buffer[] = [];
      let total = 0;
      while (total <= maxBytes) {
        const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
        const bytesRead = readSync(fd, chunk, 0, CHUNK_BYTES, null);
        if (bytesRead === 0) break;
        chunks.push(chunk.subarray(0, bytesRead));
        total += bytesRead;
      }
      return Buffer.concat(chunks, Math.min(total, maxBytes + 1));
    } finally {
      closeSync(fd);
    }
  } catch (error) {
    throw fromFsError(file, error);
  }
}

export interface ConfigFileReaderOptions {
  maxBytes: number;
  timeoutMs?: number;
  /** The read itself (tests stand in a read that never finishes). */
  read?: (file: string, maxBytes: number) => Promise<Buffer>;
}

/**
 * Reads one file with a deadline, never more than one read at a time. A read
 * past its deadline fails the caller at once; the read itself is left to
 * finish (it cannot be cancelled), and until it does, further reads fail
 * immediately instead of tying up another thread-pool thread.
 */
export class ConfigFileReader {
  private outstandingSince: number | undefined;

  constructor(
    readonly file: string,
    private readonly options: ConfigFileReaderOptions,
  ) {}

  read(): Promise<Buffer> {
    const timeoutMs = this.options.timeoutMs ?? READ_TIMEOUT_MS;
    if (this.outstandingSince !== undefined) {
      const seconds = Math.round((Date.now() - this.outstandingSince) / 1000);
      return Promise.reject(unreadable(this.file, `an earlier read has not finished after ${seconds} s (a hung network filesystem?); not starting another`));
    }
    const since = Date.now();
    this.outstandingSince = since;
    const reading = (this.options.read ?? readRegularFile)(this.file, this.options.maxBytes);
    const settled = () => {
      if (this.outstandingSince === since) this.outstandingSince = undefined;
    };
    reading.then(settled, settled);
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => reject(unreadable(this.file, `the read did not finish within ${timeoutMs / 1000} s (a hung network filesystem?)`)), timeoutMs);
      timer.unref();
      reading.then(
        (bytes) => {
          clearTimeout(timer);
          resolve(bytes);
        },
        (error: unknown) => {
          clearTimeout(timer);
          reject(error);
        },
      );
    });
  }
}
