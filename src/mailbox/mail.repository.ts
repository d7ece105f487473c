import { Injectable } from '@nestjs/common';
import { isUuid, Priority } from 'src/common/names';
import { Tx } from 'src/database/database.service';
import { randomUUID } from 'node:crypto';
import { defer, iso, num, query, queryOne, storableText } from 'src/database/sql';
import { Mail, MailStatus } from './mailbox.types';

interface MailRow {
  id: string;
  seq: number | string;
  session_id: string;
  from_id: string;
  to_id: string;
  subject: string;
  body: string;
  priority: Priority;
  status: MailStatus;
  is_switch: boolean;
  reply_to: string | null;
  thread_id: string;
  hops: number;
  created_at: Date | string;
  read_at: Date | string | null;
}

const toMail = (r: MailRow): Mail => ({
  messageId: r.id,
  sessionId: r.session_id,
  from: r.from_id,
  to: r.to_id,
  subject: r.subject,
  body: r.body,
  priority: r.priority,
  status: r.status,
  replyTo: r.reply_to,
  threadId: r.thread_id,
  hops: r.hops,
  createdAt: iso(r.created_at)!,
  readAt: iso(r.read_at),
});

export interface NewMail {
  /** Chosen by the caller when it must know the id before commit (send-and-switch); else generated. */
  messageId?: string;
  sessionId: string;
  from: string;
  to: string;
  subject: string;
  body: string;
  priority: Priority;
  isSwitch?: boolean;
  replyTo?: string | null;
  /** The thread of the mail this replies to; a new mail starts its own thread. */
  threadId?: string | null;
  status?: MailStatus;
  /** Defaults to 0: mail from the user. */
  hops?: number;
  createdAt: string;
}

@Injectable()
export class MailRepository {
  /**
   * The stored mail is what was given (its id chosen here when not given), so the statement needs
   * no answer and travels with the transaction's next one (`defer`).
   */
  async insert(tx: Tx, m: NewMail): Promise<Mail> {
    const messageId = m.messageId ?? randomUUID();
    const status = m.status ?? 'unread';
    // A new thread is named after its first mail.
    const threadId = m.threadId ?? messageId;
    const hops = m.hops ?? 0;
    // What a text column can hold: a model's text may carry U+0000 (a client's is refused before).
    const subject = storableText(m.subject);
    const body = storableText(m.body);
    // As the uuid column gives it back (a client may name the original in capitals).
    const replyTo = m.replyTo ? m.replyTo.toLowerCase() : null;
    const createdAt = iso(m.createdAt)!;
    const readAt = status === 'unread' ? null : createdAt;
    await defer(
      tx,
      `INSERT INTO mail (id, session_id, from_id, to_id, subject, body, priority, status, is_switch, reply_to, thread_id, created_at, read_at, hops)
       VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9, $10::uuid, $11::uuid, $12::timestamptz, $13::timestamptz, $14)`,
      [
        messageId,
        m.sessionId,
        m.from,
        m.to,
        subject,
        body,
        m.priority,
        status,
        m.isSwitch ?? false,
        replyTo,
        threadId,
        createdAt,
        readAt,
        hops,
      ],
    );
    return {
      messageId,
      sessionId: m.sessionId,
      from: m.from,
      to: m.to,
      subject,
      body,
      priority: m.priority,
      status,
      replyTo,
      threadId,
      hops,
      createdAt,
      readAt,
    };
  }

  async find(tx: Tx, sessionId: string, messageId: string): Promise<Mail | undefined> {
    if (!isUuid(messageId)) {
      return undefined;
    }
    const row = await queryOne<MailRow>(tx, `SELECT * FROM mail WHERE session_id = $1 AND id = $2::uuid`, [
      sessionId,
      messageId,
    ]);
    return row && toMail(row);
  }

