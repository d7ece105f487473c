import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { McpServersService } from 'src/tools/mcp/mcp-servers.service';
import { createScripted, startSession } from '../factories/agents';
import { newSessionId } from '../factories/ids';
import { TestClient } from '../support/client';
import { FakeOpenAI } from '../support/fake-openai';
import {
  crashyServer,
  eventually,
  exited,
  filesystemServer,
  HttpMcpServer,
  isRunning,
  startHttpMcpServer,
} from '../support/mcp-servers';
import { sessionProbe } from '../support/session-probe';
import { ArmedTimersClock, startTestApp, TestApp } from '../support/test-app';

const ENV_SECRET = 'env-secret-4711';
const HEADER_SECRET = 'header-secret-0815';
const TIMEOUT_MS = 7000;
const MAX_BYTES = 2048;

/** A scripted rule: on a task matching `match`, call `tool` with `args`, then reply `reply`. */
const onTask = (match: string, tool: string, args: Record<string, unknown>, reply: string) => ({
  when: { kind: 'task', match },
  do: [{ tool, args }, { reply }],
});

const dataDir = mkdtempSync(join(tmpdir(), 'mailroom-mcp-data-'));
writeFileSync(join(dataDir, 'notes.txt'), 'hello from the filesystem server');

describe(McpServersService.name, () => {
  let sut: TestApp;
  let client: TestClient;
  let clock: ArmedTimersClock;
  let http: HttpMcpServer;
  const h = sessionProbe(() => client);
  const servers = () => sut.app.get(McpServersService);

  beforeAll(async () => {
    http = await startHttpMcpServer();
    clock = new ArmedTimersClock();
    sut = await startTestApp({
      clock,
      env: { MCP_TOOL_TIMEOUT_MS: String(TIMEOUT_MS), MCP_RESULT_MAX_BYTES: String(MAX_BYTES) },
    });
    client = await TestClient.connect(sut.url);
  });

  afterAll(async () => {
    client.close();
    await sut.close();
    await http.close();
  });

  const finalOf = async (sessionId: string, agentId: string, prompt: string): Promise<string> => {
    const { taskId } = await h.sendTask(sessionId, agentId, prompt);
    return ((await h.completed(taskId)) as { result: { final: string } }).result.final;
  };

  describe('the filesystem server from npm over stdio, with the scripted model', () => {
    const files = filesystemServer(dataDir, { MCP_TEST_SECRET: ENV_SECRET });
    const readNotes = onTask('notes', 'files__read_text_file', { path: 'notes.txt' }, 'read: {{result}}');
    const writeNotes = onTask(
      'write',
      'files__write_file',
      { path: 'x.txt', content: 'x' },
      '{{result.error}}',
    );

    it('reads a file through files__read_text_file; the result is the text, and env stays on the server', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'reader', [readNotes, writeNotes], {
        mcpServers: { files },
        tools: ['files__read_text_file', 'list_agents'],
      });

      await expect(finalOf(sessionId, 'reader', 'read the notes')).resolves.toBe(
        'read: hello from the filesystem server',
      );
      expect(h.of('async.tool.called', sessionId, 'reader')).toEqual([
        expect.objectContaining({
          tool: 'files__read_text_file',
          args: { path: 'notes.txt' },
          result: 'hello from the filesystem server',
        }),
      ]);

      // `tools` chooses among the server's tools: write_file is not this agent's.
      await expect(finalOf(sessionId, 'reader', 'write something')).resolves.toMatch(
        /^unknown tool 'files__write_file'/,
      );
      const history = await client.ok('async.getHistory', { sessionId });
      const states = await client.ok('async.getAgentStates', { sessionId });
      const templates = await client.ok('templates.list', {});
      for (const seen of [history, states, templates, client.pushes]) {
        expect(JSON.stringify(seen)).not.toContain(ENV_SECRET);
      }
    });

    it('shares one server between the agents that name it alike, and closes it when the last one stops', async () => {
      const sessionId = await startSession(client, newSessionId());
      for (const agentId of ['a1', 'a2']) {
        await createScripted(client, sessionId, agentId, [readNotes], { mcpServers: { files } });
      }
      const before = new Set(servers().pids());
      await expect(finalOf(sessionId, 'a1', 'notes')).resolves.toContain('hello');
      await expect(finalOf(sessionId, 'a2', 'notes')).resolves.toContain('hello');
      const started = servers()
        .pids()
        .filter((p) => !before.has(p));
      expect(started).toHaveLength(1);
      const [pid] = started;

      await client.ok('async.stopAgent', { sessionId, agentId: 'a1' });
      expect(isRunning(pid)).toBe(true); // a2 still uses it
      await client.ok('async.stopAgent', { sessionId, agentId: 'a2' });
      await exited(pid);

      // Started again (a new process) when an agent needs it again; closed with its session.
      await client.ok('async.startAgent', { sessionId, agentId: 'a1' });
      await expect(finalOf(sessionId, 'a1', 'notes')).resolves.toContain('hello');
      const [again] = servers()
        .pids()
        .filter((p) => !before.has(p));
      expect(again).not.toBe(pid);
      await client.ok('session.stop', { sessionId });
      await exited(again);
    });
  });

  describe('a Streamable HTTP server the test runs with the SDK', () => {
    let sessionId: string;
    const script = [
      onTask('echo', 'web__echo', { text: 'hi' }, '{{result}}'),
      onTask('fail', 'web__fail', {}, 'error: {{result.error}}'),
      onTask('big', 'web__big', { bytes: 5000 }, '{{result}}'),
      onTask('hang', 'web__hang', {}, 'error: {{result.error}}'),
      onTask('bad-args', 'web__echo', { text: 42 }, 'error: {{result.error}}'),
    ];

    beforeAll(async () => {
      sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'surfer', script, {
        mcpServers: { web: { url: http.url, headers: { Authorization: `Bearer ${HEADER_SECRET}` } } },
      });
    });

    it('calls a tool with the configured headers, which are never pushed or recorded', async () => {
      await expect(finalOf(sessionId, 'surfer', 'echo')).resolves.toBe('echo: hi');
      expect(http.headers.some((hd) => hd.authorization === `Bearer ${HEADER_SECRET}`)).toBe(true);
      const history = await client.ok('async.getHistory', { sessionId });
      const states = await client.ok('async.getAgentStates', { sessionId });
      for (const seen of [history, states, client.pushes]) {
        expect(JSON.stringify(seen)).not.toContain(HEADER_SECRET);
      }
    });

    it('turns an error result, bad arguments and a timeout into tool errors; the agent goes on', async () => {
      await expect(finalOf(sessionId, 'surfer', 'fail')).resolves.toBe('error: the tool broke on purpose');
      await expect(finalOf(sessionId, 'surfer', 'bad-args')).resolves.toMatch(/^error: .*text/);

      const hung = http.nextHang();
      const { taskId } = await h.sendTask(sessionId, 'surfer', 'hang');
      await hung;
      clock.advance(TIMEOUT_MS);
      await expect(h.completed(taskId)).resolves.toMatchObject({
        result: { final: `error: MCP tool 'web__hang' failed: timed out after ${TIMEOUT_MS} ms` },
      });

      await expect(finalOf(sessionId, 'surfer', 'echo')).resolves.toBe('echo: hi');
      const states = await h.statesOf(sessionId);
      expect(states.surfer).toMatchObject({ state: 'idle', error_count: 0 });
    });

    it('cuts an oversized result at MCP_RESULT_MAX_BYTES, with a marker', async () => {
      const final = await finalOf(sessionId, 'surfer', 'big');
      expect(Buffer.byteLength(final)).toBeLessThanOrEqual(MAX_BYTES);
      expect(final).toMatch(/^x+\n\[truncated: the result was 5000 bytes, the limit is 2048\]$/);
    });
  });

  describe('servers that fail', () => {
    it('a command that does not exist is a tool error; the agent stays up and the next task works', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(
        client,
        sessionId,
        'hopeful',
        [
          onTask('ghost', 'ghost__anything', {}, 'error: {{result.error}}'),
          { when: {}, do: [{ reply: 'still here' }] },
        ],
        { mcpServers: { ghost: { command: join(dataDir, 'no-such-mcp-server') } } },
      );
      await expect(finalOf(sessionId, 'hopeful', 'ghost')).resolves.toMatch(
        /^error: MCP server 'ghost' did not start: .*ENOENT/,
      );
      await expect(finalOf(sessionId, 'hopeful', 'anything else')).resolves.toBe('still here');
      expect((await h.statesOf(sessionId)).hopeful).toMatchObject({ state: 'idle' });
    });

    it('a server that dies mid-call is a tool error, and is restarted after a backoff for the next call', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(
        client,
        sessionId,
        'brave',
        [
          onTask('crash', 'crashy__crash', {}, 'error: {{result.error}}'),
          onTask('ok', 'crashy__ok', {}, '{{result}}'),
        ],
        { mcpServers: { crashy: crashyServer().config } },
      );
      const first = await finalOf(sessionId, 'brave', 'ok');
      const pid = Number(/^ok from (\d+)$/.exec(first)?.[1]);

      await expect(finalOf(sessionId, 'brave', 'crash')).resolves.toMatch(
        /^error: MCP tool 'crashy__crash' failed: .*Connection closed/,
      );
      await exited(pid);

      // The next call waits for the restart (0.5 s); dying again doubles the backoff.
      const crashAgain = await h.sendTask(sessionId, 'brave', 'crash');
      await clock.advanceWhenArmed(500);
      await expect(h.completed(crashAgain.taskId)).resolves.toMatchObject({
        result: { final: expect.stringMatching(/^error: MCP tool 'crashy__crash' failed/) },
      });
      const { taskId } = await h.sendTask(sessionId, 'brave', 'ok');
      await clock.advanceWhenArmed(1000);
      const again = ((await h.completed(taskId)) as { result: { final: string } }).result.final;
      expect(again).toMatch(/^ok from \d+$/);
      expect(again).not.toBe(first);
      expect((await h.statesOf(sessionId)).brave).toMatchObject({ state: 'idle', error_count: 0 });
    });

    it('stopping an agent mid-call puts its item back and closes the server it alone used', async () => {
      const sessionId = await startSession(client, newSessionId());
      const crashy = crashyServer();
      await createScripted(client, sessionId, 'patient', [onTask('hang', 'crashy__hang', {}, 'never')], {
        mcpServers: { crashy: crashy.config },
      });
      const { taskId } = await h.sendTask(sessionId, 'patient', 'hang');
      // The server writes its pid when the call arrives; the file can exist a moment before it holds it.
      const pidOf = () => (existsSync(crashy.hangMark) ? Number(readFileSync(crashy.hangMark, 'utf8')) : 0);
      await eventually(() => pidOf() > 0, 'the hanging call');
      const pid = pidOf();

      await client.ok('async.stopAgent', { sessionId, agentId: 'patient' });
      await exited(pid);
      await h.stateChange(sessionId, 'patient', (p) => p.state === 'stopped');
      await expect(client.ok('async.getTask', { sessionId, taskId })).resolves.toMatchObject({
        state: 'queued',
      });
    });
  });

  describe('validation of mcpServers and tools', () => {
    it('refuses a bad server name, a bad definition, and tools naming an unknown server', async () => {
      const sessionId = await startSession(client, newSessionId());
      const create = (agentId: string, config: Record<string, unknown>) =>
        client.fails('async.createAgent', { sessionId, agentId, template: 'assistant', config });
      await expect(create('v1', { mcpServers: { a__b: { command: 'x' } } })).resolves.toMatchObject({
        data: { reason: 'invalid_params' },
      });
      await expect(
        create('v2', { mcpServers: { a: { command: 'x', url: 'http://h' } } }),
      ).resolves.toMatchObject({
        data: { reason: 'invalid_params' },
      });
      await expect(create('v3', { mcpServers: { a: { url: 'ftp://h' } } })).resolves.toMatchObject({
        data: { reason: 'invalid_params' },
      });
      await expect(create('v4', { tools: ['nope__read'] })).resolves.toMatchObject({
        data: { reason: 'invalid_params', issues: [{ path: 'config.tools' }] },
      });
    });
  });
});

