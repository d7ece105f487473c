import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A free TCP port on loopback (asked of the kernel, then let go). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** The Postgres binaries of this machine (Debian's layout, or pg_config's), or why there are none. */
function findBinaries(): { bin: string } | { missing: string } {
  const debian = '/usr/lib/postgresql';
  if (existsSync(debian)) {
    for (const version of readdirSync(debian).sort().reverse()) {
      const bin = join(debian, version, 'bin');
      if (existsSync(join(bin, 'initdb')) && existsSync(join(bin, 'pg_ctl'))) {
        return { bin };
      }
    }
  }
  try {
    const bin = execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim();
    if (existsSync(join(bin, 'initdb'))) {
      return { bin };
    }
  } catch {
    // no pg_config
  }
  return { missing: 'no initdb/pg_ctl found (/usr/lib/postgresql/*/bin or pg_config --bindir)' };
}

/**
 * A Postgres server of the test's own (initdb in a temporary folder, its own port), so that a test
 * can restart it without touching the shared server other suites use. As root, the server runs as
 * the `postgres` user (initdb refuses root).
 */
export class PrivatePostgres {
  private constructor(
    private readonly bin: string,
    private readonly dir: string,
    readonly port: number,
    private readonly asUser: string[],
  ) {}

  /** The server, started; or the reason it cannot be made on this machine. */
  static async start(): Promise<PrivatePostgres | { unavailable: string }> {
    const found = findBinaries();
    if ('missing' in found) {
      return { unavailable: found.missing };
    }
    let asUser: string[] = [];
    const dir = mkdtempSync(join(tmpdir(), 'mailroom-pg-'));
    if (process.getuid?.() === 0) {
      try {
        const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
        const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
        chownSync(dir, uid, gid);
        asUser = ['runuser', '-u', 'postgres', '--'];
      } catch {
        rmSync(dir, { recursive: true, force: true });
        return { unavailable: 'running as root without a postgres user to run initdb as' };
      }
    }
    const pg = new PrivatePostgres(found.bin, dir, await freePort(), asUser);
    try {
      pg.run('initdb', ['-D', pg.dataDir, '-A', 'trust', '-U', 'postgres', '--no-sync']);
      pg.ctl('start');
    } catch (err) {
      pg.destroy();
      return { unavailable: `initdb/pg_ctl failed: ${String(err)}` };
    }
    return pg;
  }

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  private get dataDir(): string {
    return join(this.dir, 'data');
  }

  /**
   * Restarts the server. `immediate` is a crash as far as clients can tell: every connection drops,
   * and the server replays its log before it accepts new ones.
   */
  restart(mode: 'fast' | 'immediate' = 'immediate'): void {
    this.ctl('restart', ['-m', mode]);
  }

  destroy(): void {
    try {
      this.ctl('stop', ['-m', 'immediate']);
    } catch {
      // not running
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  private ctl(action: string, extra: string[] = []): void {
    this.run('pg_ctl', [
      '-D',
      this.dataDir,
      '-l',
      join(this.dir, 'server.log'),
      '-w',
      '-o',
      `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c fsync=off`,
      action,
      ...extra,
    ]);
  }

  private run(tool: string, args: string[]): void {
    const [cmd, ...pre] = [...this.asUser, join(this.bin, tool)];
    execFileSync(cmd, [...pre, ...args], { stdio: 'pipe', timeout: 60_000 });
  }
}
