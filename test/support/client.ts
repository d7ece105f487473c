import { io, Socket } from 'socket.io-client';

export interface RpcErrorBody {
  code: number;
  message: string;
  data: { reason: string; issues?: Array<{ path: string; message: string }> };
}

export type Reply = { result: any } | { error: RpcErrorBody };

const TASK_END = ['async.task.completed', 'async.task.failed'] as const;

interface Push {
  name: string;
  payload: any;
}

/**
 * A real socket.io client speaking the protocol: `call` emits with an ack, every push is kept in
 * order, and `waitFor` resolves on the first push (past or future) that matches.
 */
export class TestClient {
  readonly pushes: Push[] = [];
  private waiters: Array<{ match: (p: Push) => boolean; resolve: (p: any) => void }> = [];

  private constructor(readonly socket: Socket) {
    socket.onAny((name: string, payload: unknown) => {
      const push = { name, payload };
      this.pushes.push(push);
      this.waiters = this.waiters.filter((w) => {
        if (w.match(push)) {
          w.resolve(push.payload);
          return false;
        }
        return true;
      });
    });
  }

  static async connect(url: string, auth?: Record<string, unknown>): Promise<TestClient> {
    const socket = io(url, { transports: ['websocket'], reconnection: false, auth, forceNew: true });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('connect_error', reject);
    });
    return new TestClient(socket);
  }

  call(method: string, params?: unknown): Promise<Reply> {
    return new Promise((resolve) => this.socket.emit(method, params, resolve));
  }

  /** Calls and returns the result; fails the test with the error when there is one. */
  async ok<T = any>(method: string, params?: unknown): Promise<T> {
    const reply = await this.call(method, params);
    if ('error' in reply) {
      throw new Error(`${method} failed: ${JSON.stringify(reply.error)}`);
    }
    return reply.result as T;
  }

  /** Calls and returns the error; fails the test when the call succeeds. */
  async fails(method: string, params?: unknown): Promise<RpcErrorBody> {
    const reply = await this.call(method, params);
    if (!('error' in reply)) {
      throw new Error(`${method} unexpectedly succeeded: ${JSON.stringify(reply.result)}`);
    }
    return reply.error;
  }

  /** The first push named `name` whose payload matches, already received or still to come. */
  waitFor<T = any>(
    name: string | readonly string[],
    match: (payload: any) => boolean = () => true,
    timeoutMs = 20_000,
  ): Promise<T> {
    const names = typeof name === 'string' ? [name] : name;
    const seen = this.pushes.find((p) => names.includes(p.name) && match(p.payload));
    if (seen) {
      return Promise.resolve(seen.payload as T);
    }
    return new Promise<T>((resolve, reject) => {
      const waiter = {
        match: (p: Push) => names.includes(p.name) && match(p.payload),
        resolve: (payload: any) => {
          clearTimeout(timer);
          resolve(payload as T);
        },
      };
      // A guard against a hung test, not a timing assertion.
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(
          new Error(
            `timed out waiting for ${names.join('|')}; saw: ${this.pushes.map((p) => p.name).join(', ')}`,
          ),
        );
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** Waits until `agentId`'s task `taskId` has completed or failed, and returns that push's payload. */
  async waitForTaskEnd(taskId: string): Promise<{ name: string; payload: any }> {
    const payload = await this.waitFor(TASK_END, (p) => p.taskId === taskId);
    const completed = this.pushes.some((p) => p.name === 'async.task.completed' && p.payload === payload);
    return { name: completed ? 'async.task.completed' : 'async.task.failed', payload };
  }

  of(name: string): any[] {
    return this.pushes.filter((p) => p.name === name).map((p) => p.payload);
  }

  close(): void {
    this.socket.close();
  }
}
