import { Inject, Injectable, Logger, OnApplicationBootstrap, OnModuleDestroy } from '@nestjs/common';
import { APP_CONFIG } from 'src/config/config.module';
import { AppConfig } from 'src/config/app-config';
import { HttpAdapterHost } from '@nestjs/core';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { Subscription } from 'rxjs';
import { RawData, WebSocket, WebSocketServer } from 'ws';
import { NotificationBus } from 'src/sessions/notification-bus';
import { Metrics } from 'src/telemetry/metrics';
import { messageLimitBytes } from './io.adapter';
import { AuthService } from './auth.service';
import { handleJsonRpc, unauthorized } from './json-rpc';
import { RpcDispatcher } from './rpc-dispatcher.service';
import { toPush } from './rpc.gateway';

const PATH = '/ws';

/**
 * JSON-RPC 2.0 over a plain WebSocket at `/ws`, on the HTTP server's port. `session.start` and
 * `session.subscribe` subscribe the connection; pushes arrive as JSON-RPC notifications.
 */
@Injectable()
export class WsGateway implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(WsGateway.name);
  private readonly wss: WebSocketServer;
  private readonly rooms = new Map<string, Set<WebSocket>>();
  private subscription?: Subscription;
  private ephemeral?: Subscription;
  private server?: Server;
  private readonly onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== PATH) {
      return; // socket.io's own upgrade handler takes its path
    }
    // Browsers cannot set headers on a WebSocket, so `?token=` is accepted too.
    const token = AuthService.bearer(req.headers.authorization) ?? url.searchParams.get('token') ?? undefined;
    const principal = this.auth.authenticate(token);
    if (principal === undefined) {
      const body = JSON.stringify({ jsonrpc: '2.0', id: null, error: unauthorized() });
      socket.end(
        `HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, principal));
  };

  constructor(
    private readonly adapterHost: HttpAdapterHost,
    private readonly dispatcher: RpcDispatcher,
    private readonly bus: NotificationBus,
    private readonly auth: AuthService,
    @Inject(APP_CONFIG) config: AppConfig,
    metrics: Metrics,
  ) {
    // The same frame limit as socket.io and POST /rpc, so oversized params get limit_exceeded everywhere.
    this.wss = new WebSocketServer({ noServer: true, maxPayload: messageLimitBytes(config.maxParamsBytes) });
    metrics.sample(metrics.connectedClients, () => this.wss.clients.size, { transport: 'ws' });
  }

  onApplicationBootstrap(): void {
    this.server = this.adapterHost.httpAdapter.getHttpServer() as Server;
    this.server.on('upgrade', this.onUpgrade);
    this.subscription = this.bus.records$.subscribe((r) => this.send(r.sessionId, r.type, () => toPush(r)));
    this.ephemeral = this.bus.ephemeral$.subscribe((p) =>
      this.send(p.sessionId, p.type, () => ({ ...p.payload, sessionId: p.sessionId })),
    );
  }

  onModuleDestroy(): void {
    this.server?.off('upgrade', this.onUpgrade);
    this.subscription?.unsubscribe();
    this.ephemeral?.unsubscribe();
    for (const ws of this.wss.clients) {
      ws.terminate();
    }
    this.wss.close();
  }

  /** Pushes to the session's followers here; `params` is built only when there is one. */
  private send(sessionId: string, method: string, params: () => Record<string, unknown>): void {
    const room = this.rooms.get(sessionId);
    if (!room || room.size === 0) {
      return; // nobody follows the session here: not worth building and encoding the push
    }
    const text = JSON.stringify({ jsonrpc: '2.0', method, params: params() });
    for (const ws of room) {
      if (ws.readyState === WebSocket.OPEN) {
        ws.send(text);
      }
    }
  }

  private onConnection(ws: WebSocket, principal: string): void {
    const joined = new Set<string>();
    const ctx = {
      principal,
      subscribe: (sessionId: string) => {
        if (ws.readyState !== WebSocket.OPEN) {
          return; // answered after the client left: joining now would never be undone
        }
        joined.add(sessionId);
        const room = this.rooms.get(sessionId) ?? new Set<WebSocket>();
        room.add(ws);
        this.rooms.set(sessionId, room);
      },
    };
    ws.on('message', (data, isBinary) => {
      const text = isBinary ? '' : rawText(data);
      void handleJsonRpc(text, this.dispatcher, ctx).then((reply) => {
        if (reply !== undefined && ws.readyState === WebSocket.OPEN) {
          ws.send(JSON.stringify(reply));
        }
      });
    });
    ws.on('close', () => {
      for (const sessionId of joined) {
        this.rooms.get(sessionId)?.delete(ws);
        if (this.rooms.get(sessionId)?.size === 0) {
          this.rooms.delete(sessionId);
        }
      }
    });
    ws.on('error', (err) => this.logger.debug(`ws connection error: ${err.message}`));
  }
}

function rawText(data: RawData): string {
  const buffer = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
  return buffer.toString('utf8');
}
