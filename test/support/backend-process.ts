/**
 * A stand-in backend in its own process, so tests can kill it with SIGKILL
 * and start it again on the same port. It writes every force it receives to
 * a file before answering (appendFileSync), so the count survives the kill:
 * "did this force reach a backend" is answered by the file, not by memory.
 *
 *   node --import tsx test/support/backend-process.ts PORT NAME FORCE_LOG
 */
import { appendFileSync } from 'node:fs';
import { createServer } from 'node:http';

const [portArg, name = 'backend', forceLog] = process.argv.slice(2);
const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('error', () => undefined);
  req.on('end', () => {
    if (req.method === 'POST' && req.url?.startsWith('/api/v2/forceschedulers/')) {
      let reason = 'unknown';
      try {
        reason = String(JSON.parse(Buffer.concat(chunks).toString()).params?.reason ?? 'none');
      } catch {
        // counted as "unknown"
      }
      if (forceLog) appendFileSync(forceLog, `${reason}\n`);
      res.writeHead(200, { 'content-type': 'application/json', 'x-served-by': name });
      return void res.end(JSON.stringify({ id: 1, jsonrpc: '2.0', result: [1, { '1': 1 }] }));
    }
    res.writeHead(200, { 'content-type': 'application/json', 'x-served-by': name });
    res.end(JSON.stringify({ servedBy: name, url: req.url }));
  });
});
server.keepAliveTimeout = 5_000;
server.listen(Number(portArg), '127.0.0.1', () => process.send?.('ready'));
