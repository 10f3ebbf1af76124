/**
 * The last config versions tried: when, which file hash, whether it took,
 * and which job types moved between backends (with their share of the last
 * hour's traffic), for the admin API and the status page.
 */
import type { JobTypeChange } from '../routing/plan.js';
import type { ReloadTrigger } from './store.js';

export interface ConfigVersion {
  at: string;
  trigger: ReloadTrigger;
  result: 'success' | 'failure';
  hash: string | null;
  /** For failures: the whole message, with file, line and reason. */
  error: string | null;
  /** For successes: the job types whose backend shares changed. */
  moved: JobTypeChange[];
  /** Share (0 to 1) of the last hour's requests whose backend this version changed. */
  movedShareOfLastHour: number;
}

export class ConfigHistory {
  private readonly versions: ConfigVersion[] = [];

  constructor(private readonly limit = 20) {}

  add(version: ConfigVersion): void {
    this.versions.unshift(version);
    if (this.versions.length > this.limit) this.versions.length = this.limit;
  }

  /** Newest first. */
  list(): readonly ConfigVersion[] {
    return this.versions;
  }
}
