import { randomUUID } from 'node:crypto';
import { createServer, IncomingHttpHeaders, IncomingMessage, Server, ServerResponse } from 'node:http';
import { AddressInfo, Socket } from 'node:net';

/** One scripted answer to one POST /v1/chat/completions (or /chat/completions). */
export interface FakeReply {
  /** Assistant content; streamed as several deltas of 3-8 characters when the request has stream:true. */
  text?: string;
  /** Streamed in pieces: the first chunk of each call has id + name, its arguments follow in several chunks. */
  toolCalls?: Array<{ name: string; arguments: string; id?: string }>;
  /** Sent as the final usage chunk (stream_options.include_usage) or in the JSON body; default from lengths. */
  usage?: { prompt_tokens: number; completion_tokens: number };
  /** Answer with this HTTP error status (OpenAI-style JSON error body) instead. */
  status?: number;
  /** Value of a `retry-after` header on an error. */
  retryAfter?: string;
  /** Delay before answering, on real timers; 'forever' answers only when the request or server closes. */
  hangMs?: number | 'forever';
  /** Send part of the answer, then destroy the socket. */
  dropMidStream?: boolean;
  /** Send part of the stream, then hold the connection open until the request is aborted or the server closes. */
  stallMidStream?: boolean;
  /** Pause this long (real timers) between streamed events, like a model producing tokens. */
  pieceDelayMs?: number;
}

/** The parsed JSON body of a chat completion request; anything the client sends is kept. */
export interface ChatRequestBody {
  model?: string;
  messages?: Array<Record<string, any>>;
  tools?: Array<{ type: string; function: { name: string; description?: string; parameters?: unknown } }>;
  tool_choice?: unknown;
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  temperature?: number;
  max_tokens?: number;
  max_completion_tokens?: number;
  [key: string]: unknown;
}

export interface RecordedRequest {
  method: string;
  /** Path without the query string, e.g. '/v1/chat/completions'. */
  path: string;
  /** Lower-cased header names, as node gives them (authorization, x-stainless-retry-count, ...). */
  headers: IncomingHttpHeaders;
  body: ChatRequestBody;
  /** True once the connection closed before the answer was complete (client abort, drop, server close). */
  aborted: boolean;
}

interface Waiter {
  ready: () => boolean;
  what: string;
  resolve: () => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

const DEFAULT_REPLY: FakeReply = { text: '(fake) ok' };
const PIECE_SIZES = [3, 5, 8, 4, 7, 6];
const CHAT_PATHS = new Set(['/v1/chat/completions', '/chat/completions']);

/**
 * A local server speaking the OpenAI Chat Completions protocol (JSON and SSE streaming) for tests
 * that drive the real `openai` client. Replies come from a FIFO queue, then from a handler, then
 * a default text. Every request is recorded; concurrency is counted.
 */
export class FakeOpenAI {
  readonly requests: RecordedRequest[] = [];
  private readonly queue: FakeReply[] = [];
  private handler: ((req: RecordedRequest) => FakeReply | Promise<FakeReply>) | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly pending = new Set<() => void>();
  private waiters: Waiter[] = [];
  private current = 0;
  private highest = 0;
  private sequence = 0;
  private closed = false;

  private constructor(
    private readonly server: Server,
    readonly baseURL: string,
  ) {}

