import { io, type Socket } from 'socket.io-client';
import { MailroomError } from './errors';
import type { Reply } from './protocol/errors';
import type { MethodName, MethodParams } from './protocol/params';
import type { MethodResult } from './protocol/results';
import type { PushName } from './protocol/pushes';
import { MailroomSession } from './session';

export interface ConnectOptions {
  /** Bearer token, when the server has `API_TOKENS` configured. */
  token?: string;
  /** How long a call waits for its reply before it fails with reason `timeout` (default 30 s). */
  callTimeoutMs?: number;
  /** How long `connect` waits for the first connection (default 10 s). */
  connectTimeoutMs?: number;
  /** First and longest wait between reconnection attempts (default 200 ms and 5 s, doubling). */
  reconnectDelayMs?: number;
  reconnectDelayMaxMs?: number;
}

export type ConnectionEvent =
  { type: 'disconnected'; reason: string } | { type: 'reconnected' } | { type: 'error'; error: unknown };

/**
 * Connects to a Mailroom server over socket.io. Resolves once connected; rejects with a
 * `MailroomError` (`connect_failed`, or `unauthorized` for a refused token) when the first
 * connection fails. Later drops are repaired by reconnecting (see {@link MailroomSession}).
 */
export function connect(url: string, options: ConnectOptions = {}): Promise<MailroomClient> {
  const socket = io(url, {
    transports: ['websocket'],
    auth: options.token === undefined ? {} : { token: options.token },
    forceNew: true,
    reconnectionDelay: options.reconnectDelayMs ?? 200,
    reconnectionDelayMax: options.reconnectDelayMaxMs ?? 5000,
    timeout: options.connectTimeoutMs ?? 10_000,
  });
  return new Promise((resolve, reject) => {
    const fail = (err: Error & { data?: { reason?: string; code?: number } }) => {
      socket.off('connect', ok);
      socket.close();
      const reason = err.data?.reason === 'unauthorized' ? 'unauthorized' : 'connect_failed';
      reject(new MailroomError(`Cannot connect to ${url}: ${err.message}`, reason, err.data?.code));
    };
    const ok = () => {
      socket.off('connect_error', fail);
      resolve(new MailroomClient(socket, options.callTimeoutMs ?? 30_000));
    };
    socket.once('connect', ok);
    socket.once('connect_error', fail);
  });
}

/** A connection to one server: typed calls, and one {@link MailroomSession} per session id. */
export class MailroomClient {
  private readonly sessions = new Map<string, MailroomSession>();
  private readonly listeners = new Set<(event: ConnectionEvent) => void>();
  private closed = false;

  constructor(
    private readonly socket: Socket,
    private readonly callTimeoutMs: number,
  ) {
    socket.on('disconnect', (reason) => {
      if (this.closed) {
        return;
      }
      this.emit({ type: 'disconnected', reason });
      // The server hung up on purpose (e.g. an operator or a restart): socket.io leaves it to us.
      if (reason === 'io server disconnect') {
        socket.connect();
      }
    });
    // Every connection after the first is a reconnection, however it came about.
    socket.on('connect', () => {
      this.emit({ type: 'reconnected' });
      this.resubscribe();
    });
    socket.onAny((name: string, payload: unknown) => {
      const sessionId = (payload as { sessionId?: unknown } | undefined)?.sessionId;
      if (typeof sessionId === 'string') {
        this.sessions.get(sessionId)?.receive(name as PushName, payload as Record<string, unknown>);
      }
    });
  }

  /** Calls a method; resolves with its result or rejects with a {@link MailroomError}. */
  async call<M extends MethodName>(method: M, params: MethodParams<M>): Promise<MethodResult<M>> {
    let reply: Reply<MethodResult<M>>;
    try {
      reply = (await this.socket.timeout(this.callTimeoutMs).emitWithAck(method, params)) as Reply<
        MethodResult<M>
      >;
    } catch (err) {
      const disconnected = err instanceof Error && /disconnected/.test(err.message);
      throw new MailroomError(
        disconnected
          ? `${method}: the connection dropped before the reply`
          : `${method}: no reply within ${this.callTimeoutMs} ms`,
        disconnected ? 'disconnected' : 'timeout',
      );
    }
    if ('error' in reply) {
      throw MailroomError.fromReply(reply.error);
    }
    return reply.result;
  }

  /** The handle of one session (the same object for the same id). */
  session(sessionId: string): MailroomSession {
    let session = this.sessions.get(sessionId);
    if (!session) {
      session = new MailroomSession(this, sessionId);
      this.sessions.set(sessionId, session);
    }
    return session;
  }

  /** Starts a session (a random id unless one is given) and follows its pushes. */
  async startSession(params: MethodParams<'session.start'> = {}): Promise<MailroomSession> {
    if (params.sessionId !== undefined) {
      const session = this.session(params.sessionId);
      await session.start(params);
      return session;
    }
    // The id is the server's to choose: its pushes are kept until the handle exists.
    const { sessionId } = await this.call('session.start', params);
    const session = this.session(sessionId);
    await session.subscribe();
    return session;
  }

  /** Connection changes (and errors thrown by push handlers). Returns the unsubscribe. */
  onConnection(listener: (event: ConnectionEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get connected(): boolean {
    return this.socket.connected;
  }

  close(): void {
    this.closed = true;
    this.socket.close();
  }

  /** @internal */
  reportError(error: unknown): void {
    if (this.listeners.size === 0) {
      console.error(error);
    }
    this.emit({ type: 'error', error });
  }

  private resubscribe(): void {
    for (const session of this.sessions.values()) {
      session.resync();
    }
  }

  private emit(event: ConnectionEvent): void {
    for (const listener of this.listeners) {
      listener(event);
    }
  }
}
