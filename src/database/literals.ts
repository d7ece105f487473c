// Parameters written into statement text, for the protocols and statements that take none (a simple
// query, `EXECUTE name(…)`).

/**
 * A parameter as an `EXECUTE` argument: a quoted literal of unknown type, which the server takes as
 * the statement's parameter type (as it does with a bound parameter's text); NULL for null.
 */
export function literal(value: unknown): string {
  if (value === null || value === undefined) {
    return 'NULL';
  }
  return quote(text(value));
}

/** What the driver would send as the parameter's text. */
function text(value: unknown): string {
  if (typeof value === 'string') {
    return value;
  }
  if (typeof value === 'number' || typeof value === 'bigint') {
    return String(value);
  }
  if (typeof value === 'boolean') {
    return value ? 't' : 'f';
  }
  if (value instanceof Date) {
    return value.toISOString();
  }
  if (Array.isArray(value)) {
    // Postgres's array text: elements double-quoted, backslashes and quotes escaped; NULL for null.
    const elements = value.map((v: unknown) =>
      v === null || v === undefined ? 'NULL' : `"${text(v).replace(/[\\"]/g, (c) => `\\${c}`)}"`,
    );
    return `{${elements.join(',')}}`;
  }
  return JSON.stringify(value);
}

/** A standard SQL string literal (standard_conforming_strings is on: backslashes are plain). */
function quote(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

/**
 * True when a parameter holds a NUL character, which no literal can carry (the protocol ends a
 * query's text at it): such a statement must go with bound parameters, so that the server refuses
 * it as its own error (text holds no NUL) instead of the connection's stream breaking.
 */
export function holdsNul(value: unknown): boolean {
  return typeof value === 'string' ? value.includes('\u0000') : Array.isArray(value) && value.some(holdsNul);
}
