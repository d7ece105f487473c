/** The built-in tools an agent's model can call (PROTOCOL.md, "Tools an agent's model can call"). */
export const TOOL_NAMES = [
  'send_mail',
  'send_mail_with_switch',
  'check_mail',
  'reply_mail',
  'broadcast_event',
  'sleep',
  'list_agents',
] as const;

export type ToolName = (typeof TOOL_NAMES)[number];
