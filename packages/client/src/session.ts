import type { MailroomClient } from './client';
import { MailroomError } from './errors';
import type { MethodName, MethodParams } from './protocol/params';
import type { AnyPush, PushMap, PushName, TaskOutcome } from './protocol/pushes';
import type { MethodResult } from './protocol/results';

/** Methods that take a `sessionId`: a session handle fills it in. */
export type SessionMethod = {
  [M in MethodName]: 'sessionId' extends keyof MethodParams<M> ? M : never;
}[MethodName];
export type SessionParams<M extends SessionMethod> = Omit<MethodParams<M>, 'sessionId'>;

type Handler = (payload: never) => void;
type Payload = Record<string, unknown> & { seq: number };

const HISTORY_PAGE = 500;
/** Finished tasks remembered for `waitForTask` callers that ask after the fact. */
const OUTCOMES_KEPT = 10_000;

/**
 * One session's pushes, each delivered once and in `seq` order, across reconnections.
 *
 * Following a session is: `session.subscribe`, then `async.getHistory` from the last `seq`
 * delivered, with the live pushes that arrive meanwhile held back; then the held pushes, less those
 * the history already gave. The same happens after every reconnection, and when a live push shows a
 * gap. A push is a history record, delivered when its `seq` is past the last one, except streamed
 * text (`async.task.output` with an `index`), which is not in the history and carries the `seq` of
 * the record it follows: it is delivered when its `index` is new for its task (since the task last
 * started: a retry streams again from 0) and it is not older than what was delivered already.
 */
export class MailroomSession {
  private lastSeq = 0;
  private following = false;
  private held: Array<{ name: PushName; payload: Payload }> | undefined;
  private syncing: Promise<void> | undefined;
  private readonly handlers = new Map<PushName | '*', Set<Handler>>();
  private readonly outputIndex = new Map<string, number>();
  private readonly outcomes = new Map<string, TaskOutcome>();
  private readonly taskWaiters = new Map<string, Set<(outcome: TaskOutcome) => void>>();

  constructor(
    private readonly client: MailroomClient,
    readonly id: string,
  ) {}

  /** The `seq` of the last history record delivered. */
  get seq(): number {
    return this.lastSeq;
  }

  /** Calls `handler` with every push of that name. Returns the unsubscribe. */
  on<N extends PushName>(name: N, handler: (push: PushMap[N]) => void): () => void {
    return this.addHandler(name, handler);
  }

  /** Calls `handler` with every push. Returns the unsubscribe. */
  onAny(handler: (push: AnyPush) => void): () => void {
    return this.addHandler('*', handler);
  }

  /** `session.start` (creating the session, or returning the caller's existing one), then follows it. */
  async start(params: SessionParams<'session.start'> = {}): Promise<MethodResult<'session.start'>> {
    // session.start subscribes this connection: its pushes are held from now on.
    this.held ??= [];
    this.following = true;
    try {
      const started = await this.client.call('session.start', { ...params, sessionId: this.id });
      await this.sync();
      return started;
    } catch (err) {
      this.held = undefined;
      this.following = false;
      throw err;
    }
  }

  /**
   * Follows an existing session: replays its history after `after` (default: from the start, or
   * from the last push delivered), then its live pushes. Resolves once the replay is delivered.
   */
  async subscribe(options: { after?: number } = {}): Promise<void> {
    if (options.after !== undefined) {
      this.lastSeq = options.after;
    }
    this.following = true;
    await this.sync();
  }

  /** Calls a session method with this session's id. */
  call<M extends SessionMethod>(method: M, params: SessionParams<M>): Promise<MethodResult<M>> {
    return this.client.call(method, { ...params, sessionId: this.id } as MethodParams<M>);
  }

  /**
   * Resolves with the task's `async.task.completed` or `async.task.failed` payload, whether it
   * ended before or after this call (follows the session first if it did not yet).
   */
  async waitForTask(taskId: string, options: { timeoutMs?: number } = {}): Promise<TaskOutcome> {
    const known = this.outcomes.get(taskId);
    if (known) {
      return known;
    }
    let settle!: (outcome: TaskOutcome) => void;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const ended = new Promise<TaskOutcome>((resolve, reject) => {
      settle = resolve;
      if (options.timeoutMs !== undefined) {
        timer = setTimeout(
          () =>
            reject(new MailroomError(`Task ${taskId} did not end within ${options.timeoutMs} ms`, 'timeout')),
          options.timeoutMs,
        );
      }
    });
    const waiters = this.taskWaiters.get(taskId) ?? new Set();
    waiters.add(settle);
    this.taskWaiters.set(taskId, waiters);
    try {
      if (!this.following) {
        await this.subscribe();
      }
      return await ended;
    } finally {
      clearTimeout(timer);
      waiters.delete(settle);
      if (waiters.size === 0) {
        this.taskWaiters.delete(taskId);
      }
    }
  }

