import type { Server } from 'node:http';
import type { Duplex } from 'node:stream';

/**
 * Makes every upgraded connection (socket.io's websocket, `/ws`) send what is written to it while
 * the event loop handles one round of I/O as one write: the connection is corked at its first
 * write and uncorked in the loop's next check phase. A batch commit pushes a task's ack, its
 * `task.started`, state changes and `task.completed` to a client in one go; sent one by one, each
 * frame would cost a system call of its own (most of the gateway's time under load). The frames
 * and their order are unchanged; they leave at most one loop turn later.
 */
export function coalesceUpgradedWrites(server: Server): void {
  server.prependListener('upgrade', (_request, socket: Duplex) => coalesce(socket));
}

function coalesce(socket: Duplex): void {
  const write = socket.write.bind(socket) as (...args: unknown[]) => boolean;
  let corked = false;
  const flush = () => {
    corked = false;
    if (!socket.destroyed) {
      socket.uncork();
    }
  };
  socket.write = ((...args: unknown[]) => {
    if (!corked && !socket.destroyed) {
      corked = true;
      socket.cork();
      setImmediate(flush);
    }
    return write(...args);
  }) as Duplex['write'];
}
