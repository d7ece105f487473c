import { Global, Module } from '@nestjs/common';
import { ClusterHints } from './cluster-hints.service';
import { LeaseRepository } from './lease.repository';
import { LeaseService } from './lease.service';
import { NodeIdentity } from './node-identity';

/**
 * Several servers on one database: node identity and heartbeats, session leases with fencing
 * epochs, and the LISTEN/NOTIFY hints between nodes. Global, like the database: sessions, mailbox,
 * events and the runtime all consult it, and it depends on none of them.
 */
@Global()
@Module({
  providers: [NodeIdentity, LeaseRepository, LeaseService, ClusterHints],
  exports: [NodeIdentity, LeaseService, ClusterHints],
})
export class ClusterModule {}
