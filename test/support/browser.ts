import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { DASHBOARD_DIR } from 'src/dashboard/dashboard-files';

/** Debian's Chromium (`apt-get install -y chromium`; `.ci/run` installs it when missing). */
export const CHROMIUM = '/usr/bin/chromium';
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

/** A page that remembers every console error, uncaught exception and request to another host. */
export interface WatchedPage {
  page: Page;
  problems: string[];
}

/**
 * A headless Chromium with a fresh profile; each page it opens is watched for errors, and for
 * requests that leave the server under test (the page must fetch nothing from the network).
 */
export class Browser {
  private constructor(
    private readonly context: BrowserContext,
    private readonly profile: string,
  ) {}

  static async launch(): Promise<Browser> {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);
    }
    const profile = mkdtempSync(join(tmpdir(), 'mailroom-chromium-'));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
      ],
      viewport: { width: 1440, height: 960 },
    });
    return new Browser(context, profile);
  }

  async open(url: string): Promise<WatchedPage> {
    const page = await this.context.newPage();
    const problems: string[] = [];
    const origin = new URL(url).origin;
    page.on('console', (msg) => {
      if (msg.type() === 'error') {
        problems.push(`console.error: ${msg.text()}`);
      }
    });
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('request', (req) => {
      const target = req.url();
      if (!target.startsWith(origin) && !target.startsWith('data:')) {
        problems.push(`request to another host: ${target}`);
      }
    });
    await page.goto(url);
    return { page, problems };
  }

  async close(): Promise<void> {
    await this.context.close();
    rmSync(this.profile, { recursive: true, force: true });
  }
}
