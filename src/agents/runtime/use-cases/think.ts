import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG } from 'src/config/config.module';
import { AppConfig } from 'src/config/app-config';
import { DatabaseService } from 'src/database/database.service';
import { SleepRequest } from 'src/events/events.service';
import { ChatMessage, ToolCall } from 'src/llm/model-provider';
import { LlmService } from 'src/llm/llm.service';
import { Usage } from 'src/mailbox/mailbox.types';
import { SessionRepository } from 'src/sessions/session.repository';
import { ToolRegistryService } from 'src/tools/tool-registry.service';
import { AgentLimitError, ToolCallContext } from 'src/tools/tool.types';
import { HotConversations } from '../hot-conversations';
import { TaskOutputs } from '../../task-outputs.service';
import { TaskFailure } from '../task-failure';
import { describeWork, workContext } from '../work-prompt';
import { ClaimedWork, Thought } from './work-values';

/**
 * The model's part of an item: model turns and the tool calls they make, until a final answer or
 * a limit. Reads the conversation once; writes only through the tools. No transaction stays open
 * across a model call.
 */
@Injectable()
export class Think {
  constructor(
    private readonly db: DatabaseService,
    private readonly sessions: SessionRepository,
    private readonly conversations: HotConversations,
    private readonly tools: ToolRegistryService,
    private readonly llm: LlmService,
    private readonly outputs: TaskOutputs,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** `usage` is added to as the model reports it, so the caller can charge what a failed item spent. */
  async run(
    { agent, item, session: claimedIn }: ClaimedWork,
    signal: AbortSignal,
    usage: Usage,
  ): Promise<Thought> {
    const { limits } = agent.config;
    const session = claimedIn ?? (await this.db.read((tx) => this.sessions.find(tx, agent.sessionId)));
    const window = await this.conversations.window(agent.sessionId, agent.agentId);
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
    const thought: Thought = { final: '', turns: [input] };
    const deferSleep = (request: SleepRequest) => (thought.sleep = request);
    const toolSchemas = await this.tools.schemasFor(agent, signal);
    const work = workContext(agent.agentId, item);

    for (let step = 1; ; step++) {
      if (step > limits.maxStepsPerTask) {
        throw new TaskFailure('limit_exceeded', `step limit reached (${limits.maxStepsPerTask} model calls)`);
      }
      signal.throwIfAborted();
      let text = '';
      const calls: ToolCall[] = [];
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
        (chunk) => {
          switch (chunk.type) {
            case 'text':
              text += chunk.delta;
              this.outputs.add(item, chunk.delta);
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
      this.outputs.flush(item.taskId);
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
      thought.turns.push(reply);
      if (calls.length === 0) {
        thought.final = text;
        return thought;
      }
      for (const [index, call] of calls.entries()) {
        signal.throwIfAborted();
        const outcome = await this.runTool({ agent, item, signal, deferSleep, step, index }, call);
        const result: ChatMessage = {
          role: 'tool',
          toolCallId: call.id,
          name: call.name,
          content: JSON.stringify(outcome),
        };
        messages.push(result);
        thought.turns.push(result);
      }
    }
  }

  private async runTool(ctx: ToolCallContext, call: ToolCall): Promise<unknown> {
    try {
      return (await this.tools.execute(ctx, call)).result;
    } catch (err) {
      if (err instanceof AgentLimitError) {
        throw new TaskFailure('limit_exceeded', err.message, true);
      }
      throw err;
    }
  }
}
