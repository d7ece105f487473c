import { Controller, Get, HttpStatus, Param, Res } from '@nestjs/common';
import type { Response } from 'express';
import { join } from 'node:path';
import { DashboardFiles } from './dashboard-files';

/**
 * The page allows itself nothing from elsewhere: its script, styles and socket all come from this
 * server (a CDN font or script would be refused, and show as a console error in the browser test).
 */
const CONTENT_SECURITY_POLICY =
  "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'";

/** Serves the dashboard at `/` and its hashed assets at `/assets/*`; no other path is taken. */
@Controller()
export class DashboardController {
  constructor(private readonly files: DashboardFiles) {}

  @Get()
  index(@Res() res: Response): void {
    if (!this.files.built()) {
      res
        .status(HttpStatus.NOT_FOUND)
        .type('text/plain')
        .send('The dashboard is not built: run `npm run build`, then reload.');
      return;
    }
    res.setHeader('Content-Security-Policy', CONTENT_SECURITY_POLICY);
    res.setHeader('Cache-Control', 'no-cache');
    res.sendFile('index.html', { root: this.files.dir });
  }

  @Get('assets/:file')
  asset(@Param('file') file: string, @Res() res: Response): void {
    if (!this.files.isAssetName(file)) {
      res.status(HttpStatus.NOT_FOUND).end();
      return;
    }
    // Vite names each file by its content's hash, so a name never changes meaning.
    res.sendFile(
      join('assets', file),
      { root: this.files.dir, maxAge: '365d', immutable: true },
      (err) => err && !res.headersSent && res.status(HttpStatus.NOT_FOUND).end(),
    );
  }
}
