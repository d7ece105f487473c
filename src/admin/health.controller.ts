import { Controller, Get, HttpStatus, Res, ServiceUnavailableException } from '@nestjs/common';
import { HealthCheck, HealthCheckResult, HealthCheckService } from '@nestjs/terminus';
import type { Response } from 'express';
import { LeaseService } from 'src/cluster/lease.service';
import { DatabaseHealthIndicator } from './database.health';

@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly database: DatabaseHealthIndicator,
    private readonly leases: LeaseService,
  ) {}

  /** Which node answered and how many sessions it runs (several servers share one database). */
  private node() {
    return { id: this.leases.nodeId, sessions: this.leases.served().length };
  }

  /**
   * Readiness: 200 `{ status: "ok", database: "up", … }` when the database answers, 503
   * `{ status: "unavailable", database: "down", … }` when not; terminus' `info`/`error`/`details` follow.
   */
  @Get()
  @HealthCheck()
  async ready(@Res() res: Response): Promise<void> {
    try {
      const result = await this.health.check([() => this.database.check('database')]);
      res.status(HttpStatus.OK).json({ ...result, status: 'ok', database: 'up', node: this.node() });
    } catch (err) {
      if (!(err instanceof ServiceUnavailableException)) {
        throw err;
      }
      const result = err.getResponse() as HealthCheckResult;
      res
        .status(HttpStatus.SERVICE_UNAVAILABLE)
        .json({ ...result, status: 'unavailable', database: 'down', node: this.node() });
    }
  }

  /** Liveness: 200 while the process serves HTTP; it asks nothing of the database. */
  @Get('live')
  @HealthCheck()
  live(): Promise<HealthCheckResult> {
    return this.health.check([]);
  }
}
