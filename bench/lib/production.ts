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
  return nodeFlags(start.trim().split(/\s+/), 'package.json "start"');
}

/** The node flags of the Dockerfile's exec-form ENTRYPOINT (["node", flags..., "dist/cli.js"]). */
export function dockerNodeFlags(repo: string): string[] {
  const line = fs.readFileSync(path.join(repo, 'Dockerfile'), 'utf8').split('\n').find((l) => l.startsWith('ENTRYPOINT '));
  if (line === undefined) throw new Error('Dockerfile has no ENTRYPOINT');
  return nodeFlags(JSON.parse(line.slice('ENTRYPOINT '.length)) as string[], 'the Dockerfile ENTRYPOINT');
}

/** The words between `node` and `dist/cli.js` of a command line. */
function nodeFlags(words: string[], where: string): string[] {
  const cli = words.indexOf('dist/cli.js');
  if (words[0] !== 'node' || cli < 0) throw new Error(`${where} is not "node [flags] dist/cli.js ...": ${words.join(' ')}`);
  return words.slice(1, cli);
}
