// The protocol's names live in the client package, so that clients are typed from the very
// schemas the server validates with (docs/adr/0013-client-package.md).
export { eventNameSchema, idSchema, PRIORITIES, prioritySchema } from '@mailroom/client/protocol';
export type { Priority } from '@mailroom/client/protocol';
import type { Priority } from '@mailroom/client/protocol';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True for a uuid: ids a client sends back are checked before they reach a `uuid` column. */
export function isUuid(value: string): boolean {
  return UUID.test(value);
}

/** Priority as stored on a work item, so that `ORDER BY priority DESC` is the protocol's order. */
export const PRIORITY_RANK: Record<Priority, number> = { low: 0, normal: 1, high: 2, urgent: 3 };

/** Mail that wakes a sleeper whose wake events hold these names (docs/protocol.md, Tools). */
export const MAIL_RECEIVED = 'mail_received';
export const HIGH_PRIORITY_MAIL = 'high_priority_mail';
