import type { Connection } from '../connection';
import { useAction } from '../hooks';

const AGENTS = ['analyzer', 'writer', 'reviewer'];

/**
 * The guide's first workflow in one click, through the same public methods a client would call: a
 * new session, the analyzer, writer and reviewer from their templates, and a task for each of the
 * first two. The page moves to the session first, so everything is seen as it happens.
 */
export function ExampleButton({
  conn,
  onStarted,
}: {
  conn: Connection;
  onStarted: (sessionId: string) => void;
}) {
  const [outcome, act] = useAction();
  const run = () =>
    act(async () => {
      const { sessionId } = await conn.call<{ sessionId: string }>('session.start', {
        sessionId: `example-${Date.now().toString(36)}`,
        metadata: { example: 'analysis and report' },
      });
      onStarted(sessionId);
      for (const agentId of AGENTS) {
        await conn.call('async.createAgent', { sessionId, agentId });
      }
      await conn.call('async.sendTask', {
        sessionId,
        agentId: 'analyzer',
        prompt: 'Analyze customer sentiment from feedback.csv',
      });
      await conn.call('async.sendTask', {
        sessionId,
        agentId: 'writer',
        prompt: 'Prepare report template for sentiment analysis',
      });
      return `started ${sessionId}`;
    });
  return (
    <div class="example">
      <button type="button" data-testid="run-example" onClick={run} disabled={outcome.kind === 'busy'}>
        Run the example workflow
      </button>
      <span class="muted">analyzer → writer ⇄ reviewer → you, on the offline scripted model</span>
      {outcome.kind === 'error' ? (
        <p class="outcome error" role="alert">
          ✗ {outcome.text}
        </p>
      ) : null}
    </div>
  );
}
