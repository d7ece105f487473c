import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestApp, TestApp } from '../support/test-app';

const ROOT = join(__dirname, '..', '..');

/** The README's client, exactly as written except for the server's address. */
function readmeClient(url: string): string {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## A client in twenty lines'));
  const code = /```js\n([\s\S]*?)```/.exec(section)![1];
  expect(code).toContain("io('http://localhost:3000')");
  return code.replace("io('http://localhost:3000')", `io('${url}')`);
}

function runNode(file: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [file], { cwd: ROOT }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('The README', () => {
  let sut: TestApp;

  beforeAll(async () => {
    sut = await startTestApp();
  });

  afterAll(async () => {
    await sut.close();
  });

  it('has a client that runs the first workflow, exits by itself, and runs again', async () => {
    // Beside node_modules, so that `import 'socket.io-client'` resolves as it does for a reader.
    const dir = join(ROOT, 'node_modules', '.cache', 'mailroom');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `readme-client-${process.pid}.mjs`);
    writeFileSync(file, readmeClient(sut.url));
    try {
      for (const run of [1, 2]) {
        const { code, stdout, stderr } = await runNode(file);
        expect({ run, code, stderr }).toEqual({ run, code: 0, stderr: '' });
        expect(stdout).toContain('mail writer -> user: Report approved');
        expect(stdout).toContain('you received: Report approved by reviewer');
      }
    } finally {
      rmSync(file, { force: true });
    }
  });
});
