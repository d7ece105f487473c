import { Injectable } from '@nestjs/common';
import { z } from 'zod';
import { eventNameSchema, idSchema, prioritySchema } from 'src/common/names';
import { agentConfigOverridesSchema } from 'src/agents/agent.types';
import { AgentsService } from 'src/agents/agents.service';
import { MailService } from 'src/agents/mail.service';
import { TasksService } from 'src/agents/tasks.service';
import { EventsService } from 'src/events/events.service';
import { ScheduleService } from 'src/events/schedule.service';
import { LlmService } from 'src/llm/llm.service';
import { HistoryService } from 'src/sessions/history.service';
import { SessionsService } from 'src/sessions/sessions.service';
import { method, RpcMethod } from './rpc-method';

const session = { sessionId: idSchema };
const agent = { sessionId: idSchema, agentId: idSchema };
const obj = <T extends z.ZodRawShape>(shape: T) => z.object(shape).strict();
const ONE_YEAR_SECONDS = 31_536_000;
/** history.seq is a Postgres `integer`; a larger cursor would fail in the database instead of here. */
const MAX_SEQ = 2_147_483_647;

/** Every client method of docs/protocol.md: its params schema and the one service call it makes. */
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
      method(
        'session.start',
        obj({
          sessionId: idSchema.optional(),
          metadata: z.record(z.string(), z.unknown()).optional(),
          limits: obj({ maxTokens: z.number().int().positive().optional() }).optional(),
        }),
        async (p, ctx) => {
          const s = await sessions.start(p, ctx.principal);
          ctx.subscribe(s.sessionId);
          return { sessionId: s.sessionId, createdAt: s.createdAt };
        },
        { guardsOwnSession: true },
      ),
      method('session.subscribe', obj(session), async (p, ctx) => {
        await sessions.get(p.sessionId);
        ctx.subscribe(p.sessionId);
        return { sessionId: p.sessionId };
      }),
      method('session.list', obj({}), async (_p, ctx) => ({ sessions: await sessions.list(ctx.principal) })),
      method('session.stop', obj(session), (p) => agents.stopSession(p.sessionId)),
      // The seed project's own pair (AIWhisperer's clients open and close sessions this way).
      method(
        'startSession',
        obj({
          userId: z.string().min(1).max(200).optional(),
          sessionParams: z.record(z.string(), z.unknown()).optional(),
        }),
        async (p, ctx) => {
          const metadata = Object.fromEntries(Object.entries(p).filter(([, v]) => v !== undefined));
          const s = await sessions.start({ metadata }, ctx.principal);
          ctx.subscribe(s.sessionId);
          return { sessionId: s.sessionId, status: 'active' as const };
        },
      ),
      method(
        'stopSession',
        obj(session),
        async (p, ctx) => {
          // Idempotent: an unknown session (or one the caller may not see) is as good as stopped.
          if (await sessions.isVisible(p.sessionId, ctx.principal)) {
            await agents.stopSession(p.sessionId);
          }
          return { sessionId: p.sessionId, status: 'stopped' as const };
        },
        { guardsOwnSession: true },
      ),

      method(
        'async.createAgent',
        obj({
          ...agent,
          template: idSchema.optional(),
          autoStart: z.boolean().default(true),
          config: agentConfigOverridesSchema.optional(),
        }),
        (p) => agents.create(p),
      ),
      method('async.startAgent', obj(agent), (p) => agents.start(p.sessionId, p.agentId)),
      method('async.stopAgent', obj(agent), (p) => agents.stop(p.sessionId, p.agentId)),
      method(
        'async.sleepAgent',
        obj({
          ...agent,
          durationSeconds: z.number().positive().max(ONE_YEAR_SECONDS).optional(),
          wakeEvents: z.array(eventNameSchema).max(100).optional(),
        }),
        (p) => events.sleepAgent(p.sessionId, p.agentId, p),
      ),
      method('async.wakeAgent', obj({ ...agent, reason: z.string().max(1000).optional() }), (p) =>
        events.wakeAgent(p.sessionId, p.agentId, p.reason),
      ),
      method(
        'async.sendTask',
        obj({
          ...agent,
          prompt: z.string().min(1),
          priority: prioritySchema.default('normal'),
          idempotencyKey: z.string().min(1).max(200).optional(),
        }),
        (p) => tasks.send(p),
      ),
      method('async.getAgentStates', obj(session), (p) => agents.states(p.sessionId)),
      method(
        'async.broadcastEvent',
        obj({ ...session, event: eventNameSchema, data: z.unknown().default({}) }),
        (p) => events.broadcastEvent(p.sessionId, p.event, p.data),
      ),

      method('async.getTask', obj({ ...session, taskId: z.string().min(1).max(100) }), (p) =>
        tasks.get(p.sessionId, p.taskId),
      ),
      method('async.cancelTask', obj({ ...session, taskId: z.string().min(1).max(100) }), (p) =>
        tasks.cancel(p.sessionId, p.taskId),
      ),
      method(
        'async.sendMail',
        obj({
          ...session,
          to: idSchema,
          subject: z.string().max(1000),
          body: z.string(),
          priority: prioritySchema.default('normal'),
          replyTo: z.string().min(1).max(100).optional(),
        }),
        (p) => mail.send(p),
      ),
      method(
        'async.listMail',
        obj({
          ...session,
          agentId: z.union([idSchema, z.literal('user')]).optional(),
          status: z.enum(['unread', 'read', 'replied', 'archived']).optional(),
          limit: z.number().int().min(1).max(500).default(50),
          before: z.number().int().positive().optional(),
        }),
        (p) => mail.list(p),
      ),
      method(
        'async.getHistory',
        obj({
          ...session,
          after: z.number().int().min(0).max(MAX_SEQ).default(0),
          limit: z.number().int().min(1).max(1000).default(500),
        }),
        async (p) => {
          const records = await history.page(p.sessionId, p.after, p.limit);
          return {
            events: records.map((r) => ({ seq: r.seq, at: r.at, type: r.type, payload: r.payload })),
            nextAfter: records.length ? records[records.length - 1].seq : p.after,
          };
        },
      ),
      method(
        'async.scheduleAgent',
        obj({
          ...agent,
          cron: z.string().min(1).max(200),
          prompt: z.string().min(1).optional(),
          event: eventNameSchema.optional(),
          timezone: z.string().min(1).max(100).default('UTC'),
        }),
        (p) => schedules.schedule(p),
      ),
      method('async.unschedule', obj({ ...session, scheduleId: z.string().min(1).max(100) }), (p) =>
        schedules.unschedule(p.sessionId, p.scheduleId),
      ),
      method('async.listSchedules', obj(session), (p) => schedules.list(p.sessionId)),
      method('templates.list', obj({}), () =>
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
