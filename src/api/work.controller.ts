import { Controller, Delete, Get, Param, Post, Req, Res } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { ApiCallService } from './api-call.service';
import { RpcRoute } from './rpc-route.decorator';

/** A session's work besides its agents: tasks, mail, events and schedules. */
@Controller('api/sessions/:sessionId')
export class WorkController {
  constructor(private readonly api: ApiCallService) {}

  @Get('tasks/:taskId')
  @ApiTags('tasks')
  @RpcRoute('async.getTask', 'One work item (task, mail, event or schedule firing) with its state and result')
  getTask(
    @Param('sessionId') sessionId: string,
    @Param('taskId') taskId: string,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    return this.api.run(req, res, 'async.getTask', { sessionId, taskId });
  }

  @Post('tasks/:taskId/cancel')
  @ApiTags('tasks')
  @RpcRoute('async.cancelTask', 'Cancel a queued or running work item')
  cancelTask(
    @Param('sessionId') sessionId: string,
    @Param('taskId') taskId: string,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    return this.api.run(req, res, 'async.cancelTask', { sessionId, taskId });
  }

  @Get('mail')
  @ApiTags('mail')
  @RpcRoute('async.listMail', "The session's mail, newest first (to or from `agentId` when given)")
  listMail(@Param('sessionId') sessionId: string, @Req() req: Request, @Res() res: Response): Promise<void> {
    return this.api.run(req, res, 'async.listMail', { sessionId });
  }

  @Post('mail')
  @ApiTags('mail')
  @RpcRoute('async.sendMail', "Send mail from the user into an agent's mailbox")
  sendMail(@Param('sessionId') sessionId: string, @Req() req: Request, @Res() res: Response): Promise<void> {
    return this.api.run(req, res, 'async.sendMail', { sessionId });
  }

  @Post('events')
  @ApiTags('events')
  @RpcRoute('async.broadcastEvent', 'Broadcast an event to every running agent that listens to it')
  broadcast(@Param('sessionId') sessionId: string, @Req() req: Request, @Res() res: Response): Promise<void> {
    return this.api.run(req, res, 'async.broadcastEvent', { sessionId });
  }

  @Get('schedules')
  @ApiTags('schedules')
  @RpcRoute('async.listSchedules', "The session's cron schedules")
  listSchedules(
    @Param('sessionId') sessionId: string,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    return this.api.run(req, res, 'async.listSchedules', { sessionId });
  }

  @Delete('schedules/:scheduleId')
  @ApiTags('schedules')
  @RpcRoute('async.unschedule', 'Remove a schedule')
  unschedule(
    @Param('sessionId') sessionId: string,
    @Param('scheduleId') scheduleId: string,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    return this.api.run(req, res, 'async.unschedule', { sessionId, scheduleId });
  }
}
