import { Controller, Get, Param, Post, Req, Res } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { ApiCallService } from './api-call.service';
import { RpcRoute } from './rpc-route.decorator';

@ApiTags('sessions')
@Controller('api/sessions')
export class SessionsController {
  constructor(private readonly api: ApiCallService) {}

  @Get()
  @RpcRoute('session.list', 'List the sessions the caller may see')
  list(@Req() req: Request, @Res() res: Response): Promise<void> {
    return this.api.run(req, res, 'session.list');
  }

  @Post()
  @RpcRoute('session.start', 'Start a session (a random id when none is given); an existing one is returned')
  start(@Req() req: Request, @Res() res: Response): Promise<void> {
    return this.api.run(req, res, 'session.start');
  }

  @Post(':sessionId/stop')
  @RpcRoute('session.stop', 'Stop every agent of the session; its history stays readable')
  stop(@Param('sessionId') sessionId: string, @Req() req: Request, @Res() res: Response): Promise<void> {
    return this.api.run(req, res, 'session.stop', { sessionId });
  }

  @Get(':sessionId/history')
  @RpcRoute('async.getHistory', "The session's ordered history, a page after `after`")
  history(@Param('sessionId') sessionId: string, @Req() req: Request, @Res() res: Response): Promise<void> {
    return this.api.run(req, res, 'async.getHistory', { sessionId });
  }
}
