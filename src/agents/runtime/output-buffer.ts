/**
 * Gathers streamed text into pushes of a readable size: every push is a history row, so one per
 * token would flood the database. A newline or a full buffer sends what is there; so does the end
 * of the model call.
 */
export class OutputBuffer {
  private buffered = '';

  constructor(
    private readonly send: (delta: string) => Promise<unknown>,
    private readonly size = 64,
  ) {}

  async add(delta: string): Promise<void> {
    this.buffered += delta;
    if (this.buffered.length >= this.size || delta.includes('\n')) {
      await this.flush();
    }
  }

  /** Hands back what is buffered (for the caller to push itself) and empties the buffer. */
  take(): string {
    const delta = this.buffered;
    this.buffered = '';
    return delta;
  }

  async flush(): Promise<void> {
    if (this.buffered) {
      const delta = this.buffered;
      this.buffered = '';
      await this.send(delta);
    }
  }
}
