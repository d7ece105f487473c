import { z } from 'zod';

/** `sessionId`, `agentId`: 1–64 chars of `[A-Za-z0-9_.-]` (PROTOCOL.md, Names and limits). */
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

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True for a uuid: ids a client sends back are checked before they reach a `uuid` column. */
export function isUuid(value: string): boolean {
  return UUID.test(value);
}

export const PRIORITIES = ['low', 'normal', 'high', 'urgent'] as const;
export type Priority = (typeof PRIORITIES)[number];
export const prioritySchema = z.enum(PRIORITIES);

/** Priority as stored on a work item, so that `ORDER BY priority DESC` is the protocol's order. */
export const PRIORITY_RANK: Record<Priority, number> = { low: 0, normal: 1, high: 2, urgent: 3 };

/** Mail that wakes a sleeper whose wake events hold these names (PROTOCOL.md, Tools). */
export const MAIL_RECEIVED = 'mail_received';
export const HIGH_PRIORITY_MAIL = 'high_priority_mail';
