import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, IncomingHttpHeaders, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { z } from 'zod';

/** The real filesystem MCP server from npm, run by this node (never downloaded), allowed `dir`. */
export function filesystemServer(dir: string, env?: Record<string, string>) {
  const bin = join(
    dirname(require.resolve('@modelcontextprotocol/server-filesystem/package.json')),
    'dist',
    'index.js',
  );
  return { command: process.execPath, args: [bin, dir], ...(env ? { env } : {}) };
}

/**
 * A tiny stdio MCP server written with the SDK: `ok` answers, `crash` kills the process mid-call,
 * `hang` writes `hangMark` (a file the test can look for) and never answers. Written to a temporary
 * folder at run time (requiring the SDK by absolute path), so it is plain JavaScript node runs directly.
 */
export function crashyServer() {
  const dir = mkdtempSync(join(tmpdir(), 'mailroom-mcp-'));
  const file = join(dir, 'crashy-server.cjs');
  const hangMark = join(dir, 'hanging');
  const sdk = (path: string) => JSON.stringify(require.resolve(`@modelcontextprotocol/sdk/${path}`));
  writeFileSync(
    file,
    [
      `const { McpServer } = require(${sdk('server/mcp.js')});`,
      `const { StdioServerTransport } = require(${sdk('server/stdio.js')});`,
      `const server = new McpServer({ name: 'crashy', version: '1.0.0' });`,
      `server.registerTool('ok', { description: 'Answers ok' }, async () => ({ content: [{ type: 'text', text: 'ok from ' + process.pid }] }));`,
      `server.registerTool('crash', { description: 'Exits mid-call' }, async () => { process.stderr.write('crashing on purpose\\n'); process.exit(3); });`,
      `server.registerTool('hang', { description: 'Never answers' }, () => { require('node:fs').writeFileSync(${JSON.stringify(hangMark)}, String(process.pid)); return new Promise(() => {}); });`,
      `void server.connect(new StdioServerTransport());`,
      '',
    ].join('\n'),
  );
  return { config: { command: process.execPath, args: [file] }, hangMark };
}

export interface HttpMcpServer {
  url: string;
  /** Headers of every request it received. */
  headers: IncomingHttpHeaders[];
  /** Resolves when the next call of `hang` arrives. */
  nextHang(): Promise<void>;
  close(): Promise<void>;
}

/**
 * A Streamable HTTP MCP server made with the SDK (stateless: a server and transport per request) on
 * a random port. Tools: `echo`, `fail` (an error result), `big` (`bytes` of text), `hang` (never
 * answers).
 */
export async function startHttpMcpServer(): Promise<HttpMcpServer> {
  let hangWaiters: Array<() => void> = [];
  const state: HttpMcpServer = {
    url: '',
    headers: [],
    nextHang: () => new Promise<void>((resolve) => hangWaiters.push(resolve)),
    close: () => Promise.resolve(),
  };
  const build = () => {
    const server = new McpServer({ name: 'test-http', version: '1.0.0' });
    server.registerTool(
      'echo',
      { description: 'Echoes its text', inputSchema: { text: z.string().describe('what to echo') } },
      ({ text }) => Promise.resolve({ content: [{ type: 'text' as const, text: `echo: ${text}` }] }),
    );
    server.registerTool('fail', { description: 'Always fails' }, () =>
      Promise.resolve({
        isError: true,
        content: [{ type: 'text' as const, text: 'the tool broke on purpose' }],
      }),
    );
    server.registerTool(
      'big',
      { description: 'Returns a lot of text', inputSchema: { bytes: z.number().int() } },
      ({ bytes }) => Promise.resolve({ content: [{ type: 'text' as const, text: 'x'.repeat(bytes) }] }),
    );
    server.registerTool('hang', { description: 'Never answers' }, (extra) => {
      const waiting = hangWaiters;
      hangWaiters = [];
      waiting.forEach((resolve) => resolve());
      // Answers only if the request is cancelled; otherwise its connection ends when the server closes.
      return new Promise<{ content: Array<{ type: 'text'; text: string }> }>((resolve) =>
        extra.signal.addEventListener('abort', () =>
          resolve({ content: [{ type: 'text' as const, text: 'cancelled' }] }),
        ),
      );
    });
    return server;
  };
  const http: Server = createServer((req, res) => {
    state.headers.push(req.headers);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        const server = build();
        const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
        res.on('close', () => {
          void transport.close();
          void server.close();
        });
        await server.connect(transport);
        const text = Buffer.concat(chunks).toString('utf8');
        await transport.handleRequest(req, res, text ? JSON.parse(text) : undefined);
      })();
    });
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  state.url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`;
  state.close = () =>
    new Promise<void>((resolve) => {
      http.closeAllConnections();
      http.close(() => resolve());
    });
  return state;
}

/** True while a process with this id exists. */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Resolves once `check` holds, looking on each turn of the event loop (for what sends no event), with a guard. */
export async function eventually(check: () => boolean, what: string, guardMs = 15_000): Promise<void> {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > guardMs) {
      throw new Error(`still waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * Resolves once the process has exited. Exits are not events this test process can subscribe to
 * (the child belongs to the app).
 */
export function exited(pid: number): Promise<void> {
  return eventually(() => !isRunning(pid), `process ${pid} to exit`);
}
