import WebSocket from 'ws';
import { newSessionId } from '../factories/ids';
import { startTestApp, TestApp } from '../support/test-app';

/** A plain WebSocket client speaking JSON-RPC: replies by id, notifications kept in order. */
class WsClient {
  readonly notifications: Array<{ method: string; params: any }> = [];
  private readonly replies: any[] = [];
  private listeners: Array<() => void> = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const message = JSON.parse((data as Buffer).toString('utf8'));
      for (const m of Array.isArray(message) ? message : [message]) {
        if (m.method && m.id === undefined) {
          this.notifications.push({ method: m.method, params: m.params });
        } else {
          this.replies.push(m);
        }
      }
      this.listeners.forEach((l) => l());
    });
  }

  static connect(url: string): Promise<WsClient> {
    const ws = new WebSocket(`${url.replace('http', 'ws')}/ws`);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new WsClient(ws)));
      ws.once('error', reject);
    });
  }

  send(raw: string): void {
    this.ws.send(raw);
  }

  /** The next reply that satisfies `match`, received or to come. */
  reply(match: (r: any) => boolean): Promise<any> {
    return this.until(() => this.replies.find(match));
  }

  notification(method: string, match: (p: any) => boolean = () => true): Promise<any> {
    return this.until(() => this.notifications.find((n) => n.method === method && match(n.params))?.params);
  }

  private until<T>(probe: () => T | undefined): Promise<T> {
    return new Promise((resolve) => {
      const check = () => {
        const found = probe();
        if (found !== undefined) {
          this.listeners = this.listeners.filter((l) => l !== check);
          resolve(found);
        }
      };
      this.listeners.push(check);
      check();
    });
  }

  close(): void {
    this.ws.close();
  }
}

