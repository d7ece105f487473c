import Ajv2020, { ValidateFunction } from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import { newSessionId } from '../factories/ids';
import { TestClient } from '../support/client';
import { startTestApp, TestApp } from '../support/test-app';

type Doc = { openapi: string; paths: Record<string, Record<string, any>>; components: any };

/** Every `/api` route Express serves, as `VERB /api/x/{param}`. */
function servedRoutes(sut: TestApp): string[] {
  const express = sut.app.getHttpAdapter().getInstance() as {
    router: { stack: Array<{ route?: { path: string; methods: Record<string, boolean> } }> };
  };
  return express.router.stack
    .filter((l) => l.route?.path.startsWith('/api') && !l.route.path.includes('*')) // not the catch-all 404
    .flatMap((l) =>
      Object.keys(l.route!.methods).map(
        (m) => `${m.toUpperCase()} ${l.route!.path.replace(/:(\w+)/g, '{$1}')}`,
      ),
    );
}

/**
 * A REST client that checks what it sends and what it gets against the OpenAPI document the server
 * serves: the request body against the operation's requestBody schema, the response against the
 * schema documented for its status.
 */
class DocumentedClient {
  private readonly ajv = addFormats(new Ajv2020({ strict: false, allErrors: true }));
  private readonly compiled = new Map<object, ValidateFunction>();

  constructor(
    private readonly baseUrl: string,
    readonly doc: Doc,
    private readonly headers: Record<string, string> = {},
  ) {
    this.ajv.addSchema({ $id: 'doc', components: doc.components });
  }

  /** Sends the request; returns status and body after validating both against the document. */
  async send(verb: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
    return this.request(verb, path, body, true);
  }

  /** Sends a request the document says is invalid; still checks the (error) response. */
  sendInvalid(verb: string, path: string, body: unknown): Promise<{ status: number; body: any }> {
    return this.request(verb, path, body, false);
  }

