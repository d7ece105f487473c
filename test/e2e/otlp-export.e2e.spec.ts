import { trace } from '@opentelemetry/api';
import { once } from 'node:events';
import { createServer, IncomingMessage, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { replyAll, createScripted, startSession } from '../factories/agents';
import { newSessionId } from '../factories/ids';
import { TestClient } from '../support/client';
import { startTestApp } from '../support/test-app';

/** A stand-in OTLP/HTTP collector on this machine: keeps every request it is sent. */
async function startCollector() {
  const received: Array<{ path: string; contentType: string; body: any }> = [];
  let onRequest: () => void = () => undefined;
  const server: Server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({
        path: req.url ?? '',
        contentType: req.headers['content-type'] ?? '',
        body: JSON.parse(Buffer.concat(chunks).toString('utf8')),
      });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      onRequest();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    next: () => new Promise<void>((resolve) => (onRequest = resolve)),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('trace export', () => {
  it('starts no tracing SDK when OTEL_EXPORTER_OTLP_ENDPOINT is unset', async () => {
    const sut = await startTestApp();
    try {
      const span = trace.getTracer('probe').startSpan('probe');
      expect(span.isRecording()).toBe(false);
      span.end();
    } finally {
      await sut.close();
    }
  });

  it('exports spans over OTLP/HTTP to the endpoint when it is set, flushed at shutdown', async () => {
    const collector = await startCollector();
    const sut = await startTestApp({
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: collector.url, OTEL_SERVICE_NAME: 'mailroom-test' },
    });
    const client = await TestClient.connect(sut.url);
    try {
      const sessionId = await startSession(client, newSessionId('otlp'));
      await createScripted(client, sessionId, 'solo', replyAll('done'));
      const task = await client.ok('async.sendTask', { sessionId, agentId: 'solo', prompt: 'go' });
      await client.waitForTaskEnd(task.taskId);
    } finally {
      client.close();
      const exported = collector.next();
      await sut.close();
      // The batch is sent by the shutdown at the latest.
      if (collector.received.length === 0) {
        await exported;
      }
      await collector.close();
    }
    const spans = collector.received.flatMap((r) =>
      r.body.resourceSpans.flatMap((rs: any) =>
        rs.scopeSpans.flatMap((ss: any) => ss.spans.map((s: any) => ({ ...s, resource: rs.resource }))),
      ),
    );
    expect(collector.received[0]).toMatchObject({ path: '/v1/traces', contentType: 'application/json' });
    const item = spans.find((s: any) => s.name === 'invoke_agent solo');
    expect(item).toBeDefined();
    expect(item.resource.attributes).toContainEqual({
      key: 'service.name',
      value: { stringValue: 'mailroom-test' },
    });
    expect(spans.map((s: any) => s.name)).toEqual(
      expect.arrayContaining(['chat scripted', 'db.transaction']),
    );
    // The app let go of the global provider: the API is a no-op again.
    expect(trace.getTracer('probe').startSpan('after').isRecording()).toBe(false);
  });
});
