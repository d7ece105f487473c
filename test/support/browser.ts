import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
export { ensureDashboardBuilt } from './dashboard-build';

/** Debian's Chromium (`apt-get install -y chromium`; `.ci/run` installs it when missing). */
export const CHROMIUM = '/usr/bin/chromium';

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