/** Apps of their own (one app per database at a time in this process), after the suite above has closed its app. */
describe('MCP servers with a real model and at shutdown', () => {
  const files = filesystemServer(dataDir);
  const readNotes = onTask('notes', 'files__read_text_file', { path: 'notes.txt' }, 'read: {{result}}');

  it('offers the server tools to a real model with their own JSON Schema, and sends the result back', async () => {
    const fake = await FakeOpenAI.start();
    const app = await startTestApp({
      env: { MODEL_PROVIDER: 'openai', OPENAI_BASE_URL: fake.baseURL, OPENAI_API_KEY: 'test' },
    });
    const c = await TestClient.connect(app.url);
    try {
      const sessionId = newSessionId();
      await c.ok('session.start', { sessionId });
      await c.ok('async.createAgent', {
        sessionId,
        agentId: 'reader',
        template: 'assistant',
        config: { tools: ['send_mail', 'files__read_text_file'], mcpServers: { files } },
      });
      fake.enqueue(
        {
          toolCalls: [
            {
              id: 'call_read',
              name: 'files__read_text_file',
              arguments: JSON.stringify({ path: 'notes.txt' }),
            },
          ],
        },
        { text: 'The notes say hello.' },
      );
      const { taskId } = await c.ok('async.sendTask', {
        sessionId,
        agentId: 'reader',
        prompt: 'Read notes.txt',
      });
      await expect(c.waitForTaskEnd(taskId)).resolves.toMatchObject({
        name: 'async.task.completed',
        payload: { result: { final: 'The notes say hello.' } },
      });
      const [ask, answer] = fake.requests;
      const offered = (ask.body.tools ?? []).map((t) => t.function);
      expect(offered.map((f) => f.name)).toEqual(['send_mail', 'files__read_text_file']);
      expect(offered[1].parameters).toMatchObject({
        type: 'object',
        properties: { path: { type: 'string' } },
        required: expect.arrayContaining(['path']),
      });
      expect(answer.body.messages?.at(-1)).toEqual({
        role: 'tool',
        tool_call_id: 'call_read',
        content: JSON.stringify('hello from the filesystem server'),
      });

      // A server that cannot start: the tools named one by one are offered, and calling one says why.
      await c.ok('async.createAgent', {
        sessionId,
        agentId: 'unlucky',
        template: 'assistant',
        config: {
          tools: ['ghost__read'],
          mcpServers: { ghost: { command: join(dataDir, 'no-such-mcp-server') } },
        },
      });
      fake.enqueue(
        { toolCalls: [{ id: 'call_ghost', name: 'ghost__read', arguments: '{}' }] },
        { text: 'The ghost server is down.' },
      );
      const ghost = await c.ok('async.sendTask', { sessionId, agentId: 'unlucky', prompt: 'Read it' });
      await expect(c.waitForTaskEnd(ghost.taskId)).resolves.toMatchObject({ name: 'async.task.completed' });
      const [offer, told] = fake.requests.slice(2);
      expect((offer.body.tools ?? []).map((t) => t.function.name)).toEqual(['ghost__read']);
      expect(JSON.parse(told.body.messages?.at(-1)?.content)).toEqual({
        error: expect.stringMatching(/^MCP server 'ghost' did not start: .*ENOENT/),
      });
    } finally {
      c.close();
      await app.close();
      await fake.close();
    }
  });

  it('leaves no server process behind when the app closes', async () => {
    const app = await startTestApp();
    const c = await TestClient.connect(app.url);
    const sessionId = newSessionId();
    await c.ok('session.start', { sessionId });
    await c.ok('async.createAgent', {
      sessionId,
      agentId: 'reader',
      template: 'assistant',
      config: { script: [readNotes], mcpServers: { files, other: filesystemServer(dataDir) } },
    });
    const { taskId } = await c.ok('async.sendTask', { sessionId, agentId: 'reader', prompt: 'notes' });
    await c.waitForTaskEnd(taskId);
    const pids = app.app.get(McpServersService).pids();
    expect(pids).toHaveLength(2);
    c.close();
    await app.close();
    expect(pids.filter(isRunning)).toEqual([]);
  });
});

