import { InitialSchema1764064800000 } from './1764064800000-initial-schema';
import { Schedules1764151200000 } from './1764151200000-schedules';
import { HopsAndToolEffects1764800000000 } from './1764800000000-hops-and-tool-effects';
import { Ownership1764900000000 } from './1764900000000-ownership';
import { FenceRefusal1765000000000 } from './1765000000000-fence-refusal';
import { HotTablesWithoutForeignKeys1765100000000 } from './1765100000000-hot-tables-without-foreign-keys';
import { FewElements1765200000000 } from './1765200000000-few-elements';
import { WaitingAgents1765300000000 } from './1765300000000-waiting-agents';

/** Every migration, oldest first. Listed explicitly so the build, jest and the CLI all see the same set. */
export const MIGRATIONS = [
  InitialSchema1764064800000,
  Schedules1764151200000,
  HopsAndToolEffects1764800000000,
  Ownership1764900000000,
  FenceRefusal1765000000000,
  HotTablesWithoutForeignKeys1765100000000,
  FewElements1765200000000,
  WaitingAgents1765300000000,
];
