import WebSocket from 'ws';

export interface JsonRpcNotification {
  jsonrpc: '2.0';
  method: string;
  params: any;
}

/**
 * A plain WebSocket client speaking JSON-RPC 2.0 on `/ws`, as the seed project's own scripts do:
 * `request` sends with an id of the caller's choice (number or string) and resolves with the whole
 * response; every notification is kept in order, raw, so a test can check its exact shape.
 */
export class JsonRpcWsClient {
  readonly notifications: JsonRpcNotification[] = [];
  private readonly responses: any[] = [];
  private listeners: Array<() => void> = [];
  private nextId = 1;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const message = JSON.parse((data as Buffer).toString('utf8'));
      for (const m of Array.isArray(message) ? message : [message]) {
        if (m.method !== undefined && !('id' in m)) {
          this.notifications.push(m);
        } else {
          this.responses.push(m);
        }
      }
      this.listeners.forEach((l) => l());
    });
  }

  static connect(httpUrl: string, headers: Record<string, string> = {}): Promise<JsonRpcWsClient> {
    const ws = new WebSocket(`${httpUrl.replace(/^http/, 'ws')}/ws`, { headers });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new JsonRpcWsClient(ws)));
      ws.once('error', reject);
    });
  }

  /** Sends one request and resolves with its response (the first after sending with that id). */
  request(method: string, params: unknown, id: string | number = this.nextId++): Promise<any> {
    return this.raw(JSON.stringify({ jsonrpc: '2.0', id, method, params }), id);
  }

  /** Sends a raw text frame and resolves with the next response whose id is `id`. */
  raw(text: string, id: string | number | null): Promise<any> {
    const seen = this.responses.length;
    this.ws.send(text);
    return this.until(() => this.responses.slice(seen).find((r) => r.id === id));
  }

  /** Calls and returns the result; fails the test with the error when there is one. */
  async ok(method: string, params: unknown): Promise<any> {
    const response = await this.request(method, params);
    if (response.error) {
      throw new Error(`${method} failed: ${JSON.stringify(response.error)}`);
    }
    return response.result;
  }

  /** The first notification named `method` whose params match, received or still to come. */
  notification(method: string, match: (params: any) => boolean = () => true): Promise<JsonRpcNotification> {
    return this.until(() => this.notifications.find((n) => n.method === method && match(n.params)));
  }

  private until<T>(probe: () => T | undefined, timeoutMs = 20_000): Promise<T> {
    return new Promise((resolve, reject) => {
      // A guard against a hung test, not a timing assertion.
      const guard = setTimeout(() => {
        this.listeners = this.listeners.filter((l) => l !== check);
        reject(new Error(`timed out; notifications: ${this.notifications.map((n) => n.method).join(', ')}`));
      }, timeoutMs);
      const check = () => {
        const found = probe();
        if (found !== undefined) {
          clearTimeout(guard);
          this.listeners = this.listeners.filter((l) => l !== check);
          resolve(found);
        }
      };
      this.listeners.push(check);
      check();
    });
  }

  close(): void {
    this.ws.close();
  }
}
