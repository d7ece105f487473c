import { Inject, Injectable } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { abortError, CLOCK, Clock } from 'src/common/clock';
import { Tx } from 'src/database/database.service';
import { AgentLifecycleService } from 'src/agents/agent-lifecycle.service';
import { AgentRepository } from 'src/agents/agent.repository';
import { Agent } from 'src/agents/agent.types';
import { PostOfficeService } from 'src/agents/post-office.service';
import { MailRepository } from 'src/mailbox/mail.repository';
import { MailboxService } from 'src/mailbox/mailbox.service';
import { SwitchReply, SwitchWaiters } from 'src/mailbox/switch-waiters';
import { WorkItemRepository } from 'src/mailbox/work-item.repository';
import { HistoryService } from 'src/sessions/history.service';
import { MAX_SWITCH_DEPTH, ToolError } from './tool.types';

/**
 * Send-and-switch: the caller waits (state `waiting`) until the target answers its mail. The
 * waits-for graph is the agents' `waiting_on` column, read and extended under the session lock, so
 * a wait that would close a cycle or pass the depth limit is refused the moment it would form.
 */
@Injectable()
export class SwitchService {
  constructor(
    private readonly waiters: SwitchWaiters,
    private readonly mail: MailRepository,
    private readonly mailbox: MailboxService,
    private readonly history: HistoryService,
    private readonly agents: AgentRepository,
    private readonly items: WorkItemRepository,
    private readonly lifecycle: AgentLifecycleService,
    private readonly postOffice: PostOfficeService,
    @Inject(CLOCK) private readonly clock: Clock,
  ) {}

  async call(
    caller: Agent,
    mail: { to: string; subject: string; body: string; timeoutSeconds: number; hops: number },
    signal: AbortSignal,
  ): Promise<{ reply: SwitchReply }> {
    const { sessionId, agentId } = caller;
    if (mail.to === agentId) {
      throw new ToolError('send_mail_with_switch to yourself would wait forever');
    }
    signal.throwIfAborted();
    const messageId = randomUUID();
    const outcome = this.waiters.wait(messageId);
    try {
      await this.history.inSession(sessionId, async (tx) => {
        const me = await this.lifecycle.get(tx, sessionId, agentId);
        if (me.state === 'stopped') {
          throw abortError(); // stopped between the step's last check and here
        }
        await this.checkEdge(tx, sessionId, agentId, mail.to);
        await this.postOffice.deliver(tx, {
          sessionId,
          from: agentId,
          to: mail.to,
          subject: mail.subject,
          body: mail.body,
          priority: 'high',
          isSwitch: true,
          messageId,
          hops: mail.hops,
        });
        await this.lifecycle.transition(
          tx,
          me,
          me.state === 'active' ? 'waiting' : me.state,
          `waiting_on:${mail.to}`,
          {
            waitingOn: mail.to,
          },
        );
      });
    } catch (err) {
      this.waiters.forget(messageId);
      throw err;
    }

    let ending: 'reply' | 'timeout' | 'aborted' | 'failed' = 'reply';
    const timer = this.clock.setTimeout(() => {
      ending = 'timeout';
      this.waiters.settle(messageId, {
        error: `timeout: no reply from '${mail.to}' within ${mail.timeoutSeconds}s`,
      });
    }, mail.timeoutSeconds * 1000);
    const onAbort = () => {
      ending = 'aborted';
      this.waiters.settle(messageId, { error: 'aborted' });
    };
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) {
      onAbort(); // a listener added to an aborted signal never fires
    }
    try {
      const result = await outcome;
      signal.throwIfAborted();
      if ('error' in result) {
        ending = ending === 'reply' ? 'failed' : ending;
        throw new ToolError(result.error);
      }
      return result;
    } finally {
      timer.cancel();
      signal.removeEventListener('abort', onAbort);
      this.waiters.forget(messageId);
      await this.endWait(caller, messageId, mail.to, ending);
    }
  }

  /** Refuses a new edge caller → target that would close a cycle or make a chain deeper than the limit. */
  private async checkEdge(tx: Tx, sessionId: string, caller: string, target: string): Promise<void> {
    const agents = await this.agents.listBySession(tx, sessionId);
    const byId = new Map(agents.map((a) => [a.agentId, a]));
    const to = byId.get(target);
    if (!to) {
      throw new ToolError(`no agent '${target}' in this session`);
    }
    if (to.state === 'stopped') {
      throw new ToolError(`agent '${target}' is stopped`);
    }
    const waitsOn = new Map(agents.filter((a) => a.waitingOn).map((a) => [a.agentId, a.waitingOn!]));
    // Follow target's own chain: reaching the caller means the new edge closes a cycle.
    const chain = [caller, target];
    for (let at = waitsOn.get(target); at !== undefined; at = waitsOn.get(at)) {
      chain.push(at);
      if (at === caller) {
        throw new ToolError(`refused: waiting on '${target}' would close a cycle (${chain.join(' -> ')})`);
      }
    }
    const below = chain.length - 2; // edges after caller -> target
    const above = longestChainInto(caller, waitsOn);
    const depth = above + 1 + below;
    if (depth > MAX_SWITCH_DEPTH) {
      throw new ToolError(
        `refused: the chain of waiting agents would be ${depth} deep (limit ${MAX_SWITCH_DEPTH})`,
      );
    }
  }

  /**
   * Clears the caller's edge and, unless it was stopped or put to sleep meanwhile, makes it active
   * again. A wait that ended without the reply (timeout, abort) drops the mail from the target's
   * queue if it is still there, and hands over a reply that raced the ending as ordinary mail.
   */
  private async endWait(
    caller: Agent,
    messageId: string,
    target: string,
    ending: 'reply' | 'timeout' | 'aborted' | 'failed',
  ): Promise<void> {
    await this.history.inSession(caller.sessionId, async (tx) => {
      const me = await this.agents.find(tx, caller.sessionId, caller.agentId);
      if (!me) {
        return;
      }
      const to = me.state === 'waiting' ? 'active' : me.state;
      const reason =
        ending === 'reply' ? 'reply_received' : ending === 'timeout' ? 'switch_timeout' : `switch_${ending}`;
      await this.lifecycle.transition(tx, me, to, reason, { waitingOn: null });
      if (ending === 'reply' || ending === 'failed') {
        return;
      }
      const pending = await this.items.findQueuedForMail(tx, caller.sessionId, messageId);
      if (pending) {
        await this.items.finish(tx, pending.taskId, {
          state: 'cancelled',
          error: { code: ending, message: 'The sender stopped waiting' },
          at: this.lifecycle.now(),
        });
      }
      const late = await this.mail.findReplyTo(tx, caller.sessionId, messageId, target);
      if (late && late.status === 'read') {
        await this.mailbox.requeueAsUnread(tx, late);
      }
    });
  }
}

/** Edges in the longest chain of waiters that ends at `target` (who waits on who waits on … target). */
function longestChainInto(target: string, waitsOn: Map<string, string>): number {
  let best = 0;
  for (const start of waitsOn.keys()) {
    let n = 0;
    let at: string | undefined = start;
    while (at !== undefined && at !== target && n <= waitsOn.size) {
      at = waitsOn.get(at);
      n++;
    }
    if (at === target) {
      best = Math.max(best, n);
    }
  }
  return best;
}