  static async start(): Promise<FakeOpenAI> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    const { port } = server.address() as AddressInfo;
    const fake = new FakeOpenAI(server, `http://127.0.0.1:${port}/v1`);
    server.on('connection', (socket) => {
      fake.sockets.add(socket);
      socket.once('close', () => fake.sockets.delete(socket));
    });
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      fake
        .handle(req, res)
        .catch((err: unknown) => fake.fail(res, 500, `fake handler failed: ${String(err)}`));
    });
    return fake;
  }

  get inFlight(): number {
    return this.current;
  }

  get maxInFlight(): number {
    return this.highest;
  }

  enqueue(...replies: FakeReply[]): void {
    this.queue.push(...replies);
  }

  setHandler(fn: (req: RecordedRequest) => FakeReply | Promise<FakeReply>): void {
    this.handler = fn;
  }

  /** Resolves once `count` requests have arrived (already or later); rejects after `timeoutMs`. */
  waitForRequests(count: number, timeoutMs = 10_000): Promise<void> {
    return this.until(() => this.requests.length >= count, `${count} requests`, timeoutMs);
  }

  /** Resolves once no request is in flight (every answer sent, dropped or aborted). */
  waitForIdle(timeoutMs = 10_000): Promise<void> {
    return this.until(() => this.current === 0, 'no request in flight', timeoutMs);
  }

  private until(ready: () => boolean, what: string, timeoutMs: number): Promise<void> {
    if (ready()) {
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        ready,
        what,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== waiter);
          reject(
            new Error(`FakeOpenAI: still waiting for ${what} after ${timeoutMs} ms (${this.describe()})`),
          );
        }, timeoutMs),
      };
      this.waiters.push(waiter);
    });
  }

  private notify(): void {
    const ready = this.waiters.filter((w) => w.ready());
    this.waiters = this.waiters.filter((w) => !ready.includes(w));
    for (const waiter of ready) {
      clearTimeout(waiter.timer);
      waiter.resolve();
    }
  }

  private describe(): string {
    return `${this.requests.length} requests, ${this.current} in flight`;
  }

  /** Closes the server and every open socket, hanging requests included. */
  async close(): Promise<void> {
    if (this.closed) {
      return;
    }
    this.closed = true;
    for (const release of [...this.pending]) {
      release();
    }
    const done = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.sockets) {
      socket.destroy();
    }
    this.server.closeAllConnections();
    await done;
    for (const waiter of this.waiters) {
      clearTimeout(waiter.timer);
      waiter.reject(new Error(`FakeOpenAI closed while waiting for ${waiter.what} (${this.describe()})`));
    }
    this.waiters = [];
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.current += 1;
    this.highest = Math.max(this.highest, this.current);
    let counted = true;
    const path = (req.url ?? '/').split('?')[0];
    const recorded: RecordedRequest = {
      method: req.method ?? 'GET',
      path,
      headers: req.headers,
      body: {},
      aborted: false,
    };
    const release = () => {
      if (!res.writableFinished) {
        recorded.aborted = true;
      }
      if (counted) {
        counted = false;
        this.current -= 1;
        this.notify();
      }
    };
    res.once('finish', release);
    res.once('close', release);

    const raw = await readBody(req);
    let body: ChatRequestBody = {};
    let badJson = false;
    try {
      body = raw ? (JSON.parse(raw) as ChatRequestBody) : {};
    } catch {
      badJson = true;
    }
    recorded.body = body;
    this.record(recorded);

    if (req.method !== 'POST' || !CHAT_PATHS.has(path)) {
      return this.fail(res, 404, `FakeOpenAI: no route for ${req.method} ${path}`);
    }
    if (badJson) {
      return this.fail(res, 400, 'FakeOpenAI: request body is not JSON');
    }

    const reply = this.queue.shift() ?? (await this.handler?.(recorded)) ?? DEFAULT_REPLY;
    if (res.destroyed || this.closed) {
      return;
    }
    if (reply.hangMs !== undefined) {
      const open = await this.hang(res, reply.hangMs);
      if (!open) {
        return;
      }
    }
    if (reply.status !== undefined) {
      return this.fail(res, reply.status, undefined, reply.retryAfter);
    }
    this.sequence += 1;
    const answer = new Answer(`chatcmpl-fake-${this.sequence}`, body, reply);
    if (body.stream === true) {
      const cut = reply.dropMidStream ? 'drop' : reply.stallMidStream ? 'stall' : undefined;
      return this.stream(res, answer, body.stream_options?.include_usage === true, cut, reply.pieceDelayMs);
    }
    const json = JSON.stringify(answer.completion());
    res.writeHead(200, { 'content-type': 'application/json', 'x-request-id': `req_fake_${this.sequence}` });
    if (reply.dropMidStream) {
      return dropAfter(res, json.slice(0, Math.floor(json.length / 2)));
    }
    if (reply.stallMidStream) {
      res.write(json.slice(0, Math.floor(json.length / 2)));
      await this.hang(res, 'forever');
      return;
    }
    res.end(json);
  }

  private record(req: RecordedRequest): void {
    this.requests.push(req);
    this.notify();
  }

  /** Waits `ms` (or forever); true when the response can still be written. */
  private hang(res: ServerResponse, ms: number | 'forever'): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const finish = (open: boolean) => {
        clearTimeout(timer);
        res.off('close', onClose);
        this.pending.delete(onServerClose);
        resolve(open && !res.destroyed && !this.closed);
      };
      const onClose = () => finish(false);
      const onServerClose = () => finish(false);
      res.once('close', onClose);
      this.pending.add(onServerClose);
      if (ms !== 'forever') {
        timer = setTimeout(() => finish(true), ms);
      }
    });
  }

  private async stream(
    res: ServerResponse,
    answer: Answer,
    includeUsage: boolean,
    cut: 'drop' | 'stall' | undefined,
    pieceDelayMs = 0,
  ): Promise<void> {
    const events = answer.chunks(includeUsage).map((chunk) => `data: ${JSON.stringify(chunk)}\n\n`);
    events.push('data: [DONE]\n\n');
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      'x-request-id': `req_fake_${this.sequence}`,
    });
    const partial = events.slice(0, Math.max(2, Math.floor(events.length / 2))).join('');
    if (cut === 'drop') {
      return dropAfter(res, partial);
    }
    if (cut === 'stall') {
      res.write(partial);
      await this.hang(res, 'forever');
      return;
    }
    for (const event of events) {
      if (pieceDelayMs > 0) {
        await new Promise((resolve) => setTimeout(resolve, pieceDelayMs));
        if (res.destroyed) {
          return;
        }
      }
      res.write(event);
    }
    res.end();
  }

  private fail(res: ServerResponse, status: number, message?: string, retryAfter?: string): void {
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'x-request-id': `req_fake_err_${randomUUID().slice(0, 8)}`,
    };
    if (retryAfter !== undefined) {
      headers['retry-after'] = retryAfter;
    }
    res.writeHead(status, headers);
    res.end(JSON.stringify({ error: errorBody(status, message) }));
  }
}

