/**
 * Artifacts of runs, held in memory, and the storage side that serves their
 * bytes: the queue answers an artifact request with a 303 to a storage URL,
 * as the real queue does to S3 or the object service.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export interface Artifact {
  name: string;
  /**
   * `s3` for bytes held here (what a real queue reports for uploaded files),
   * `reference` for a redirect (to `url`, or to another artifact's bytes),
   * `error` for an artifact a worker declares it could not make (answered 424).
   */
  storageType: 's3' | 'reference' | 'error';
  contentType: string;
  expires: string;
  /** The bytes, for `s3`; a live log grows while its run is running. */
  chunks: Buffer[];
  /** For `reference`: another artifact of the same run whose bytes it serves. */
  referenceTo?: string;
  /** For `reference` made by createArtifact: where the 303 sends the client. */
  url?: string;
  /** For `error`: what the 424 says. */
  error?: { reason: string; message: string };
}

export interface ArtifactListEntry {
  storageType: string;
  name: string;
  expires: string;
  contentType: string;
}

const key = (taskId: string, runId: number): string => `${taskId}/${runId}`;

export class ArtifactStore {
  private readonly byRun = new Map<string, Map<string, Artifact>>();
  // SECURITY: storage URLs of non-public artifacts carry an HMAC under a per-process key, standing in
  // for a signed S3 URL; without it the bytes are refused.
  private readonly signingKey = randomBytes(32);

  put(taskId: string, runId: number, artifact: Artifact): void {
    let run = this.byRun.get(key(taskId, runId));
    if (!run) this.byRun.set(key(taskId, runId), (run = new Map()));
    run.set(artifact.name, artifact);
  }

  append(taskId: string, runId: number, name: string, text: string): void {
    this.byRun.get(key(taskId, runId))?.get(name)?.chunks.push(Buffer.from(text, 'utf8'));
  }

  get(taskId: string, runId: number, name: string): Artifact | undefined {
    return this.byRun.get(key(taskId, runId))?.get(name);
  }

  /** The artifacts of a run in name order (the queue pages in that order). */
  list(taskId: string, runId: number): ArtifactListEntry[] {
    const run = this.byRun.get(key(taskId, runId));
    if (!run) return [];
    return [...run.values()]
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map(({ storageType, name, expires, contentType }) => ({ storageType, name, expires, contentType }));
  }

  /** The bytes to serve for an artifact, following a reference within the run. */
  bytes(taskId: string, runId: number, name: string): { contentType: string; body: Buffer } | undefined {
    let artifact = this.get(taskId, runId, name);
    if (artifact?.referenceTo) artifact = this.get(taskId, runId, artifact.referenceTo);
    if (!artifact) return undefined;
    return { contentType: artifact.contentType, body: Buffer.concat(artifact.chunks) };
  }

  /** The path (under the server's root) of the bytes; signed unless the name is public/. */
  storagePath(taskId: string, runId: number, name: string): string {
    const path = `/__storage__/${taskId}/${runId}/${name.split('/').map(encodeURIComponent).join('/')}`;
    return name.startsWith('public/') ? path : `${path}?sig=${this.sign(taskId, runId, name)}`;
  }

  /** Whether a storage request may read the bytes. */
  mayRead(taskId: string, runId: number, name: string, sig: string | undefined): boolean {
    if (name.startsWith('public/')) return true;
    if (!sig) return false;
    const want = Buffer.from(this.sign(taskId, runId, name));
    const got = Buffer.from(sig);
    return want.length === got.length && timingSafeEqual(want, got);
  }

  private sign(taskId: string, runId: number, name: string): string {
    return createHmac('sha256', this.signingKey).update(`${taskId}\n${runId}\n${name}`).digest('base64url');
  }
}
