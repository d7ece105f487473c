import { io } from 'socket.io-client';
import WebSocket from 'ws';
import { newSessionId } from '../factories/ids';
import { TestClient } from '../support/client';
import { startTestApp, TestApp } from '../support/test-app';

const ALPHA = 'alpha-token-123';
const BETA = 'beta-token-456';

describe('authentication with API_TOKENS', () => {
  let sut: TestApp;

  beforeAll(async () => {
    sut = await startTestApp({ env: { API_TOKENS: `${ALPHA}, ${BETA}` } });
  });

  afterAll(async () => {
    await sut.close();
  });

  /** The socket.io connect error for a handshake with `auth`. */
  const refusal = (auth?: Record<string, unknown>) =>
    new Promise<{ message: string; data: unknown }>((resolve, reject) => {
      const socket = io(sut.url, { transports: ['websocket'], reconnection: false, forceNew: true, auth });
      socket.once('connect', () => {
        socket.close();
        reject(new Error('connected without a good token'));
      });
      socket.once('connect_error', (err: Error & { data?: unknown }) => {
        socket.close();
        resolve({ message: err.message, data: err.data });
      });
    });

  const rpc = (body: unknown, token?: string) =>
    fetch(`${sut.url}/rpc`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
    });

  describe('socket.io', () => {
    it.each([[undefined], [{}], [{ token: 'wrong' }]])(
      'refuses the handshake auth %j as unauthorized',
      async (auth) => {
        await expect(refusal(auth)).resolves.toEqual({
          message: 'Missing or wrong token',
          data: { code: -32001, reason: 'unauthorized' },
        });
      },
    );

    it('serves a client with a configured token', async () => {
      const client = await TestClient.connect(sut.url, { token: BETA });
      await expect(client.ok('session.list', {})).resolves.toEqual({ sessions: expect.any(Array) });
      client.close();
    });
  });

  describe('POST /rpc', () => {
    it('answers 401 with a JSON-RPC unauthorized error without a good bearer token', async () => {
      for (const token of [undefined, 'wrong']) {
        const res = await rpc({ jsonrpc: '2.0', id: 1, method: 'session.list' }, token);
        expect(res.status).toBe(401);
        await expect(res.json()).resolves.toEqual({
          jsonrpc: '2.0',
          id: null,
          error: { code: -32001, message: 'Missing or wrong token', data: { reason: 'unauthorized' } },
        });
      }
    });

    it('serves a good bearer token', async () => {
      const res = await rpc({ jsonrpc: '2.0', id: 1, method: 'session.list' }, ALPHA);
      expect(res.status).toBe(200);
      await expect(res.json()).resolves.toMatchObject({ id: 1, result: { sessions: expect.any(Array) } });
    });
  });

  describe('/ws', () => {
    const open = (url: string, headers?: Record<string, string>) =>
      new Promise<WebSocket | number>((resolve) => {
        const ws = new WebSocket(url, { headers });
        ws.once('open', () => resolve(ws));
        ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.once('error', () => undefined);
      });
    const wsUrl = () => `${sut.url.replace('http', 'ws')}/ws`;

    it('refuses the upgrade with 401 without a good token', async () => {
      await expect(open(wsUrl())).resolves.toBe(401);
      await expect(open(wsUrl(), { authorization: 'Bearer nope' })).resolves.toBe(401);
    });

    it('accepts a bearer header or a ?token= query', async () => {
      for (const ws of [
        await open(wsUrl(), { authorization: `Bearer ${ALPHA}` }),
        await open(`${wsUrl()}?token=${BETA}`),
      ]) {
        expect(ws).toBeInstanceOf(WebSocket);
        (ws as WebSocket).close();
      }
    });
  });

  describe('session ownership', () => {
    it("hides one token's sessions from another: not listed, not found, not taken over", async () => {
      const alpha = await TestClient.connect(sut.url, { token: ALPHA });
      const beta = await TestClient.connect(sut.url, { token: BETA });
      const sessionId = newSessionId('owned');
      await alpha.ok('session.start', { sessionId });
      await alpha.ok('async.createAgent', { sessionId, agentId: 'analyzer' });

      const listed = async (c: TestClient) =>
        (await c.ok('session.list', {})).sessions.map((s: { sessionId: string }) => s.sessionId);
      await expect(listed(alpha)).resolves.toContain(sessionId);
      await expect(listed(beta)).resolves.not.toContain(sessionId);

      for (const [method, params] of [
        ['session.subscribe', { sessionId }],
        ['async.getAgentStates', { sessionId }],
        ['async.sendTask', { sessionId, agentId: 'analyzer', prompt: 'x' }],
        ['async.getHistory', { sessionId }],
        ['session.stop', { sessionId }],
      ] as const) {
        await expect(beta.fails(method, params)).resolves.toMatchObject({
          code: -32002,
          data: { reason: 'session_not_found' },
        });
      }
      await expect(beta.fails('session.start', { sessionId })).resolves.toMatchObject({
        code: -32004,
        data: { reason: 'conflict' },
      });
      // The owner still has it, untouched.
      const { agents } = await alpha.ok('async.getAgentStates', { sessionId });
      expect(agents.analyzer.queue_size).toBe(0);
      alpha.close();
      beta.close();
    });
  });
});
