import { Injectable } from '@nestjs/common';
import { Tx } from 'src/database/database.service';
import { json, query } from 'src/database/sql';
import { ChatMessage } from 'src/llm/model-provider';

/** An agent's conversation with its model, one row per message, kept across restarts. */
@Injectable()
export class ConversationRepository {
  async append(
    tx: Tx,
    sessionId: string,
    agentId: string,
    messages: ChatMessage[],
    at: string,
  ): Promise<void> {
    for (const message of messages) {
      await query(
        tx,
        `INSERT INTO conversation_turn (session_id, agent_id, message, created_at) VALUES ($1, $2, $3::jsonb, $4::timestamptz)`,
        [sessionId, agentId, json(message), at],
      );
    }
  }

  /**
   * The last messages, at most `limit`, oldest first. The window starts at a user message so a
   * tool result is never shown without the call that asked for it.
   */
  async window(tx: Tx, sessionId: string, agentId: string, limit: number): Promise<ChatMessage[]> {
    const rows = await query<{ message: ChatMessage }>(
      tx,
      `SELECT message FROM conversation_turn WHERE session_id = $1 AND agent_id = $2 ORDER BY id DESC LIMIT $3`,
      [sessionId, agentId, limit],
    );
    const messages = rows.map((r) => r.message).reverse();
    const firstUser = messages.findIndex((m) => m.role === 'user');
    return firstUser < 0 ? [] : messages.slice(firstUser);
  }
}
