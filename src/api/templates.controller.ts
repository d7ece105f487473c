import { Controller, Get, Req, Res } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { ApiCallService } from './api-call.service';
import { RpcRoute } from './rpc-route.decorator';

@ApiTags('templates')
@Controller('api/templates')
export class TemplatesController {
  constructor(private readonly api: ApiCallService) {}

  @Get()
  @RpcRoute('templates.list', 'The agent templates this server loaded')
  list(@Req() req: Request, @Res() res: Response): Promise<void> {
    return this.api.run(req, res, 'templates.list');
  }
}
