import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataDirInUseError, DataDirLock } from './data-dir-lock';

describe(DataDirLock.name, () => {
  let dir: string;
  const lockFile = () => join(dir, 'mailroom.pid');

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'mailroom-lock-spec-'));
  });

  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  /** A pid that was alive a moment ago and is now dead (and reaped). */
  async function deadPid(): Promise<number> {
    const child = spawn(process.execPath, ['-e', '']);
    await new Promise((resolve) => child.once('exit', resolve));
    return child.pid!;
  }

  it('writes our pid, and removes it on release', () => {
    const sut = DataDirLock.acquire(dir);
    expect(readFileSync(lockFile(), 'utf8').trim()).toBe(String(process.pid));
    sut.release();
    expect(() => readFileSync(lockFile())).toThrow();
  });

  it('refuses the folder while a live process holds it, naming the folder and the pid', () => {
    const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
    try {
      writeFileSync(lockFile(), `${holder.pid}\n`);
      expect(() => DataDirLock.acquire(dir, './data')).toThrow(new DataDirInUseError('./data', holder.pid!));
      expect(() => DataDirLock.assertFree(dir, './data')).toThrow(
        `another Mailroom is using ./data (pid ${holder.pid})`,
      );
    } finally {
      holder.kill('SIGKILL');
    }
  });

  it('takes over the lock of a dead process, and one with no pid in it', async () => {
    writeFileSync(lockFile(), `${await deadPid()}\n`);
    expect(() => DataDirLock.assertFree(dir)).not.toThrow();
    DataDirLock.acquire(dir).release();

    writeFileSync(lockFile(), '');
    DataDirLock.acquire(dir).release();
  });

  it('refuses a second holder in the same process until the first lets go', () => {
    const first = DataDirLock.acquire(dir);
    expect(() => DataDirLock.acquire(dir)).toThrow(DataDirInUseError);
    expect(() => DataDirLock.assertFree(dir)).toThrow(DataDirInUseError);
    first.release();
    DataDirLock.acquire(dir).release();
  });

  it('treats our own pid in a lock we do not hold as a previous life (pid 1 again after a container restart)', () => {
    writeFileSync(lockFile(), `${process.pid}\n`);
    DataDirLock.acquire(dir).release();
  });

  it('waits out a takeover in progress, and clears a guard left by a process killed during one', () => {
    writeFileSync(lockFile(), '999999999\n');
    writeFileSync(`${lockFile()}.takeover`, '999999999\n');
    const old = new Date(Date.now() - 60_000);
    utimesSync(`${lockFile()}.takeover`, old, old);
    DataDirLock.acquire(dir).release();
  });
});
