import {
  BeforeApplicationShutdown,
  Inject,
  Injectable,
  Logger,
  OnModuleDestroy,
  OnModuleInit,
} from '@nestjs/common';
import { Subscription } from 'rxjs';
import { CLOCK, Clock, delay, TimerHandle } from 'src/common/clock';
import { APP_CONFIG } from 'src/config/config.module';
import { AppConfig } from 'src/config/app-config';
import { Agent } from 'src/agents/agent.types';
import { ToolSchema } from 'src/llm/model-provider';
import { AgentSignals } from 'src/mailbox/agent-signals';
import { ToolError } from '../tool.types';
import { allowsMcpTool, FUNCTION_NAME, MCP_SEPARATOR, McpServerConfig } from './mcp-config';
import { errorText, isConnectionLost, McpConnection } from './mcp-connection';
import { toToolResult } from './mcp-result';

type ServerState =
  | { kind: 'idle' }
  | { kind: 'starting'; ready: Promise<McpConnection> }
  | { kind: 'ready'; conn: McpConnection }
  | { kind: 'failed'; error: string; retryAt: number };

/** One server of one session, shared by the agents that name it with the same definition. */
interface ServerEntry {
  key: string;
  sessionId: string;
  name: string;
  config: McpServerConfig;
  users: Set<string>;
  state: ServerState;
  /** Crashes and failed starts in a row: the restart backoff grows with it; a good call resets it. */
  failures: number;
  /** Aborted when the entry is disposed: cancels a pending restart and a start in progress. */
  disposed: AbortController;
}

const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30_000;

/**
 * The MCP servers agents name (`mcpServers`). A server starts when an agent that names it first
 * needs its tools, is shared by the session's agents that name it alike, is restarted with backoff
 * when it dies while in use, and is closed when its last agent stops and at shutdown. Every failure
 * reaches the model as a {@link ToolError}; none stops an agent.
 */
@Injectable()
export class McpServersService implements OnModuleInit, OnModuleDestroy, BeforeApplicationShutdown {
  private readonly logger = new Logger(McpServersService.name);
  private readonly entries = new Map<string, ServerEntry>();
  private subscription?: Subscription;
  private shuttingDown = false;

