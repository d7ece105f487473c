import { useCallback, useEffect, useMemo, useState } from 'preact/hooks';
import { agentList, agentsAt, countByState, type AgentView } from '../agents-model';
import type { Connection } from '../connection';
import { useNow, useStore } from '../hooks';
import type { TemplateSummary } from '../protocol';
import { SessionStore } from '../session-store';
import { AgentTable } from './agent-table';
import { Controls } from './controls';
import { ReplayBar } from './replay-bar';
import { Legend } from './state-badge';
import { TaskDetailView } from './task-detail';
import { TimelineView } from './timeline-view';
import { WaitsView } from './waits-view';

interface Props {
  conn: Connection;
  sessionId: string;
  templates: TemplateSummary[];
  /** Moves on with each (re)connection: the session is followed afresh. */
  connectionEpoch: number;
}

/** One session, live or replayed: its agents, its timeline, its waits, a task's detail and the controls. */
export function SessionView({ conn, sessionId, templates, connectionEpoch }: Props) {
  const [store, setStore] = useState<SessionStore | null>(null);
  const [mode, setMode] = useState<'live' | 'replay'>('live');
  const [position, setPosition] = useState(0);
  const [filter, setFilter] = useState('');
  const [selected, setSelected] = useState<string | null>(null);
  const [openTask, setOpenTask] = useState<string | null>(null);

  useEffect(() => {
    const s = new SessionStore(conn, sessionId);
    setStore(s);
    setOpenTask(null);
    void s.open();
    return () => s.close();
  }, [conn, sessionId, connectionEpoch]);

  const version = useStore(store);
  const records = store?.records ?? [];
  const replaying = mode === 'replay';
  const atSeq = replaying ? (position > 0 ? records[position - 1].seq : 0) : Number.MAX_SAFE_INTEGER;
  const agents = useMemo(
    () => (replaying ? agentsAt(records, atSeq) : (store?.agents ?? new Map<string, AgentView>())),
    // The store's maps change in place; `version` says when.
    [replaying, atSeq, store, version],
  );
  const shown = useMemo(() => agentList(agents, filter), [agents, filter, version]);
  const counts = countByState(agents);
  const liveNow = useNow(500, !replaying);
  const now = replaying
    ? position > 0
      ? new Date(records[position - 1].at).getTime()
      : 0
    : liveNow + (store?.clockOffset ?? 0);
  const move = useCallback((p: number) => setPosition(p), []);

  if (!store) {
    return null;
  }
  const entries = store.timeline.entries;
  const count = replaying ? store.timeline.countUpTo(atSeq) : entries.length;
  return (
    <main class="session" data-testid="session-view" data-session={sessionId} data-mode={mode}>
      <div class="session-bar">
        <div>
          <h1>{sessionId}</h1>
          <p class="muted" data-testid="session-status">
            {store.error ? (
              <span class="error-text">{store.error}</span>
            ) : !store.agentsLoaded ? (
              'loading agents…'
            ) : (
              <>
                <span data-testid="agent-count">{agents.size}</span> agents ·{' '}
                <span data-testid="history-count" data-loaded={String(store.historyLoaded)}>
                  {records.length.toLocaleString('en')}
                </span>{' '}
                history records{store.historyLoaded ? '' : ' (loading…)'}
              </>
            )}
          </p>
        </div>
        <nav class="tabs" role="tablist">
          <button
            type="button"
            role="tab"
            aria-selected={!replaying}
            class={!replaying ? 'active' : ''}
            data-testid="mode-live"
            onClick={() => setMode('live')}
          >
            ● Live
          </button>
          <button
            type="button"
            role="tab"
            aria-selected={replaying}
            class={replaying ? 'active' : ''}
            data-testid="mode-replay"
            onClick={() => {
              setPosition(0);
              setMode('replay');
            }}
          >
            ⟲ Replay
          </button>
        </nav>
        <Legend counts={counts} />
      </div>
      {replaying ? (
        <ReplayBar records={records} position={position} onMove={move} loaded={store.historyLoaded} />
      ) : null}
      <div class="columns">
        <div class="col">
          <section class="card">
            <header class="card-head">
              <h2>Agents</h2>
              <input
                class="filter"
                type="search"
                placeholder="filter by id, state or template"
                aria-label="Filter agents"
                data-testid="agent-filter"
                value={filter}
                onInput={(e) => setFilter(e.currentTarget.value)}
              />
            </header>
            <AgentTable
              agents={shown}
              clockOffset={replaying ? 0 : store.clockOffset}
              selected={selected}
              onSelect={setSelected}
              onOpenTask={setOpenTask}
            />
            {replaying ? (
              <p class="note">Replay rebuilds states from the history; queue sizes are not in it (—).</p>
            ) : null}
          </section>
          {replaying ? null : (
            <Controls
              conn={conn}
              sessionId={sessionId}
              agentIds={[...store.agents.keys()]}
              selected={selected}
              templates={templates}
            />
          )}
        </div>
        <div class="col">
          {openTask ? (
            <TaskDetailView store={store} taskId={openTask} onClose={() => setOpenTask(null)} />
          ) : null}
          <section class="card">
            <header class="card-head">
              <h2>Timeline</h2>
            </header>
            <TimelineView
              entries={entries}
              count={count}
              version={version}
              now={now}
              upToSeq={atSeq}
              onOpenTask={setOpenTask}
            />
          </section>
          <section class="card">
            <header class="card-head">
              <h2>Waits (send and switch)</h2>
            </header>
            <WaitsView waits={store.timeline.waits} upToSeq={atSeq} now={now} />
          </section>
        </div>
      </div>
    </main>
  );
}
