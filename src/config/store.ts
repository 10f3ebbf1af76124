/**
 * Holds the routing table in force and replaces it when routes.yaml changes.
 *
 * A reload parses, validates and compiles the whole file first and then swaps
 * one reference, so a request sees either the old table or the new one, never
 * a mix. A file that fails is reported and the old table stays. A large file
 * is parsed in a worker thread and compiled in slices, so that a reload never
 * holds requests up for long (src/config/off-thread.ts).
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { StranglerError } from '../errors.js';
import type { RoutingTable } from '../routing/table.js';
import { MAX_CONFIG_BYTES, parseConfig } from './load.js';
import { OFF_THREAD_MIN_BYTES, parseConfigOffThread } from './off-thread.js';
import { ConfigFileReader } from './read.js';

export type ReloadTrigger = 'startup' | 'file-change' | 'signal' | 'admin';

export interface ReloadEvent {
  result: 'success' | 'failure';
  trigger: ReloadTrigger;
  at: Date;
  /** sha256 of the bytes that were tried (absent when the file could not be read). */
  hash?: string;
  /** The table in force after the attempt. */
  table: RoutingTable;
  /** The table before a successful swap. */
  previous?: RoutingTable;
  error?: StranglerError;
}

export interface ConfigStoreOptions {
  /** How often the file is re-read in case a change event was missed (symlink swaps, network filesystems). */
  pollIntervalMs?: number;
  /** Quiet time after a change event before reading, so half-written files are not read. */
  debounceMs?: number;
  /** Deadline of one read of the file; past it the reload fails and the old table stays. */
  readTimeoutMs?: number;
  /** Stands in for the read (tests: a read that never finishes). */
  read?: (file: string, maxBytes: number) => Promise<Buffer>;
}

export class ConfigStore extends EventEmitter<{ reload: [ReloadEvent] }> {
  readonly file: string;
  private table: RoutingTable;
  /** Hash of the last bytes tried, good or bad: a broken file is reported once, not on every poll. */
  private lastTriedHash: string;
  private watcher: FSWatcher | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private debounceTimer: NodeJS.Timeout | undefined;
  private running: Promise<ReloadEvent> | undefined;
  private closed = false;
  /** Stops a parse under way when the store closes. */
  private readonly closing = new AbortController();
  private readonly reader: ConfigFileReader;
  private readonly options: Required<Pick<ConfigStoreOptions, 'pollIntervalMs' | 'debounceMs'>>;

  constructor(file: string, initial: RoutingTable, options: ConfigStoreOptions = {}) {
    super();
    this.file = file;
    this.table = initial;
    this.lastTriedHash = initial.source.hash;
    this.options = { pollIntervalMs: options.pollIntervalMs ?? 1000, debounceMs: options.debounceMs ?? 100 };
    this.reader = new ConfigFileReader(file, {
      maxBytes: MAX_CONFIG_BYTES,
      ...(options.readTimeoutMs === undefined ? {} : { timeoutMs: options.readTimeoutMs }),
      ...(options.read ? { read: options.read } : {}),
    });
  }

  /** The table in force now. Read it once per request. */
  current(): RoutingTable {
    return this.table;
  }

  /**
   * Reads the file and swaps the table if it is valid. Reloads never overlap:
   * a call during a reload waits for it and then runs its own.
   */
  async reload(trigger: ReloadTrigger, onlyIfChanged = false): Promise<ReloadEvent> {
    while (this.running) await this.running.catch(() => undefined);
    this.running = this.reloadNow(trigger, onlyIfChanged);
    try {
      return await this.running;
    } finally {
      this.running = undefined;
    }
  }

  private async reloadNow(trigger: ReloadTrigger, onlyIfChanged: boolean): Promise<ReloadEvent> {
    const at = new Date();
    let bytes: Buffer;
    try {
      bytes = await this.reader.read();
    } catch (error) {
      return this.report({ result: 'failure', trigger, at, table: this.table, error: error as StranglerError }, onlyIfChanged);
    }
    let hash = createHash('sha256').update(bytes).digest('hex');
    if (onlyIfChanged && hash === this.lastTriedHash) return { result: 'success', trigger, at, hash, table: this.table };
    let attempt = await this.tryParse(bytes, hash, at);
    if (onlyIfChanged && !attempt.ok) {
      // A change seen mid-save (an editor truncates, then writes) reads as a broken file: look again
      // once the writer is likely done, and judge what is there then.
      await new Promise((r) => setTimeout(r, this.options.debounceMs));
      const again = await this.reader.read().catch(() => bytes);
      if (!again.equals(bytes)) {
        bytes = again;
        hash = createHash('sha256').update(bytes).digest('hex');
        attempt = await this.tryParse(bytes, hash, at);
      }
    }
    this.lastTriedHash = hash;
    if (!attempt.ok) return this.report({ result: 'failure', trigger, at, hash, table: this.table, error: attempt.error });
    if (this.closed) return { result: 'failure', trigger, at, hash, table: this.table, error: this.closedError() };
    const previous = this.table;
    this.table = attempt.table;
    return this.report({ result: 'success', trigger, at, hash, table: attempt.table, previous });
  }

  /** A large file is parsed off the event loop (src/config/off-thread.ts); a small one costs less than a worker's start. */
  private async tryParse(bytes: Buffer, hash: string, at: Date): Promise<{ ok: true; table: RoutingTable } | { ok: false; error: StranglerError }> {
    try {
      const table = bytes.length >= OFF_THREAD_MIN_BYTES ? await parseConfigOffThread(bytes, this.file, at, { hash, signal: this.closing.signal }) : parseConfig(bytes, this.file, at);
      return { ok: true, table };
    } catch (error) {
      return { ok: false, error: error as StranglerError };
    }
  }

  private closedError(): StranglerError {
    return new StranglerError('CONFIG_UNREADABLE', `${this.file}: not applied: the store is closed`);
  }

  private report(event: ReloadEvent, quietIfRepeated = false): ReloadEvent {
    if (this.closed) return event; // shutting down: a late result changes nothing and tells no one
    // An unreadable file found by polling is reported once, then again only when it changes.
    if (quietIfRepeated && event.hash === undefined) {
      if (this.lastTriedHash === 'unreadable') return event;
      this.lastTriedHash = 'unreadable';
    }
    this.emit('reload', event);
    return event;
  }

  /**
   * Follows the file: a change event on its folder (covers editors that save by
   * rename and Kubernetes swapping a ConfigMap's `..data` symlink), plus a
   * periodic re-read that catches whatever the events miss. Both only reload
   * when the bytes differ from the last ones tried.
   */
  watch(): void {
    if (this.pollTimer) return;
    const check = () => void this.reload('file-change', true);
    try {
      this.watcher = watch(path.dirname(path.resolve(this.file)), { persistent: false }, () => {
        clearTimeout(this.debounceTimer);
        this.debounceTimer = setTimeout(check, this.options.debounceMs);
        this.debounceTimer.unref();
      });
      this.watcher.on('error', () => this.watcher?.close());
    } catch {
      // Folder not watchable (some network filesystems): polling alone still applies changes.
    }
    this.pollTimer = setInterval(check, this.options.pollIntervalMs);
    this.pollTimer.unref();
  }

  /**
   * Stops following the file. Never waits: a read or parse still under way is
   * abandoned, and its result is neither applied nor reported.
   */
  close(): void {
    this.closed = true;
    this.closing.abort(this.closedError());
    this.watcher?.close();
    clearInterval(this.pollTimer);
    clearTimeout(this.debounceTimer);
    this.watcher = undefined;
    this.pollTimer = undefined;
  }
}
