import { All, Controller, Req, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { RpcError } from 'src/common/rpc-error';
import { HTTP_STATUS } from './http-status';

/**
 * Any other path under `/api`: the protocol's error body instead of Nest's own 404, pointing at the
 * document. Registered last in ApiModule, so every real route matches first.
 */
@ApiExcludeController()
@Controller('api')
export class ApiNotFoundController {
  @All('*path')
  notFound(@Req() req: Request, @Res() res: Response): void {
    const error = new RpcError(
      'method_not_found',
      `No route ${req.method} ${req.path}; the routes are listed at /docs (/docs-json)`,
    ).toBody();
    res.status(HTTP_STATUS.method_not_found).json({ error });
  }
}