describe('JSON-RPC transports', () => {
  let sut: TestApp;
  const post = (body: string) =>
    fetch(`${sut.url}/rpc`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  const rpc = async (body: unknown): Promise<any> => (await post(JSON.stringify(body))).json();

  beforeAll(async () => {
    sut = await startTestApp();
  });

  afterAll(async () => {
    await sut.close();
  });

  describe('POST /rpc', () => {
    it('answers a JSON-RPC 2.0 request with its id', async () => {
      const sessionId = newSessionId();
      await expect(
        rpc({ jsonrpc: '2.0', id: 7, method: 'session.start', params: { sessionId } }),
      ).resolves.toEqual({
        jsonrpc: '2.0',
        id: 7,
        result: { sessionId, createdAt: expect.any(String) },
      });
    });

    it("takes the seed's bare {method, params} payloads unchanged, answering with id null", async () => {
      const sessionId = newSessionId();
      await rpc({ method: 'session.start', params: { sessionId } });
      const reply = await rpc({
        method: 'async.createAgent',
        params: { sessionId, agentId: 'analyzer', autoStart: true },
      });
      expect(reply).toEqual({
        jsonrpc: '2.0',
        id: null,
        result: { agentId: 'analyzer', state: 'idle', template: 'analyzer' },
      });
      const states = await rpc({ method: 'async.getAgentStates', params: { sessionId } });
      expect(states.result.agents.analyzer).toMatchObject({ state: expect.any(String), queue_size: 0 });
    });

    it('answers a batch in order, leaving out notifications', async () => {
      const replies = await rpc([
        { jsonrpc: '2.0', id: 'a', method: 'templates.list' },
        { jsonrpc: '2.0', method: 'session.list' },
        { jsonrpc: '2.0', id: 'b', method: 'async.nope', params: {} },
      ]);
      expect(replies).toHaveLength(2);
      expect(replies[0]).toMatchObject({ id: 'a', result: { templates: expect.any(Array) } });
      expect(replies[1]).toEqual({
        jsonrpc: '2.0',
        id: 'b',
        error: { code: -32601, message: expect.any(String), data: { reason: 'method_not_found' } },
      });
    });

    it('refuses a batch of more than 100 requests with one invalid_request error, running none of them', async () => {
      const starts = (n: number) => {
        const ids = Array.from({ length: n }, () => newSessionId('batch'));
        const batch = ids.map((sessionId, i) => ({
          jsonrpc: '2.0',
          id: i,
          method: 'session.start',
          params: { sessionId },
        }));
        return { ids, batch };
      };
      const tooMany = starts(101);

      await expect(rpc(tooMany.batch)).resolves.toEqual({
        jsonrpc: '2.0',
        id: null,
        error: { code: -32600, message: expect.stringMatching(/100/), data: { reason: 'invalid_request' } },
      });

      const enough = starts(100);
      const replies = await rpc(enough.batch);
      expect(replies).toHaveLength(100);
      expect(replies.map((r: any) => r.id)).toEqual(enough.batch.map((b) => b.id));
      expect(replies.map((r: any) => r.result?.sessionId)).toEqual(enough.ids);
      const { result } = await rpc({ jsonrpc: '2.0', id: 1, method: 'session.list' });
      const listed = new Set(result.sessions.map((s: any) => s.sessionId));
      expect(enough.ids.filter((id) => !listed.has(id))).toEqual([]);
      expect(tooMany.ids.filter((id) => listed.has(id))).toEqual([]);
    });

    it('answers a lone notification with 204 and no body', async () => {
      const res = await post(JSON.stringify({ jsonrpc: '2.0', method: 'session.list' }));
      expect(res.status).toBe(204);
    });

    it('never answers a notification, even one with positional params', async () => {
      const res = await post(JSON.stringify({ jsonrpc: '2.0', method: 'session.list', params: [1] }));
      expect(res.status).toBe(204);
      const reply = await rpc({ jsonrpc: '2.0', id: 3, method: 'session.list', params: [1] });
      expect(reply.error).toMatchObject({
        code: -32602,
        data: { reason: 'invalid_params', issues: [{ path: '' }] },
      });
    });

    it.each([
      ['not JSON', '{"method": ', -32700, 'parse_error'],
      ['an empty batch', '[]', -32600, 'invalid_request'],
      ['not an object', '42', -32600, 'invalid_request'],
      [
        'a wrong jsonrpc version',
        '{"jsonrpc":"1.0","id":1,"method":"session.list"}',
        -32600,
        'invalid_request',
      ],
      ['no method', '{"jsonrpc":"2.0","id":1}', -32600, 'invalid_request'],
      [
        'positional params',
        '{"jsonrpc":"2.0","id":1,"method":"session.list","params":[1]}',
        -32602,
        'invalid_params',
      ],
    ])('answers %s with the matching error', async (_what, body, code, reason) => {
      const res = await post(body);
      expect(res.status).toBe(200);
      const reply = await res.json();
      expect(reply).toMatchObject({ jsonrpc: '2.0', error: { code, data: { reason } } });
    });

    it('maps method errors exactly as socket.io does', async () => {
      const reply = await rpc({
        jsonrpc: '2.0',
        id: 1,
        method: 'async.getAgentStates',
        params: { sessionId: 'nope-1' },
      });
      expect(reply.error).toMatchObject({ code: -32002, data: { reason: 'session_not_found' } });
      const bad = await rpc({
        jsonrpc: '2.0',
        id: 2,
        method: 'async.createAgent',
        params: { sessionId: 'x', agentId: '' },
      });
      expect(bad.error).toMatchObject({ code: -32602, data: { reason: 'invalid_params' } });
      expect(bad.error.data.issues.map((i: any) => i.path)).toEqual(['agentId']);
    });
  });

  describe('/ws', () => {
    it('serves requests and pushes the subscribed session as notifications', async () => {
      const client = await WsClient.connect(sut.url);
      const sessionId = newSessionId();
      client.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'session.start', params: { sessionId } }));
      await expect(client.reply((r) => r.id === 1)).resolves.toMatchObject({ result: { sessionId } });

      client.send(
        JSON.stringify({
          jsonrpc: '2.0',
          id: 2,
          method: 'async.createAgent',
          params: { sessionId, agentId: 'reviewer', autoStart: true },
        }),
      );
      await client.reply((r) => r.id === 2);
      // The seed's bare payload works here too.
      client.send(
        JSON.stringify({
          method: 'async.sendTask',
          params: { sessionId, agentId: 'reviewer', prompt: 'Review this' },
        }),
      );
      const { result } = await client.reply((r) => r.id === null && r.result?.taskId);
      const done = await client.notification('async.task.completed', (p) => p.taskId === result.taskId);
      expect(done).toMatchObject({
        sessionId,
        agentId: 'reviewer',
        seq: expect.any(Number),
        at: expect.any(String),
      });
      client.close();
    });

    it('refuses a batch of more than 100 requests and keeps the connection', async () => {
      const client = await WsClient.connect(sut.url);
      const batch = (n: number, from: number) =>
        JSON.stringify(
          Array.from({ length: n }, (_, i) => ({ jsonrpc: '2.0', id: from + i, method: 'templates.list' })),
        );
      client.send(batch(101, 1_000));
      await expect(client.reply((r) => r.error?.code === -32600)).resolves.toMatchObject({
        id: null,
        error: { data: { reason: 'invalid_request' } },
      });
      client.send(batch(100, 2_000));
      await expect(client.reply((r) => r.id === 2_099)).resolves.toMatchObject({
        result: { templates: expect.any(Array) },
      });
      client.close();
    });

    it('answers malformed messages with a parse error and keeps the connection', async () => {
      const client = await WsClient.connect(sut.url);
      client.send('not json');
      await expect(client.reply((r) => r.error?.code === -32700)).resolves.toMatchObject({ id: null });
      client.send(JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'session.list' }));
      await expect(client.reply((r) => r.id === 9)).resolves.toMatchObject({
        result: { sessions: expect.any(Array) },
      });
      client.close();
    });
  });
});
