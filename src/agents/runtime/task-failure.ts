/** A work item that cannot finish. `stopAgent`: the agent itself is over a limit and is stopped too. */
export class TaskFailure extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly stopAgent = false,
  ) {
    super(message);
    this.name = 'TaskFailure';
  }
}
