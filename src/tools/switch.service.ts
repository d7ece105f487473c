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

  /**
   * Sends `mail` and waits for its reply. `commit` is the tool call's own transaction (ToolContext):
   * the wait that ends with the reply ends in it, so clearing the wait, the call's record and its
   * result (handed back to a retry of the item instead of asking again) commit together.
   */
  async call(
    caller: Agent,
    mail: { to: string; subject: string; body: string; timeoutSeconds: number; hops: number },
    signal: AbortSignal,
    commit: <T>(fn: (tx: Tx) => Promise<T>) => Promise<T>,
  ): Promise<{ reply: SwitchReply }> {
    const { sessionId, agentId } = caller;
    if (mail.to === agentId) {
      throw new ToolError('send_mail_with_switch to yourself would wait forever');
    }
    signal.throwIfAborted();
    const messageId = randomUUID();
    const outcome = this.waiters.wait(messageId);
    try {
      await this.history.inSession(
        sessionId,
        async (tx) => {
          // The caller, the target and every agent already waiting: all the wait needs, in one read.
          const graph = new Map(
            (await this.agents.listWaitGraph(tx, sessionId, [agentId, mail.to])).map((a) => [a.agentId, a]),
          );
          const me = graph.get(agentId) ?? (await this.lifecycle.get(tx, sessionId, agentId));
          if (me.state === 'stopped') {
            throw abortError(); // stopped between the step's last check and here
          }
          const target = checkEdge(graph, agentId, mail.to);
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
            recipient: target,
          });
          await this.lifecycle.move(
            tx,
            me,
            me.state === 'active' ? 'waiting' : me.state,
            `waiting_on:${mail.to}`,
            {
              waitingOn: mail.to,
            },
          );
        },
        { owner: true },
      );
    } catch (err) {
      this.waiters.forget(messageId);
      throw err;
    }

    let ending: 'reply' | 'timeout' | 'aborted' | 'failed' = 'reply';
    let ended = false;
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
      let answered: { reply: SwitchReply };
      try {
        answered = await commit(async (tx) => {
          await this.endWait(tx, caller, messageId, mail.to, 'reply');
          return result;
        });
      } catch (err) {
        // The reply did not reach the caller after all: the wait ends as an abandoned one, which
        // hands the reply (stored as read) over as ordinary mail instead of losing it.
        ending = 'aborted';
        throw err;
      }
      ended = true;
      return answered;
    } finally {
      timer.cancel();
      signal.removeEventListener('abort', onAbort);
      this.waiters.forget(messageId);
      if (!ended) {
        await this.history.inSession(
          sessionId,
          (tx) => this.endWait(tx, caller, messageId, mail.to, ending),
          { owner: true },
        );
      }
    }
  }

  /**
   * Clears the caller's edge and, unless it was stopped or put to sleep meanwhile, makes it active
   * again. A wait that ended without the reply (timeout, abort) drops the mail from the target's
   * queue if it is still there, and hands over a reply that raced the ending as ordinary mail.
   */
  private async endWait(
    tx: Tx,
    caller: Agent,
    messageId: string,
    target: string,
    ending: 'reply' | 'timeout' | 'aborted' | 'failed',
  ): Promise<void> {
    const ended = await this.agents.endWait(tx, caller.sessionId, caller.agentId);
    if (!ended) {
      return;
    }
    const reason =
      ending === 'reply' ? 'reply_received' : ending === 'timeout' ? 'switch_timeout' : `switch_${ending}`;
    await this.lifecycle.changed(tx, caller, ended.previous, ended.state, reason);
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
  }
}

/**
 * Refuses a new edge caller → target that would close a cycle or make a chain deeper than the
 * limit, given the target and every waiting agent of the session (`graph`); the target.
 */
function checkEdge(graph: Map<string, Agent>, caller: string, target: string): Agent {
  const to = graph.get(target);
  if (!to) {
    throw new ToolError(`no agent '${target}' in this session`);
  }
  if (to.state === 'stopped') {
    throw new ToolError(`agent '${target}' is stopped`);
  }
  const waitsOn = new Map(
    [...graph.values()].filter((a) => a.waitingOn).map((a) => [a.agentId, a.waitingOn!]),
  );
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
  return to;
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
