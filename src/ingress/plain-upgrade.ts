/**
 * Requests that offer an Upgrade other than WebSocket (`Upgrade: h2c` from
 * curl --http2 or Java's HttpClient, say) are plain HTTP requests: a server
 * may ignore the offer (RFC 9110 §7.8), and the proxy does, forwarding them
 * like any other. Node from 24.9 lets the listener say which upgrades it
 * takes (`shouldUpgradeCallback`); older runtimes hand every request with an
 * Upgrade header to the 'upgrade' event with the raw socket, its body
 * unparsed. There {@link serveAsPlainRequest} rebuilds the request and its
 * response on that socket, and closes the connection after the answer.
 */
import { IncomingMessage, ServerResponse, type RequestListener } from 'node:http';
import type { Socket } from 'node:net';

/** Only a WebSocket handshake is an upgrade the proxy carries on (the web UI's `/ws`). */
export function isWebSocketUpgrade(req: Pick<IncomingMessage, 'headers'>): boolean {
  const offered = req.headers.upgrade;
  if (typeof offered !== 'string') return false;
  for (const token of offered.split(',')) if (token.trim().toLowerCase() === 'websocket') return true;
  return false;
}

/**
 * Serves an upgrade request the listener was handed as the plain request it
 * also is, through `handler`, on its own socket: the body (Content-Length
 * only) is `head` and the bytes that follow on the socket, the answer carries
 * `Connection: close`, and the connection ends after it. A chunked body would
 * need the HTTP parser node already detached: it is answered 400.
 */
export function serveAsPlainRequest(upgrade: IncomingMessage, socket: Socket, head: Buffer, handler: RequestListener): void {
  if (upgrade.headers['transfer-encoding'] !== undefined) {
    const body = JSON.stringify({ error: 'a request offering a protocol upgrade cannot have a chunked body here; send it with Content-Length, or without Upgrade', code: 'BAD_REQUEST', backend: null, jobType: null });
    socket.end(`HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nCache-Control: no-store\r\n\r\n${body}`);
    return;
  }
  const req = new IncomingMessage(socket);
  req.method = upgrade.method;
  req.url = upgrade.url;
  req.httpVersionMajor = upgrade.httpVersionMajor;
  req.httpVersionMinor = upgrade.httpVersionMinor;
  req.httpVersion = upgrade.httpVersion;
  req.rawHeaders = upgrade.rawHeaders;
  req.headers = upgrade.headers;
  feedBody(req, socket, head, Number(upgrade.headers['content-length'] ?? 0));

  const res = new ServerResponse(req);
  res.shouldKeepAlive = false; // Connection: close; nothing after this request is read
  res.assignSocket(socket);
  // As node's own server does for a last response: end the connection, then let it go once the answer is flushed.
  // The socket's close is what closes `res` (the handler logs and counts the request then).
  res.once('finish', () => {
    socket.end();
    if (socket.writableFinished) socket.destroy();
    else socket.once('finish', () => socket.destroy());
  });
  socket.once('close', () => {
    if (!req.complete) req.destroy(Object.assign(new Error('aborted'), { code: 'ECONNRESET' }));
  });
  handler(req, res);
}

/** Pushes exactly `length` body bytes into `req`, with backpressure on the socket; bytes beyond them are not read. */
function feedBody(req: IncomingMessage, socket: Socket, head: Buffer, length: number): void {
  let remaining = Number.isSafeInteger(length) && length > 0 ? length : 0;
  const finish = () => {
    socket.off('data', onData);
    socket.pause();
    req.complete = true;
    req.push(null);
  };
  const take = (chunk: Buffer): void => {
    if (remaining === 0) return;
    const part = chunk.length <= remaining ? chunk : chunk.subarray(0, remaining);
    remaining -= part.length;
    const more = req.push(part);
    if (remaining === 0) return finish();
    if (!more) socket.pause();
  };
  const onData = (chunk: Buffer) => take(chunk);
  req._read = () => {
    if (remaining > 0) socket.resume();
  };
  if (remaining === 0) return finish();
  if (head.length > 0) take(head);
  if (remaining > 0) socket.on('data', onData);
}
