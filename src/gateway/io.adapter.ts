import { INestApplicationContext } from '@nestjs/common';
import { IoAdapter } from '@nestjs/platform-socket.io';
import type { ServerOptions } from 'socket.io';

/**
 * The largest message any transport reads: well above the params limit, so that a request over
 * that limit is still read and answered with `limit_exceeded` instead of the connection being dropped.
 */
export function messageLimitBytes(maxParamsBytes: number): number {
  return Math.max(8 * 2 ** 20, maxParamsBytes * 8);
}

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
      maxHttpBufferSize: messageLimitBytes(this.maxParamsBytes),
    });
  }
}
