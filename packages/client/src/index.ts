export { connect, MailroomClient } from './client';
export type { ConnectOptions, ConnectionEvent } from './client';
export { MailroomSession } from './session';
export type { SessionMethod, SessionParams } from './session';
export { MailroomError } from './errors';
export type { ConnectionReason } from './errors';
export * from './protocol/index';
