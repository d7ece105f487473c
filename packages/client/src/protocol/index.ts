// The protocol itself: the params schemas the server validates with, and the result and push types.
export * from './names';
export * from './script';
export * from './mcp';
export * from './agent-config';
export * from './errors';
export * from './params';
export * from './results';
export * from './pushes';