  /** Newest first; `before` is the `seq` cursor of a previous page. */
  async list(
    tx: Tx,
    f: { sessionId: string; agentId?: string; status?: MailStatus; limit: number; before?: number },
  ): Promise<{ messages: Mail[]; nextBefore: number | null }> {
    const params: unknown[] = [f.sessionId];
    const where = ['session_id = $1'];
    if (f.agentId !== undefined) {
      params.push(f.agentId);
      where.push(`(to_id = $${params.length} OR from_id = $${params.length})`);
    }
    if (f.status !== undefined) {
      params.push(f.status);
      where.push(`status = $${params.length}`);
    }
    if (f.before !== undefined) {
      params.push(f.before);
      where.push(`seq < $${params.length}`);
    }
    params.push(f.limit + 1);
    const rows = await query<MailRow>(
      tx,
      `SELECT * FROM mail WHERE ${where.join(' AND ')} ORDER BY seq DESC LIMIT $${params.length}`,
      params,
    );
    const page = rows.slice(0, f.limit);
    const more = rows.length > f.limit;
    return { messages: page.map(toMail), nextBefore: more ? num(page[page.length - 1].seq) : null };
  }

  /** The agent's inbox, oldest first, and marks what it returns read. */
  async takeInbox(
    tx: Tx,
    sessionId: string,
    agentId: string,
    unreadOnly: boolean,
    limit: number,
    at: string,
  ): Promise<Mail[]> {
    const rows = await query<MailRow>(
      tx,
      `SELECT * FROM mail WHERE session_id = $1 AND to_id = $2 ${unreadOnly ? "AND status = 'unread'" : ''}
       ORDER BY seq LIMIT $3`,
      [sessionId, agentId, limit],
    );
    const unread = rows.filter((r) => r.status === 'unread').map((r) => r.id);
    if (unread.length > 0) {
      await this.markRead(tx, unread, at);
    }
    return rows.map((r) =>
      r.status === 'unread' ? { ...toMail(r), status: 'read' as const, readAt: at } : toMail(r),
    );
  }

  async markRead(tx: Tx, messageIds: string[], at: string): Promise<void> {
    await defer(
      tx,
      `UPDATE mail SET status = 'read', read_at = $2::timestamptz WHERE id = ANY($1::uuid[]) AND status = 'unread'`,
      [messageIds, at],
    );
  }

  /** The reply `from` sent to the mail `messageId`, if any. */
  async findReplyTo(tx: Tx, sessionId: string, messageId: string, from: string): Promise<Mail | undefined> {
    const row = await queryOne<MailRow>(
      tx,
      `SELECT * FROM mail WHERE session_id = $1 AND reply_to = $2::uuid AND from_id = $3 ORDER BY seq LIMIT 1`,
      [sessionId, messageId, from],
    );
    return row && toMail(row);
  }

  async markUnread(tx: Tx, messageId: string): Promise<void> {
    await query(tx, `UPDATE mail SET status = 'unread', read_at = NULL WHERE id = $1::uuid`, [messageId]);
  }

  /**
   * Marks a mail replied: its thread (for the reply), or undefined when it was replied already (a
   * switch mail gets one reply only).
   */
  async markReplied(tx: Tx, messageId: string, at: string): Promise<string | undefined> {
    const row = await queryOne<{ thread_id: string }>(
      tx,
      `UPDATE mail SET status = 'replied', read_at = COALESCE(read_at, $2::timestamptz)
       WHERE id = $1 AND status <> 'replied' RETURNING thread_id`,
      [messageId, at],
    );
    return row?.thread_id;
  }

  /** Mails `agentId` sent since `since`: the rate limit's count. */
  async countSentSince(tx: Tx, sessionId: string, agentId: string, since: string): Promise<number> {
    const row = await queryOne<{ n: number }>(
      tx,
      `SELECT count(*)::int AS n FROM mail WHERE session_id = $1 AND from_id = $2 AND created_at > $3::timestamptz`,
      [sessionId, agentId, since],
    );
    return num(row?.n);
  }
}
