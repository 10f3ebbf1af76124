/** Small servers on loopback for the client tests: a port, a clean stop, a hand-written HTTP/1.1 server. */
import http from 'node:http';
import net from 'node:net';

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
