import { Injectable } from '@nestjs/common';
import { HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import { DatabaseService } from 'src/database/database.service';

/** The database answers a trivial query (on PGlite too: its lock is taken like any other read). */
@Injectable()
export class DatabaseHealthIndicator {
  constructor(
    private readonly db: DatabaseService,
    private readonly indicators: HealthIndicatorService,
  ) {}

  async check(key: 'database'): Promise<HealthIndicatorResult<'database'>> {
    const check = this.indicators.check(key);
    return (await this.db.ping()) ? check.up() : check.down();
  }
}
