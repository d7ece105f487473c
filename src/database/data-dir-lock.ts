import { closeSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** Thrown when another live process holds the data folder; its message is the one line the operator sees. */
export class DataDirInUseError extends Error {
  constructor(
    readonly label: string,
    readonly pid: number,
  ) {
    super(`another Mailroom is using ${label} (pid ${pid})`);
    this.name = 'DataDirInUseError';
  }
}

const LOCK_FILE = 'mailroom.pid';
// A takeover guard is held for a few system calls; one older than this was left by a process killed in between.
const STALE_GUARD_MS = 10_000;
/** Folders held by this process, so that a second app in the same process is refused too. */
const heldHere = new Set<string>();

/**
 * One process per embedded data folder. PGlite is a single-user Postgres compiled to WebAssembly: a
 * second process on the same files corrupts them or aborts inside the WebAssembly. So the folder
 * holds `mailroom.pid`, created exclusively (`O_EXCL`) with the holder's pid. A file whose pid is
 * no longer alive (a `kill -9`, a power cut) is stale and taken over, under a short exclusive guard
 * file so that two processes cleaning the same stale lock cannot both win. See ADR 0010.
 */
export class DataDirLock {
  private constructor(private readonly path: string) {}

  /** Takes the folder's lock or throws {@link DataDirInUseError}; `label` is how the folder is named in that error. */
  static acquire(dataDir: string, label: string = dataDir): DataDirLock {
    const dir = resolve(dataDir);
    mkdirSync(dir, { recursive: true });
    const path = join(dir, LOCK_FILE);
    if (heldHere.has(path)) {
      throw new DataDirInUseError(label, process.pid);
    }
    for (;;) {
      if (createExclusive(path, `${process.pid}\n`)) {
        heldHere.add(path);
        return new DataDirLock(path);
      }
      const holder = readPid(path);
      if (holder !== undefined && isAlive(holder)) {
        throw new DataDirInUseError(label, holder);
      }
      takeOverStale(path);
    }
  }

  /**
   * Throws {@link DataDirInUseError} when a live process holds the folder, without taking it: the
   * boot calls it before anything else so that the refusal is its first and only line.
   * {@link acquire} decides for real.
   */
  static assertFree(dataDir: string, label: string = dataDir): void {
    const path = join(resolve(dataDir), LOCK_FILE);
    const holder = heldHere.has(path) ? process.pid : readPid(path);
    if (holder !== undefined && (holder === process.pid ? heldHere.has(path) : isAlive(holder))) {
      throw new DataDirInUseError(label, holder);
    }
  }

  /** Gives the folder back (on a clean shutdown); a lock that is no longer ours is left alone. */
  release(): void {
    heldHere.delete(this.path);
    if (readPid(this.path) === process.pid) {
      unlinkQuietly(this.path);
    }
  }
}

/** Removes a dead holder's lock file. The guard makes "is it still stale? then remove it" one step. */
function takeOverStale(path: string): void {
  const guard = `${path}.takeover`;
  if (!createExclusive(guard, `${process.pid}\n`)) {
    if (ageMs(guard) > STALE_GUARD_MS) {
      unlinkQuietly(guard);
    } else {
      pause(20); // another process is taking over right now; look again after it
    }
    return;
  }
  try {
    const holder = readPid(path);
    if (holder === undefined || !isAlive(holder)) {
      unlinkQuietly(path);
    }
  } finally {
    unlinkQuietly(guard);
  }
}

/** True when this call created the file; false when it already existed. */
function createExclusive(path: string, content: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'wx');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      return false;
    }
    throw err;
  }
  try {
    writeSync(fd, content);
  } finally {
    closeSync(fd);
  }
  return true;
}

/** The pid in a lock file; undefined when it is gone, empty (a holder killed while writing it) or unreadable. */
function readPid(path: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(path, 'utf8'), 10);
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether a process with this pid runs. Our own pid in a lock we do not hold is a previous life of
 * this container (pid 1 again after a restart), not a live holder. A zombie (killed, not yet reaped
 * by its parent) is dead. A pid reused by an unrelated process reads as alive: the operator removes
 * the file (the error names it).
 */
function isAlive(pid: number): boolean {
  if (pid === process.pid) {
    return false;
  }
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // alive, but another user's
  }
  try {
    // Linux: the state is the field after the parenthesized command name.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true; // no /proc (macOS): kill(pid, 0) is the answer
  }
}

function ageMs(path: string): number {
  try {
    return Date.now() - statSync(path).mtimeMs;
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

/** A short synchronous wait (boot only, while another process finishes a takeover). */
function pause(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
