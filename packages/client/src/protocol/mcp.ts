import { z } from 'zod';
import { TOOL_NAMES } from './names';

/**
 * `mcpServers` in a template or `async.createAgent`'s `config`, in the shape MCP clients already use:
 * `{ <name>: { command, args?, env?, cwd? } | { url, headers? } }` (stdio or Streamable HTTP).
 */
const stdioServerSchema = z
  .object({
    command: z.string().min(1).max(4096),
    args: z.array(z.string().max(4096)).max(256).optional(),
    env: z.record(z.string().max(256), z.string().max(32_768)).optional(),
    cwd: z.string().min(1).max(4096).optional(),
  })
  .strict();

const httpServerSchema = z
  .object({
    url: z
      .string()
      .max(4096)
      .url()
      .refine((u) => /^https?:\/\//i.test(u), 'must be an http:// or https:// URL'),
    headers: z.record(z.string().min(1).max(256), z.string().max(32_768)).optional(),
  })
  .strict();

export const mcpServerSchema = z.union([stdioServerSchema, httpServerSchema]);
export type McpServerConfig = z.infer<typeof mcpServerSchema>;

/**
 * A server's name becomes the prefix of its tools (`files__read_file`), so it may not hold `__`
 * (the separator) and stays short enough for the model's 64-character function names.
 */
export const MCP_SERVER_NAME = /^[A-Za-z0-9-]+(?:_[A-Za-z0-9-]+)*$/;
const serverNameSchema = z
  .string()
  .min(1)
  .max(32)
  .regex(MCP_SERVER_NAME, 'must be 1-32 characters of A-Z a-z 0-9 - _ (no "__", no "_" at either end)');

export const mcpServersSchema = z
  .record(serverNameSchema, mcpServerSchema)
  .refine((servers) => Object.keys(servers).length <= 32, 'at most 32 servers');
export type McpServers = z.infer<typeof mcpServersSchema>;

export const MCP_SEPARATOR = '__';
/** OpenAI's rule for function names; an MCP tool whose full name breaks it is not offered. */
export const FUNCTION_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** An entry of an agent's `tools`: a built-in tool, `<server>__<tool>` or `<server>__*`. */
export const toolEntrySchema = z.union([
  z.enum(TOOL_NAMES),
  z
    .string()
    .max(128)
    .regex(
      /^[A-Za-z0-9-]+(?:_[A-Za-z0-9-]+)*__(?:\*|[A-Za-z0-9_-]+)$/,
      'must be a built-in tool, "<server>__<tool>" or "<server>__*"',
    ),
]);

/** `files__read_file` → `{ server: 'files', tool: 'read_file' }`; undefined for a built-in name. */
export function splitToolName(name: string): { server: string; tool: string } | undefined {
  const at = name.indexOf(MCP_SEPARATOR);
  if (at <= 0) {
    return undefined;
  }
  return { server: name.slice(0, at), tool: name.slice(at + MCP_SEPARATOR.length) };
}

/**
 * Which of a server's tools an agent gets: all of them when its `tools` names none of that server's
 * (or names `<server>__*`), else only those it names.
 */
export function allowsMcpTool(tools: readonly string[], server: string, tool: string): boolean {
  const prefix = server + MCP_SEPARATOR;
  const mine = tools.filter((t) => t.startsWith(prefix));
  return mine.length === 0 || mine.includes(prefix + '*') || mine.includes(prefix + tool);
}

/** The `tools` entries that name a server not in `servers` (a typo would otherwise hide tools silently). */
export function unknownServerEntries(tools: readonly string[], servers: McpServers | undefined): string[] {
  return tools.filter((t) => {
    const split = splitToolName(t);
    return split !== undefined && !(split.server in (servers ?? {}));
  });
}
