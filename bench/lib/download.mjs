// Downloads one URL, throws the bytes away, and prints one JSON line:
// {"bytes":N,"seconds":S,"mibPerS":R,"status":200,"complete":true}.
//   node bench/lib/download.mjs http://127.0.0.1:9000/api/v2/builders/x/builds/1/steps/1/logs/stdio/raw?size=1073741824
import http from 'node:http';

const url = new URL(process.argv[2]);
const t0 = process.hrtime.bigint();
http.get({ host: url.hostname, port: url.port, path: url.pathname + url.search, headers: { accept: 'text/plain' } }, (res) => {
  const declared = Number(res.headers['content-length']);
  let bytes = 0;
  res.on('data', (c) => { bytes += c.length; });
  res.on('end', () => {
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    process.stdout.write(JSON.stringify({ status: res.statusCode, bytes, seconds, mibPerS: bytes / 2 ** 20 / seconds, complete: bytes === declared }) + '\n');
  });
  res.on('error', (e) => { process.stdout.write(JSON.stringify({ error: String(e) }) + '\n'); process.exitCode = 1; });
}).on('error', (e) => { process.stdout.write(JSON.stringify({ error: String(e) }) + '\n'); process.exitCode = 1; });
