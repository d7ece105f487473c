import { Controller, Get, Header, Res } from '@nestjs/common';
import type { Response } from 'express';
import { MetricsService } from './metrics.service';

@Controller()
export class MetricsController {
  constructor(private readonly metrics: MetricsService) {}

  /** Prometheus text exposition format. */
  @Get('metrics')
  @Header('Cache-Control', 'no-store')
  async scrape(@Res() res: Response): Promise<void> {
    const text = await this.metrics.scrape();
    // Set as is: Express would rewrite it (`res.type`) and Prometheus reads its `version`.
    res.setHeader('Content-Type', this.metrics.contentType);
    res.end(text);
  }
}
