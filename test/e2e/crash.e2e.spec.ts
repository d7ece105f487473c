import { ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { startSession } from '../factories/agents';
import { newSessionId } from '../factories/ids';
import { TestClient } from '../support/client';
import { TestDatabase } from '../support/test-app';

const ROOT = join(__dirname, '..', '..');

/** The real server in its own process, on the suite's data, so that it can be killed with SIGKILL. */
async function startServer(db: TestDatabase): Promise<{ child: ChildProcess; url: string }> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !/^(OPENAI_|MODEL_PROVIDER|DATABASE_URL|NODE_OPTIONS)/.test(k)) {
      env[k] = v;
    }
  }
  const child = spawn(process.execPath, ['-r', '@swc-node/register', 'src/main.ts'], {
    cwd: ROOT,
    env: {
      ...env,
      PORT: '0',
      HOST: '127.0.0.1',
      DATA_DIR: db.dataDir,
      ...(db.databaseUrl ? { DATABASE_URL: db.databaseUrl } : {}),
      LOG_LEVEL: 'log',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      const m = /Mailroom listening on (http:\/\/[^\s]+)/.exec(out);
      if (m) {
        resolve(m[1]);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => reject(new Error(`server exited (${code}) before listening:\n${out}`)));
  });
  return { child, url };
}

function kill(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

describe('a killed server process', () => {
  let db: TestDatabase;
  let server: { child: ChildProcess; url: string } | undefined;
  let client: TestClient | undefined;

  beforeAll(async () => {
    db = await TestDatabase.create();
  });

  afterAll(async () => {
    client?.close();
    if (server && server.child.exitCode === null) {
      await kill(server.child);
    }
    await db.destroy();
  });

  it('loses no acknowledged task: the item in hand is retried and the queue runs after restart', async () => {
    server = await startServer(db);
    client = await TestClient.connect(server.url);
    const sessionId = await startSession(client, newSessionId('crash'));
    await client.ok('async.createAgent', {
      sessionId,
      agentId: 'worker',
      template: 'assistant',
      config: {
        script: [
          { when: { match: '^slow' }, do: [{ reply: 'slow done', delayMs: 1500 }] },
          { when: {}, do: [{ reply: 'done {{prompt}}' }] },
        ],
      },
    });
    const slow = await client.ok('async.sendTask', { sessionId, agentId: 'worker', prompt: 'slow job' });
    await client.waitFor('async.task.started', (p) => p.taskId === slow.taskId);
    const queued: string[] = [];
    for (let i = 0; i < 20; i++) {
      queued.push(
        (await client.ok('async.sendTask', { sessionId, agentId: 'worker', prompt: `job ${i}` })).taskId,
      );
    }

    client.close();
    await kill(server.child); // mid-step, with 20 acknowledged tasks queued behind it

    server = await startServer(db);
    client = await TestClient.connect(server.url);
    await client.ok('session.subscribe', { sessionId });
    for (const taskId of [slow.taskId, ...queued]) {
      const task = await client.ok('async.getTask', { sessionId, taskId });
      if (task.state !== 'done') {
        await client.waitForTaskEnd(taskId);
      }
    }
    const results = await Promise.all(
      [slow.taskId, ...queued].map((taskId) => client!.ok('async.getTask', { sessionId, taskId })),
    );
    expect(results.map((t) => t.state)).toEqual(Array(21).fill('done'));
    expect(results[0].result).toEqual({ final: 'slow done' });
    expect(results.slice(1).map((t) => t.result.final)).toEqual(queued.map((_, i) => `done job ${i}`));

    // The history is still gap-free across the crash.
    const { events } = await client.ok('async.getHistory', { sessionId, limit: 1000 });
    expect(events.map((e: { seq: number }) => e.seq)).toEqual(events.map((_: unknown, i: number) => i + 1));
  });
});
