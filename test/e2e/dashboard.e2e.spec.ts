/// <reference lib="dom" />
// (the functions passed to page.waitForFunction run in the browser)
import { mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { parse } from 'yaml';
import { startSession } from '../factories/agents';
import { newSessionId } from '../factories/ids';
import { PostOfficeService } from 'src/agents/post-office.service';
import { HistoryService } from 'src/sessions/history.service';
import { Browser, ensureDashboardBuilt, type WatchedPage } from '../support/browser';
import { TestClient } from '../support/client';
import { FakeOpenAI } from '../support/fake-openai';
import { ArmedTimersClock, startTestApp, TestApp } from '../support/test-app';

// Screenshots for the docs with SCREENSHOTS=1; otherwise they still get taken, into a scratch folder.
const SHOTS = process.env.SCREENSHOTS
  ? join(__dirname, '..', '..', 'docs', 'images')
  : join(tmpdir(), 'mailroom-shots');

const row = (agentId: string) => `[data-testid=agent-row][data-agent="${agentId}"]`;
const inState = (agentId: string, state: string) => `${row(agentId)}[data-state="${state}"]`;

/** A template's own script with `delayMs` on every rule's first step, so its agent is caught mid-step. */
function templateScriptWithDelay(name: string, delayMs: number): unknown[] {
  const file = join(__dirname, '..', '..', 'templates', `${name}.yaml`);
  const template = parse(readFileSync(file, 'utf8')) as {
    script: Array<{ when: unknown; do: Array<Record<string, unknown>> }>;
  };
  return template.script.map((rule) => ({
    ...rule,
    do: rule.do.map((step, i) => (i === 0 ? { ...step, delayMs } : step)),
  }));
}

/** The agents' states the page shows, by agent id. */
function shownStates(page: Page): Promise<Record<string, string>> {
  return page.$$eval('[data-testid=agent-row]', (rows) =>
    Object.fromEntries(rows.map((r) => [r.getAttribute('data-agent'), r.getAttribute('data-state')])),
  );
}

/** Shows only these kinds of entries in the timeline. */
async function showOnly(page: Page, labels: string[]): Promise<void> {
  for (const chip of await page.$$('.filters .chip')) {
    const on = !(await chip.getAttribute('class'))!.includes(' off');
    const wanted = labels.includes((await chip.innerText()).trim());
    if (on !== wanted) {
      await chip.click();
    }
  }
}

async function submit(
  page: Page,
  tab: string,
  form: string,
  values: Record<string, string>,
  button?: string,
) {
  await page.click(`[data-testid=tab-${tab}]`);
  const scope = `[data-testid=form-${form}]`;
  for (const [name, value] of Object.entries(values)) {
    const field = `${scope} [name=${name}]`;
    if ((await page.$eval(field, (el) => el.tagName)) === 'SELECT') {
      await page.selectOption(field, value);
    } else {
      await page.fill(field, value);
    }
  }
  // Each answer is numbered: wait for this submit's, not the last one.
  const last = await page.$eval(scope, (el) =>
    el.querySelector('[data-testid=outcome]')?.getAttribute('data-run'),
  );
  await page.click(button ? `${scope} button[value=${button}]` : `${scope} button[type=submit]`);
  const outcome = await page.waitForSelector(
    `${scope} [data-testid=outcome][data-run="${Number(last ?? 0) + 1}"]`,
  );
  return { ok: (await outcome.getAttribute('data-ok')) === 'true', text: await outcome.innerText() };
}

describe('The dashboard in a real browser', () => {
  let sut: TestApp;
  let client: TestClient;
  let clock: ArmedTimersClock;
  let browser: Browser;
  let open: WatchedPage | undefined;

  beforeAll(async () => {
    ensureDashboardBuilt();
    mkdirSync(SHOTS, { recursive: true });
    // The page counts sleeps down on its own clock: start the server's where the browser's is.
    clock = new ArmedTimersClock(Date.now());
    sut = await startTestApp({ clock });
    client = await TestClient.connect(sut.url);
    browser = await Browser.launch();
  });

  afterEach(async () => {
    if (open) {
      const { page, problems } = open;
      open = undefined;
      await page.close();
      expect(problems).toEqual([]);
    }
  });

  afterAll(async () => {
    await browser?.close();
    client?.close();
    await sut?.close();
  });

  const visit = async (path: string): Promise<Page> => {
    open = await browser.open(`${sut.url}${path}`);
    await open.page.waitForSelector('[data-testid=connection][data-status=connected]');
    return open.page;
  };

  it('serves the page at / from the build, beside the other routes', async () => {
    const page = await fetch(`${sut.url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
    expect(page.headers.get('content-security-policy')).toContain("default-src 'self'");
    const html = await page.text();
    const script = /src="(\/assets\/[^"]+\.js)"/.exec(html)?.[1];
    expect(script).toBeDefined();
    const asset = await fetch(`${sut.url}${script}`);
    expect(asset.status).toBe(200);
    expect(asset.headers.get('cache-control')).toContain('immutable');
    expect((await fetch(`${sut.url}/assets/..%2Fpackage.json`)).status).toBe(404);
    expect((await fetch(`${sut.url}/assets/nothing.js`)).status).toBe(404);
    expect((await fetch(`${sut.url}/health`)).status).toBe(200);
    const rpc = await fetch(`${sut.url}/rpc`, {
      method: 'POST',
      body: '{"method": "templates.list", "params": {}}',
    });
    await expect(rpc.json()).resolves.toMatchObject({ result: { templates: expect.any(Array) } });
    // Every other path is the rest of the server's (answered or not), never the page.
    for (const path of [
      '/metrics',
      '/api/sessions',
      '/docs',
      '/socket.io/?EIO=4&transport=polling',
      '/other',
    ]) {
      expect(await (await fetch(`${sut.url}${path}`)).text()).not.toContain('<div id="app">');
    }
  });

  let workflowSession = '';

  it("shows the guide's first workflow live: analyzer → writer ⇄ reviewer → user", async () => {
    const sessionId = await startSession(client, newSessionId('dash'));
    workflowSession = sessionId;
    const page = await visit(`/#/session/${sessionId}`);
    await page.waitForSelector('[data-testid=session-view] [data-testid=agent-count]');

    // Agents created while the page is open appear by push; the analyzer and the reviewer think a while.
    await client.ok('async.createAgent', {
      sessionId,
      agentId: 'analyzer',
      config: { script: templateScriptWithDelay('analyzer', 3000) },
    });
    await client.ok('async.createAgent', { sessionId, agentId: 'writer' });
    await client.ok('async.createAgent', {
      sessionId,
      agentId: 'reviewer',
      config: { script: templateScriptWithDelay('reviewer', 5000) },
    });
    for (const agentId of ['analyzer', 'writer', 'reviewer']) {
      await page.waitForSelector(inState(agentId, 'idle'));
    }

    const task = await client.ok('async.sendTask', {
      sessionId,
      agentId: 'analyzer',
      prompt: 'Analyze customer sentiment from feedback.csv',
    });
    await page.waitForSelector(inState('analyzer', 'active'));
    await page.waitForSelector('[data-testid=legend] [data-state=active][data-count="1"]');
    await clock.advanceWhenArmed(3000);

    // The writer asks the reviewer and waits: the wait is drawn while it lasts.
    await page.waitForSelector(inState('writer', 'waiting'));
    await page.waitForSelector(
      '[data-testid=wait][data-from=writer][data-to=reviewer][data-outcome=waiting]',
    );
    await page.waitForSelector(inState('reviewer', 'active'));
    // Templates and wake events come with the next snapshot (pushes do not carry them).
    await page.waitForSelector(`${row('reviewer')} .agent-id small:has-text("reviewer")`);
    await page.screenshot({ path: join(SHOTS, 'dashboard-live.png') });
    await clock.advanceWhenArmed(5000);

    await page.waitForSelector(
      '[data-testid=wait][data-from=writer][data-to=reviewer][data-outcome=answered]',
    );
    await client.waitFor('async.mail.sent', (p) => p.sessionId === sessionId && p.message.to === 'user');
    for (const agentId of ['analyzer', 'writer', 'reviewer']) {
      await page.waitForSelector(inState(agentId, 'idle'));
    }
    await showOnly(page, ['mail']);
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=timeline-row]').length === 4);
    const mail = await page.$$eval('[data-testid=timeline-row] .tl-text', (rows) =>
      rows.map((r) => r.textContent),
    );
    expect(mail).toEqual([
      'analyzer → writer Analysis results',
      'writer → reviewer Review report high',
      'reviewer → writer Re: Review report high',
      'writer → user Report approved',
    ]);

    // The analyzer's task in detail: prompt, answer, its tool call with arguments and result, usage.
    await showOnly(page, ['tasks']);
    await page.click(`[data-testid=timeline-row][data-kind=task]:has-text("analyzer finished")`);
    const detail = await page.waitForSelector(
      `[data-testid=task-detail][data-task="${task.taskId}"][data-state=done]`,
    );
    expect(await page.innerText('[data-testid=task-prompt]')).toBe(
      'Analyze customer sentiment from feedback.csv',
    );
    expect(await page.innerText('[data-testid=task-output]')).toBe('Analysis sent to writer');
    const calls = await page.innerText('[data-testid=tool-calls]');
    expect(calls).toContain('send_mail');
    expect(calls).toContain('"to": "writer"');
    expect(calls).toContain('"messageId"');
    expect(await page.innerText('[data-testid=task-usage]')).toMatch(/^\d+ prompt \+ \d+ completion tokens$/);
    expect(await detail.isVisible()).toBe(true);
    await showOnly(page, ['tasks', 'mail', 'events', 'waits', 'states', 'tool calls']);
  });

  it('replays the session from seq 1, the agents’ states following the history', async () => {
    const sessionId = workflowSession;
    const { events } = await client.ok('async.getHistory', { sessionId, after: 0, limit: 500 });
    const records = (events as Array<{ seq: number; type: string; payload: any }>).filter(
      (r) => r.type !== 'async.task.output',
    );
    const page = await visit(`/#/session/${sessionId}`);
    await page.waitForSelector(`[data-testid=history-count][data-loaded=true]`);
    await page.click('[data-testid=mode-replay]');

    const expected: Record<string, string> = {};
    for (let i = 0; i <= records.length; i += 1) {
      if (i > 0) {
        const r = records[i - 1];
        if (r.type === 'async.agent.stateChanged') {
          expected[r.payload.agentId] = r.payload.state;
        }
        await page.click('[data-testid=replay-bar] button[title="One record on"]');
      }
      const seq = i > 0 ? records[i - 1].seq : 0;
      await page.waitForSelector(`[data-testid=replay-position][data-seq="${seq}"]`);
      expect(await shownStates(page)).toEqual(expected);
      if (records[i - 1]?.payload.reason === 'waiting_on:reviewer') {
        // Mid-wait in replay: the wait is drawn as running.
        await page.waitForSelector('[data-testid=wait][data-from=writer][data-outcome=waiting]');
        await page.screenshot({ path: join(SHOTS, 'dashboard-replay.png') });
      }
    }
    const live = await client.ok('async.getAgentStates', { sessionId });
    expect(expected).toEqual(
      Object.fromEntries(Object.entries(live.agents).map(([id, s]: any) => [id, s.state])),
    );
  });

  it('runs the example workflow from the welcome page in one click', async () => {
    const page = await visit('/');
    await page.click('[data-testid=run-example]');
    const view = await page.waitForSelector('[data-testid=session-view]');
    const sessionId = (await view.getAttribute('data-session'))!;
    expect(sessionId).toMatch(/^example-/);
    await showOnly(page, ['mail']);
    await page.waitForSelector('[data-testid=timeline-row]:has-text("writer → user Report approved")');
    for (const agentId of ['analyzer', 'writer', 'reviewer']) {
      await page.waitForSelector(inState(agentId, 'idle'));
    }
  });

  it('draws a send-and-switch that would close a cycle as refused', async () => {
    const sessionId = await startSession(client, newSessionId('cycle'));
    const page = await visit(`/#/session/${sessionId}`);
    const ask = (to: string, then: string) => [
      {
        when: {},
        do: [
          { tool: 'send_mail_with_switch', args: { to, subject: 'Question', body: 'Well?' } },
          { reply: then },
        ],
      },
    ];
    const create = (agentId: string, script: unknown[]) =>
      client.ok('async.createAgent', { sessionId, agentId, template: 'assistant', config: { script } });
    await create('ping', ask('pong', 'pong said: {{result.reply.body}}'));
    await create('pong', ask('ping', 'could not ask back: {{result.error}}'));
    const { taskId } = await client.ok('async.sendTask', { sessionId, agentId: 'ping', prompt: 'Start' });
    await client.waitForTaskEnd(taskId);

    const refused = await page.waitForSelector(
      '[data-testid=wait][data-from=pong][data-to=ping][data-outcome=refused]',
    );
    expect(await refused.innerText()).toContain(
      "refused: waiting on 'ping' would close a cycle (pong -> ping -> pong)",
    );
    await page.waitForSelector('[data-testid=wait][data-from=ping][data-to=pong][data-outcome=answered]');
    await showOnly(page, ['waits']);
    await page.waitForSelector('[data-testid=timeline-row][data-kind=wait] .error-text:has-text("refused")');
  });

  it('has a control for each action, and shows the server’s errors plainly', async () => {
    const page = await visit('/');
    const sessionId = newSessionId('controls');
    await page.fill('[data-testid=form-new-session] [name=sessionId]', sessionId);
    await page.click('[data-testid=form-new-session] button');
    await page.waitForSelector(`[data-testid=session-view][data-session="${sessionId}"]`);
    await page.waitForSelector(`[data-testid=session-item][data-session="${sessionId}"]`);
    await client.ok('session.subscribe', { sessionId });

    await expect(submit(page, 'create-agent', 'create-agent', { agentId: 'monitor' })).resolves.toEqual({
      ok: true,
      text: '✓ created monitor (monitor), idle',
    });
    await expect(
      submit(page, 'create-agent', 'create-agent', { agentId: 'helper', template: 'assistant' }),
    ).resolves.toEqual({ ok: true, text: '✓ created helper (assistant), idle' });
    await page.waitForSelector(inState('helper', 'idle'));

    const sent = await submit(page, 'send-task', 'send-task', { agentId: 'helper', prompt: 'Say hello' });
    expect(sent.text).toMatch(/^✓ task [0-9a-f-]+ queued \(queue size \d+\)$/);
    const taskId = /task ([0-9a-f-]+)/.exec(sent.text)![1];
    await expect(client.waitForTaskEnd(taskId)).resolves.toMatchObject({ name: 'async.task.completed' });
    await page.waitForSelector('[data-testid=timeline-row][data-kind=task]:has-text("helper finished")');

    const mailed = await submit(page, 'mail', 'mail', {
      to: 'helper',
      subject: 'Question',
      body: 'Are you there?',
    });
    expect(mailed.text).toMatch(/^✓ mail [0-9a-f-]+ sent as user$/);
    await page.waitForSelector(
      '[data-testid=timeline-row][data-kind=mail]:has-text("user → helper Question")',
    );

    const slept = await submit(
      page,
      'sleep-wake',
      'lifecycle',
      { agentId: 'helper', durationSeconds: '90' },
      'sleep',
    );
    expect(slept).toMatchObject({ ok: true, text: expect.stringMatching(/^✓ helper sleeping until 20/) });
    await page.waitForSelector(inState('helper', 'sleeping'));
    await page.waitForFunction(
      (sel) => /^in 1 min/.test(document.querySelector(sel)?.textContent ?? ''),
      `${row('helper')} [data-testid=sleeping-until]`,
    );
    await expect(
      submit(page, 'sleep-wake', 'lifecycle', { agentId: 'helper' }, 'wake'),
    ).resolves.toMatchObject({
      ok: true,
      text: expect.stringMatching(/^✓ helper woke/),
    });
    await page.waitForSelector(`${row('helper')}:not([data-state=sleeping])`);
    await page.waitForSelector(
      '[data-testid=timeline-row][data-kind=state]:has-text("helper woke up (woken)")',
    );
    await expect(submit(page, 'sleep-wake', 'lifecycle', { agentId: 'helper' }, 'stop')).resolves.toEqual({
      ok: true,
      text: '✓ helper stopped',
    });
    await page.waitForSelector(inState('helper', 'stopped'));
    await expect(
      submit(page, 'sleep-wake', 'lifecycle', { agentId: 'helper' }, 'start'),
    ).resolves.toMatchObject({
      ok: true,
    });
    await page.waitForSelector(`${row('helper')}:not([data-state=stopped])`);

    const alert = await submit(page, 'broadcast', 'broadcast', {
      event: 'alert',
      data: '{"severity":"critical"}',
    });
    expect(alert).toEqual({ ok: true, text: '✓ alert delivered to monitor' });
    await page.waitForSelector('[data-testid=timeline-row][data-kind=event]:has-text("event alert")');
    await client.waitFor(
      'async.mail.sent',
      (p) => p.sessionId === sessionId && p.message.subject === 'Alert',
    );

    const scheduled = await submit(page, 'schedule', 'schedule', {
      agentId: 'helper',
      cron: '0 * * * *',
      prompt: 'Hourly check',
    });
    expect(scheduled.text).toMatch(/^✓ schedule [0-9a-f-]+, next run 20\d\d-/);
    await expect(client.ok('async.listSchedules', { sessionId })).resolves.toMatchObject({
      schedules: [expect.objectContaining({ agentId: 'helper', cron: '0 * * * *' })],
    });

    // Refusals come back as the server said them.
    const unknown = await submit(page, 'send-task', 'send-task', { agentId: 'nobody', prompt: 'Hi' });
    expect(unknown.ok).toBe(false);
    expect(unknown.text).toContain('agent_not_found (-32003)');
    const bad = await submit(page, 'create-agent', 'create-agent', { agentId: 'no spaces allowed' });
    expect(bad.ok).toBe(false);
    expect(bad.text).toContain('invalid_params (-32602)');
    expect(bad.text).toContain('agentId');
    const notJson = await submit(page, 'broadcast', 'broadcast', { event: 'alert', data: '{oops' });
    expect(notJson).toEqual({ ok: false, text: '✗ data is not valid JSON' });
    await submit(page, 'send-task', 'send-task', { agentId: 'nobody', prompt: 'Hi' });
    await page.screenshot({ path: join(SHOTS, 'dashboard-controls.png') });
  });

  it('stays responsive with 1,000 agents and 10,000 history records', async () => {
    const sessionId = await startSession(client, newSessionId('big'));
    const ids = Array.from({ length: 1000 }, (_, i) => `agent-${String(i).padStart(4, '0')}`);
    const inBatches = async (n: number, call: (i: number) => Promise<unknown>) => {
      for (let i = 0; i < n; i += 50) {
        await Promise.all(Array.from({ length: Math.min(50, n - i) }, (_, j) => call(i + j)));
      }
    };
    const setup = Date.now();
    await inBatches(ids.length, (i) =>
      client.ok('async.createAgent', { sessionId, agentId: ids[i], template: 'assistant', autoStart: false }),
    );
    // 9,000 reports to the user through the server's own post office, a thousand per transaction:
    // one history record each, as a call to async.sendMail makes, without 9,000 round trips.
    const history = sut.app.get(HistoryService);
    const postOffice = sut.app.get(PostOfficeService);
    for (let batch = 0; batch < 9; batch += 1) {
      await history.inSession(sessionId, async (tx) => {
        for (let i = batch * 1000; i < (batch + 1) * 1000; i += 1) {
          const from = ids[1 + (i % 999)];
          await postOffice.deliver(tx, {
            sessionId,
            from,
            to: 'user',
            subject: `report ${i}`,
            body: 'x',
            priority: 'normal',
          });
        }
      });
    }
    await client.waitFor(
      'async.mail.sent',
      (p) => p.sessionId === sessionId && p.message.subject === 'report 8999',
    );

    const setupMs = Date.now() - setup;
    const started = Date.now();
    const page = await visit(`/#/session/${sessionId}`);
    await page.waitForSelector('[data-testid=agent-count]:has-text("1000")');
    await page.waitForSelector(inState('agent-0000', 'stopped'));
    const agentsShown = Date.now() - started;
    await page.waitForSelector('[data-testid=history-count][data-loaded=true]');
    const historyLoaded = Date.now() - started;
    expect(await page.innerText('[data-testid=history-count]')).toBe('10,000');
    await page.screenshot({ path: join(SHOTS, 'dashboard-1000-agents.png') });
    // Only the rows in view are drawn.
    expect((await page.$$('[data-testid=agent-row]')).length).toBeLessThan(60);
    expect((await page.$$('[data-testid=timeline-row]')).length).toBeLessThan(60);

    const pushed = Date.now();
    await client.ok('async.startAgent', { sessionId, agentId: 'agent-0000' });
    await page.waitForSelector(`${row('agent-0000')}:not([data-state=stopped])`);
    const stateShown = Date.now() - pushed;

    // Scrubbing the whole history: to the end and back to the middle.
    await page.click('[data-testid=mode-replay]');
    const scrub = Date.now();
    await page.fill('[data-testid=replay-slider]', '10000');
    await page.waitForSelector('[data-testid=replay-position][data-seq="10000"]');
    await page.fill('[data-testid=replay-slider]', '5000');
    await page.waitForSelector('[data-testid=replay-position][data-seq="5000"]');
    const scrubbed = Date.now() - scrub;
    process.stdout.write(
      `dashboard, 1,000 agents / 10,000 records: agents drawn ${agentsShown} ms after navigation, ` +
        `history loaded ${historyLoaded} ms, a state change push drawn ${stateShown} ms after the call, ` +
        `two replay scrubs ${scrubbed} ms (setup ${setupMs} ms)\n`,
    );
  }, 600_000);
});

describe('The dashboard with API_TOKENS', () => {
  let sut: TestApp;
  let browser: Browser;
  let open: WatchedPage | undefined;

  beforeAll(async () => {
    ensureDashboardBuilt();
    sut = await startTestApp({ env: { API_TOKENS: 'token-a,token-b' } });
    browser = await Browser.launch();
  });

  afterEach(async () => {
    if (open) {
      await open.page.close();
      expect(open.problems).toEqual([]);
      open = undefined;
    }
  });

  afterAll(async () => {
    await browser?.close();
    await sut?.close();
  });

  it('connects with the token from ?token= and sees only that token’s sessions', async () => {
    const mine = await TestClient.connect(sut.url, { token: 'token-a' });
    const theirs = await TestClient.connect(sut.url, { token: 'token-b' });
    const sessionA = await startSession(mine, newSessionId('mine'));
    const sessionB = await startSession(theirs, newSessionId('theirs'));
    mine.close();
    theirs.close();

    open = await browser.open(`${sut.url}/?token=token-a`);
    const { page } = open;
    await page.waitForSelector('[data-testid=connection][data-status=connected]');
    await page.waitForSelector(`[data-testid=session-item][data-session="${sessionA}"]`);
    expect(await page.$(`[data-testid=session-item][data-session="${sessionB}"]`)).toBeNull();

    // A wrong token is said plainly, and the kept one is replaced by what is typed.
    await page.goto(`${sut.url}/?token=wrong`);
    await page.waitForSelector('[data-testid=connection][data-status=failed]');
    expect(await page.innerText('[data-testid=connection]')).toBe(
      'The server wants a valid token: enter it above.',
    );
    await page.fill('.token input[name=token]', 'token-b');
    await page.click('.token button');
    await page.waitForSelector(`[data-testid=session-item][data-session="${sessionB}"]`);
  });
});

describe('The dashboard with a model that streams', () => {
  const TIMEOUT_MS = 30_000;
  let fake: FakeOpenAI;
  let sut: TestApp;
  let clock: ArmedTimersClock;
  let client: TestClient;
  let browser: Browser;
  let open: WatchedPage | undefined;

  beforeAll(async () => {
    ensureDashboardBuilt();
    fake = await FakeOpenAI.start();
    clock = new ArmedTimersClock(Date.now());
    sut = await startTestApp({
      clock,
      env: {
        MODEL_PROVIDER: 'openai',
        OPENAI_BASE_URL: fake.baseURL,
        OPENAI_API_KEY: 'test',
        OPENAI_MODEL: 'fake-model',
        LLM_MAX_RETRIES: '0',
        LLM_TIMEOUT_MS: String(TIMEOUT_MS),
      },
    });
    client = await TestClient.connect(sut.url);
    browser = await Browser.launch();
  });

  afterAll(async () => {
    await browser?.close();
    client?.close();
    await sut?.close();
    await fake?.close();
  });

  it('shows a task’s text as it streams, then how it failed', async () => {
    const sessionId = await startSession(client, newSessionId('stream'));
    await client.ok('async.createAgent', { sessionId, agentId: 'talker', template: 'assistant' });
    open = await browser.open(`${sut.url}/#/session/${sessionId}`);
    const { page, problems } = open;
    await page.waitForSelector(inState('talker', 'idle'));

    // The first piece ends a line, so it is pushed at once; then the stream stalls.
    fake.enqueue({
      text: 'Hi.\nthen a long answer that stops halfway and never comes back.',
      stallMidStream: true,
    });
    const { taskId } = await client.ok('async.sendTask', {
      sessionId,
      agentId: 'talker',
      prompt: 'Start talking',
    });
    await client.waitFor('async.task.output', (p) => p.taskId === taskId);
    await page.click(`${inState('talker', 'active')} button.link`);
    await page.waitForSelector(`[data-testid=task-detail][data-task="${taskId}"][data-state=running]`);
    await page.waitForFunction(() =>
      document.querySelector('[data-testid=task-output]')?.textContent?.startsWith('Hi.\n'),
    );
    expect(await page.innerText('[data-testid=task-prompt]')).toBe('Start talking');

    await clock.advanceWhenArmed(TIMEOUT_MS);
    await page.waitForSelector(`[data-testid=task-detail][data-task="${taskId}"][data-state=failed]`);
    expect(await page.innerText('[data-testid=task-error]')).toMatch(/^unavailable: /);
    await page.waitForSelector(`${row('talker')} .error-cell:has-text("1: ")`);
    await page.close();
    expect(problems).toEqual([]);
  });
});
