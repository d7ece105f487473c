import { useEffect, useState } from 'preact/hooks';
import { ExampleButton } from './components/example-button';
import { SessionList } from './components/session-list';
import { SessionView } from './components/session-view';
import { Connection, type ConnectionStatus } from './connection';
import type { SessionSummary, TemplateSummary } from './protocol';

const TOKEN_KEY = 'mailroom.token';
const SESSIONS_EVERY_MS = 3000;

/** `?token=` wins (and is kept), else what was kept, else none. */
function initialToken(): string {
  const fromUrl = new URLSearchParams(location.search).get('token');
  if (fromUrl !== null) {
    localStorage.setItem(TOKEN_KEY, fromUrl);
    return fromUrl;
  }
  return localStorage.getItem(TOKEN_KEY) ?? '';
}

function sessionFromHash(): string | null {
  const m = /^#\/session\/(.+)$/.exec(location.hash);
  return m ? decodeURIComponent(m[1]) : null;
}

export function App() {
  const [token, setToken] = useState(initialToken);
  const [conn, setConn] = useState<Connection | null>(null);
  const [status, setStatus] = useState<ConnectionStatus>({ kind: 'connecting' });
  const [epoch, setEpoch] = useState(0);
  const [sessions, setSessions] = useState<SessionSummary[]>([]);
  const [templates, setTemplates] = useState<TemplateSummary[]>([]);
  const [sessionId, setSessionId] = useState(sessionFromHash);

  useEffect(() => {
    const onHash = () => setSessionId(sessionFromHash());
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, []);

  useEffect(() => {
    const c = new Connection(token);
    setConn(c);
    const off = c.onStatus((s) => {
      setStatus(s);
      if (s.kind === 'connected') {
        setEpoch((e) => e + 1);
      }
    });
    return () => {
      off();
      c.close();
    };
  }, [token]);

  const connected = status.kind === 'connected';
  useEffect(() => {
    if (!conn || !connected) {
      return;
    }
    const load = () =>
      conn
        .call<{ sessions: SessionSummary[] }>('session.list')
        .then((r) => setSessions(r.sessions))
        .catch(() => undefined); // the status line already says when the server is unreachable
    void load();
    conn
      .call<{ templates: TemplateSummary[] }>('templates.list')
      .then((r) => setTemplates(r.templates))
      .catch(() => undefined);
    const timer = setInterval(() => void load(), SESSIONS_EVERY_MS);
    return () => clearInterval(timer);
  }, [conn, connected, epoch]);

  const openSession = (id: string) => {
    location.hash = `#/session/${encodeURIComponent(id)}`;
    void conn
      ?.call<{ sessions: SessionSummary[] }>('session.list')
      .then((r) => setSessions(r.sessions))
      .catch(() => undefined);
  };

  return (
    <div class="app">
      <header class="top">
        <div class="brand">
          <span class="logo">✉</span> Mailroom <small>live dashboard</small>
        </div>
        <span class={`conn conn-${status.kind}`} data-testid="connection" data-status={status.kind}>
          {status.kind === 'connected'
            ? 'connected'
            : status.kind === 'connecting'
              ? 'connecting…'
              : status.message}
        </span>
        <form
          class="token"
          onSubmit={(e) => {
            e.preventDefault();
            const value = (e.currentTarget.elements.namedItem('token') as HTMLInputElement).value.trim();
            localStorage.setItem(TOKEN_KEY, value);
            setToken(value);
          }}
        >
          <input
            name="token"
            type="password"
            autocomplete="off"
            placeholder="API token, if the server wants one"
            defaultValue={token}
          />
          <button type="submit">Use token</button>
        </form>
      </header>
      <div class="body">
        {conn ? (
          <SessionList conn={conn} sessions={sessions} selected={sessionId} onStarted={openSession} />
        ) : null}
        {conn && sessionId && epoch > 0 ? (
          <SessionView conn={conn} sessionId={sessionId} templates={templates} connectionEpoch={epoch} />
        ) : (
          <main class="session welcome">
            <h1>Welcome</h1>
            <p>
              Pick a session on the left, or start one. A session's agents appear here live: their state, what
              they work on, their queues, sleeps and errors; the timeline shows tasks, mail between agents,
              events and waits as they happen. <b>Replay</b> scrubs any session through its history from the
              first record.
            </p>
            {conn && connected ? <ExampleButton conn={conn} onStarted={openSession} /> : null}
            <p class="muted">
              Everything here goes through the same public protocol a client uses (socket.io), so what you see
              is what a client would see.
            </p>
          </main>
        )}
      </div>
    </div>
  );
}
