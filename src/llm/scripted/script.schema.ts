// A scripted model's rules are part of the protocol: their schema lives in the client package.
export { scriptSchema } from '@mailroom/client/protocol';
export type { Script, ScriptRule, ScriptStep } from '@mailroom/client/protocol';
