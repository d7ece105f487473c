import { Controller, Get, Param, Post, Req, Res } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { ApiCallService } from './api-call.service';
import { RpcRoute } from './rpc-route.decorator';

@ApiTags('agents')
@Controller('api/sessions/:sessionId/agents')
export class AgentsController {
  constructor(private readonly api: ApiCallService) {}

  @Get()
  @RpcRoute('async.getAgentStates', 'Every agent of the session with its state, current work and queue')
  states(@Param('sessionId') sessionId: string, @Req() req: Request, @Res() res: Response): Promise<void> {
    return this.api.run(req, res, 'async.getAgentStates', { sessionId });
  }

  @Post()
  @RpcRoute('async.createAgent', 'Create an agent from a template')
  create(@Param('sessionId') sessionId: string, @Req() req: Request, @Res() res: Response): Promise<void> {
    return this.api.run(req, res, 'async.createAgent', { sessionId });
  }

  @Post(':agentId/start')
  @RpcRoute('async.startAgent', 'Start a stopped agent')
  start(
    @Param('sessionId') sessionId: string,
    @Param('agentId') agentId: string,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    return this.api.run(req, res, 'async.startAgent', { sessionId, agentId });
  }

  @Post(':agentId/stop')
  @RpcRoute('async.stopAgent', 'Stop an agent; its queued work stays queued')
  stop(
    @Param('sessionId') sessionId: string,
    @Param('agentId') agentId: string,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    return this.api.run(req, res, 'async.stopAgent', { sessionId, agentId });
  }

  @Post(':agentId/sleep')
  @RpcRoute('async.sleepAgent', 'Put an agent to sleep, for a time or until one of its wake events')
  sleep(
    @Param('sessionId') sessionId: string,
    @Param('agentId') agentId: string,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    return this.api.run(req, res, 'async.sleepAgent', { sessionId, agentId });
  }

  @Post(':agentId/wake')
  @RpcRoute('async.wakeAgent', 'Wake a sleeping agent')
  wake(
    @Param('sessionId') sessionId: string,
    @Param('agentId') agentId: string,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    return this.api.run(req, res, 'async.wakeAgent', { sessionId, agentId });
  }

  @Post(':agentId/tasks')
  @RpcRoute('async.sendTask', "Queue a task in an agent's mailbox")
  sendTask(
    @Param('sessionId') sessionId: string,
    @Param('agentId') agentId: string,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    return this.api.run(req, res, 'async.sendTask', { sessionId, agentId });
  }

  @Post(':agentId/schedules')
  @RpcRoute('async.scheduleAgent', 'Schedule an agent with a cron expression')
  schedule(
    @Param('sessionId') sessionId: string,
    @Param('agentId') agentId: string,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    return this.api.run(req, res, 'async.scheduleAgent', { sessionId, agentId });
  }
}
