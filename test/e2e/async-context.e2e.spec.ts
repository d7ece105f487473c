import { AsyncLocalStorage } from 'node:async_hooks';
import { createScripted, startSession } from '../factories/agents';
import { newSessionId } from '../factories/ids';
import { useAppWithClient } from '../support/app-with-client';

/**
 * Serving clients enters no AsyncLocalStorage: once one is entered, Node runs a hook for every
 * promise of the process, for good (about a tenth of its CPU per task). Owner work is marked where
 * it writes (ADR 0008), and HTTP requests are logged by pino-http without a per-request storage
 * (LoggingModule). Tracing, when OTEL_EXPORTER_OTLP_ENDPOINT turns it on, is the one exception.
 */
describe('async context', () => {
  const t = useAppWithClient();
  const storage = AsyncLocalStorage.prototype as unknown as Record<
    'run' | 'enterWith',
    (...a: unknown[]) => unknown
  >;
  const original = { run: storage.run, enterWith: storage.enterWith };
  const entered: string[] = [];

  beforeAll(() => {
    for (const method of ['run', 'enterWith'] as const) {
      storage[method] = function (this: unknown, ...args: unknown[]) {
        const stack = new Error(`AsyncLocalStorage.${method}`).stack ?? method;
        // jest runs each test in a storage of its own; only the app's are counted.
        if (!/^\s+at .*node_modules\/jest-/m.test(stack.split('\n')[2] ?? '')) {
          entered.push(stack);
        }
        return original[method].apply(this, args);
      };
    }
  });

  afterAll(() => {
    storage.run = original.run;
    storage.enterWith = original.enterWith;
  });

  it('is never entered by tasks, tools, mail, timers or HTTP requests', async () => {
    const sessionId = await startSession(t.client, newSessionId('async-context'));
    await createScripted(t.client, sessionId, 'answerer', [{ when: {}, do: [{ reply: 'answer' }] }]);
    await createScripted(t.client, sessionId, 'asker', [
      {
        when: {},
        do: [
          { tool: 'send_mail_with_switch', args: { to: 'answerer', subject: 'q', body: 'q' } },
          { tool: 'sleep', args: { durationSeconds: 1 } },
          { reply: 'got it' },
        ],
      },
    ]);
    const { taskId } = await t.client.ok('async.sendTask', { sessionId, agentId: 'asker', prompt: 'go' });
    await t.client.waitForTaskEnd(taskId);
    t.app.clock.advance(1_000);
    await t.client.waitFor('async.agent.stateChanged', (p) => p.agentId === 'asker' && p.reason === 'timer');
    expect((await fetch(`${t.app.url}/health`)).status).toBe(200);
    const rpc = await fetch(`${t.app.url}/rpc`, {
      method: 'POST',
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'async.getAgentStatus', params: { sessionId } }),
    });
    expect(rpc.status).toBe(200);
    expect(entered).toEqual([]);
  });
});
