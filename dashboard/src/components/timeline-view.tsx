import { useMemo, useState } from 'preact/hooks';
import { clockTime, duration, oneLine } from '../format';
import { ENTRY_KINDS, type EntryKind, type TimelineEntry, type WaitEntry } from '../timeline-model';
import { StateBadge } from './state-badge';
import { VirtualList } from './virtual-list';

interface Props {
  entries: readonly TimelineEntry[];
  /** Entries drawn: all of them live, those up to the replay position in replay. */
  count: number;
  version: number;
  /** The time "now" is for a running wait: the clock live, the replay position's time in replay. */
  now: number;
  /** The last record taken into account: the end live, the replay position in replay. */
  upToSeq: number;
  onOpenTask: (taskId: string) => void;
}

const KIND_NAMES: Record<EntryKind, string> = {
  task: 'tasks',
  mail: 'mail',
  event: 'events',
  wait: 'waits',
  state: 'states',
  tool: 'tool calls',
};

/** The session's story in order: tasks, mail, events, waits, state changes and tool calls. */
export function TimelineView({ entries, count, version, now, upToSeq, onOpenTask }: Props) {
  const [hidden, setHidden] = useState<Set<EntryKind>>(new Set());
  const shown = useMemo(() => {
    const upTo = entries.slice(0, count);
    return hidden.size ? upTo.filter((e) => !hidden.has(e.kind)) : upTo;
    // `version` tells that `entries` (appended in place) has grown.
  }, [entries, count, version, hidden]);
  const toggle = (kind: EntryKind) => {
    const next = new Set(hidden);
    if (!next.delete(kind)) {
      next.add(kind);
    }
    setHidden(next);
  };
  return (
    <div class="timeline">
      <div class="filters" role="group" aria-label="Show in the timeline">
        {ENTRY_KINDS.map((k) => (
          <label key={k} class={`chip kind-${k}${hidden.has(k) ? ' off' : ''}`}>
            <input type="checkbox" checked={!hidden.has(k)} onChange={() => toggle(k)} />
            {KIND_NAMES[k]}
          </label>
        ))}
        <span class="muted count" data-testid="timeline-count">
          {shown.length.toLocaleString('en')} shown
        </span>
      </div>
      {shown.length === 0 ? (
        <p class="empty">Nothing has happened in this session yet.</p>
      ) : (
        <VirtualList
          items={shown}
          rowHeight={30}
          height={420}
          followEnd
          testId="timeline"
          render={(e) => <Row entry={e} now={now} upToSeq={upToSeq} onOpenTask={onOpenTask} />}
        />
      )}
    </div>
  );
}

interface RowProps {
  entry: TimelineEntry;
  now: number;
  upToSeq: number;
  onOpenTask: (id: string) => void;
}

function Row({ entry, now, upToSeq, onOpenTask }: RowProps) {
  const taskId = 'taskId' in entry ? entry.taskId : null;
  return (
    <div
      class={`tl-row${taskId ? ' clickable' : ''}`}
      data-testid="timeline-row"
      data-kind={entry.kind}
      data-seq={entry.seq}
      onClick={taskId ? () => onOpenTask(taskId) : undefined}
    >
      <span class="tl-time" title={`seq ${entry.seq}`}>
        {clockTime(entry.at)}
      </span>
      <span class={`tl-kind kind-${entry.kind}`}>{entry.kind}</span>
      <span class="tl-text">
        <Text entry={entry} now={now} upToSeq={upToSeq} />
      </span>
    </div>
  );
}

function Text({ entry, now, upToSeq }: { entry: TimelineEntry; now: number; upToSeq: number }) {
  switch (entry.kind) {
    case 'task':
      if (entry.phase === 'started') {
        return (
          <>
            <b>{entry.agentId}</b> started {entry.taskKind.replace('_', ' ')}
          </>
        );
      }
      if (entry.phase === 'completed') {
        return (
          <span title={entry.final}>
            <b>{entry.agentId}</b> finished: <q>{oneLine(entry.final, 90)}</q>
          </span>
        );
      }
      return (
        <span class="error-text" title={entry.error}>
          <b>{entry.agentId}</b> failed: {entry.error}
        </span>
      );
    case 'mail':
      return (
        <span title={entry.mail.body}>
          <b>{entry.mail.from}</b> → <b>{entry.mail.to}</b> <q>{entry.mail.subject}</q>
          {entry.mail.priority !== 'normal' ? <em class="prio"> {entry.mail.priority}</em> : null}
        </span>
      );
    case 'event':
      return (
        <>
          event <b>{entry.event}</b>
          {entry.woke.length ? ` woke ${entry.woke.join(', ')}` : ''}
        </>
      );
    case 'state':
      if (entry.previous === 'sleeping' && entry.state !== 'sleeping') {
        return (
          <span class="wake-text">
            <b>{entry.agentId}</b> woke up ({entry.reason}) → <StateBadge state={entry.state} />
          </span>
        );
      }
      return (
        <>
          <b>{entry.agentId}</b> {entry.previous ? <StateBadge state={entry.previous} /> : 'created'} →{' '}
          <StateBadge state={entry.state} /> <span class="muted">{entry.reason}</span>
        </>
      );
    case 'tool':
      return (
        <span title={`${oneLine(entry.args, 400)} → ${oneLine(entry.result, 400)}`}>
          <b>{entry.agentId}</b> called <code>{entry.tool}</code> {oneLine(entry.args, 50)} →{' '}
          {oneLine(entry.result, 40)}
        </span>
      );
    case 'wait':
      return <WaitText wait={entry} now={now} upToSeq={upToSeq} />;
  }
}

/** "writer waits on reviewer · 1.2 s · answered"; a refused wait in red. */
function WaitText({ wait, now, upToSeq }: { wait: WaitEntry; now: number; upToSeq: number }) {
  if (wait.outcome === 'refused') {
    return (
      <span class="error-text" title={wait.message ?? ''}>
        <b>{wait.agentId}</b> ⇢ <b>{wait.on}</b> refused: {wait.message?.replace(/^refused: /, '')}
      </span>
    );
  }
  const ended = wait.endSeq !== null && wait.endSeq <= upToSeq;
  const end = ended ? new Date(wait.endAt!).getTime() : now;
  return (
    <>
      <b>{wait.agentId}</b> waits on <b>{wait.on}</b> · {duration(end - new Date(wait.at).getTime())} ·{' '}
      <span class={ended ? 'muted' : 'waiting-text'}>{ended ? wait.outcome : 'waiting…'}</span>
    </>
  );
}
