import { Inject, Injectable, Logger } from '@nestjs/common';
import { APP_CONFIG } from 'src/config/config.module';
import { AppConfig } from 'src/config/app-config';
import { RpcError } from 'src/common/rpc-error';
import { DatabaseService, Tx } from 'src/database/database.service';
import { EventsService, SleepRequest } from 'src/events/events.service';
import { ChatMessage, ModelCallError, ToolCall } from 'src/llm/model-provider';
import { LlmService } from 'src/llm/llm.service';
import { MailRepository } from 'src/mailbox/mail.repository';
import { Usage, WorkItem } from 'src/mailbox/mailbox.types';
import { SwitchWaiters } from 'src/mailbox/switch-waiters';
import { WorkItemRepository } from 'src/mailbox/work-item.repository';
import { HistoryService } from 'src/sessions/history.service';
import { SessionRepository } from 'src/sessions/session.repository';
import { ToolRegistryService } from 'src/tools/tool-registry.service';
import { AgentLimitError } from 'src/tools/tool.types';
import { AgentLifecycleService } from '../agent-lifecycle.service';
import { AgentRepository } from '../agent.repository';
import { Agent } from '../agent.types';
import { ConversationRepository } from '../conversation.repository';
import { PostOfficeService } from '../post-office.service';
import { OutputBuffer } from './output-buffer';
import { TaskFailure } from './task-failure';
import { describeWork, workContext } from './work-prompt';

interface Outcome {
  final: string;
  usage: Usage;
  turns: ChatMessage[];
  /** The last piece of streamed text, pushed in the completing transaction (one write fewer per item). */
  tail: string;
}

/**
 * Takes one work item through the model: claim, think (model turns and tool calls), then commit
 * the result, the conversation, the usage and the state change together. No transaction is open
 * while the model thinks.
 */
@Injectable()
export class AgentWorker {
  private readonly logger = new Logger(AgentWorker.name);

