import { Controller, HttpCode, Post, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { handleJsonRpc } from './json-rpc';
import { RpcDispatcher } from './rpc-dispatcher.service';

/** JSON-RPC 2.0 over HTTP: `POST /rpc` (no pushes; subscribing here has no effect). */
@Controller()
export class RpcController {
  constructor(private readonly dispatcher: RpcDispatcher) {}

  @Post('rpc')
  @HttpCode(200)
  async rpc(@Req() req: Request, @Res() res: Response): Promise<void> {
    const body: unknown = req.body;
    const text = typeof body === 'string' ? body : Buffer.isBuffer(body) ? body.toString('utf8') : '';
    const reply = await handleJsonRpc(text, this.dispatcher, { subscribe: () => undefined });
    if (reply === undefined) {
      res.status(204).end();
    } else {
      res.status(200).json(reply);
    }
  }
}
