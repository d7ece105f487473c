import { Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Where the built dashboard is: `npm run build` (Vite) writes it to `dist/dashboard-ui`, two levels
 * above this file both in `src/dashboard` (tests) and in `dist/dashboard` (the built server).
 */
export const DASHBOARD_DIR = join(__dirname, '..', '..', 'dist', 'dashboard-ui');

/** The page's files: only names Vite writes (no paths), so a request can never leave the folder. */
const ASSET_NAME = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.(js|css|svg|png|woff2|map)$/;

@Injectable()
export class DashboardFiles implements OnModuleInit {
  private readonly logger = new Logger(DashboardFiles.name);
  readonly dir = DASHBOARD_DIR;

  onModuleInit(): void {
    if (!this.built()) {
      this.logger.warn(`The dashboard is not built (${this.dir} is missing): run npm run build`);
    }
  }

  built(): boolean {
    return existsSync(join(this.dir, 'index.html'));
  }

  isAssetName(name: string): boolean {
    return ASSET_NAME.test(name);
  }
}
