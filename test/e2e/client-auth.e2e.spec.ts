import { connect } from '@mailroom/client';
import { runCli } from '../../packages/client/src/cli/main';
import { startTestApp, TestApp } from '../support/test-app';

describe('@mailroom/client and the CLI with tokens', () => {
  let sut: TestApp;

  beforeAll(async () => {
    sut = await startTestApp({ env: { API_TOKENS: 'secret,other' } });
  });

  afterAll(() => sut.close());

  const cli = (argv: string[], env: Record<string, string>) => {
    const err: string[] = [];
    const code = runCli(argv, { out: () => undefined, err: (l) => err.push(l), env, isTTY: false });
    return { code, err };
  };

  it('connects with its token and sees only its own sessions', async () => {
    const mine = await connect(sut.url, { token: 'secret' });
    const theirs = await connect(sut.url, { token: 'other' });
    try {
      const session = await mine.startSession();
      await expect(mine.call('session.list', {})).resolves.toMatchObject({
        sessions: [{ sessionId: session.id }],
      });
      await expect(theirs.call('async.getAgentStates', { sessionId: session.id })).rejects.toMatchObject({
        reason: 'session_not_found',
      });
    } finally {
      mine.close();
      theirs.close();
    }
  });

  it('a refused token fails connect with unauthorized; the CLI exits 3', async () => {
    await expect(connect(sut.url, { token: 'wrong' })).rejects.toMatchObject({
      reason: 'unauthorized',
      code: -32001,
    });
    await expect(connect(sut.url)).rejects.toMatchObject({ reason: 'unauthorized' });

    const refused = cli(['templates', '--token', 'wrong'], { MAILROOM_URL: sut.url });
    await expect(refused.code).resolves.toBe(3);
    expect(refused.err[0]).toMatch(/^mailroom: Cannot connect/);
    await expect(cli(['templates'], { MAILROOM_URL: sut.url, MAILROOM_TOKEN: 'secret' }).code).resolves.toBe(
      0,
    );
  });
});