  constructor(
    private readonly db: DatabaseService,
    private readonly history: HistoryService,
    private readonly sessions: SessionRepository,
    private readonly agents: AgentRepository,
    private readonly items: WorkItemRepository,
    private readonly mail: MailRepository,
    private readonly conversation: ConversationRepository,
    private readonly lifecycle: AgentLifecycleService,
    private readonly postOffice: PostOfficeService,
    private readonly events: EventsService,
    private readonly tools: ToolRegistryService,
    private readonly waiters: SwitchWaiters,
    private readonly llm: LlmService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** Claims the agent's next item in protocol order; undefined when it has none or may not work now. */
  claim(sessionId: string, agentId: string): Promise<{ agent: Agent; item: WorkItem } | undefined> {
    return this.history.inSession(sessionId, async (tx) => {
      const agent = await this.agents.find(tx, sessionId, agentId);
      if (agent?.state !== 'idle') {
        return undefined;
      }
      const now = this.lifecycle.now();
      const item = await this.items.claimNext(tx, sessionId, agentId, now);
      if (!item) {
        return undefined;
      }
      const active = await this.lifecycle.transition(tx, agent, 'active', item.kind, { lastActiveAt: now });
      if (item.payload.messageId) {
        await this.mail.markRead(tx, [item.payload.messageId], now);
      }
      await this.history.record(tx, sessionId, 'async.task.started', {
        agentId,
        taskId: item.taskId,
        kind: item.kind,
      });
      return { agent: active, item };
    });
  }

  /** Runs a claimed item to its end: done, failed, or (when aborted) back in the queue. */
  async process(agent: Agent, item: WorkItem, signal: AbortSignal): Promise<void> {
    let pendingSleep: SleepRequest | undefined;
    let outcome: Outcome;
    // Tokens are spent even when the item fails; they count against budgets all the same.
    const usage: Usage = { promptTokens: 0, completionTokens: 0 };
    try {
      outcome = await this.think(agent, item, signal, (request) => (pendingSleep = request), usage);
    } catch (err) {
      if (signal.aborted) {
        await this.abandon(agent, item, usage);
      } else if (err instanceof RpcError && err.reason === 'unavailable') {
        // A tool's write met a database away or a lease lost: the item stays running and is put back
        // (by the backstop here, or by the session's next owner); failing it would lose acknowledged work.
        throw err;
      } else {
        await this.fail(agent, item, err, usage);
      }
      return;
    }
    try {
      await this.complete(agent, item, outcome, pendingSleep);
    } catch (err) {
      if (err instanceof RpcError && err.reason === 'unavailable') {
        throw err; // the database is away: the item stays running and is put back when it returns
      }
      await this.fail(agent, item, err, usage);
    }
  }

  private async think(
    agent: Agent,
    item: WorkItem,
    signal: AbortSignal,
    deferSleep: (request: SleepRequest) => void,
    usage: Usage,
  ): Promise<Outcome> {
    const { limits } = agent.config;
    const { session, window } = await this.db.read(async (tx) => ({
      session: await this.sessions.find(tx, agent.sessionId),
      window: await this.conversation.window(
        tx,
        agent.sessionId,
        agent.agentId,
        this.config.conversationWindow,
        this.config.conversationWindowTokens,
      ),
    }));
    if (session?.limits.maxTokens !== undefined && session.tokensUsed >= session.limits.maxTokens) {
      throw new TaskFailure(
        'limit_exceeded',
        `the session's token budget (${session.limits.maxTokens}) is spent`,
        true,
      );
    }
    if (limits.maxTokens !== undefined && agent.tokensUsed >= limits.maxTokens) {
      throw new TaskFailure(
        'limit_exceeded',
        `the agent's token budget (${limits.maxTokens}) is spent`,
        true,
      );
    }
    const input: ChatMessage = { role: 'user', content: describeWork(item) };
    const messages: ChatMessage[] = [
      { role: 'system', content: agent.config.systemPrompt },
      ...window,
      input,
    ];
    const turns: ChatMessage[] = [input];
    const toolSchemas = this.tools.schemasFor(agent.config.tools);
    const work = workContext(agent.agentId, item);

    for (let step = 1; ; step++) {
      if (step > limits.maxStepsPerTask) {
        throw new TaskFailure('limit_exceeded', `step limit reached (${limits.maxStepsPerTask} model calls)`);
      }
      signal.throwIfAborted();
      let text = '';
      const calls: ToolCall[] = [];
      const output = new OutputBuffer((delta) => this.recordOutput(agent, item, delta));
      await this.llm.complete(
        {
          model: agent.config.model,
          temperature: agent.config.temperature,
          maxTokens: agent.config.maxTokens,
          messages,
          tools: toolSchemas,
          signal,
          work,
          script: agent.config.script,
        },
        async (chunk) => {
          switch (chunk.type) {
            case 'text':
              text += chunk.delta;
              await output.add(chunk.delta);
              break;
            case 'tool_call':
              calls.push(chunk.call);
              break;
            case 'usage':
              usage.promptTokens += chunk.usage.promptTokens;
              usage.completionTokens += chunk.usage.completionTokens;
              break;
          }
        },
      );
      if (calls.length > 0) {
        await output.flush();
      }
      if (
        limits.maxTokensPerTask !== undefined &&
        usage.promptTokens + usage.completionTokens > limits.maxTokensPerTask
      ) {
        throw new TaskFailure('limit_exceeded', `token limit per task reached (${limits.maxTokensPerTask})`);
      }
      const reply: ChatMessage = {
        role: 'assistant',
        content: text || null,
        ...(calls.length ? { toolCalls: calls } : {}),
      };
      messages.push(reply);
      turns.push(reply);
      if (calls.length === 0) {
        return { final: text, usage, turns, tail: output.take() };
      }
      for (const call of calls) {
        signal.throwIfAborted();
        const outcome = await this.runTool(agent, item, signal, deferSleep, call);
        const result: ChatMessage = {
          role: 'tool',
          toolCallId: call.id,
          name: call.name,
          content: JSON.stringify(outcome),
        };
        messages.push(result);
        turns.push(result);
      }
    }
  }

  private async runTool(
    agent: Agent,
    item: WorkItem,
    signal: AbortSignal,
    deferSleep: (request: SleepRequest) => void,
    call: ToolCall,
  ): Promise<unknown> {
    try {
      const outcome = await this.tools.execute({ agent, item, signal, deferSleep }, call);
      await this.history.inSession(agent.sessionId, (tx) =>
        this.history.record(tx, agent.sessionId, 'async.tool.called', {
          agentId: agent.agentId,
          taskId: item.taskId,
          tool: outcome.tool,
          args: outcome.args,
          result: outcome.result,
        }),
      );
      return outcome.result;
    } catch (err) {
      if (err instanceof AgentLimitError) {
        throw new TaskFailure('limit_exceeded', err.message, true);
      }
      throw err;
    }
  }

  private recordOutput(agent: Agent, item: WorkItem, delta: string): Promise<unknown> {
    return this.history.inSession(agent.sessionId, (tx) => this.recordOutputIn(tx, agent, item, delta));
  }

  private recordOutputIn(tx: Tx, agent: Agent, item: WorkItem, delta: string): Promise<unknown> {
    return this.history.record(tx, agent.sessionId, 'async.task.output', {
      agentId: agent.agentId,
      taskId: item.taskId,
      delta,
    });
  }

  private async complete(
    agent: Agent,
    item: WorkItem,
    outcome: Outcome,
    pendingSleep?: SleepRequest,
  ): Promise<void> {
    const { sessionId, agentId } = agent;
    await this.history.inSession(sessionId, async (tx, session) => {
      const now = this.lifecycle.now();
      const done = await this.items.finish(tx, item.taskId, {
        state: 'done',
        result: { final: outcome.final },
        usage: outcome.usage,
        at: now,
      });
      let me = await this.lifecycle.get(tx, sessionId, agentId);
      if (done) {
        await this.conversation.append(tx, sessionId, agentId, outcome.turns, now);
        const { agentTokens, sessionTokens } = await this.chargeTokens(tx, agent, outcome.usage);
        if (outcome.tail) {
          await this.recordOutputIn(tx, agent, item, outcome.tail);
        }
        await this.history.record(tx, sessionId, 'async.task.completed', {
          agentId,
          taskId: item.taskId,
          result: { final: outcome.final },
          usage: outcome.usage,
        });
        if (item.isSwitch && item.payload.messageId) {
          await this.answerSwitch(tx, agent, item, outcome.final);
        }
        if (me.config.limits.maxTokens !== undefined && agentTokens >= me.config.limits.maxTokens) {
          me = await this.lifecycle.stop(tx, me, 'limit_exceeded');
        }
        if (session.limits.maxTokens !== undefined && sessionTokens >= session.limits.maxTokens) {
          for (const other of await this.agents.listBySession(tx, sessionId)) {
            await this.lifecycle.stop(tx, other, 'limit_exceeded');
          }
          me = await this.lifecycle.get(tx, sessionId, agentId);
        }
      }
      const wakeEvents = pendingSleep?.wakeEvents ?? me.wakeEvents;
      const sleepNow =
        me.state === 'active' &&
        pendingSleep !== undefined &&
        // What arrived during the step and would have woken a sleeper keeps it awake instead.
        !(await this.items.hasWakingWork(tx, sessionId, agentId, wakeEvents));
      if (sleepNow) {
        await this.events.sleep(tx, me, pendingSleep, 'sleep_tool');
      } else if (me.state === 'active') {
        await this.lifecycle.transition(tx, me, 'idle', done ? 'task_done' : 'task_cancelled');
      }
    });
  }

  private async chargeTokens(
    tx: Tx,
    agent: Agent,
    usage: Usage,
  ): Promise<{ agentTokens: number; sessionTokens: number }> {
    const tokens = usage.promptTokens + usage.completionTokens;
    return {
      agentTokens: await this.agents.addTokens(tx, agent.sessionId, agent.agentId, tokens),
      sessionTokens: await this.sessions.addTokens(tx, agent.sessionId, tokens),
    };
  }

  /** The final answer to send-and-switch mail is its reply, handed to the waiting caller. */
  private async answerSwitch(tx: Tx, agent: Agent, item: WorkItem, final: string): Promise<void> {
    const original = item.payload.messageId!;
    const caller = item.payload.from!;
    if (!(await this.mail.markReplied(tx, original, this.lifecycle.now()))) {
      return; // answered already, with reply_mail
    }
    // Awaited: handed straight to the waiter (and queued by its endWait if it gave up meanwhile).
    // Not awaited any more: ordinary mail for the caller, even past its queue limit.
    const awaited = this.waiters.isAwaited(original);
    const { mail } = await this.postOffice.deliver(tx, {
      sessionId: agent.sessionId,
      from: agent.agentId,
      to: caller,
      subject: `Re: ${item.payload.subject ?? ''}`,
      body: final,
      priority: 'high',
      replyTo: original,
      enqueue: !awaited,
      force: true,
    });
    this.lifecycle.afterCommit(tx, () =>
      this.waiters.settle(original, {
        reply: { from: agent.agentId, body: final, messageId: mail.messageId },
      }),
    );
  }

  private async fail(agent: Agent, item: WorkItem, err: unknown, usage: Usage): Promise<void> {
    const failure =
      err instanceof TaskFailure
        ? err
        : err instanceof ModelCallError
          ? new TaskFailure(err.code, err.message)
          : err instanceof RpcError
            ? new TaskFailure(err.reason, err.message)
            : new TaskFailure('internal_error', err instanceof Error ? err.message : String(err));
    if (!(err instanceof TaskFailure) && !(err instanceof ModelCallError)) {
      this.logger.warn(
        `Task ${item.taskId} of ${agent.agentId} failed: ${err instanceof Error ? err.stack : String(err)}`,
      );
    }
    const error = { code: failure.code, message: failure.message };
    await this.history.inSession(agent.sessionId, async (tx) => {
      await this.markFailed(tx, item, error, usage);
      await this.chargeTokens(tx, agent, usage);
      let me = await this.lifecycle.get(tx, agent.sessionId, agent.agentId);
      if (failure.stopAgent) {
        me = await this.lifecycle.stop(tx, me, 'limit_exceeded');
      }
      if (me.state === 'active' || me.state === 'waiting') {
        await this.lifecycle.transition(tx, me, 'idle', 'task_failed', { waitingOn: null });
      }
    });
  }

  /**
   * Marks a queued or running item failed, counts the error on its agent, records `async.task.failed`
   * and ends the wait of a send-and-switch caller on it. False when the item had already ended.
   */
  async markFailed(
    tx: Tx,
    item: WorkItem,
    error: { code: string; message: string },
    usage?: Usage,
  ): Promise<boolean> {
    const failed = await this.items.finish(tx, item.taskId, {
      state: 'failed',
      error,
      usage,
      at: this.lifecycle.now(),
    });
    if (!failed) {
      return false;
    }
    const errorCount = await this.agents.recordError(tx, item.sessionId, item.agentId, error.message);
    await this.history.record(tx, item.sessionId, 'async.task.failed', {
      agentId: item.agentId,
      taskId: item.taskId,
      error,
      errorCount,
    });
    const original = item.isSwitch ? item.payload.messageId : undefined;
    if (original) {
      this.lifecycle.afterCommit(tx, () =>
        this.waiters.settle(original, { error: `'${item.agentId}' failed: ${error.message}` }),
      );
    }
    return true;
  }

  /** The agent was stopped (or the task cancelled) mid-step: the item goes back to the queue unless cancelled. */
  private async abandon(agent: Agent, item: WorkItem, usage: Usage): Promise<void> {
    await this.history.inSession(agent.sessionId, async (tx) => {
      await this.items.requeue(tx, item.taskId);
      await this.chargeTokens(tx, agent, usage);
      const me = await this.lifecycle.get(tx, agent.sessionId, agent.agentId);
      if (me.state === 'active' || me.state === 'waiting') {
        await this.lifecycle.transition(tx, me, 'idle', 'task_cancelled', { waitingOn: null });
      } else if (me.waitingOn) {
        await this.agents.update(tx, agent.sessionId, agent.agentId, { waitingOn: null });
      }
    });
  }
}
