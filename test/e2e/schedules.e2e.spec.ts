import { createScripted, startSession } from '../factories/agents';
import { newSessionId } from '../factories/ids';
import { TestClient } from '../support/client';
import { startTestApp, TestApp } from '../support/test-app';

const MINUTE = 60_000;
const iso = (ms: number) => new Date(ms).toISOString();
/** The next whole minute strictly after `ms`. */
const nextMinute = (ms: number) => Math.floor(ms / MINUTE) * MINUTE + MINUTE;

const echoSchedule = [{ when: { kind: 'schedule' }, do: [{ reply: 'fired {{kind}} {{prompt}} {{event}}' }] }];

describe('cron schedules', () => {
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

  const started = (sessionId: string, agentId: string) =>
    client
      .of('async.task.started')
      .filter((p) => p.sessionId === sessionId && p.agentId === agentId && p.kind === 'schedule');

  const completion = (sessionId: string, agentId: string, n: number) =>
    client.waitFor(
      'async.task.completed',
      (p) =>
        p.sessionId === sessionId &&
        p.agentId === agentId &&
        client.of('async.task.completed').filter((q) => q.sessionId === sessionId && q.agentId === agentId)
          .length >= n,
    );

  it('fires a prompt as a schedule work item every time the expression comes due', async () => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(client, sessionId, 'reporter', echoSchedule);
    const now = sut.clock.now();
    const scheduled = await client.ok('async.scheduleAgent', {
      sessionId,
      agentId: 'reporter',
      cron: '* * * * *',
      prompt: 'write the minute report',
    });
    expect(scheduled).toEqual({ scheduleId: expect.any(String), nextRunAt: iso(nextMinute(now)) });

    sut.clock.advance(nextMinute(now) - now);
    const first = await completion(sessionId, 'reporter', 1);
    expect(first.result.final).toBe('fired schedule write the minute report ');
    expect(started(sessionId, 'reporter')).toHaveLength(1);
    const task = await client.ok('async.getTask', { sessionId, taskId: first.taskId });
    expect(task).toMatchObject({ kind: 'schedule', state: 'done', prompt: 'write the minute report' });

    const { schedules } = await client.ok('async.listSchedules', { sessionId });
    expect(schedules).toEqual([
      expect.objectContaining({
        scheduleId: scheduled.scheduleId,
        agentId: 'reporter',
        cron: '* * * * *',
        timezone: 'UTC',
        prompt: 'write the minute report',
        event: null,
        nextRunAt: iso(nextMinute(now) + MINUTE),
      }),
    ]);

    sut.clock.advance(MINUTE);
    await completion(sessionId, 'reporter', 2);
    expect(started(sessionId, 'reporter')).toHaveLength(2);
  });

  it('wakes a sleeping agent for an event schedule, as the guide monitor wakes on hourly_check', async () => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(client, sessionId, 'watcher', echoSchedule);
    await client.ok('async.sleepAgent', { sessionId, agentId: 'watcher' });
    const now = sut.clock.now();
    const nextHour = Math.floor(now / 3_600_000) * 3_600_000 + 3_600_000;
    const { nextRunAt } = await client.ok('async.scheduleAgent', {
      sessionId,
      agentId: 'watcher',
      cron: '0 * * * *',
      event: 'hourly_check',
    });
    expect(nextRunAt).toBe(iso(nextHour));

    sut.clock.advance(nextHour - now);
    const woke = await client.waitFor(
      'async.agent.stateChanged',
      (p) => p.sessionId === sessionId && p.agentId === 'watcher' && p.previous === 'sleeping',
    );
    expect(woke.reason).toBe('schedule');
    const done = await completion(sessionId, 'watcher', 1);
    expect(done.result.final).toBe('fired schedule hourly_check hourly_check');
  });

  it('stops firing once unscheduled, and refuses to unschedule twice', async () => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(client, sessionId, 'quiet', echoSchedule);
    const { scheduleId } = await client.ok('async.scheduleAgent', {
      sessionId,
      agentId: 'quiet',
      cron: '* * * * *',
      prompt: 'tick',
    });
    await expect(client.ok('async.unschedule', { sessionId, scheduleId })).resolves.toEqual({
      scheduleId,
      removed: true,
    });
    const again = await client.fails('async.unschedule', { sessionId, scheduleId });
    expect(again).toMatchObject({ code: -32602, data: { reason: 'invalid_params' } });

    // Drive time past several would-be firings, then prove the agent is still idle with nothing queued.
    sut.clock.advance(5 * MINUTE);
    await client.ok('async.sendTask', { sessionId, agentId: 'quiet', prompt: 'marker' });
    await client.waitFor('async.task.completed', (p) => p.sessionId === sessionId && p.agentId === 'quiet');
    expect(started(sessionId, 'quiet')).toHaveLength(0);
    await expect(client.ok('async.listSchedules', { sessionId })).resolves.toEqual({ schedules: [] });
  });

  it('takes 6 fields with seconds first, and reads the fields in the given time zone', async () => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(client, sessionId, 'clock', echoSchedule);
    const now = sut.clock.now();
    const tenSeconds = Math.floor(now / 10_000) * 10_000 + 10_000;
    await expect(
      client.ok('async.scheduleAgent', { sessionId, agentId: 'clock', cron: '*/10 * * * * *', prompt: 'x' }),
    ).resolves.toMatchObject({ nextRunAt: iso(tenSeconds) });

    const { nextRunAt } = await client.ok('async.scheduleAgent', {
      sessionId,
      agentId: 'clock',
      cron: '0 9 * * *',
      timezone: 'America/New_York',
      prompt: 'morning',
    });
    // 09:00 in New York in January is 14:00 UTC.
    expect(nextRunAt).toMatch(/T14:00:00\.000Z$/);
  });

  it.each([
    [{ cron: 'every minute', prompt: 'x' }, 'cron'],
    [{ cron: '* * * *', prompt: 'x' }, 'cron'],
    [{ cron: '* * * * *', prompt: 'x', timezone: 'Mars/Olympus' }, 'timezone'],
    [{ cron: '* * * * *' }, 'prompt'],
    [{ cron: '* * * * *', event: 'bad event!' }, 'event'],
  ])('refuses %j with invalid_params at %s', async (params, path) => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(client, sessionId, 'a', echoSchedule);
    const error = await client.fails('async.scheduleAgent', { sessionId, agentId: 'a', ...params });
    expect(error).toMatchObject({ code: -32602, data: { reason: 'invalid_params' } });
    expect(error.data.issues!.map((i) => i.path)).toContain(path);
  });

  it('refuses a cron that parses but never comes due, and takes a rare one that does', async () => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(client, sessionId, 'never', echoSchedule);
    for (const cron of ['0 0 30 2 *', '0 0 31 4 *', '0 0 0 31 11 *']) {
      const error = await client.fails('async.scheduleAgent', {
        sessionId,
        agentId: 'never',
        cron,
        prompt: 'x',
      });
      expect(error).toMatchObject({ code: -32602, data: { reason: 'invalid_params' } });
      expect(error.data.issues).toEqual([{ path: 'cron', message: expect.any(String) }]);
    }
    await expect(client.ok('async.listSchedules', { sessionId })).resolves.toEqual({ schedules: [] });

    // 29 February: the clock is in 2026, so the next one is in 2028.
    await expect(
      client.ok('async.scheduleAgent', { sessionId, agentId: 'never', cron: '0 0 29 2 *', prompt: 'leap' }),
    ).resolves.toMatchObject({ nextRunAt: '2028-02-29T00:00:00.000Z' });
  });

  it('answers agent_not_found and session_not_found', async () => {
    const sessionId = await startSession(client, newSessionId());
    const params = { cron: '* * * * *', prompt: 'x' };
    await expect(
      client.fails('async.scheduleAgent', { sessionId, agentId: 'ghost', ...params }),
    ).resolves.toMatchObject({ code: -32003 });
    await expect(
      client.fails('async.scheduleAgent', { sessionId: 'no-such-session', agentId: 'a', ...params }),
    ).resolves.toMatchObject({ code: -32002 });
    await expect(
      client.fails('async.listSchedules', { sessionId: 'no-such-session' }),
    ).resolves.toMatchObject({
      code: -32002,
    });
  });

  it('survives a restart, and runs missed while down collapse into one firing', async () => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(client, sessionId, 'durable', echoSchedule);
    const now = sut.clock.now();
    await client.ok('async.scheduleAgent', {
      sessionId,
      agentId: 'durable',
      cron: '* * * * *',
      prompt: 'tick',
    });

    client.close();
    await sut.stop();
    sut.clock.advance(nextMinute(now) - now + 3 * MINUTE); // four runs come due while the app is down
    await sut.restart();
    client = await TestClient.connect(sut.url);
    await client.ok('session.subscribe', { sessionId });
    sut.clock.advance(0); // timers re-armed at boot for runs already due fire on the clock's next tick

    await completion(sessionId, 'durable', 1);
    const { schedules } = await client.ok('async.listSchedules', { sessionId });
    expect(Date.parse(schedules[0].nextRunAt)).toBeGreaterThan(sut.clock.now());
    const { agents } = await client.ok('async.getAgentStates', { sessionId });
    expect(agents.durable.queue_size).toBe(0);
    const history = await client.ok('async.getHistory', { sessionId });
    const firings = history.events.filter((e: any) => e.type === 'async.task.started');
    expect(firings).toHaveLength(1);
  });
});
