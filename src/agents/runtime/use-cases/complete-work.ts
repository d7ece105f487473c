import { Injectable } from '@nestjs/common';
import { Tx } from 'src/database/database.service';
import { EventsService } from 'src/events/events.service';
import { Usage } from 'src/mailbox/mailbox.types';
import { WorkItemRepository } from 'src/mailbox/work-item.repository';
import { HistoryService } from 'src/sessions/history.service';
import { Session } from 'src/sessions/session.types';
import { AgentLifecycleService } from '../../agent-lifecycle.service';
import { AgentRepository } from '../../agent.repository';
import { ConversationRepository } from '../../conversation.repository';
import { CompletedStep, StepEnd, WorkStepRepository } from '../work-step.repository';
import { HotConversations } from '../hot-conversations';
import { AnswerSwitch } from './answer-switch';
import { TokenCharges } from './token-charges';
import { ClaimWork } from './claim-work';
import { ClaimedWork, NextWork, Thought } from './work-values';

/**
 * Commits a thought-through item in one transaction: its result, the conversation turns, the
 * tokens, `task.completed`, a switch mail's reply, budgets that the tokens spent, and the agent's
 * next state (`idle`, or `sleeping` when the model asked to sleep).
 */
@Injectable()
export class CompleteWork {
  constructor(
    private readonly history: HistoryService,
    private readonly items: WorkItemRepository,
    private readonly agents: AgentRepository,
    private readonly conversation: ConversationRepository,
    private readonly lifecycle: AgentLifecycleService,
    private readonly events: EventsService,
    private readonly charges: TokenCharges,
    private readonly switches: AnswerSwitch,
    private readonly steps: WorkStepRepository,
    private readonly conversations: HotConversations,
    private readonly claims: ClaimWork,
  ) {}

  /**
   * Resolves the agent's next item when `claimNext` and the completion could claim it in the same
   * statement (a plain completion); else whether the agent may have more work queued.
   */
  run(work: ClaimedWork, thought: Thought, usage: Usage, claimNext: boolean): Promise<NextWork> {
    const { sessionId, agentId } = work.agent;
    const step: CompletedStep = {
      sessionId,
      agentId,
      taskId: work.item.taskId,
      final: thought.final,
      usage,
      turns: thought.turns,
      claimNext,
    };
    const alone = (tx: Tx, session: Session) => this.completeOne(tx, session, work, thought, step);
    if (!this.isPlain(work, thought, work.session)) {
      return this.history.inSession(sessionId, alone, { owner: true });
    }
    // Plain completions of several agents of the session in the same batch are one statement.
    return this.history.inSessionMerged(
      sessionId,
      alone,
      {
        kind: 'complete',
        agentId,
        args: step,
        statement: (steps: CompletedStep[]) => this.steps.completeManyStatement(steps, this.lifecycle.now()),
        then: (tx, end, session) => this.recordPlain(tx, work, thought, usage, end, session),
      },
      { owner: true },
    );
  }

  /**
   * No sleep asked for, no budget to watch: the item's end is one statement (and, for switch mail,
   * the answer's own writes after it).
   */
  private isPlain(work: ClaimedWork, thought: Thought, session?: Pick<Session, 'limits'>): boolean {
    return (
      thought.sleep === undefined &&
      work.agent.config.limits.maxTokens === undefined &&
      session !== undefined &&
      session.limits.maxTokens === undefined
    );
  }

  private async completeOne(
    tx: Tx,
    session: Session,
    work: ClaimedWork,
    thought: Thought,
    step: CompletedStep,
  ): Promise<NextWork> {
    if (!this.isPlain(work, thought, session)) {
      await this.complete(tx, session, work, thought, step.usage);
      return true;
    }
    const end = await this.steps.complete(tx, { ...step, at: this.lifecycle.now() });
    return this.recordPlain(tx, work, thought, step.usage, end, session);
  }

  /**
   * What a plain item's end records: `task.completed` (unless it had ended already) and a switch
   * mail's answer, the agent's change to `idle` and, when the statement claimed the next item, what
   * that claim records.
   */
  private async recordPlain(
    tx: Tx,
    { agent, item }: ClaimedWork,
    thought: Thought,
    usage: Usage,
    end: StepEnd,
    session: Session,
  ): Promise<NextWork> {
    if (end.done) {
      this.conversations.appendAfterCommit(tx, agent.sessionId, agent.agentId, thought.turns);
      await this.history.record(tx, agent.sessionId, 'async.task.completed', {
        agentId: agent.agentId,
        taskId: item.taskId,
        result: { final: thought.final },
        usage,
      });
      if (item.isSwitch && item.payload.messageId) {
        await this.switches.answer(tx, item, thought.final);
      }
    }
    const reason = end.done ? 'task_done' : 'task_cancelled';
    if (end.next) {
      await this.lifecycle.changed(tx, agent, end.previous, 'idle', reason);
      return (await this.claims.recordClaim(tx, end.next, session))!;
    }
    await this.lifecycle.changed(tx, agent, end.previous, end.state, reason);
    return end.moreQueued || end.state !== 'idle';
  }

  private async complete(
    tx: Tx,
    session: Session,
    { agent, item }: ClaimedWork,
    thought: Thought,
    usage: Usage,
  ): Promise<void> {
    const { sessionId, agentId } = agent;
    const now = this.lifecycle.now();
    const done = await this.items.finish(tx, item.taskId, {
      state: 'done',
      result: { final: thought.final },
      usage,
      at: now,
    });
    let me = await this.lifecycle.get(tx, sessionId, agentId);
    if (done) {
      await this.conversation.append(tx, sessionId, agentId, thought.turns, now);
      this.conversations.appendAfterCommit(tx, sessionId, agentId, thought.turns);
      const { agentTokens, sessionTokens } = await this.charges.charge(tx, sessionId, agentId, usage);
      await this.history.record(tx, sessionId, 'async.task.completed', {
        agentId,
        taskId: item.taskId,
        result: { final: thought.final },
        usage,
      });
      if (item.isSwitch && item.payload.messageId) {
        await this.switches.answer(tx, item, thought.final);
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
    const sleep = thought.sleep;
    const wakeEvents = sleep?.wakeEvents ?? me.wakeEvents;
    const sleepNow =
      me.state === 'active' &&
      sleep !== undefined &&
      // What arrived during the step and would have woken a sleeper keeps it awake instead.
      !(await this.items.hasWakingWork(tx, sessionId, agentId, wakeEvents));
    if (sleepNow) {
      await this.events.sleep(tx, me, sleep, 'sleep_tool');
    } else if (me.state === 'active') {
      await this.lifecycle.transition(tx, me, 'idle', done ? 'task_done' : 'task_cancelled');
    }
  }
}
