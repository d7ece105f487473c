/**
 * A reason the server cannot start that the operator can fix (a missing database, a refused
 * connection): main prints its message, one line, instead of a stack or a driver's error object.
 */
export class StartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StartupError';
  }
}
