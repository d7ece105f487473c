import { createServer, Server } from 'node:http';
import { AddressInfo, connect, Socket } from 'node:net';
import { coalesceUpgradedWrites } from './coalesced-writes';

describe(coalesceUpgradedWrites.name, () => {
  let server: Server;
  let port: number;
  /** What the server does with each upgraded connection. */
  let onUpgrade: (socket: Socket) => void;

  beforeAll(async () => {
    server = createServer();
    coalesceUpgradedWrites(server);
    server.on('upgrade', (_request, socket: Socket) => onUpgrade(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(() => new Promise((resolve) => server.close(resolve)));

  /** Opens an upgraded connection and collects what the server sends until it ends the connection. */
  function upgrade(): Promise<string> {
    return new Promise((resolve, reject) => {
      const client = connect(port, '127.0.0.1', () =>
        client.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n'),
      );
      let received = '';
      client.on('data', (chunk: Buffer) => (received += chunk.toString()));
      client.on('end', () => resolve(received));
      client.on('error', reject);
    });
  }

  it('sends the writes of one loop turn as one write to the socket, in order', async () => {
    const writes: number[] = [];
    onUpgrade = (socket) => {
      // Each system-level write: one chunk (_write) or several at once (_writev).
      const single = socket._write.bind(socket);
      const several = socket._writev!.bind(socket);
      socket._write = (chunk, encoding, cb) => (writes.push(1), single(chunk, encoding, cb));
      socket._writev = (chunks, cb) => (writes.push(chunks.length), several(chunks, cb));
      socket.write('one ');
      socket.write('two ');
      socket.write('three ');
      setTimeout(() => {
        socket.write('later');
        socket.end();
      }, 5);
    };
    await expect(upgrade()).resolves.toBe('one two three later');
    expect(writes).toEqual([3, 1]);
  });

  it('leaves a connection destroyed before the loop turn ends alone', async () => {
    const errors: unknown[] = [];
    onUpgrade = (socket) => {
      socket.on('error', (err) => errors.push(err));
      socket.write('gone');
      socket.destroy();
    };
    await expect(upgrade()).resolves.toBe('');
    await new Promise((resolve) => setImmediate(resolve));
    expect(errors).toEqual([]);
  });
});
