/**
 * Statement texts prepared by name, as the fused queries on a Postgres server (fused.ts) and the
 * embedded database (EmbeddedStatements) run them with SQL `PREPARE` and `EXECUTE`, and as the
 * driver's own named statements (sql.ts) are named. Names are given per text, bounded (some texts
 * are built); a text the server refuses to prepare is remembered and run as it is.
 */
export class PreparedTexts {
  private readonly names = new Map<string, string>();
  private readonly refused = new Set<string>();

  constructor(
    private readonly prefix: string,
    private readonly max = 500,
  ) {}

  /** The text's name; undefined once the bound is reached, or when the server refused the text. */
  nameOf(text: string): string | undefined {
    let name = this.names.get(text);
    if (name === undefined && this.names.size < this.max && !this.refused.has(text)) {
      name = `${this.prefix}${this.names.size}`;
      this.names.set(text, name);
    }
    return this.refused.has(text) ? undefined : name;
  }

  /**
   * Makes sure `text` is prepared on one connection (`prepared`: the names already prepared there,
   * `exec`: runs one statement on it) and gives its name; undefined when it cannot be. In a
   * transaction the `PREPARE` is tried in a savepoint, each statement its own query (the server
   * parses a whole query before running any of it, so a refused PREPARE sent with its savepoint
   * would fail the transaction too), so that a refusal fails nothing.
   */
  async prepare(
    exec: (sql: string) => Promise<unknown>,
    prepared: Set<string>,
    text: string,
    inTransaction: boolean,
  ): Promise<string | undefined> {
    const name = this.nameOf(text);
    if (name === undefined || prepared.has(name)) {
      return name;
    }
    if (inTransaction) {
      await exec('SAVEPOINT mailroom_prepare');
    }
    try {
      await exec(`PREPARE ${name} AS ${text}`);
      if (inTransaction) {
        await exec('RELEASE SAVEPOINT mailroom_prepare');
      }
    } catch (err) {
      if (inTransaction) {
        await exec('ROLLBACK TO SAVEPOINT mailroom_prepare');
        await exec('RELEASE SAVEPOINT mailroom_prepare');
      }
      if (isRefusal(err)) {
        this.refused.add(text);
        return undefined;
      }
      throw err;
    }
    prepared.add(name);
    return name;
  }
}

/** An error of the statement (SQLSTATE class 42: syntax, unknown types…), not of the connection. */
function isRefusal(err: unknown): boolean {
  const e = err as { code?: unknown; driverError?: { code?: unknown } };
  const code = e.code ?? e.driverError?.code;
  return typeof code === 'string' && code.startsWith('42');
}
