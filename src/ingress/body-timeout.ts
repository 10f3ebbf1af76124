/**
 * The request-body idle timeout: a client that sends its headers and then
 * stalls its body (never sends it, or stops midway) is not held forever.
 *
 * A body counts as idle only while the proxy is ready to take more of it: no
 * byte arrived on the client's connection, nothing is waiting unread in the
 * request stream, and the connection is not paused by the proxy itself (a
 * backend reading slowly holds the client back; that is not the client's
 * stall). Activity is read from the connection's byte count, so watching adds
 * no listener to the request and never changes how its body flows.
 *
 * One sweep per listener checks every watched request, so a timeout fires up
 * to a tenth of itself late (at most a second).
 *
 * @example
 *   const bodies = new BodyIdleTimer(30_000);
 *   bodies.watch(req, (fault) => (fault === 'idle' ? answer408() : answer400()));
 */
import type { IncomingMessage } from 'node:http';

/** The default: as long as a client has for its request headers. */
export const DEFAULT_CLIENT_BODY_IDLE_TIMEOUT_MS = 30_000;

/** `idle`: no byte of the body within the timeout. `malformed`: the body's framing broke (told by the listener). */
export type BodyFault = 'idle' | 'malformed';

interface Watched {
  readonly onFault: (fault: BodyFault) => void;
  lastBytesRead: number;
  lastActive: number;
}

export interface BodyIdleTimerOptions {
  /** Told of an exception thrown by a fault callback (the sweep goes on). */
  onError?: (error: unknown) => void;
  /** The clock, in milliseconds (tests). */
  now?: () => number;
}

export class BodyIdleTimer {
  private readonly watched = new Map<IncomingMessage, Watched>();
  private sweep: NodeJS.Timeout | undefined;
  private readonly sweepMs: number;
  private readonly now: () => number;

  /** `timeoutMs`: the longest pause allowed inside a request body; 0 = none (malformed bodies are still told). */
  constructor(
    readonly timeoutMs: number,
    private readonly options: BodyIdleTimerOptions = {},
  ) {
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 0) throw new RangeError(`clientBodyIdleTimeoutMs must be a whole number of milliseconds >= 0, got ${timeoutMs}`);
    this.sweepMs = Math.max(10, Math.min(1_000, Math.floor(timeoutMs / 10)));
    this.now = options.now ?? (() => performance.now());
  }

  /** Requests being watched now. */
  get size(): number {
    return this.watched.size;
  }

  /**
   * Watches `req`'s body until it is complete or its connection closes;
   * `onFault` is called at most once. Returns a function that stops watching.
   */
  watch(req: IncomingMessage, onFault: (fault: BodyFault) => void): () => void {
    if (req.complete) return noop;
    this.watched.set(req, { onFault, lastBytesRead: req.socket?.bytesRead ?? 0, lastActive: this.now() });
    if (this.sweep === undefined && this.timeoutMs > 0) {
      this.sweep = setInterval(() => this.check(), this.sweepMs);
      this.sweep.unref();
    }
    return () => this.forget(req);
  }

  /** The listener saw `req`'s body framing break: told to its watcher now. False when nobody watches it. */
  malformed(req: IncomingMessage): boolean {
    const watched = this.watched.get(req);
    if (watched === undefined) return false;
    this.forget(req);
    this.fire(watched, 'malformed');
    return true;
  }

  close(): void {
    this.watched.clear();
    this.stopSweep();
  }

  /** @internal One sweep (public for tests that drive the clock). */
  check(): void {
    const now = this.now();
    for (const [req, w] of this.watched) {
      const socket = req.socket;
      if (req.complete || req.destroyed || socket === null || socket.destroyed) {
        this.forget(req);
        continue;
      }
      const bytesRead = socket.bytesRead;
      if (bytesRead !== w.lastBytesRead || req.readableLength > 0 || socket.isPaused()) {
        w.lastBytesRead = bytesRead;
        w.lastActive = now;
        continue;
      }
      if (now - w.lastActive < this.timeoutMs) continue;
      this.forget(req);
      this.fire(w, 'idle');
    }
  }

  private fire(w: Watched, fault: BodyFault): void {
    try {
      w.onFault(fault);
    } catch (error) {
      this.options.onError?.(error);
    }
  }

  private forget(req: IncomingMessage): void {
    this.watched.delete(req);
    if (this.watched.size === 0) this.stopSweep();
  }

  private stopSweep(): void {
    if (this.sweep === undefined) return;
    clearInterval(this.sweep);
    this.sweep = undefined;
  }
}

function noop(): void {}
