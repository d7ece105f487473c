import type { EntityManager } from 'typeorm';
import { literal } from './literals';

/** Each embedded database's statements, by its DataSource (what a Tx's `connection` is). */
export const embeddedStatements = new WeakMap<object, EmbeddedStatements>();

/** Statements prepared by name; bounded, since some texts are built. */
const PREPARED_MAX = 500;

/**
 * Named prepared statements on the embedded database (PGlite), whose driver takes no statement
 * names: each text is prepared once with `PREPARE`, then run as `EXECUTE name(literals…)`. Planning a
 * statement there reads the size of every table and index it touches through the file system, which
 * made planning most of a hot statement's cost; a prepared statement is planned once (Postgres keeps a
 * generic plan after a few runs). A text that cannot be prepared (not a single plain statement) runs
 * as it is. One per embedded database: prepared statements belong to its one connection.
 */
export class EmbeddedStatements {
  /** Each text's name, or null when it cannot be prepared. */
  private readonly names = new Map<string, string | null>();

  async query(m: EntityManager, text: string, params: unknown[]): Promise<unknown> {
    const name = this.names.has(text) ? this.names.get(text)! : await this.prepare(m, text);
    if (name === null) {
      return m.query(text, params);
    }
    return m.query(
      params.length > 0 ? `EXECUTE ${name}(${params.map(literal).join(', ')})` : `EXECUTE ${name}`,
    );
  }

  private async prepare(m: EntityManager, text: string): Promise<string | null> {
    if (this.names.size >= PREPARED_MAX) {
      return null;
    }
    const name = `mailroom_${this.names.size}`;
    // In a transaction, a failed PREPARE must not fail the transaction: it is tried in a savepoint.
    const inTransaction = m.queryRunner?.isTransactionActive === true;
    try {
      if (inTransaction) {
        await m.query('SAVEPOINT mailroom_prepare');
      }
      await m.query(`PREPARE ${name} AS ${text}`);
      if (inTransaction) {
        await m.query('RELEASE SAVEPOINT mailroom_prepare');
      }
      this.names.set(text, name);
      return name;
    } catch {
      if (inTransaction) {
        await m.query('ROLLBACK TO SAVEPOINT mailroom_prepare');
        await m.query('RELEASE SAVEPOINT mailroom_prepare');
      }
      this.names.set(text, null);
      return null;
    }
  }
}