  constructor(
    private readonly signals: AgentSignals,
    @Inject(CLOCK) private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onModuleInit(): void {
    // An `abort` without a task id means the agent was stopped (alone or with its session).
    this.subscription = this.signals.signals$.subscribe((s) => {
      if (s.type === 'abort' && s.taskId === undefined) {
        void this.release(s.sessionId, s.agentId);
      }
    });
  }

  onModuleDestroy(): void {
    this.subscription?.unsubscribe();
  }

  async beforeApplicationShutdown(): Promise<void> {
    this.shuttingDown = true;
    await Promise.all([...this.entries.values()].map((e) => this.dispose(e)));
  }

  /** The tools of the agent's servers that its `tools` allows, as the model sees them. */
  async toolsFor(agent: Agent, signal: AbortSignal): Promise<ToolSchema[]> {
    const names = Object.keys(agent.config.mcpServers ?? {});
    const lists = await Promise.all(
      names.map(async (name) => {
        const deadline = this.deadline(signal);
        try {
          const conn = await this.connect(this.entryFor(agent, name, signal)!, deadline.signal);
          return conn.tools
            .filter((t) => allowsMcpTool(agent.config.tools, name, t.name))
            .map((t) => ({ ...t, name: name + MCP_SEPARATOR + t.name }))
            .filter((t) => FUNCTION_NAME.test(t.name))
            .map((t) => ({ name: t.name, description: t.description, parameters: t.inputSchema }));
        } catch (err) {
          signal.throwIfAborted();
          const why = this.describe(err, deadline);
          this.logger.debug(`MCP server '${name}' of ${agent.agentId}: ${why}`);
          // The tools `tools` names one by one are still offered, so that the model calling one learns
          // why it fails (as its result); the rest of an unreachable server's tools are unknown.
          return agent.config.tools
            .filter((t) => t.startsWith(name + MCP_SEPARATOR) && !t.endsWith('*'))
            .map((t) => ({
              name: t,
              description: `(unavailable: MCP server '${name}' is not running)`,
              parameters: { type: 'object' },
            }));
        } finally {
          deadline.done();
        }
      }),
    );
    return lists.flat();
  }

  /** True when `server` is one of the agent's MCP servers. */
  has(agent: Agent, server: string): boolean {
    return Object.hasOwn(agent.config.mcpServers ?? {}, server);
  }

  /** Calls one tool; the text of its result, or a {@link ToolError} that says what went wrong. */
  async call(
    agent: Agent,
    server: string,
    tool: string,
    args: Record<string, unknown>,
    signal: AbortSignal,
  ): Promise<unknown> {
    const entry = this.entryFor(agent, server, signal);
    if (!entry) {
      throw new ToolError(`no MCP server '${server}'`);
    }
    const deadline = this.deadline(signal);
    let conn: McpConnection | undefined;
    try {
      conn = await this.connect(entry, deadline.signal);
      const result = await conn.call(tool, args, deadline.signal);
      entry.failures = 0;
      return toToolResult(result, this.config.mcp.resultMaxBytes);
    } catch (err) {
      signal.throwIfAborted(); // the agent was stopped: not the model's business
      if (err instanceof ToolError) {
        throw err;
      }
      let why = this.describe(err, deadline);
      if (conn && !deadline.timedOut() && isConnectionLost(err)) {
        why += conn.lastWords();
        this.lost(entry, conn, err instanceof Error ? err : new Error(String(err)));
      }
      throw new ToolError(`MCP tool '${server}${MCP_SEPARATOR}${tool}' failed: ${why}`);
    } finally {
      deadline.done();
    }
  }

  /** Lets go of a stopped agent's servers; those no other agent uses are closed. */
  async release(sessionId: string, agentId: string): Promise<void> {
    const closing: Array<Promise<void>> = [];
    for (const entry of this.entries.values()) {
      if (entry.sessionId === sessionId && entry.users.delete(agentId) && entry.users.size === 0) {
        closing.push(this.dispose(entry));
      }
    }
    await Promise.all(closing);
  }

  /** Process ids of the running stdio servers (what a test checks is gone after close). */
  pids(): number[] {
    return [...this.entries.values()].flatMap((e) =>
      e.state.kind === 'ready' && e.state.conn.pid !== null ? [e.state.conn.pid] : [],
    );
  }

  private entryFor(agent: Agent, name: string, signal: AbortSignal): ServerEntry | undefined {
    const config = agent.config.mcpServers?.[name];
    if (!config) {
      return undefined;
    }
    if (this.shuttingDown) {
      throw new ToolError('the server is shutting down');
    }
    const key = [agent.sessionId, name, canonicalJson(config)].join('\u0000');
    let entry = this.entries.get(key);
    if (!entry) {
      entry = {
        key,
        sessionId: agent.sessionId,
        name,
        config,
        users: new Set(),
        state: { kind: 'idle' },
        failures: 0,
        disposed: new AbortController(),
      };
      this.entries.set(key, entry);
    }
    if (!signal.aborted) {
      entry.users.add(agent.agentId); // a stopped agent's late call must not keep a server alive
    }
    return entry;
  }

  /** The entry's live connection: started now if need be, or awaited while it (re)starts. */
  private async connect(entry: ServerEntry, signal: AbortSignal): Promise<McpConnection> {
    const state = entry.state;
    switch (state.kind) {
      case 'ready':
        return state.conn;
      case 'starting':
        return untilAborted(state.ready, signal);
      case 'failed': {
        const wait = state.retryAt - this.clock.now();
        if (wait > 0) {
          throw new ToolError(
            `MCP server '${entry.name}' did not start: ${state.error} (next try in ${Math.ceil(wait / 1000)} s)`,
          );
        }
        return untilAborted(this.start(entry, 0), signal);
      }
      case 'idle':
        return untilAborted(this.start(entry, 0), signal);
    }
  }

  private start(entry: ServerEntry, afterMs: number): Promise<McpConnection> {
    const ready = (async () => {
      const startup = this.deadline(entry.disposed.signal);
      try {
        if (afterMs > 0) {
          await delay(this.clock, afterMs, entry.disposed.signal);
        }
        const conn = await McpConnection.open(entry.config, startup.signal);
        if (entry.disposed.signal.aborted) {
          await conn.close();
          throw new Error('closed');
        }
        conn.onLost = (reason) => this.lost(entry, conn, reason);
        entry.state = { kind: 'ready', conn };
        this.logger.log(`MCP server '${entry.name}' of session ${entry.sessionId} started`);
        return conn;
      } catch (err) {
        if (entry.disposed.signal.aborted) {
          throw new ToolError(`MCP server '${entry.name}' was closed`); // its last agent stopped
        }
        const error = this.describe(err, startup);
        entry.failures++;
        entry.state = { kind: 'failed', error, retryAt: this.clock.now() + this.backoff(entry.failures) };
        this.logger.warn(`MCP server '${entry.name}' of session ${entry.sessionId} did not start: ${error}`);
        throw new ToolError(`MCP server '${entry.name}' did not start: ${error}`);
      } finally {
        startup.done();
      }
    })();
    ready.catch(() => undefined); // awaited by callers; a start nobody waits for must not be unhandled
    entry.state = { kind: 'starting', ready };
    return ready;
  }

  /** The connection died under us: restart it after a backoff while agents still use it. */
  private lost(entry: ServerEntry, conn: McpConnection, reason: Error): void {
    if (entry.state.kind !== 'ready' || entry.state.conn !== conn) {
      return; // already handled (the call's error and the close event both report it)
    }
    void conn.close();
    entry.failures++;
    const what = `MCP server '${entry.name}' of session ${entry.sessionId} was lost (${reason.message})`;
    if (entry.users.size === 0 || entry.disposed.signal.aborted) {
      this.logger.warn(what);
      entry.state = { kind: 'idle' };
      return;
    }
    const backoff = this.backoff(entry.failures);
    this.logger.warn(`${what}; restarting in ${backoff} ms`);
    this.start(entry, backoff).catch(() => undefined);
  }

  private async dispose(entry: ServerEntry): Promise<void> {
    this.entries.delete(entry.key);
    entry.disposed.abort();
    const state = entry.state;
    if (state.kind === 'starting') {
      await state.ready.then((c) => c.close()).catch(() => undefined);
    } else if (state.kind === 'ready') {
      await state.conn.close();
    }
    entry.state = { kind: 'idle' };
  }

  private backoff(failures: number): number {
    return Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.max(0, failures - 1));
  }

