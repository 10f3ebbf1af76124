/** Small servers on loopback for the client tests: a port, a clean stop, a hand-written HTTP/1.1 server. */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export function listen(server: net.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)));
}

export function closeServer(server: net.Server): Promise<void> {
  if ('closeAllConnections' in server) (server as http.Server).closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

/**
 * A server that answers by hand, to play a broken or unusual backend: told of
 * each request head (`count`: its number on that connection) with the socket
 * to write whatever it likes to. Request bodies are not read.
 */
export function rawServer(onRequest: (socket: net.Socket, count: number, head: string) => void): net.Server {
  return net.createServer((socket) => {
    let count = 0;
    let buffered = '';
    socket.on('data', (c) => {
      buffered += c.toString('latin1');
      let end;
      while ((end = buffered.indexOf('\r\n\r\n')) >= 0) {
        const head = buffered.slice(0, end);
        buffered = buffered.slice(end + 4);
        onRequest(socket, ++count, head);
      }
    });
    socket.on('error', () => undefined);
  });
}

/** An https server with a fresh self-signed certificate for 127.0.0.1, or undefined where openssl is missing. */
export function selfSignedHttpsServer(handler: http.RequestListener): https.Server | undefined {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'self-signed-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-keyout', `${dir}/key.pem`, '-out', `${dir}/cert.pem`], { stdio: 'ignore' });
    return https.createServer({ key: fs.readFileSync(`${dir}/key.pem`), cert: fs.readFileSync(`${dir}/cert.pem`) }, handler);
  } catch {
    return undefined;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
