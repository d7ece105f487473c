import { Controller, Get, HttpStatus, Res } from '@nestjs/common';
import type { Response } from 'express';
import { LeaseService } from 'src/cluster/lease.service';
import { DatabaseService } from 'src/database/database.service';

@Controller()
export class HealthController {
  constructor(
    private readonly db: DatabaseService,
    private readonly leases: LeaseService,
  ) {}

  /** 200 when the database answers, 503 when it does not; which node answered and how many sessions it runs. */
  @Get('health')
  async health(@Res() res: Response): Promise<void> {
    const up = await this.db.ping();
    res.status(up ? HttpStatus.OK : HttpStatus.SERVICE_UNAVAILABLE).json({
      status: up ? 'ok' : 'unavailable',
      database: up ? 'up' : 'down',
      node: { id: this.leases.nodeId, sessions: this.leases.served().length },
    });
  }
}
