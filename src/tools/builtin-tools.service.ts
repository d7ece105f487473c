import { Inject, Injectable } from '@nestjs/common';
import { z } from 'zod';
import { CLOCK, Clock } from 'src/common/clock';
import { eventNameSchema, idSchema, prioritySchema } from 'src/common/names';
import { RpcError } from 'src/common/rpc-error';
import { AgentLifecycleService } from 'src/agents/agent-lifecycle.service';
import { AgentRepository } from 'src/agents/agent.repository';
import { Agent } from 'src/agents/agent.types';
import { PostOfficeService } from 'src/agents/post-office.service';
import { EventsService } from 'src/events/events.service';
import { MailRepository } from 'src/mailbox/mail.repository';
import { USER } from 'src/mailbox/mailbox.types';
import { SwitchWaiters } from 'src/mailbox/switch-waiters';
import { HistoryService } from 'src/sessions/history.service';
import { Tx } from 'src/database/database.service';
import { SwitchService } from './switch.service';
import { AgentLimitError, ToolContext, ToolDefinition, ToolError } from './tool.types';

const recipient = z.union([idSchema, z.literal(USER)]);
const subject = z.string().min(1).max(1000);
const body = z.string().max(100_000);

/** The built-in tools (docs/protocol.md, "Tools an agent's model can call"). */
@Injectable()
export class BuiltinToolsService {
  readonly definitions: ToolDefinition[];

  constructor(
    private readonly history: HistoryService,
    private readonly agents: AgentRepository,
    private readonly mail: MailRepository,
    private readonly postOffice: PostOfficeService,
    private readonly lifecycle: AgentLifecycleService,
    private readonly events: EventsService,
    private readonly switches: SwitchService,
    private readonly waiters: SwitchWaiters,
    @Inject(CLOCK) private readonly clock: Clock,
  ) {
    this.definitions = [
      this.sendMail(),
      this.sendMailWithSwitch(),
      this.checkMail(),
      this.replyMail(),
      this.broadcastEvent(),
      this.sleep(),
      this.listAgents(),
    ] as ToolDefinition[];
  }

  private sendMail(): ToolDefinition {
    const schema = z
      .object({ to: recipient, subject, body, priority: prioritySchema.default('normal') })
      .strict();
    return {
      name: 'send_mail',
      description:
        'Send mail to another agent (or to "user", the human client) and carry on without waiting. The recipient handles it in its own loop.',
      schema,
      run: async (ctx, args: z.infer<typeof schema>) => {
        const { agent } = ctx;
        if (args.to === agent.agentId) {
          throw new ToolError('cannot send mail to yourself');
        }
        const hops = args.to === USER ? ctx.item.hops + 1 : nextHops(ctx);
        return ctx.commit(async (tx) => {
          await this.checkMailRate(tx, agent);
          const { mail } = await this.postOffice.deliver(tx, {
            ...args,
            sessionId: agent.sessionId,
            from: agent.agentId,
            hops,
          });
          return { messageId: mail.messageId };
        });
      },
    };
  }

  private sendMailWithSwitch(): ToolDefinition {
    const schema = z
      .object({ to: idSchema, subject, body, timeoutSeconds: z.number().positive().max(86_400).default(120) })
      .strict();
    return {
      name: 'send_mail_with_switch',
      description:
        "Send mail to another agent and wait for its answer, which is returned as this tool's result. Use when you cannot continue without the reply.",
      schema,
      run: async (ctx, args: z.infer<typeof schema>) => {
        const hops = nextHops(ctx);
        if (ctx.agent.config.limits.maxMailPerMinute !== undefined) {
          await this.history.inSession(ctx.agent.sessionId, (tx) => this.checkMailRate(tx, ctx.agent), {
            owner: true,
          });
        }
        return this.switches.call(ctx.agent, { ...args, hops }, ctx.signal, ctx.commit);
      },
    };
  }

  private checkMail(): ToolDefinition {
    const schema = z
      .object({ unreadOnly: z.boolean().default(true), limit: z.number().int().min(1).max(100).default(10) })
      .strict();
    return {
      name: 'check_mail',
      description: 'Read your inbox (oldest first). Returned messages are marked read.',
      schema,
      run: async ({ agent, commit }, args: z.infer<typeof schema>) =>
        commit(async (tx) => {
          const messages = await this.mail.takeInbox(
            tx,
            agent.sessionId,
            agent.agentId,
            args.unreadOnly,
            args.limit,
            this.now(),
          );
          return { messages, count: messages.length };
        }),
    };
  }

