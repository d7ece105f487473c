import { DatabaseService } from 'src/database/database.service';
import { parsePrometheus, sum } from '../support/prometheus';
import { startTestApp, TestApp } from '../support/test-app';

const get = async (url: string) => {
  const res = await fetch(url);
  return { status: res.status, body: await res.text() };
};

describe('health and liveness', () => {
  let sut: TestApp;

  beforeAll(async () => {
    sut = await startTestApp();
  });

  afterAll(async () => {
    await sut.close();
  });

  it('answers readiness with the database and terminus details, and liveness without asking it', async () => {
    const ready = await get(`${sut.url}/health`);
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.body)).toEqual({
      status: 'ok',
      database: 'up',
      info: { database: { status: 'up' } },
      error: {},
      details: { database: { status: 'up' } },
      node: { id: expect.any(String), sessions: 0 },
    });
    const live = await get(`${sut.url}/health/live`);
    expect(live.status).toBe(200);
    expect(JSON.parse(live.body)).toMatchObject({ status: 'ok' });
  });

  it('with the database gone: readiness 503, liveness 200, metrics still served', async () => {
    await sut.app.get(DatabaseService).onApplicationShutdown();

    const ready = await get(`${sut.url}/health`);
    expect(ready.status).toBe(503);
    expect(JSON.parse(ready.body)).toMatchObject({
      status: 'unavailable',
      database: 'down',
      error: { database: { status: 'down' } },
    });
    await expect(get(`${sut.url}/health/live`)).resolves.toMatchObject({ status: 200 });
    const metrics = await get(`${sut.url}/metrics`);
    expect(metrics.status).toBe(200);
    expect(sum(parsePrometheus(metrics.body), 'mailroom_queue_depth')).toBe(0);
  });
});
