import { Logger, OnModuleDestroy } from '@nestjs/common';
import { OnGatewayConnection, OnGatewayInit, WebSocketGateway, WebSocketServer } from '@nestjs/websockets';
import { Subscription } from 'rxjs';
import type { Server, Socket } from 'socket.io';
import { NotificationBus } from 'src/sessions/notification-bus';
import { HistoryRecord } from 'src/sessions/session.types';
import { Metrics } from 'src/telemetry/metrics';
import { AuthService } from './auth.service';
import { unauthorized } from './json-rpc';
import { RpcDispatcher } from './rpc-dispatcher.service';

export const sessionRoom = (sessionId: string) => `session:${sessionId}`;

/** A push as clients receive it: the record's payload plus `sessionId`, `at` and `seq`. */
export function toPush(r: HistoryRecord): Record<string, unknown> {
  return { ...r.payload, sessionId: r.sessionId, at: r.at, seq: r.seq };
}

/**
 * socket.io transport: `socket.emit(method, params, ack)`; the ack gets `{ result }` or `{ error }`.
 * Every event name goes to the dispatcher (so unknown ones get `method_not_found`), and committed
 * history records are pushed to the session's room.
 */
@WebSocketGateway({ cors: { origin: true } })
export class RpcGateway implements OnGatewayInit, OnGatewayConnection, OnModuleDestroy {
  private readonly logger = new Logger(RpcGateway.name);
  @WebSocketServer() private server!: Server;
  private subscription?: Subscription;
  private ephemeral?: Subscription;

  constructor(
    private readonly dispatcher: RpcDispatcher,
    private readonly bus: NotificationBus,
    private readonly auth: AuthService,
    private readonly metrics: Metrics,
  ) {}

  afterInit(server: Server): void {
    this.metrics.sample(this.metrics.connectedClients, () => server.of('/').sockets.size, {
      transport: 'socket.io',
    });
    // With tokens configured, a connection without a good one is refused: the client's
    // `connect_error` carries `data: { code: -32001, reason: 'unauthorized' }`.
    server.use((socket, next) => {
      const token = tokenOf(socket);
      const principal = this.auth.authenticate(token);
      if (principal === undefined) {
        const body = unauthorized();
        next(Object.assign(new Error(body.message), { data: { code: body.code, ...body.data } }));
        return;
      }
      (socket.data as { principal?: string }).principal = principal;
      next();
    });
    // A push to a session nobody here follows is skipped before it is built and encoded (socket.io
    // encodes a broadcast even for an empty room): creating 100,000 agents records 100,000 pushes.
    // Rooms are this node's own (every node pushes its own clients, see PushFanout).
    const push = (sessionId: string, type: string, payload: () => Record<string, unknown>) => {
      const room = sessionRoom(sessionId);
      if ((server.of('/').adapter.rooms.get(room)?.size ?? 0) > 0) {
        server.to(room).emit(type, payload());
      }
    };
    this.subscription = this.bus.records$.subscribe((r) => push(r.sessionId, r.type, () => toPush(r)));
    this.ephemeral = this.bus.ephemeral$.subscribe((p) =>
      push(p.sessionId, p.type, () => ({ ...p.payload, sessionId: p.sessionId })),
    );
  }

  handleConnection(socket: Socket): void {
    socket.onAny((event: unknown, ...args: unknown[]) => {
      const ack =
        typeof args[args.length - 1] === 'function' ? (args.pop() as (reply: unknown) => void) : undefined;
      const ctx = {
        principal: (socket.data as { principal: string }).principal,
        // A reply that lands after the client left must not join a room nobody will leave.
        subscribe: (sessionId: string) =>
          socket.connected ? void socket.join(sessionRoom(sessionId)) : undefined,
      };
      void this.dispatcher.dispatch(event, args[0], ctx).then((reply) => {
        if (ack) {
          ack(reply);
        } else if ('error' in reply) {
          this.logger.debug(`Unacknowledged ${String(event)} failed: ${reply.error.message}`);
        }
      });
    });
  }

  onModuleDestroy(): void {
    this.subscription?.unsubscribe();
    this.ephemeral?.unsubscribe();
  }
}

/** socket.io's `auth: { token }`, or an `Authorization: Bearer` header (non-browser clients). */
function tokenOf(socket: Socket): string | undefined {
  const auth = socket.handshake.auth as { token?: unknown } | undefined;
  return typeof auth?.token === 'string'
    ? auth.token
    : AuthService.bearer(socket.handshake.headers.authorization);
}