  private replyMail(): ToolDefinition {
    const schema = z
      .object({ messageId: z.string().min(1).max(100), body, priority: prioritySchema.optional() })
      .strict();
    return {
      name: 'reply_mail',
      description: 'Reply to a message you received; the reply goes to its sender, in the same thread.',
      schema,
      run: async (ctx, args: z.infer<typeof schema>) => {
        const { agent } = ctx;
        const hops = ctx.item.hops + 1;
        return ctx.commit(async (tx) => {
          await this.checkMailRate(tx, agent);
          const original = await this.mail.find(tx, agent.sessionId, args.messageId);
          if (!original || original.to !== agent.agentId) {
            throw new ToolError(`no message '${args.messageId}' in your inbox`);
          }
          if (original.from !== USER) {
            nextHops(ctx);
          }
          const awaited = this.waiters.isAwaited(original.messageId);
          if ((await this.mail.markReplied(tx, original.messageId, this.now())) === undefined && awaited) {
            throw new ToolError('this message has already been answered');
          }
          const { mail } = await this.postOffice.deliver(tx, {
            sessionId: agent.sessionId,
            from: agent.agentId,
            to: original.from,
            subject: original.subject.startsWith('Re: ') ? original.subject : `Re: ${original.subject}`,
            body: args.body,
            priority: args.priority ?? original.priority,
            replyTo: original.messageId,
            threadId: original.threadId,
            enqueue: !awaited,
            hops,
          });
          if (awaited) {
            this.lifecycle.afterCommit(tx, () =>
              this.waiters.settle(original.messageId, {
                reply: { from: agent.agentId, body: args.body, messageId: mail.messageId },
              }),
            );
          }
          return { messageId: mail.messageId };
        });
      },
    };
  }

  private broadcastEvent(): ToolDefinition {
    const schema = z.object({ event: eventNameSchema, data: z.unknown().optional() }).strict();
    return {
      name: 'broadcast_event',
      description:
        'Broadcast an event to every agent of the session that listens to it, waking those that sleep.',
      schema,
      run: async (ctx, args: z.infer<typeof schema>) => {
        const { agent } = ctx;
        const hops = nextHops(ctx);
        return ctx.commit(async (tx) => {
          const { woke } = await this.events.broadcast(
            tx,
            agent.sessionId,
            args.event,
            args.data ?? {},
            agent.agentId,
            hops,
          );
          return { woke };
        });
      },
    };
  }

  private sleep(): ToolDefinition {
    const schema = z
      .object({
        durationSeconds: z.number().positive().max(31_536_000).optional(),
        wakeEvents: z.array(eventNameSchema).max(100).optional(),
      })
      .strict();
    return {
      name: 'sleep',
      description:
        'Go to sleep when this step ends: until durationSeconds from now, and/or until one of wakeEvents is broadcast (or you are woken).',
      schema,
      run: async (ctx, args: z.infer<typeof schema>) => {
        const sleepingUntil =
          args.durationSeconds === undefined
            ? null
            : new Date(this.clock.now() + args.durationSeconds * 1000).toISOString();
        if (args.wakeEvents) {
          // Listen now: an event broadcast before the step ends must still reach (and wake) the agent.
          const wakeEvents = args.wakeEvents;
          await this.history.inSession(
            ctx.agent.sessionId,
            (tx) => this.agents.update(tx, ctx.agent.sessionId, ctx.agent.agentId, { wakeEvents }),
            { owner: true },
          );
        }
        // The deadline the model is told is the one kept, however long the rest of the step takes.
        ctx.deferSleep({ ...args, until: sleepingUntil ?? undefined });
        return { sleepingUntil };
      },
    };
  }

  private listAgents(): ToolDefinition {
    return {
      name: 'list_agents',
      description: 'List the agents of this session with their state and what each is for.',
      schema: z.object({}).strict(),
      run: async ({ agent, commit }) =>
        commit(async (tx) => ({
          agents: (await this.agents.listBySession(tx, agent.sessionId)).map((a) => ({
            agentId: a.agentId,
            state: a.state,
            description: a.config.description,
          })),
        })),
    };
  }

  /**
   * `maxMailPerMinute` (unset by default): an agent mailing faster than its limit is stopped. Loops
   * are ended by hops; this is for operators who want a rate cap as well.
   */
  private async checkMailRate(tx: Tx, agent: Agent): Promise<void> {
    const limit = agent.config.limits.maxMailPerMinute;
    if (limit === undefined) {
      return;
    }
    const since = new Date(this.clock.now() - 60_000).toISOString();
    const sent = await this.mail.countSentSince(tx, agent.sessionId, agent.agentId, since);
    if (sent >= limit) {
      throw new AgentLimitError(`mail rate limit: ${sent} mails in the last minute (limit ${limit})`);
    }
  }

  private now(): string {
    return new Date(this.clock.now()).toISOString();
  }
}

/**
 * The hops a send from this item carries, or a tool error past the agent's `maxHops`: like an IP
 * packet's TTL, this ends a ping-pong loop after a bounded number of exchanges while both agents
 * keep running.
 */
function nextHops({ item, agent }: ToolContext): number {
  const hops = item.hops + 1;
  const max = agent.config.limits.maxHops;
  if (hops > max) {
    throw new ToolError(
      `hop limit (${max}) reached: this work is ${item.hops} agent-to-agent sends away from a client's request, so it cannot send mail or events to other agents; answer with your final reply instead`,
    );
  }
  return hops;
}

export function toolErrorMessage(err: unknown): string | undefined {
  if (err instanceof ToolError) {
    return err.message;
  }
  if (err instanceof RpcError && err.reason !== 'unavailable' && err.reason !== 'internal_error') {
    return err.message;
  }
  return undefined;
}
