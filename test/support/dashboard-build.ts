import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DASHBOARD_DIR } from 'src/dashboard/dashboard-files';

const ROOT = join(__dirname, '..', '..');

/** Builds the dashboard (as `npm run build` does) when there is no build, or one older than its source. */
export function ensureDashboardBuilt(): void {
  const built = join(DASHBOARD_DIR, 'index.html');
  if (existsSync(built) && statSync(built).mtimeMs >= newestMtime(join(ROOT, 'dashboard'))) {
    return;
  }
  execFileSync(join(ROOT, 'node_modules', '.bin', 'vite'), ['build', 'dashboard', '--logLevel', 'warn'], {
    cwd: ROOT,
    stdio: 'inherit',
  });
}

function newestMtime(dir: string): number {
  return readdirSync(dir, { withFileTypes: true }).reduce((newest, entry) => {
    const path = join(dir, entry.name);
    return Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }, 0);
}
