import { Global, Module } from '@nestjs/common';
import { ClusterHints } from './cluster-hints.service';
import { LeaseRepository } from './lease.repository';
import { LeaseService } from './lease.service';
import { NodeIdentity } from './node-identity';
import { OwnerContext } from './owner-context';

/**
 * Several servers on one database: node identity and heartbeats, session leases with fencing
 * epochs, and the LISTEN/NOTIFY hints between nodes. Global, like the database: sessions, mailbox,
 * events and the runtime all consult it, and it depends on none of them.
 */
@Global()
@Module({
  providers: [NodeIdentity, OwnerContext, LeaseRepository, LeaseService, ClusterHints],
  exports: [NodeIdentity, OwnerContext, LeaseService, ClusterHints],
})
export class ClusterModule {}
