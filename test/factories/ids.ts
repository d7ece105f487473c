let counter = 0;

/** A session id no other test uses. */
export function newSessionId(prefix = 'session'): string {
  counter += 1;
  return `${prefix}-${process.pid}-${counter}-${Math.random().toString(36).slice(2, 8)}`;
}