  private async request(verb: string, path: string, body: unknown, checkRequest: boolean) {
    const op = this.operation(verb, path);
    if (body !== undefined && checkRequest) {
      this.check(op.requestBody.content['application/json'].schema, body, `${verb} ${path} request`);
    }
    const res = await fetch(`${this.baseUrl}${path}`, {
      method: verb,
      headers: { 'content-type': 'application/json', ...this.headers },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const json = await res.json();
    const documented = op.responses[String(res.status)];
    if (!documented) {
      throw new Error(`${verb} ${path} answered ${res.status}, which the document does not list`);
    }
    this.check(documented.content['application/json'].schema, json, `${verb} ${path} ${res.status}`);
    return { status: res.status, body: json };
  }

  /** Sends and expects 200; returns the body. */
  async ok(verb: string, path: string, body?: unknown): Promise<any> {
    const res = await this.send(verb, path, body);
    if (res.status !== 200) {
      throw new Error(`${verb} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
    }
    return res.body;
  }

  operation(verb: string, path: string): any {
    const bare = path.split('?')[0];
    for (const [template, item] of Object.entries(this.doc.paths)) {
      const pattern = new RegExp(`^${template.replace(/\{\w+\}/g, '[^/]+')}$`);
      if (pattern.test(bare) && item[verb.toLowerCase()]) {
        return item[verb.toLowerCase()];
      }
    }
    throw new Error(`${verb} ${bare} is not in the document`);
  }

  private check(schema: any, value: unknown, what: string): void {
    // Component references are resolved against the document registered as `doc`.
    const resolved = JSON.parse(JSON.stringify(schema).replace(/"#\/components\//g, '"doc#/components/'));
    let validate = this.compiled.get(schema);
    if (!validate) {
      validate = this.ajv.compile(resolved);
      this.compiled.set(schema, validate);
    }
    if (!validate(value)) {
      throw new Error(
        `${what} does not match the document: ${this.ajv.errorsText(validate.errors)}\n${JSON.stringify(value)}`,
      );
    }
  }
}

describe('REST API under /api', () => {
  let sut: TestApp;
  let doc: Doc;
  let api: DocumentedClient;
  let socket: TestClient;

  beforeAll(async () => {
    sut = await startTestApp();
    doc = (await (await fetch(`${sut.url}/docs-json`)).json()) as Doc;
    api = new DocumentedClient(sut.url, doc);
    socket = await TestClient.connect(sut.url);
  });

  afterAll(async () => {
    socket.close();
    await sut.close();
  });

  describe('the OpenAPI document', () => {
    it('is OpenAPI 3.1 and lists every /api route the server serves, each with its method and schemas', () => {
      expect(doc.openapi).toBe('3.1.0');
      const served = servedRoutes(sut);
      expect(served.length).toBeGreaterThanOrEqual(20);
      const documented = Object.entries(doc.paths).flatMap(([path, item]) =>
        Object.keys(item).map((verb) => `${verb.toUpperCase()} ${path}`),
      );
      expect(documented.sort()).toEqual(served.sort());
      for (const item of Object.values(doc.paths)) {
        for (const op of Object.values(item)) {
          expect(op.operationId).toMatch(/^(session|async|templates)\./);
          expect(op.responses['200'].content['application/json'].schema).toBeDefined();
          expect(op.responses['404'].content['application/json'].schema).toEqual({
            $ref: '#/components/schemas/Error',
          });
        }
      }
    });

    it("takes each operation's params from the method's own schema", () => {
      const sendTask = api.operation('POST', '/api/sessions/s/agents/a/tasks');
      const body = sendTask.requestBody.content['application/json'].schema;
      expect(body).toMatchObject({
        type: 'object',
        required: ['prompt'],
        additionalProperties: false,
        properties: { priority: { enum: ['low', 'normal', 'high', 'urgent'] } },
      });
      expect(body.properties.sessionId).toBeUndefined(); // in the path
      const pathParam = sendTask.parameters.find((p: any) => p.name === 'agentId');
      expect(pathParam).toMatchObject({ in: 'path', required: true, schema: { maxLength: 64 } });
      const history = api.operation('GET', '/api/sessions/s/history');
      expect(history.parameters.map((p: any) => `${p.in}:${p.name}`)).toEqual([
        'path:sessionId',
        'query:after',
        'query:limit',
      ]);
    });

    it('is served as Swagger UI at /docs from local assets, with nothing from a CDN', async () => {
      const res = await fetch(`${sut.url}/docs`);
      expect(res.status).toBe(200);
      const html = await res.text();
      expect(html).toContain('swagger-ui');
      expect(html).not.toMatch(/(src|href)=["']?(https?:)?\/\//);
      const assets = [...html.matchAll(/(?:src|href)=["']([^"']+\.(?:js|css))["']/g)].map((m) => m[1]);
      expect(assets.length).toBeGreaterThan(0);
      for (const asset of assets) {
        const url = new URL(asset, `${sut.url}/docs`);
        expect(`${url.pathname} ${(await fetch(url)).status}`).toBe(`${url.pathname} 200`);
      }
    });
  });

  describe('the admin actions and reads', () => {
    it('runs a session end to end, every request and response as documented', async () => {
      const sessionId = newSessionId('rest');
      const s = `/api/sessions/${sessionId}`;
      await expect(api.ok('POST', '/api/sessions', { sessionId })).resolves.toEqual({
        sessionId,
        createdAt: expect.any(String),
      });
      await socket.ok('session.subscribe', { sessionId });
      await expect(api.ok('POST', `${s}/agents`, { agentId: 'analyzer' })).resolves.toEqual({
        agentId: 'analyzer',
        state: 'idle',
        template: 'analyzer',
      });
      await api.ok('POST', `${s}/agents`, { agentId: 'writer', autoStart: false });
      await expect(api.ok('POST', `${s}/agents/writer/start`)).resolves.toEqual({
        agentId: 'writer',
        state: 'idle',
      });

      const task = await api.ok('POST', `${s}/agents/writer/tasks`, {
        prompt: 'Prepare the report template',
      });
      expect(task).toEqual({ taskId: expect.any(String), queued: true, queueSize: expect.any(Number) });
      await socket.waitFor('async.task.completed', (p) => p.taskId === task.taskId);
      await expect(api.ok('GET', `${s}/tasks/${task.taskId}`)).resolves.toMatchObject({
        taskId: task.taskId,
        agentId: 'writer',
        state: 'done',
        result: { final: expect.any(String) },
      });
      await expect(api.ok('POST', `${s}/tasks/${task.taskId}/cancel`)).resolves.toEqual({
        taskId: task.taskId,
        state: 'done',
      });

      const states = await api.ok('GET', `${s}/agents`);
      expect(Object.keys(states.agents).sort()).toEqual(['analyzer', 'writer']);

      const sent = await api.ok('POST', `${s}/mail`, { to: 'analyzer', subject: 'Hello', body: 'From REST' });
      const mail = await api.ok('GET', `${s}/mail?agentId=analyzer&limit=5`);
      expect(mail.messages.map((m: any) => m.messageId)).toContain(sent.messageId);

      await expect(
        api.ok('POST', `${s}/agents/writer/sleep`, { wakeEvents: ['data_ready'] }),
      ).resolves.toMatchObject({ agentId: 'writer', state: 'sleeping', wakeEvents: ['data_ready'] });
      await expect(api.ok('POST', `${s}/agents/writer/wake`, { reason: 'REST' })).resolves.toMatchObject({
        woke: true,
      });
      await api.ok('POST', `${s}/agents/writer/sleep`, { wakeEvents: ['data_ready'] });
      await expect(api.ok('POST', `${s}/events`, { event: 'data_ready', data: { n: 1 } })).resolves.toEqual({
        event: 'data_ready',
        delivered: ['writer'],
        woke: ['writer'],
      });

      const scheduled = await api.ok('POST', `${s}/agents/analyzer/schedules`, {
        cron: '0 * * * *',
        event: 'hourly_check',
      });
      const schedules = await api.ok('GET', `${s}/schedules`);
      expect(schedules.schedules.map((x: any) => x.scheduleId)).toEqual([scheduled.scheduleId]);
      await expect(api.ok('DELETE', `${s}/schedules/${scheduled.scheduleId}`)).resolves.toEqual({
        scheduleId: scheduled.scheduleId,
        removed: true,
      });

      const page = await api.ok('GET', `${s}/history?after=0&limit=3`);
      expect(page.events.map((e: any) => e.seq)).toEqual([1, 2, 3]);
      expect(page.nextAfter).toBe(3);

      await expect(api.ok('POST', `${s}/agents/analyzer/stop`)).resolves.toEqual({
        agentId: 'analyzer',
        state: 'stopped',
      });
      await expect(api.ok('POST', `${s}/stop`)).resolves.toEqual({ sessionId, stopped: true });
      const { sessions } = await api.ok('GET', '/api/sessions');
      expect(sessions.map((x: any) => x.sessionId)).toContain(sessionId);
      const { templates } = await api.ok('GET', '/api/templates');
      expect(templates.map((t: any) => t.name)).toContain('assistant');
    });
  });

  describe('errors', () => {
    it("maps each reason to its HTTP status with the methods' { error: { code, message, data } } body", async () => {
      const sessionId = newSessionId('rest-errors');
      const s = `/api/sessions/${sessionId}`;
      await expect(api.send('GET', `${s}/agents`)).resolves.toMatchObject({
        status: 404,
        body: { error: { code: -32002, data: { reason: 'session_not_found' } } },
      });
      await api.ok('POST', '/api/sessions', { sessionId });
      await api.ok('POST', `${s}/agents`, { agentId: 'writer' });
      await expect(api.send('POST', `${s}/agents`, { agentId: 'writer' })).resolves.toMatchObject({
        status: 409,
        body: { error: { code: -32004, data: { reason: 'conflict' } } },
      });
      await expect(api.send('POST', `${s}/agents/reviewer/stop`)).resolves.toMatchObject({
        status: 404,
        body: { error: { code: -32003, data: { reason: 'agent_not_found', knownAgents: ['writer'] } } },
      });
      await expect(
        api.sendInvalid('POST', `${s}/agents/writer/tasks`, { prompt: '', urgent: true }),
      ).resolves.toEqual({
        status: 400,
        body: {
          error: {
            code: -32602,
            message: expect.any(String),
            data: {
              reason: 'invalid_params',
              issues: [
                { path: 'prompt', message: expect.any(String) },
                { path: 'urgent', message: 'unknown param' },
              ],
            },
          },
        },
      });
      await expect(api.send('GET', `${s}/history?limit=lots`)).resolves.toMatchObject({
        status: 400,
        body: { error: { data: { reason: 'invalid_params', issues: [{ path: 'limit' }] } } },
      });
    });

    it('answers an unknown /api path with the protocol error body', async () => {
      const res = await fetch(`${sut.url}/api/sesions`);
      expect(res.status).toBe(404);
      await expect(res.json()).resolves.toEqual({
        error: {
          code: -32601,
          message: 'No route GET /api/sesions; the routes are listed at /docs (/docs-json)',
          data: { reason: 'method_not_found' },
        },
      });
    });

    it('refuses bad JSON, a body that is not an object, and ids given twice', async () => {
      const sessionId = newSessionId('rest-body');
      await api.ok('POST', '/api/sessions', { sessionId });
      const raw = (body: string) =>
        fetch(`${sut.url}/api/sessions/${sessionId}/agents`, {
          method: 'POST',
          body,
          headers: { 'content-type': 'application/json' },
        });
      const bad = await raw('{"agentId": ');
      expect(bad.status).toBe(400);
      await expect(bad.json()).resolves.toMatchObject({
        error: { code: -32700, data: { reason: 'parse_error' } },
      });
      const list = await raw('["writer"]');
      expect(list.status).toBe(400);
      await expect(list.json()).resolves.toMatchObject({ error: { data: { reason: 'invalid_params' } } });
      await expect(
        api.sendInvalid('POST', `/api/sessions/${sessionId}/agents`, { sessionId: 'other', agentId: 'w' }),
      ).resolves.toMatchObject({
        status: 400,
        body: {
          error: { data: { issues: [{ path: 'sessionId', message: expect.stringContaining('path') }] } },
        },
      });
    });
  });

  describe('with tokens', () => {
    let secured: TestApp;

    beforeAll(async () => {
      secured = await startTestApp({ env: { API_TOKENS: 'alice-token,bob-token' } });
    });

    afterAll(async () => {
      await secured.close();
    });

    it('needs a bearer token, and a session belongs to the token that started it', async () => {
      const anonymous = new DocumentedClient(secured.url, doc);
      const alice = new DocumentedClient(secured.url, doc, { authorization: 'Bearer alice-token' });
      const bob = new DocumentedClient(secured.url, doc, { authorization: 'Bearer bob-token' });
      await expect(anonymous.send('GET', '/api/sessions')).resolves.toEqual({
        status: 401,
        body: {
          error: { code: -32001, message: 'Missing or wrong token', data: { reason: 'unauthorized' } },
        },
      });
      const { sessionId } = await alice.ok('POST', '/api/sessions', {});
      await alice.ok('POST', `/api/sessions/${sessionId}/agents`, { agentId: 'writer' });
      await expect(bob.send('GET', `/api/sessions/${sessionId}/agents`)).resolves.toMatchObject({
        status: 404,
        body: { error: { data: { reason: 'session_not_found' } } },
      });
      const ids = async (c: DocumentedClient) =>
        ((await c.ok('GET', '/api/sessions')).sessions as any[]).map((x) => x.sessionId);
      await expect(ids(alice)).resolves.toContain(sessionId);
      await expect(ids(bob)).resolves.not.toContain(sessionId);
    });
  });
});
