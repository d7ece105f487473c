import { startSession } from '../factories/agents';
import { newSessionId } from '../factories/ids';
import { TestClient } from '../support/client';
import { startTestApp, TestApp } from '../support/test-app';

/** Errors that tell a newcomer what to do next. */
describe('Error hints', () => {
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

  it('suggests the method a mistyped name was meant to be', async () => {
    await expect(client.fails('async.getAgentState', {})).resolves.toEqual({
      code: -32601,
      message: "Unknown method 'async.getAgentState'. Did you mean 'async.getAgentStates'?",
      data: { reason: 'method_not_found', didYouMean: 'async.getAgentStates' },
    });
    await expect(client.fails('no.such.thing', {})).resolves.toEqual({
      code: -32601,
      message: "Unknown method 'no.such.thing'",
      data: { reason: 'method_not_found' },
    });
  });

  it('says to call session.start first when the session is unknown', async () => {
    const sessionId = newSessionId();
    const error = await client.fails('async.createAgent', { sessionId, agentId: 'analyzer' });
    expect(error).toMatchObject({ code: -32002, data: { reason: 'session_not_found' } });
    expect(error.message).toBe(
      `Session '${sessionId}' not found; call session.start { sessionId: '${sessionId}' } first`,
    );
  });

  it("lists the session's agents when an agent is unknown", async () => {
    const sessionId = await startSession(client, newSessionId());
    await expect(client.fails('async.startAgent', { sessionId, agentId: 'analyser' })).resolves.toMatchObject(
      {
        code: -32003,
        message: `Agent 'analyser' not found in session '${sessionId}' (it has no agents yet)`,
        data: { reason: 'agent_not_found', knownAgents: [] },
      },
    );
    await client.ok('async.createAgent', { sessionId, agentId: 'analyzer' });
    await client.ok('async.createAgent', { sessionId, agentId: 'writer' });
    await expect(client.fails('async.stopAgent', { sessionId, agentId: 'analyser' })).resolves.toEqual({
      code: -32003,
      message: `Agent 'analyser' not found in session '${sessionId}' (its agents: analyzer, writer)`,
      data: { reason: 'agent_not_found', knownAgents: ['analyzer', 'writer'] },
    });
    await expect(
      client.fails('async.sendMail', { sessionId, to: 'reviewer', subject: 's', body: 'b' }),
    ).resolves.toMatchObject({ data: { reason: 'agent_not_found', knownAgents: ['analyzer', 'writer'] } });
  });
});
