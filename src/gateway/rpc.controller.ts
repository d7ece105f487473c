import { Controller, HttpCode, Post, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { AuthService } from './auth.service';
import { handleJsonRpc, unauthorized } from './json-rpc';
import { RpcDispatcher } from './rpc-dispatcher.service';

/** JSON-RPC 2.0 over HTTP: `POST /rpc` (no pushes; subscribing here has no effect). */
@Controller()
export class RpcController {
  constructor(
    private readonly dispatcher: RpcDispatcher,
    private readonly auth: AuthService,
  ) {}

  @Post('rpc')
  @HttpCode(200)
  async rpc(@Req() req: Request, @Res() res: Response): Promise<void> {
    const body: unknown = req.body;
    const text = typeof body === 'string' ? body : Buffer.isBuffer(body) ? body.toString('utf8') : '';
    const principal = this.auth.authenticate(AuthService.bearer(req.headers.authorization));
    if (principal === undefined) {
      res.status(401).json({ jsonrpc: '2.0', id: null, error: unauthorized() });
      return;
    }
    const reply = await handleJsonRpc(text, this.dispatcher, { principal, subscribe: () => undefined });
    if (reply === undefined) {
      res.status(204).end();
    } else {
      res.status(200).json(reply);
    }
  }
}
