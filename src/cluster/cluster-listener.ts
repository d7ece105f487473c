import { Logger } from '@nestjs/common';
import { Client } from 'pg';

/**
 * One dedicated connection that LISTENs on a channel, reconnecting (every second) after it drops.
 * `onReconnect` runs after a drop is repaired: hints sent meanwhile are lost, so the caller looks
 * at the database again (the backstop would find the work anyway, later).
 */
export class ClusterListener {
  private readonly logger = new Logger(ClusterListener.name);
  private client?: Client;
  private closed = false;
  private retry?: NodeJS.Timeout;
  private everConnected = false;

  constructor(
    private readonly url: string,
    private readonly channel: string,
    private readonly onMessage: (payload: string) => void,
    private readonly onReconnect: () => void,
  ) {}

  async start(): Promise<void> {
    await this.connect();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private async connect(): Promise<void> {
    const client = new Client({ connectionString: this.url, connectionTimeoutMillis: 5000 });
    client.on('notification', (n) => {
      if (n.channel === this.channel && n.payload) {
        this.onMessage(n.payload);
      }
    });
    client.on('error', (err) => this.lost(client, err));
    client.on('end', () => this.lost(client));
    try {
      await client.connect();
      await client.query(`LISTEN ${this.channel}`);
    } catch (err) {
      this.lost(client, err);
      return;
    }
    if (this.closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.client = client;
    if (this.everConnected) {
      this.logger.log('LISTEN connection restored');
      this.onReconnect();
    }
    this.everConnected = true;
  }

  private lost(client: Client, err?: unknown): void {
    if (this.closed || (this.client !== undefined && this.client !== client)) {
      return;
    }
    if (this.client === client || this.client === undefined) {
      this.client = undefined;
      client.removeAllListeners('end');
      client.end().catch(() => undefined);
      if (this.retry === undefined) {
        this.logger.warn(
          `LISTEN connection lost${err ? ` (${err instanceof Error ? err.message : 'error'})` : ''}; reconnecting`,
        );
        this.retry = setTimeout(() => {
          this.retry = undefined;
          // Marked as having connected, so the reconnect resyncs even if the first connect failed.
          this.everConnected = true;
          void this.connect();
        }, 1000);
        this.retry.unref();
      }
    }
  }
}
