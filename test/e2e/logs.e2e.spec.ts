import { createScripted, replyAll, startSession } from '../factories/agents';
import { newSessionId } from '../factories/ids';
import { TestClient } from '../support/client';
import { SourceServer } from '../support/source-server';
import { TestDatabase } from '../support/test-app';

const MARKER = 'PROMPT-MARKER-51c7';
const TOKEN = 'tok-SECRET-3f9a0c';
const API_KEY = 'sk-SECRET-key-8e21';

interface Line {
  level: string;
  time: string;
  msg: string;
  context?: string;
  [field: string]: unknown;
}

describe('logs of the server process at the default level', () => {
  let db: TestDatabase;
  let server: SourceServer;
  let client: TestClient;

  beforeAll(async () => {
    db = await TestDatabase.create();
    // stdout is a pipe here, so LOG_FORMAT=auto means JSON.
    server = await SourceServer.start(db, {
      API_TOKENS: TOKEN,
      OPENAI_API_KEY: API_KEY,
      MODEL_PROVIDER: 'scripted',
    });
    client = await TestClient.connect(server.url, { token: TOKEN });
  });

  afterAll(async () => {
    client?.close();
    await server?.stop();
    await db.destroy();
  });

  const lines = (): Line[] =>
    server.output
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as Line);

  it('are JSON lines: a banner, then one line per session, agent and finished or failed task; no secret, no prompt', async () => {
    const sessionId = await startSession(client, newSessionId('logs'));
    await createScripted(client, sessionId, 'lead', [
      {
        when: { kind: 'task', match: '^go' },
        do: [
          { tool: 'send_mail', args: { to: 'helper', subject: 'Need data', body: 'about {{prompt}}' } },
          { reply: 'asked {{prompt}}' },
        ],
      },
    ]);
    await createScripted(client, sessionId, 'helper', replyAll('got {{body}}'));
    await createScripted(
      client,
      sessionId,
      'short',
      [{ when: {}, do: [{ tool: 'list_agents' }, { reply: 'x' }] }],
      {
        limits: { maxStepsPerTask: 1 },
      },
    );
    const lead = await client.ok('async.sendTask', { sessionId, agentId: 'lead', prompt: `go ${MARKER}` });
    const short = await client.ok('async.sendTask', {
      sessionId,
      agentId: 'short',
      prompt: `fail ${MARKER}`,
    });
    const helperTask = await client.waitFor('async.task.started', (p) => p.agentId === 'helper');
    for (const taskId of [lead.taskId, short.taskId, helperTask.taskId]) {
      await client.waitForTaskEnd(taskId);
      await server.waitForOutput((out) => out.includes(`Task ${taskId} `));
    }
    await server.stop();

    const all = lines();
    for (const line of all) {
      expect(line).toEqual(expect.objectContaining({ level: expect.any(String), time: expect.any(String) }));
      // Debug and trace lines would be a wrong level; nothing below info is written by default.
      expect(['info', 'warn', 'error', 'fatal']).toContain(line.level);
    }
    const info = all.filter((l) => l.level === 'info');
    const banner = info.find((l) => l.context === 'Main')!;
    expect(banner.msg).toContain(`Mailroom listening on ${server.url} `);
    expect(banner.msg).toContain(`Dashboard: ${server.url}/`);
    expect(banner.msg).toMatch(/open it in a browser, or run the client example in the README/);
    // Nest's boot chatter (a line per module and route) is debug.
    expect(info.filter((l) => l.context === 'InstanceLoader' || l.context === 'RouterExplorer')).toEqual([]);

    expect(info).toContainEqual(expect.objectContaining({ msg: `Session ${sessionId} started`, sessionId }));
    for (const agentId of ['lead', 'helper', 'short']) {
      expect(info).toContainEqual(
        expect.objectContaining({
          context: 'Activity',
          msg: `Agent ${agentId} created (idle)`,
          sessionId,
          agentId,
        }),
      );
    }
    const taskLine = (taskId: string) => info.filter((l) => l.taskId === taskId);
    expect(taskLine(lead.taskId)).toEqual([
      expect.objectContaining({
        msg: expect.stringMatching(
          new RegExp(`^Task ${lead.taskId} of lead \\(task\\) completed in \\d+ ms$`),
        ),
        outcome: 'completed',
        kind: 'task',
        durationMs: expect.any(Number),
      }),
    ]);
    expect(taskLine(helperTask.taskId)).toEqual([
      expect.objectContaining({ agentId: 'helper', kind: 'mailbox_message', outcome: 'completed' }),
    ]);
    expect(taskLine(short.taskId)).toEqual([
      expect.objectContaining({
        msg: expect.stringMatching(/ \(task\) failed \(limit_exceeded\) in \d+ ms$/),
        outcome: 'failed',
        code: 'limit_exceeded',
        durationMs: expect.any(Number),
      }),
    ]);

    for (const secret of [MARKER, TOKEN, API_KEY]) {
      expect(server.output).not.toContain(secret);
    }
  });
});
