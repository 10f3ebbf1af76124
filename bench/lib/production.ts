/**
 * How production starts the proxy: the node flags of package.json's `start`
 * script (`node <flags> dist/cli.js serve`), which the Docker image's
 * ENTRYPOINT repeats. The bench starts every strangler-proxy with them, so it
 * measures what `npm start` runs.
 */
import fs from 'node:fs';
import path from 'node:path';

export function productionNodeFlags(repo: string): string[] {
  const start = (JSON.parse(fs.readFileSync(path.join(repo, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts.start ?? '';
  const words = start.trim().split(/\s+/);
  const cli = words.indexOf('dist/cli.js');
  if (words[0] !== 'node' || cli < 0) throw new Error(`package.json "start" is not "node [flags] dist/cli.js ...": ${start}`);
  return words.slice(1, cli);
}

/** The node flags of the Dockerfile's exec-form ENTRYPOINT (["node", flags..., "dist/cli.js"]). */
export function dockerNodeFlags(repo: string): string[] {
  const line = fs.readFileSync(path.join(repo, 'Dockerfile'), 'utf8').split('\n').find((l) => l.startsWith('ENTRYPOINT '));
  if (line === undefined) throw new Error('Dockerfile has no ENTRYPOINT');
  const words = JSON.parse(line.slice('ENTRYPOINT '.length)) as string[];
  const cli = words.indexOf('dist/cli.js');
  if (words[0] !== 'node' || cli < 0) throw new Error(`Dockerfile ENTRYPOINT is not ["node", flags..., "dist/cli.js"]: ${line}`);
  return words.slice(1, cli);
}
