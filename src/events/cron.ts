import { CronTime } from 'cron';

/** A cron expression: 5 fields, or 6 with seconds first, in an IANA time zone. */
export class CronSchedule {
  private constructor(
    private readonly time: CronTime,
    private readonly timezone: string,
  ) {}

  /** Parses the expression; throws an Error with a readable reason when it is not one. */
  static parse(expression: string, timezone: string): CronSchedule {
    const fields = expression.trim().split(/\s+/);
    if (fields.length !== 5 && fields.length !== 6) {
      throw new Error(`expected 5 fields (or 6 with seconds first), got ${fields.length}`);
    }
    return new CronSchedule(new CronTime(fields.join(' '), timezone), timezone);
  }

  /** The first run strictly after `after` (epoch ms). */
  nextAfter(after: number): number {
    // The zone must be passed here too: without it the library reads the fields in the machine's zone.
    return this.time.getNextDateFrom(new Date(after), this.timezone).toMillis();
  }
}

/** True for a time zone name the runtime knows (`UTC`, `Europe/Paris`, …). */
export function isTimeZone(name: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: name });
    return true;
  } catch {
    return false;
  }
}