/** Builds one reply's chunks or JSON body. */
class Answer {
  private readonly created = Math.floor(Date.now() / 1000);
  private readonly model: string;
  private readonly text: string | undefined;
  private readonly toolCalls: Array<{ id: string; name: string; arguments: string }>;
  private readonly usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };

  constructor(
    private readonly id: string,
    body: ChatRequestBody,
    reply: FakeReply,
  ) {
    this.model = body.model ?? 'fake-model';
    this.text = reply.text;
    this.toolCalls = (reply.toolCalls ?? []).map((call, i) => ({
      id: call.id ?? `call_fake_${id.split('-').pop()}_${i}`,
      name: call.name,
      arguments: call.arguments,
    }));
    const usage = reply.usage ?? {
      prompt_tokens: estimateTokens(JSON.stringify(body.messages ?? [])),
      completion_tokens: estimateTokens(
        (this.text ?? '') + this.toolCalls.map((c) => c.name + c.arguments).join(''),
      ),
    };
    this.usage = { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens };
  }

  private get finishReason(): 'stop' | 'tool_calls' {
    return this.toolCalls.length > 0 ? 'tool_calls' : 'stop';
  }

  completion(): Record<string, unknown> {
    const message: Record<string, unknown> = { role: 'assistant', content: this.text ?? null, refusal: null };
    if (this.toolCalls.length > 0) {
      message.tool_calls = this.toolCalls.map((c) => ({
        id: c.id,
        type: 'function',
        function: { name: c.name, arguments: c.arguments },
      }));
    }
    return {
      id: this.id,
      object: 'chat.completion',
      created: this.created,
      model: this.model,
      choices: [{ index: 0, message, logprobs: null, finish_reason: this.finishReason }],
      usage: this.usage,
      system_fingerprint: 'fp_fake',
    };
  }

  chunks(includeUsage: boolean): Array<Record<string, unknown>> {
    const chunk = (delta: Record<string, unknown>, finishReason: string | null = null) => ({
      id: this.id,
      object: 'chat.completion.chunk',
      created: this.created,
      model: this.model,
      system_fingerprint: 'fp_fake',
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
      ...(includeUsage ? { usage: null } : {}),
    });
    const out: Array<Record<string, unknown>> = [chunk({ role: 'assistant', content: '', refusal: null })];
    for (const piece of split(this.text ?? '')) {
      out.push(chunk({ content: piece }));
    }
    this.toolCalls.forEach((call, index) => {
      out.push(
        chunk({
          tool_calls: [
            { index, id: call.id, type: 'function', function: { name: call.name, arguments: '' } },
          ],
        }),
      );
      for (const piece of split(call.arguments)) {
        out.push(chunk({ tool_calls: [{ index, function: { arguments: piece } }] }));
      }
    });
    out.push(chunk({}, this.finishReason));
    if (includeUsage) {
      out.push({
        id: this.id,
        object: 'chat.completion.chunk',
        created: this.created,
        model: this.model,
        system_fingerprint: 'fp_fake',
        choices: [],
        usage: this.usage,
      });
    }
    return out;
  }
}

/** Splits text into pieces of 3 to 8 characters (a fixed cycle, so runs are reproducible). */
function split(text: string): string[] {
  const pieces: string[] = [];
  let at = 0;
  for (let i = 0; at < text.length; i++) {
    const size = PIECE_SIZES[i % PIECE_SIZES.length];
    pieces.push(text.slice(at, at + size));
    at += size;
  }
  return pieces;
}

function estimateTokens(text: string): number {
  return Math.max(1, Math.ceil(text.length / 4));
}

function errorBody(status: number, message?: string) {
  if (status === 429) {
    return {
      message: message ?? 'Rate limit reached (fake).',
      type: 'requests',
      param: null,
      code: 'rate_limit_exceeded',
    };
  }
  if (status >= 500) {
    return {
      message: message ?? 'The server had an error while processing your request (fake).',
      type: 'server_error',
      param: null,
      code: null,
    };
  }
  return {
    message: message ?? `Fake error ${status}.`,
    type: 'invalid_request_error',
    param: null,
    code: null,
  };
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    req.on('data', (part: Buffer) => parts.push(part));
    req.once('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    req.once('error', reject);
  });
}

/** Writes `partial`, waits until it has left, then kills the connection without ending the response. */
function dropAfter(res: ServerResponse, partial: string): void {
  res.write(partial, () => res.socket?.destroy());
}
