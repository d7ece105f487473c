import { Inject, Injectable } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { APP_CONFIG } from 'src/config/config.module';
import { AppConfig } from 'src/config/app-config';

/**
 * This process's name among the nodes sharing a database. Random unless NODE_ID is set: a node
 * restarted with the same NODE_ID knows its previous life's leases are dead and takes them at once.
 */
@Injectable()
export class NodeIdentity {
  readonly id: string;

  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    this.id =
      config.nodeId ??
      `${
        hostname()
          .replace(/[^A-Za-z0-9_.-]/g, '')
          .slice(0, 32) || 'node'
      }-${process.pid}-${randomBytes(3).toString('hex')}`;
  }
}