  /** A signal that aborts with `parent` or after MCP_TOOL_TIMEOUT_MS on the clock. */
  private deadline(parent: AbortSignal): Deadline {
    const controller = new AbortController();
    let timedOut = false;
    const ms = this.config.mcp.toolTimeoutMs;
    const onAbort = () => controller.abort(parent.reason);
    parent.addEventListener('abort', onAbort, { once: true });
    if (parent.aborted) {
      onAbort();
    }
    const timer: TimerHandle = this.clock.setTimeout(() => {
      timedOut = true;
      controller.abort(new Error(`timed out after ${ms} ms`));
    }, ms);
    return {
      signal: controller.signal,
      timedOut: () => timedOut,
      ms,
      done: () => {
        timer.cancel();
        parent.removeEventListener('abort', onAbort);
      },
    };
  }

  private describe(err: unknown, deadline: Deadline): string {
    return deadline.timedOut() ? `timed out after ${deadline.ms} ms` : errorText(err);
  }
}

interface Deadline {
  signal: AbortSignal;
  timedOut: () => boolean;
  ms: number;
  done: () => void;
}

/** `promise`, or a rejection as soon as `signal` aborts (the shared start goes on for the others). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    return Promise.reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    void promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** JSON with object keys sorted: two agents' equal definitions give the same key. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) {
    return `[${value.map(canonicalJson).join(',')}]`;
  }
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}
