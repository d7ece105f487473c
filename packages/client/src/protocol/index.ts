// The protocol itself: the params schemas the server validates with, and the result and push types.
export * from './names.js';
export * from './script.js';
export * from './agent-config.js';
export * from './errors.js';
export * from './params.js';
export * from './results.js';
export * from './pushes.js';
