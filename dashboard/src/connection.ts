import { io, type Socket } from 'socket.io-client';
import { PUSHES, type HistoryRecord, type PushName, type RpcErrorBody } from './protocol';

/** A failed method call, as the server answered it. */
export class RpcFailure extends Error {
  constructor(readonly body: RpcErrorBody) {
    super(body.message);
  }

  /** "invalid_params (-32602): …; agentId: …", the way the page shows it. */
  describe(): string {
    const reason = this.body.data?.reason ?? 'error';
    const issues = (this.body.data?.issues ?? []).map((i) => `${i.path || '(params)'}: ${i.message}`);
    return [`${reason} (${this.body.code}): ${this.body.message}`, ...issues].join('\n');
  }
}

export type ConnectionStatus =
  { kind: 'connecting' } | { kind: 'connected' } | { kind: 'failed'; message: string };

type Reply = { result: unknown } | { error: RpcErrorBody };

/** A record pushed for a session: the history record plus the session it belongs to. */
export interface SessionPush extends HistoryRecord {
  sessionId: string;
  type: PushName;
}

/**
 * The one socket.io connection the page holds, speaking the public protocol: a call is an emit
 * with an ack, a push is a named event. The token (when the server wants one) goes in the handshake.
 */
export class Connection {
  private readonly socket: Socket;
  private pushListeners = new Set<(push: SessionPush) => void>();
  private statusListeners = new Set<(status: ConnectionStatus) => void>();
  status: ConnectionStatus = { kind: 'connecting' };

  constructor(token: string) {
    this.socket = io({ auth: token ? { token } : {}, transports: ['websocket', 'polling'] });
    this.socket.on('connect', () => this.setStatus({ kind: 'connected' }));
    this.socket.on('disconnect', () => this.setStatus({ kind: 'connecting' }));
    this.socket.on('connect_error', (err: Error & { data?: { reason?: string } }) =>
      this.setStatus({ kind: 'failed', message: describeConnectError(err) }),
    );
    for (const name of PUSHES) {
      this.socket.on(name, (payload: Record<string, unknown>) => {
        const { sessionId, seq, at, ...rest } = payload as { sessionId: string; seq: number; at: string };
        const push: SessionPush = { sessionId, seq, at, type: name, payload: rest };
        this.pushListeners.forEach((l) => l(push));
      });
    }
  }

  call<T>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.socket.timeout(30_000).emit(method, params, (err: Error | null, reply: Reply) => {
        if (err) {
          reject(new RpcFailure({ code: -32006, message: 'No answer from the server (timed out)' }));
        } else if ('error' in reply) {
          reject(new RpcFailure(reply.error));
        } else {
          resolve(reply.result as T);
        }
      });
    });
  }

  onPush(listener: (push: SessionPush) => void): () => void {
    this.pushListeners.add(listener);
    return () => this.pushListeners.delete(listener);
  }

  onStatus(listener: (status: ConnectionStatus) => void): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  close(): void {
    this.socket.close();
  }

  private setStatus(status: ConnectionStatus): void {
    this.status = status;
    this.statusListeners.forEach((l) => l(status));
  }
}

function describeConnectError(err: Error & { data?: { reason?: string } }): string {
  if (err.data?.reason === 'unauthorized' || /unauthori[sz]ed/i.test(err.message)) {
    return 'The server wants a valid token: enter it above.';
  }
  return `Cannot reach the server: ${err.message}`;
}

/** Thrown values as one line for the page. */
export function describeError(err: unknown): string {
  if (err instanceof RpcFailure) {
    return err.describe();
  }
  return err instanceof Error ? err.message : String(err);
}
