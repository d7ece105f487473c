import { Inject, Injectable, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { Subscription } from 'rxjs';
import { SessionOwner } from 'src/cluster/cluster.types';
import { LeaseService } from 'src/cluster/lease.service';
import { APP_CONFIG } from 'src/config/config.module';
import { AppConfig } from 'src/config/app-config';
import { DatabaseService, Tx } from 'src/database/database.service';
import { ChatMessage } from 'src/llm/model-provider';
import { ConversationRepository, shapeWindow } from '../conversation.repository';
import { NewAgents } from '../new-agents';

/** How many agents' recent conversations the owner keeps in memory (the least recently used go first). */
const MAX_AGENTS = 10_000;

/**
 * The owner's hot copy of each working agent's recent conversation: the last
 * `CONVERSATION_WINDOW` messages, read from the database once and then appended to after each
 * commit that appends to the table, so an item's model call reads nothing back. Only the owner
 * appends to an agent's conversation (its loop does), and a session this node lets go of, or
 * starts to serve, is dropped: after a handover the next owner reads the table afresh.
 */
@Injectable()
export class HotConversations implements SessionOwner, OnModuleInit, OnModuleDestroy {
  private readonly recent = new Map<string, ChatMessage[]>();
  private created?: Subscription;

  constructor(
    private readonly db: DatabaseService,
    private readonly conversation: ConversationRepository,
    private readonly leases: LeaseService,
    private readonly newAgents: NewAgents,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onModuleInit(): void {
    this.leases.register(this);
    // A new agent's conversation is empty: its first item need not read it. Only while there is room,
    // so that creating many agents never pushes out the windows of agents at work.
    this.created = this.newAgents.created$.subscribe((agents) => {
      for (const { sessionId, agentId } of agents) {
        const k = key(sessionId, agentId);
        if (this.recent.size < MAX_AGENTS && !this.recent.has(k) && this.leases.isServing(sessionId)) {
          this.recent.set(k, []);
        }
      }
    });
  }

  onModuleDestroy(): void {
    this.created?.unsubscribe();
  }

  /** The messages the model sees before the new item (the window rules of ConversationRepository.window). */
  async window(sessionId: string, agentId: string): Promise<ChatMessage[]> {
    const k = key(sessionId, agentId);
    let messages = this.recent.get(k);
    if (messages) {
      this.recent.delete(k); // to the end: most recently used
    } else {
      messages = await this.db.read((tx) =>
        this.conversation.latest(tx, sessionId, agentId, this.config.conversationWindow),
      );
      if (this.recent.size >= MAX_AGENTS) {
        this.recent.delete(this.recent.keys().next().value!);
      }
    }
    this.recent.set(k, messages);
    return shapeWindow(messages, this.config.conversationWindowTokens);
  }

  /** Appends to the hot copy once `tx` (which appends `turns` to the table) commits. */
  appendAfterCommit(tx: Tx, sessionId: string, agentId: string, turns: ChatMessage[]): void {
    this.db.afterCommit(tx, () => {
      const messages = this.recent.get(key(sessionId, agentId));
      if (messages) {
        // As the table gives them back (JSON), so a hot window equals a cold one.
        messages.push(...(JSON.parse(JSON.stringify(turns)) as ChatMessage[]));
        messages.splice(0, Math.max(0, messages.length - this.config.conversationWindow));
      }
    });
  }

  serve(sessionIds: string[]): Promise<void> {
    return this.drop(sessionIds);
  }

  release(sessionIds: string[]): Promise<void> {
    return this.drop(sessionIds);
  }

  private drop(sessionIds: string[]): Promise<void> {
    const gone = new Set(sessionIds);
    for (const k of this.recent.keys()) {
      if (gone.has(k.slice(0, k.indexOf('\u0000')))) {
        this.recent.delete(k);
      }
    }
    return Promise.resolve();
  }
}

const key = (sessionId: string, agentId: string) => `${sessionId}\u0000${agentId}`;
