import { SleepRequest } from 'src/events/events.service';
import { ChatMessage } from 'src/llm/model-provider';
import { Usage, WorkItem } from 'src/mailbox/mailbox.types';
import { Session } from 'src/sessions/session.types';
import { Agent } from '../../agent.types';

/** An item its agent has just claimed: the agent as it was when it became `active`. */
export interface ClaimedWork {
  agent: Agent;
  item: WorkItem;
  /**
   * The session's budget as the claim's transaction saw it (tokens of writes committed in the same
   * batch after the claim not yet counted; the budget is checked again when the item completes).
   */
  session?: Pick<Session, 'limits' | 'tokensUsed'>;
}

/**
 * What an item's end leaves its agent with: the next item, when the completion claimed it in the
 * same statement; else whether more work may be queued (false only when surely none is).
 */
export type NextWork = ClaimedWork | boolean;

/** What the model made of an item: its final answer, the turns to keep, and a sleep it asked for. */
export interface Thought {
  final: string;
  turns: ChatMessage[];
  sleep?: SleepRequest;
}

export const noUsage = (): Usage => ({ promptTokens: 0, completionTokens: 0 });
