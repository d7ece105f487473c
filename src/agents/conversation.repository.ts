import { Injectable } from '@nestjs/common';
import { Tx } from 'src/database/database.service';
import { json, query } from 'src/database/sql';
import { ChatMessage } from 'src/llm/model-provider';

/** An agent's conversation with its model, one row per message, kept across restarts. */
@Injectable()
export class ConversationRepository {
  /** Appends the messages in order, in one statement (the ids keep their order). */
  async append(
    tx: Tx,
    sessionId: string,
    agentId: string,
    messages: ChatMessage[],
    at: string,
  ): Promise<void> {
    if (messages.length === 0) {
      return;
    }
    await query(
      tx,
      `INSERT INTO conversation_turn (session_id, agent_id, message, created_at)
       SELECT $1, $2, m.value, $4::timestamptz
       FROM jsonb_array_elements($3::jsonb) WITH ORDINALITY AS m(value, n) ORDER BY m.n`,
      [sessionId, agentId, json(messages), at],
    );
  }

  /**
   * The last messages, at most `limit`, oldest first, shaped as the model sees them (see
   * {@link shapeWindow}).
   */
  async window(
    tx: Tx,
    sessionId: string,
    agentId: string,
    limit: number,
    maxTokens?: number,
  ): Promise<ChatMessage[]> {
    return shapeWindow(await this.latest(tx, sessionId, agentId, limit), maxTokens);
  }

  /** The last `limit` messages as stored, oldest first. */
  async latest(tx: Tx, sessionId: string, agentId: string, limit: number): Promise<ChatMessage[]> {
    const rows = await query<{ message: ChatMessage }>(
      tx,
      `SELECT message FROM conversation_turn WHERE session_id = $1 AND agent_id = $2 ORDER BY id DESC LIMIT $3`,
      [sessionId, agentId, limit],
    );
    return rows.map((r) => r.message).reverse();
  }
}

/**
 * What the model sees of the last messages: with `maxTokens`, the oldest are dropped until the rest
 * fit (about four characters a token); the window then starts at a user message, so a tool result
 * is never shown without the call that asked for it.
 */
export function shapeWindow(latest: ChatMessage[], maxTokens?: number): ChatMessage[] {
  let messages = latest;
  if (maxTokens !== undefined) {
    let tokens = messages.reduce((n, m) => n + estimateTokens(m), 0);
    while (messages.length > 0 && tokens > maxTokens) {
      tokens -= estimateTokens(messages[0]);
      messages = messages.slice(1);
    }
  }
  const firstUser = messages.findIndex((m) => m.role === 'user');
  return firstUser < 0 ? [] : messages.slice(firstUser);
}

function estimateTokens(m: ChatMessage): number {
  const calls =
    m.role === 'assistant'
      ? (m.toolCalls ?? []).reduce((n, c) => n + c.arguments.length + c.name.length, 0)
      : 0;
  return Math.ceil(((m.content?.length ?? 0) + calls) / 4) + 4;
}
