import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import { McpServerConfig } from './mcp-config';
import { McpCallResult } from './mcp-result';

export interface McpTool {
  name: string;
  description: string;
  inputSchema: Record<string, unknown>;
}

// Timeouts are ours, on the injected clock (an AbortSignal per call); the SDK's own timer must never
// fire first. setTimeout's delay is a signed 32-bit integer: anything larger would fire at once.
const NO_SDK_TIMEOUT = { timeout: 2_147_483_647 };
const STDERR_TAIL = 1000;
const MAX_TOOL_PAGES = 20;

/**
 * One live MCP client session: a spawned stdio server or a Streamable HTTP endpoint, initialized,
 * with its tool list read. `onLost` is told when it ends without us closing it (the process died).
 */
export class McpConnection {
  onLost?: (reason: Error) => void;
  private closing = false;
  private stderrTail = '';

  private constructor(
    private readonly client: Client,
    private readonly transport: Transport,
    public tools: McpTool[] = [],
  ) {}

  static async open(config: McpServerConfig, signal: AbortSignal): Promise<McpConnection> {
    const transport =
      'command' in config
        ? new StdioClientTransport({
            command: config.command,
            args: config.args,
            env: config.env,
            cwd: config.cwd,
            stderr: 'pipe',
          })
        : new StreamableHTTPClientTransport(new URL(config.url), {
            requestInit: { headers: config.headers },
          });
    const client = new Client({ name: 'mailroom', version: '0.1.0' }, { capabilities: {} });
    const conn = new McpConnection(client, transport);
    if (transport instanceof StdioClientTransport) {
      // The server's own words on why it stopped, for the error the model reads; never its env.
      transport.stderr?.on('data', (chunk: Buffer) => {
        conn.stderrTail = (conn.stderrTail + chunk.toString('utf8')).slice(-STDERR_TAIL);
      });
    }
    client.onclose = () => {
      if (!conn.closing) {
        conn.onLost?.(new Error(`the server closed the connection${conn.lastWords()}`));
      }
    };
    try {
      await client.connect(transport, { signal, ...NO_SDK_TIMEOUT });
      conn.tools = await conn.listTools(signal);
      return conn;
    } catch (err) {
      await conn.close();
      throw new Error(`${errorText(err)}${conn.lastWords()}`);
    }
  }

  /** The stdio server's process id (null for HTTP, or once it has exited). */
  get pid(): number | null {
    return this.transport instanceof StdioClientTransport ? this.transport.pid : null;
  }

  async call(tool: string, args: Record<string, unknown>, signal: AbortSignal): Promise<McpCallResult> {
    // A widened result: old servers answer `{ toolResult }` instead of `content`, which reads as no text.
    const result: Record<string, unknown> = await this.client.callTool(
      { name: tool, arguments: args },
      undefined,
      { signal, ...NO_SDK_TIMEOUT },
    );
    return result;
  }

  /** Ends the session; a stdio server's stdin is closed, then it is terminated if it lingers. */
  async close(): Promise<void> {
    this.closing = true;
    await this.client.close().catch(() => undefined);
  }

  /** The last lines the server wrote to stderr, to explain an exit. */
  lastWords(): string {
    const tail = this.stderrTail.trim().split('\n').slice(-3).join(' | ');
    return tail ? ` (stderr: ${tail.slice(-300)})` : '';
  }

  private async listTools(signal: AbortSignal): Promise<McpTool[]> {
    const tools: McpTool[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < MAX_TOOL_PAGES; page++) {
      const res = await this.client.listTools(cursor ? { cursor } : {}, { signal, ...NO_SDK_TIMEOUT });
      for (const t of res.tools) {
        const { $schema: _ignored, ...inputSchema } = t.inputSchema as Record<string, unknown>;
        tools.push({ name: t.name, description: t.description ?? t.title ?? '', inputSchema });
      }
      cursor = res.nextCursor;
      if (!cursor) {
        break;
      }
    }
    return tools;
  }
}

/**
 * True when a failed call says the connection itself is gone (so the server must be reconnected),
 * not that the server answered with an error.
 */
export function isConnectionLost(err: unknown): boolean {
  return !(err instanceof McpError) || err.code === (ErrorCode.ConnectionClosed as number);
}

export function errorText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    const message = err.message.replace(/^(Error: )+/, '');
    return typeof code === 'string' && !message.includes(code) ? `${code}: ${message}` : message;
  }
  return String(err);
}
