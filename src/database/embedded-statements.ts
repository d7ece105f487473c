import type { EntityManager } from 'typeorm';
import { Mutex } from 'src/common/mutex';
import { executable } from './fused';
import { holdsNul } from './literals';
import { PreparedTexts } from './prepared-texts';

/** Each embedded database's statements, by its DataSource (what a Tx's `connection` is). */
export const embeddedStatements = new WeakMap<object, EmbeddedStatements>();

/**
 * Named prepared statements on the embedded database (PGlite), whose driver takes no statement
 * names: each text is prepared once with `PREPARE`, then run as `EXECUTE name(literals…)`. Planning a
 * statement there reads the size of every table and index it touches through the file system, which
 * made planning most of a hot statement's cost; a prepared statement is planned once (Postgres keeps a
 * generic plan after a few runs). A text that cannot be prepared (not a single plain statement) runs
 * as it is. One per embedded database: prepared statements belong to its one connection.
 */
export class EmbeddedStatements {
  private readonly texts = new PreparedTexts('mailroom_');
  /** The names prepared on the database's one connection. */
  private readonly prepared = new Set<string>();

  /**
   * Statements run one at a time in the order they were called: statements not waited for one by
   * one must not overtake each other, nor interleave a first-time PREPARE's savepoint with another.
   */
  private readonly order = new Mutex();

  query(m: EntityManager, text: string, params: unknown[]): Promise<unknown> {
    return this.order.run(async (): Promise<unknown> => {
      if (params.some(holdsNul)) {
        return m.query(text, params); // no literal can carry it (see holdsNul)
      }
      const inTransaction = m.queryRunner?.isTransactionActive === true;
      const name = await this.texts.prepare((sql) => m.query(sql), this.prepared, text, inTransaction);
      return name === undefined ? m.query(text, params) : m.query(executable(text, params, name));
    });
  }
}
