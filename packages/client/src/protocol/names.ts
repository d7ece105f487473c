import { z } from 'zod';

/** `sessionId`, `agentId`: 1–64 chars of `[A-Za-z0-9_.-]` (docs/protocol.md, Names and limits). */
export const idSchema = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9_.-]+$/, 'must be 1-64 characters of A-Z a-z 0-9 _ . -');

/** Event names: 1–64 chars of `[A-Za-z0-9_.:-]`. */
export const eventNameSchema = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9_.:-]+$/, 'must be 1-64 characters of A-Z a-z 0-9 _ . : -');

export const PRIORITIES = ['low', 'normal', 'high', 'urgent'] as const;
export type Priority = (typeof PRIORITIES)[number];
export const prioritySchema = z.enum(PRIORITIES);

export const AGENT_STATES = ['idle', 'active', 'waiting', 'sleeping', 'stopped'] as const;
export type AgentState = (typeof AGENT_STATES)[number];

/** What an agent's work item is: every one has a `taskId`, whatever made it. */
export const WORK_KINDS = ['task', 'mailbox_message', 'event', 'schedule'] as const;
export type WorkKind = (typeof WORK_KINDS)[number];

export const WORK_STATES = ['queued', 'running', 'done', 'failed', 'cancelled'] as const;
export type WorkState = (typeof WORK_STATES)[number];

export const MAIL_STATUSES = ['unread', 'read', 'replied', 'archived'] as const;
export type MailStatus = (typeof MAIL_STATUSES)[number];

/** The built-in tools an agent's model can call. */
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

/** The address of the human client in mail's `from`/`to`. */
export const USER = 'user';