  /**
   * Resolves with the next push of that name (delivered after this call) that `match` accepts.
   * Call it before the action that causes the push.
   */
  waitFor<N extends PushName>(
    name: N,
    match: (push: PushMap[N]) => boolean = () => true,
    options: { timeoutMs?: number } = {},
  ): Promise<PushMap[N]> {
    return new Promise((resolve, reject) => {
      const timer =
        options.timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              off();
              reject(new MailroomError(`No ${name} within ${options.timeoutMs} ms`, 'timeout'));
            }, options.timeoutMs);
      const off = this.on(name, (push) => {
        if (match(push)) {
          off();
          clearTimeout(timer);
          resolve(push);
        }
      });
    });
  }

  /** @internal A live push from the connection. */
  receive(name: PushName, payload: Record<string, unknown>): void {
    if (!this.following || typeof payload.seq !== 'number') {
      return;
    }
    const push = { name, payload: payload as Payload };
    if (this.held) {
      this.held.push(push);
    } else if (!isStreamed(name, payload) && payload.seq > this.lastSeq + 1) {
      // Records went missing (e.g. the connection changed under us): fetch them first.
      this.held = [push];
      this.resync();
    } else {
      this.accept(push.name, push.payload);
    }
  }

  /** @internal Follows again after a reconnection; failures go to the client's error listeners. */
  resync(): void {
    if (this.following) {
      this.sync().catch((err: unknown) => {
        if (!(err instanceof MailroomError && err.isConnectionError)) {
          this.client.reportError(err);
        }
      });
    }
  }

  /** One catch-up at a time; a call during one waits for it and then catches up again. */
  private sync(): Promise<void> {
    this.held ??= [];
    const run = (this.syncing ?? Promise.resolve()).catch(() => undefined).then(() => this.catchUp());
    this.syncing = run;
    return run;
  }

  private async catchUp(): Promise<void> {
    this.held ??= [];
    try {
      await this.client.call('session.subscribe', { sessionId: this.id });
      for (;;) {
        const page = await this.client.call('async.getHistory', {
          sessionId: this.id,
          after: this.lastSeq,
          limit: HISTORY_PAGE,
        });
        for (const e of page.events) {
          this.accept(e.type, { ...e.payload, sessionId: this.id, at: e.at, seq: e.seq });
        }
        if (page.events.length < HISTORY_PAGE) {
          break;
        }
      }
    } catch (err) {
      // What was held is in the history: the next catch-up (after the reconnection) reads it.
      this.held = undefined;
      throw err;
    }
    const held = this.held;
    this.held = undefined;
    for (const push of held) {
      this.accept(push.name, push.payload);
    }
  }

  private accept(name: PushName, payload: Payload): void {
    if (isStreamed(name, payload)) {
      const taskId = String(payload.taskId);
      if (payload.seq < this.lastSeq || payload.index <= (this.outputIndex.get(taskId) ?? -1)) {
        return;
      }
      this.outputIndex.set(taskId, payload.index);
    } else {
      if (payload.seq <= this.lastSeq) {
        return;
      }
      this.lastSeq = payload.seq;
    }
    if (name === 'async.task.started') {
      // A retried item (e.g. after a server restart) streams its text again from index 0.
      this.outputIndex.delete(String(payload.taskId));
    } else if (name === 'async.task.completed' || name === 'async.task.failed') {
      this.taskEnded(payload as unknown as TaskOutcome);
    }
    this.deliver(name, payload);
  }

  private taskEnded(outcome: TaskOutcome): void {
    this.outputIndex.delete(outcome.taskId);
    this.outcomes.set(outcome.taskId, outcome);
    if (this.outcomes.size > OUTCOMES_KEPT) {
      this.outcomes.delete(this.outcomes.keys().next().value as string);
    }
    for (const settle of this.taskWaiters.get(outcome.taskId) ?? []) {
      settle(outcome);
    }
  }

  private deliver(name: PushName, payload: Payload): void {
    const call = (handler: Handler, arg: unknown) => {
      try {
        (handler as (arg: unknown) => void)(arg);
      } catch (err) {
        this.client.reportError(err);
      }
    };
    for (const handler of this.handlers.get(name) ?? []) {
      call(handler, payload);
    }
    for (const handler of this.handlers.get('*') ?? []) {
      call(handler, { name, payload });
    }
  }

  private addHandler(key: PushName | '*', handler: Handler): () => void {
    const set = this.handlers.get(key) ?? new Set();
    set.add(handler);
    this.handlers.set(key, set);
    return () => set.delete(handler);
  }
}

/** Streamed text that is not a history record (it has an `index`, and shares its `seq`). */
function isStreamed(
  name: PushName,
  payload: Record<string, unknown>,
): payload is Payload & { index: number } {
  return name === 'async.task.output' && typeof payload.index === 'number';
}
