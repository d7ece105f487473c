import { TestClient } from '../support/client';

/** Starts a session on the client (which subscribes it) and returns its id. */
export async function startSession(
  client: TestClient,
  sessionId: string,
  extra: Record<string, unknown> = {},
) {
  await client.ok('session.start', { sessionId, ...extra });
  return sessionId;
}

/** A scripted agent: `rules` is the `config.script` of docs/protocol.md. */
export function createScripted(
  client: TestClient,
  sessionId: string,
  agentId: string,
  script: unknown[],
  config: Record<string, unknown> = {},
  extra: Record<string, unknown> = {},
) {
  return client.ok('async.createAgent', {
    sessionId,
    agentId,
    template: 'assistant',
    config: { script, ...config },
    ...extra,
  });
}

/** A rule that answers every work item of any kind with `text`. */
export const replyAll = (text: string) => [{ when: {}, do: [{ reply: text }] }];
