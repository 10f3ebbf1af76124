/** Where an executable lives on PATH, without spawning a shell (for "is X installed?" checks). */
import { accessSync, constants as fsConstants } from 'node:fs';
import path from 'node:path';

export function onPath(command: string): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, command);
    try {
      accessSync(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // not in this dir
    }
  }
  return undefined;
}
