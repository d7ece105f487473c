// The built-in tools' names are part of the protocol: they live in the client package.
export { TOOL_NAMES } from '@mailroom/client/protocol';
export type { ToolName } from '@mailroom/client/protocol';
