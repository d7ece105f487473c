import type { Server } from 'socket.io';
import { connect, MailroomClient } from '@mailroom/client';
import { RpcGateway } from 'src/gateway/rpc.gateway';
import { CliIo, runCli } from '../../packages/client/src/cli/main';
import { newSessionId } from '../factories/ids';
import { startTestApp, TestApp } from '../support/test-app';

/** The CLI run in-process, its output captured line by line. */
function cli(env: Record<string, string | undefined>, extra: Partial<CliIo> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { out: (l) => out.push(l), err: (l) => err.push(l), env, isTTY: false, ...extra };
  return { out, err, run: (...argv: string[]) => runCli(argv, io) };
}

const ESC = '\u001b[';

describe('the mailroom CLI', () => {
  let sut: TestApp;
  let client: MailroomClient;
  let env: Record<string, string>;

  beforeAll(async () => {
    sut = await startTestApp();
    client = await connect(sut.url);
    env = { MAILROOM_URL: sut.url };
  });

  afterAll(async () => {
    client.close();
    await sut.close();
  });

  async function sessionWithAgent(config?: Record<string, unknown>) {
    const session = await client.startSession({ sessionId: newSessionId('cli') });
    await session.call('async.createAgent', { agentId: 'a', config });
    return session;
  }

  it('templates: a table, or JSON', async () => {
    const text = cli(env);
    await expect(text.run('templates')).resolves.toBe(0);
    expect(text.out[0]).toMatch(/^template\s+model\s+tools\s+description$/);
    expect(text.out.some((l) => l.startsWith('analyzer '))).toBe(true);

    const json = cli(env);
    await expect(json.run('templates', '--json')).resolves.toBe(0);
    expect(JSON.parse(json.out[0])).toEqual(
      expect.arrayContaining([expect.objectContaining({ name: 'monitor' })]),
    );
  });

  it('send, send --wait, mail, states and history', async () => {
    const session = await sessionWithAgent({
      script: [
        {
          when: { match: 'boom' },
          do: [{ tool: 'list_agents' }, { tool: 'list_agents' }, { reply: 'never' }],
        },
        { when: {}, do: [{ reply: 'did {{prompt}}' }] },
      ],
      limits: { maxStepsPerTask: 1 }, // "boom" fails: limit_exceeded
    });
    const sent = cli(env);
    await expect(sent.run('send', session.id, 'a', 'first')).resolves.toBe(0);
    expect(sent.out).toEqual([expect.stringMatching(/^[0-9a-f-]{36}$/)]);

    const waited = cli(env);
    await expect(waited.run('send', session.id, 'a', 'second', '--wait', '--priority', 'high')).resolves.toBe(
      0,
    );
    expect(waited.out).toEqual(['did second']);

    const mailed = cli(env);
    await expect(mailed.run('mail', session.id, 'a', 'Hello', 'a body')).resolves.toBe(0);
    const { messages } = await session.call('async.listMail', { agentId: 'a' });
    expect(messages.map((m) => [m.messageId, m.from, m.subject])).toEqual([[mailed.out[0], 'user', 'Hello']]);

    const states = cli(env);
    await expect(states.run('states', session.id)).resolves.toBe(0);
    expect(states.out[0]).toMatch(/^agent\s+state\s+working on\s+queue/);
    expect(states.out[1]).toMatch(/^a\s+(idle|active)\s/);

    // The agent may still be at work on the mail: the history only grows, so read it before the CLI does.
    const { events } = await session.call('async.getHistory', {});
    const history = cli(env);
    await expect(history.run('history', session.id)).resolves.toBe(0);
    expect(history.out.length).toBeGreaterThanOrEqual(events.length);
    expect(history.out[0]).toMatch(/^#1 +\d\d:\d\d:\d\d\.\d{3} {2}a +state {2}new → idle \(created\)$/);
    expect(history.out.join('\n')).toContain('done');
    expect(history.out.join('\n')).not.toContain(ESC);
    const json = cli(env);
    await expect(json.run('history', session.id, '--json', '--after', '1')).resolves.toBe(0);
    expect(JSON.parse(json.out[0])).toMatchObject({ name: expect.any(String), payload: { seq: 2 } });

    const failed = cli(env);
    await expect(failed.run('send', session.id, 'a', 'boom', '--wait')).resolves.toBe(1);
    expect(failed.err).toEqual([expect.stringMatching(/^limit_exceeded: /)]);
  });

  it('tail: the history, then each push as it happens, until interrupted', async () => {
    const session = await sessionWithAgent();
    const stop = new AbortController();
    const tail = cli(env, { signal: stop.signal });
    const done = tail.run('tail', session.id);
    const finished = session.waitFor('async.task.completed');
    await session.call('async.sendTask', { agentId: 'a', prompt: 'watched' });
    await finished;
    // The tail's own connection may lag this one: wait for its line, not for time.
    while (!tail.out.some((l) => / done /.test(l))) {
      await new Promise((r) => setImmediate(r));
    }
    stop.abort();
    await expect(done).resolves.toBe(0);
    expect(tail.out[0]).toMatch(/^#1 .* new → idle \(created\)$/);
    // Streamed text is not in the history: its lines carry the seq they follow; every other line is a record.
    const records = tail.out.filter((l) => !/ text {3}/.test(l));
    expect(records.map((l) => Number(/^#(\d+)/.exec(l)?.[1]))).toEqual(records.map((_, i) => i + 1));
  });

  it('tail follows across a dropped connection: no line lost or repeated', async () => {
    const session = await sessionWithAgent();
    const stop = new AbortController();
    const tail = cli(env, { signal: stop.signal });
    const done = tail.run('tail', session.id);
    const lineFor = async (pattern: RegExp) => {
      while (!tail.out.some((l) => pattern.test(l))) {
        await new Promise((r) => setImmediate(r));
      }
    };
    await lineFor(/new → idle \(created\)/);
    const reconnected = new Promise<void>((resolve) =>
      client.onConnection((e) => (e.type === 'reconnected' ? resolve() : undefined)),
    );
    const gateway: any = sut.app.get(RpcGateway);
    (gateway.server as Server).sockets.sockets.forEach((s) => s.disconnect(true));
    // The task is sent once this test's own connection is back; the tail may still be away.
    await reconnected;
    await session.call('async.sendTask', { agentId: 'a', prompt: 'while away' });
    await lineFor(/ done /);
    stop.abort();
    await expect(done).resolves.toBe(0);
    // Streamed text is not in the history: its lines carry the seq they follow; every other line is a record.
    const records = tail.out.filter((l) => !/ text {3}/.test(l));
    expect(records.map((l) => Number(/^#(\d+)/.exec(l)?.[1]))).toEqual(records.map((_, i) => i + 1));
    expect(tail.err).toEqual(
      expect.arrayContaining([expect.stringMatching(/^\(connection lost: /), '(reconnected)']),
    );
  });

  it('colours on a terminal, none elsewhere or with NO_COLOR', async () => {
    const session = await sessionWithAgent();
    const tty = cli(env, { isTTY: true });
    await expect(tty.run('history', session.id)).resolves.toBe(0);
    expect(tty.out[0]).toContain(ESC);
    const noColor = cli({ ...env, NO_COLOR: '1' }, { isTTY: true });
    await expect(noColor.run('history', session.id)).resolves.toBe(0);
    expect(noColor.out[0]).not.toContain(ESC);
  });

  it.each([
    [[], 2],
    [['--help'], 0],
    [['frobnicate'], 2],
    [['send', 'only-one'], 2],
    [['states', 's', '--bogus'], 2],
    [['send', 's', 'a', 'p', '--priority', 'soon'], 2],
    [['history', 's', '--after', '-1'], 2],
    [['states', 'no-such-session'], 1],
    [['send', 'no-such-session', 'a', 'p'], 1],
  ])('mailroom %j exits %i', async (argv, code) => {
    const run = cli(env);
    await expect(run.run(...argv)).resolves.toBe(code);
    if (code === 0) {
      expect(run.out.join('\n')).toContain('Exit codes');
    } else {
      expect(run.err.length).toBeGreaterThan(0);
    }
  });

  it('--url wins over MAILROOM_URL; a server that cannot be reached exits 3', async () => {
    const unreachable = cli(env);
    await expect(unreachable.run('templates', '--url', 'http://127.0.0.1:1')).resolves.toBe(3);
    expect(unreachable.err[0]).toMatch(/^mailroom: Cannot connect to http:\/\/127\.0\.0\.1:1/);
    const fromEnv = cli({ MAILROOM_URL: 'http://127.0.0.1:1' });
    await expect(fromEnv.run('templates', '--url', sut.url)).resolves.toBe(0);
  });
});