describe('The feedback workflow: feedback-analyzer reads examples/data/feedback.csv', () => {
  let sut: TestApp;
  let client: TestClient;

  beforeAll(async () => {
    sut = await startTestApp();
    client = await TestClient.connect(sut.url);
  });

  afterAll(async () => {
    client.close();
    await sut.close();
  });

  it('reads the file through the filesystem server and mails it to the writer, who gets it approved', async () => {
    const sessionId = await startSession(client, newSessionId());
    await client.ok('async.createAgent', { sessionId, agentId: 'analyzer', template: 'feedback-analyzer' });
    for (const agentId of ['writer', 'reviewer']) {
      await client.ok('async.createAgent', { sessionId, agentId });
    }
    const { taskId } = await client.ok('async.sendTask', {
      sessionId,
      agentId: 'analyzer',
      prompt: 'Analyze customer sentiment from feedback.csv',
    });
    await expect(client.waitForTaskEnd(taskId)).resolves.toMatchObject({
      name: 'async.task.completed',
      payload: { result: { final: 'Analysis of feedback.csv sent to writer' } },
    });
    const csv = readFileSync(join(__dirname, '..', '..', 'examples', 'data', 'feedback.csv'), 'utf8');
    const toWriter = await client.waitFor(
      'async.mail.sent',
      (p) => p.sessionId === sessionId && p.message.to === 'writer',
    );
    expect(toWriter.message.body).toContain(
      'Sentiment analysis of: Analyze customer sentiment from feedback.csv',
    );
    expect(toWriter.message.body).toContain(csv.trim());
    const toUser = await client.waitFor(
      'async.mail.sent',
      (p) => p.sessionId === sessionId && p.message.to === 'user',
    );
    expect(toUser.message).toMatchObject({ from: 'writer', subject: 'Report approved' });
  });
});
