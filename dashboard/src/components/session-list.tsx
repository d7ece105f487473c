import { useAction } from '../hooks';
import type { Connection } from '../connection';
import type { SessionSummary } from '../protocol';

interface Props {
  conn: Connection;
  sessions: SessionSummary[];
  selected: string | null;
  onStarted: (sessionId: string) => void;
}

/** The sessions this caller may see, newest first, and a way to start one. */
export function SessionList({ conn, sessions, selected, onStarted }: Props) {
  const [outcome, act] = useAction();
  const sorted = [...sessions].sort((a, b) => (a.createdAt < b.createdAt ? 1 : -1));
  return (
    <aside class="sessions">
      <h2>Sessions</h2>
      <form
        class="new-session"
        data-testid="form-new-session"
        onSubmit={(e) => {
          e.preventDefault();
          const input = e.currentTarget.elements.namedItem('sessionId') as HTMLInputElement;
          const sessionId = input.value.trim();
          act(async () => {
            const r = await conn.call<{ sessionId: string }>('session.start', sessionId ? { sessionId } : {});
            input.value = '';
            onStarted(r.sessionId);
            return `started ${r.sessionId}`;
          });
        }}
      >
        <input name="sessionId" placeholder="new session id (optional)" aria-label="New session id" />
        <button type="submit">Start</button>
      </form>
      {outcome.kind === 'error' ? (
        <p class="outcome error" role="alert" data-testid="outcome">
          ✗ {outcome.text}
        </p>
      ) : null}
      {sorted.length === 0 ? <p class="empty">No sessions yet.</p> : null}
      <ul>
        {sorted.map((s) => (
          <li key={s.sessionId}>
            <a
              href={`#/session/${encodeURIComponent(s.sessionId)}`}
              class={s.sessionId === selected ? 'active' : ''}
              data-testid="session-item"
              data-session={s.sessionId}
            >
              <span class="session-id">{s.sessionId}</span>
              <small>
                {s.agentCount} agent{s.agentCount === 1 ? '' : 's'} ·{' '}
                {new Date(s.createdAt).toLocaleString('en-GB')}
              </small>
            </a>
          </li>
        ))}
      </ul>
    </aside>
  );
}
