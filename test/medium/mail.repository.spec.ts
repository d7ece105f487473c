import { randomUUID } from 'node:crypto';
import { DatabaseService } from 'src/database/database.service';
import { MailRepository, NewMail } from 'src/mailbox/mail.repository';
import { Mail } from 'src/mailbox/mailbox.types';
import { SessionRepository } from 'src/sessions/session.repository';
import { newSessionId } from '../factories/ids';
import { openTestDatabase } from '../support/test-app';

const at = (minute: number) => new Date(Date.UTC(2026, 0, 1, 0, minute)).toISOString();

describe(MailRepository.name, () => {
  const sut = new MailRepository();
  const sessions = new SessionRepository();
  let db: DatabaseService;
  let closeDb: () => Promise<void>;

  beforeAll(async () => {
    ({ db, close: closeDb } = await openTestDatabase());
  });

  afterAll(() => closeDb());

  async function givenSession(): Promise<string> {
    const sessionId = newSessionId();
    await db.transaction((tx) => sessions.upsert(tx, { sessionId, metadata: {}, limits: {}, at: at(0) }));
    return sessionId;
  }

  const newMail = (sessionId: string, patch: Partial<NewMail> = {}): NewMail => ({
    sessionId,
    from: 'user',
    to: 'writer',
    subject: 'Hello',
    body: 'Body',
    priority: 'normal',
    createdAt: at(1),
    ...patch,
  });

  const insert = (m: NewMail) => db.transaction((tx) => sut.insert(tx, m));
  const list = (f: Parameters<MailRepository['list']>[1]) => db.read((tx) => sut.list(tx, f));

  /** `n` mails to the writer ("mail 0", "mail 1", …), one minute apart. */
  async function givenMails(sessionId: string, n: number, patch: Partial<NewMail> = {}): Promise<Mail[]> {
    const out: Mail[] = [];
    for (let i = 0; i < n; i++) {
      out.push(await insert(newMail(sessionId, { subject: `mail ${i}`, createdAt: at(i + 1), ...patch })));
    }
    return out;
  }

  it('stores a new mail unread, as the first of its own thread', async () => {
    const sessionId = await givenSession();
    const mail = await insert(newMail(sessionId, { priority: 'high' }));
    expect(mail).toEqual({
      messageId: expect.stringMatching(/^[0-9a-f-]{36}$/),
      sessionId,
      from: 'user',
      to: 'writer',
      subject: 'Hello',
      body: 'Body',
      priority: 'high',
      status: 'unread',
      replyTo: null,
      threadId: mail.messageId,
      hops: 0,
      createdAt: at(1),
      readAt: null,
    });
    await expect(db.read((tx) => sut.find(tx, sessionId, mail.messageId))).resolves.toEqual(mail);
  });

  it('keeps a reply in its original’s thread, under the id the caller chose', async () => {
    const sessionId = await givenSession();
    const original = await insert(newMail(sessionId));
    const messageId = randomUUID();
    const reply = await insert(
      newMail(sessionId, {
        messageId,
        from: 'writer',
        to: 'user',
        replyTo: original.messageId,
        threadId: original.threadId,
        status: 'read',
        createdAt: at(2),
      }),
    );
    expect(reply).toMatchObject({
      messageId,
      replyTo: original.messageId,
      threadId: original.messageId,
      status: 'read',
      readAt: at(2),
    });
  });

  it('finds a mail only in its own session, and nothing for an id that is not a uuid', async () => {
    const sessionId = await givenSession();
    const mail = await insert(newMail(sessionId));
    await expect(db.read((tx) => sut.find(tx, newSessionId(), mail.messageId))).resolves.toBeUndefined();
    await expect(db.read((tx) => sut.find(tx, sessionId, 'not-a-uuid'))).resolves.toBeUndefined();
    await expect(db.read((tx) => sut.find(tx, sessionId, randomUUID()))).resolves.toBeUndefined();
  });

  it('lists newest first, a page at a time, with nextBefore as the cursor', async () => {
    const sessionId = await givenSession();
    const mails = await givenMails(sessionId, 5);
    const newestFirst = [...mails].reverse();

    const pages: Mail[][] = [];
    let before: number | undefined;
    for (;;) {
      const page = await list({ sessionId, limit: 2, before });
      pages.push(page.messages);
      if (page.nextBefore === null) {
        break;
      }
      expect(page.nextBefore).toEqual(expect.any(Number));
      before = page.nextBefore;
    }
    expect(pages.map((p) => p.length)).toEqual([2, 2, 1]);
    expect(pages.flat()).toEqual(newestFirst);
    // A page that ends exactly at the last mail says there is no more.
    await expect(list({ sessionId, limit: 5 })).resolves.toEqual({ messages: newestFirst, nextBefore: null });
    await expect(list({ sessionId: newSessionId(), limit: 5 })).resolves.toEqual({
      messages: [],
      nextBefore: null,
    });
  });

  it('lists the mail to or from an agent, and by status', async () => {
    const sessionId = await givenSession();
    const toWriter = await insert(newMail(sessionId, { from: 'analyzer', to: 'writer' }));
    const fromWriter = await insert(newMail(sessionId, { from: 'writer', to: 'reviewer' }));
    const unrelated = await insert(newMail(sessionId, { from: 'analyzer', to: 'reviewer' }));
    await db.transaction((tx) => sut.markRead(tx, [fromWriter.messageId], at(3)));

    const writer = await list({ sessionId, agentId: 'writer', limit: 10 });
    expect(writer.messages.map((m) => m.messageId)).toEqual([fromWriter.messageId, toWriter.messageId]);
    const unread = await list({ sessionId, status: 'unread', limit: 10 });
    expect(unread.messages.map((m) => m.messageId)).toEqual([unrelated.messageId, toWriter.messageId]);
    const readByWriter = await list({ sessionId, agentId: 'writer', status: 'read', limit: 10 });
    expect(readByWriter.messages).toEqual([{ ...fromWriter, status: 'read', readAt: at(3) }]);
  });

  it('takes an agent’s inbox oldest first and marks what it takes read', async () => {
    const sessionId = await givenSession();
    const mails = await givenMails(sessionId, 3);
    await insert(newMail(sessionId, { to: 'someone-else' }));

    const first = await db.transaction((tx) => sut.takeInbox(tx, sessionId, 'writer', true, 2, at(9)));
    expect(first).toEqual(mails.slice(0, 2).map((m) => ({ ...m, status: 'read', readAt: at(9) })));
    const second = await db.transaction((tx) => sut.takeInbox(tx, sessionId, 'writer', true, 10, at(10)));
    expect(second).toEqual([{ ...mails[2], status: 'read', readAt: at(10) }]);
    await expect(
      db.transaction((tx) => sut.takeInbox(tx, sessionId, 'writer', true, 10, at(11))),
    ).resolves.toEqual([]);

    // Read mail comes back with unreadOnly false, as stored.
    const all = await db.transaction((tx) => sut.takeInbox(tx, sessionId, 'writer', false, 10, at(12)));
    expect(all.map((m) => [m.subject, m.status, m.readAt])).toEqual([
      ['mail 0', 'read', at(9)],
      ['mail 1', 'read', at(9)],
      ['mail 2', 'read', at(10)],
    ]);
    const stored = await list({ sessionId, agentId: 'writer', limit: 10 });
    expect(stored.messages.every((m) => m.status === 'read')).toBe(true);
  });

  it('marks a mail replied once', async () => {
    const sessionId = await givenSession();
    const unread = await insert(newMail(sessionId));
    const read = await insert(newMail(sessionId, { status: 'read', createdAt: at(2) }));

    await expect(db.transaction((tx) => sut.markReplied(tx, unread.messageId, at(5)))).resolves.toBe(
      unread.threadId,
    );
    await expect(
      db.transaction((tx) => sut.markReplied(tx, unread.messageId, at(6))),
    ).resolves.toBeUndefined();
    await expect(db.read((tx) => sut.find(tx, sessionId, unread.messageId))).resolves.toMatchObject({
      status: 'replied',
      readAt: at(5),
    });

    await expect(db.transaction((tx) => sut.markReplied(tx, read.messageId, at(7)))).resolves.toBe(
      read.threadId,
    );
    await expect(db.read((tx) => sut.find(tx, sessionId, read.messageId))).resolves.toMatchObject({
      status: 'replied',
      readAt: at(2),
    });
    // markRead leaves a replied mail as it is.
    await db.transaction((tx) => sut.markRead(tx, [read.messageId], at(8)));
    await expect(db.read((tx) => sut.find(tx, sessionId, read.messageId))).resolves.toMatchObject({
      status: 'replied',
      readAt: at(2),
    });
  });

  it('counts the mail an agent sent since a time', async () => {
    const sessionId = await givenSession();
    await givenMails(sessionId, 4, { from: 'chatty' });
    await insert(newMail(sessionId, { from: 'quiet', createdAt: at(3) }));
    await expect(db.read((tx) => sut.countSentSince(tx, sessionId, 'chatty', at(2)))).resolves.toBe(2);
    await expect(db.read((tx) => sut.countSentSince(tx, sessionId, 'chatty', at(0)))).resolves.toBe(4);
    await expect(db.read((tx) => sut.countSentSince(tx, sessionId, 'quiet', at(3)))).resolves.toBe(0);
  });
});
