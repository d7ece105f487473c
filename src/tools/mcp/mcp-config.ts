// The MCP parts of an agent's config are the protocol's (the client package): the server and the
// client validate with the same schemas and split tool names the same way.
export {
  allowsMcpTool,
  FUNCTION_NAME,
  MCP_SEPARATOR,
  MCP_SERVER_NAME,
  mcpServerSchema,
  mcpServersSchema,
  splitToolName,
  toolEntrySchema,
  unknownServerEntries,
} from '@mailroom/client/protocol';
export type { McpServerConfig, McpServers } from '@mailroom/client/protocol';
