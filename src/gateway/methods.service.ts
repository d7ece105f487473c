import { Injectable } from '@nestjs/common';
import { z } from 'zod';
import { AgentsService } from 'src/agents/agents.service';
import { MailService } from 'src/agents/mail.service';
import { TasksService } from 'src/agents/tasks.service';
import { EventsService } from 'src/events/events.service';
import { ScheduleService } from 'src/events/schedule.service';
import { LlmService } from 'src/llm/llm.service';
import { HistoryService } from 'src/sessions/history.service';
import { SessionsService } from 'src/sessions/sessions.service';
import { protocolMethod, RpcMethod } from './rpc-method';

/** A params schema for a method outside the protocol package's table (a strict object). */
export const obj = <T extends z.ZodRawShape>(shape: T) => z.object(shape).strict();

/**
 * Every client method: the one service call it makes. The params schemas and result types are
 * the protocol's, from the client package (`@mailroom/client/protocol`), so a typed client is
 * checked against the very schemas the server validates with.
 */
@Injectable()
export class MethodsService {
  readonly methods: RpcMethod[];

  constructor(
    sessions: SessionsService,
    history: HistoryService,
    agents: AgentsService,
    tasks: TasksService,
    mail: MailService,
    events: EventsService,
    schedules: ScheduleService,
    llm: LlmService,
  ) {
    this.methods = [
      protocolMethod(
        'session.start',
        async (p, ctx) => {
          const s = await sessions.start(p, ctx.principal);
          ctx.subscribe(s.sessionId);
          return { sessionId: s.sessionId, createdAt: s.createdAt };
        },
        { guardsOwnSession: true },
      ),
      protocolMethod('session.subscribe', async (p, ctx) => {
        await sessions.get(p.sessionId);
        ctx.subscribe(p.sessionId);
        return { sessionId: p.sessionId };
      }),
      protocolMethod('session.list', async (_p, ctx) => ({ sessions: await sessions.list(ctx.principal) })),
      protocolMethod('session.stop', (p) => agents.stopSession(p.sessionId)),
      // The seed project's own pair (AIWhisperer's clients open and close sessions this way).
      protocolMethod('startSession', async (p, ctx) => {
        const metadata = Object.fromEntries(Object.entries(p).filter(([, v]) => v !== undefined));
        const s = await sessions.start({ metadata }, ctx.principal);
        ctx.subscribe(s.sessionId);
        return { sessionId: s.sessionId, status: 'active' as const };
      }),
      protocolMethod(
        'stopSession',
        async (p, ctx) => {
          // Idempotent: an unknown session (or one the caller may not see) is as good as stopped.
          if (await sessions.isVisible(p.sessionId, ctx.principal)) {
            await agents.stopSession(p.sessionId);
          }
          return { sessionId: p.sessionId, status: 'stopped' as const };
        },
        { guardsOwnSession: true },
      ),

      protocolMethod('async.createAgent', (p) => agents.create(p)),
      protocolMethod('async.startAgent', (p) => agents.start(p.sessionId, p.agentId)),
      protocolMethod('async.stopAgent', (p) => agents.stop(p.sessionId, p.agentId)),
      protocolMethod('async.sleepAgent', (p) => events.sleepAgent(p.sessionId, p.agentId, p)),
      protocolMethod('async.wakeAgent', (p) => events.wakeAgent(p.sessionId, p.agentId, p.reason)),
      protocolMethod('async.sendTask', (p) => tasks.send(p)),
      protocolMethod('async.getAgentStates', (p) => agents.states(p.sessionId)),
      protocolMethod('async.broadcastEvent', (p) => events.broadcastEvent(p.sessionId, p.event, p.data)),

      protocolMethod('async.getTask', (p) => tasks.get(p.sessionId, p.taskId)),
      protocolMethod('async.cancelTask', (p) => tasks.cancel(p.sessionId, p.taskId)),
      protocolMethod('async.sendMail', (p) => mail.send(p)),
      protocolMethod('async.listMail', (p) => mail.list(p)),
      protocolMethod('async.getHistory', async (p) => {
        const records = await history.page(p.sessionId, p.after, p.limit);
        return {
          events: records.map((r) => ({ seq: r.seq, at: r.at, type: r.type, payload: r.payload })),
          nextAfter: records.length ? records[records.length - 1].seq : p.after,
        };
      }),
      protocolMethod('async.scheduleAgent', (p) => schedules.schedule(p)),
      protocolMethod('async.unschedule', (p) => schedules.unschedule(p.sessionId, p.scheduleId)),
      protocolMethod('async.listSchedules', (p) => schedules.list(p.sessionId)),
      protocolMethod('templates.list', () =>
        Promise.resolve({
          templates: agents.listTemplates().map((t) => ({
            name: t.name,
            description: t.description,
            tools: t.tools,
            model: t.model ?? llm.defaultModel,
          })),
        }),
      ),
    ];
  }
}
