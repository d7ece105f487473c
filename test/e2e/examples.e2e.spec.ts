import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { startTestApp, TestApp } from '../support/test-app';

const ROOT = join(__dirname, '..', '..');

/**
 * The scripts in examples/ as a user runs them: `node examples/<name>.mjs` against a server, on
 * the built client package (the one `npm ci` builds and `npm run build` rebuilds).
 */
function runExample(name: string, url: string) {
  return runNode([join(ROOT, 'examples', `${name}.mjs`)], url);
}

/** The package's `mailroom` bin, as `npx mailroom` runs it. */
function runBin(args: string[], url: string) {
  return runNode([join(ROOT, 'packages', 'client', 'bin', 'mailroom.cjs'), ...args], url);
}

function runNode(argv: string[], url: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, argv, { env: { ...process.env, MAILROOM_URL: url } }, (err, stdout, stderr) =>
      resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('examples/ and the mailroom bin, on the built package', () => {
  let sut: TestApp;

  beforeAll(async () => {
    sut = await startTestApp();
  });

  afterAll(() => sut.close());

  it('analysis-report: the writer mails the approved report to the user', async () => {
    const run = await runExample('analysis-report', sut.url);
    expect(run).toMatchObject({ code: 0, stderr: '' });
    expect(run.stdout).toMatch(/^session analysis-[0-9a-f]{8}$/m);
    expect(run.stdout).toContain('mail to user from writer: "Report approved"');
    expect(run.stdout).toContain('task analyzer: Analysis sent to writer');
  });

  it('monitoring: sleeps on alert and hourly_check, reports the alert', async () => {
    const run = await runExample('monitoring', sut.url);
    expect(run).toMatchObject({ code: 0, stderr: '' });
    expect(run.stdout).toContain('task monitor (hourly_check): Hourly check: all systems nominal');
    expect(run.stdout).toContain('mail to user from monitor [high]: "Alert"');
    expect(run.stdout).toContain('manual wake: woke');
  });

  it('task-decomposition: three integrated pieces reach the user', async () => {
    const run = await runExample('task-decomposition', sut.url);
    expect(run).toMatchObject({ code: 0, stderr: '' });
    for (const task of ['A', 'B', 'C']) {
      expect(run.stdout).toContain(`mail to user from integrator: "Integrated Done: Task ${task}"`);
    }
  });

  it('runs twice without a conflict: each run has a fresh session', async () => {
    const [a, b] = [
      await runExample('analysis-report', sut.url),
      await runExample('analysis-report', sut.url),
    ];
    expect([a.code, b.code]).toEqual([0, 0]);
    const id = (s: string) => /^session (\S+)$/m.exec(s)?.[1];
    expect(id(a.stdout)).not.toEqual(id(b.stdout));
  });

  it('the mailroom bin exits with the documented codes', async () => {
    await expect(runBin(['templates'], sut.url)).resolves.toMatchObject({
      code: 0,
      stdout: expect.stringContaining('analyzer'),
    });
    await expect(runBin(['states', 'no-such-session'], sut.url)).resolves.toMatchObject({
      code: 1,
      stderr:
        "mailroom: Session 'no-such-session' not found; call session.start { sessionId: 'no-such-session' } first\n",
    });
    await expect(runBin(['frobnicate'], sut.url)).resolves.toMatchObject({ code: 2 });
    await expect(runBin(['templates', '--url', 'http://127.0.0.1:1'], sut.url)).resolves.toMatchObject({
      code: 3,
    });
  });
});
