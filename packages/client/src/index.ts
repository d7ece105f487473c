export { connect, MailroomClient } from './client.js';
export type { ConnectOptions, ConnectionEvent } from './client.js';
export { MailroomSession } from './session.js';
export type { SessionMethod, SessionParams } from './session.js';
export { MailroomError } from './errors.js';
export type { ConnectionReason } from './errors.js';
export * from './protocol/index.js';
