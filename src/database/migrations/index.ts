import { InitialSchema1764064800000 } from './1764064800000-initial-schema';
import { Schedules1764151200000 } from './1764151200000-schedules';
import { Ownership1764900000000 } from './1764900000000-ownership';

/** Every migration, oldest first. Listed explicitly so the build, jest and the CLI all see the same set. */
export const MIGRATIONS = [InitialSchema1764064800000, Schedules1764151200000, Ownership1764900000000];
