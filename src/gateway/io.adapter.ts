import { INestApplicationContext } from '@nestjs/common';
import { IoAdapter } from '@nestjs/platform-socket.io';
import type { ServerOptions } from 'socket.io';

/**
 * socket.io with a message size above the params limit, so an oversized request is answered with
 * `limit_exceeded` by the dispatcher instead of the connection being dropped.
 */
export class MailroomIoAdapter extends IoAdapter {
  constructor(
    app: INestApplicationContext,
    private readonly maxParamsBytes: number,
  ) {
    super(app);
  }

  override createIOServer(port: number, options?: ServerOptions): unknown {
    return super.createIOServer(port, {
      ...options,
      maxHttpBufferSize: Math.max(8 * 2 ** 20, this.maxParamsBytes * 8),
    });
  }
}
