import type { AgentView } from '../agents-model';
import { countdown } from '../format';
import { useNow } from '../hooks';
import { StateBadge } from './state-badge';
import { VirtualList } from './virtual-list';

interface Props {
  agents: AgentView[];
  /** The server's clock minus the page's, as the pushes tell it: countdowns run on the server's time. */
  clockOffset: number;
  selected: string | null;
  onSelect: (agentId: string) => void;
  onOpenTask: (taskId: string) => void;
}

const KIND_LABEL: Record<string, string> = {
  task: 'task',
  mailbox_message: 'mail',
  event: 'event',
  schedule: 'schedule',
};

/** Every agent of the session, one row each; only the rows in view are drawn. */
export function AgentTable({ agents, clockOffset, selected, onSelect, onOpenTask }: Props) {
  const counting = agents.some((a) => a.sleepingUntil);
  const now = useNow(1000, counting) + clockOffset;
  return (
    <div class="table agents" role="table" aria-label="Agents">
      <div class="thead" role="row">
        <span>agent</span>
        <span>state</span>
        <span>working on</span>
        <span class="num">queue</span>
        <span>sleeps until</span>
        <span>wakes on</span>
        <span class="num">tokens</span>
        <span>errors</span>
      </div>
      {agents.length === 0 ? (
        <p class="empty">No agents yet: create one from a template below.</p>
      ) : (
        <VirtualList
          items={agents}
          rowHeight={44}
          height={Math.min(440, agents.length * 44 + 2)}
          testId="agent-list"
          render={(a) => (
            <div
              class={`tr${a.agentId === selected ? ' selected' : ''}`}
              role="row"
              data-testid="agent-row"
              data-agent={a.agentId}
              data-state={a.state}
              onClick={() => onSelect(a.agentId)}
            >
              <span class="agent-id">
                <strong>{a.agentId}</strong>
                <small>{a.template ?? ''}</small>
              </span>
              <span class="state-cell">
                <StateBadge state={a.state} />
                <small title={a.reason ?? ''}>{a.waitingOn ? `on ${a.waitingOn}` : (a.reason ?? '')}</small>
              </span>
              <span>
                {a.currentTask ? (
                  <TaskLink taskId={a.currentTaskId} label={KIND_LABEL[a.currentTask]} onOpen={onOpenTask} />
                ) : a.lastTaskId ? (
                  <TaskLink taskId={a.lastTaskId} label="last" muted onOpen={onOpenTask} />
                ) : (
                  <span class="muted">—</span>
                )}
              </span>
              <span class="num" data-testid="queue-size">
                {a.queueSize ?? '—'}
              </span>
              <span data-testid="sleeping-until" title={a.sleepingUntil ?? ''}>
                {a.sleepingUntil
                  ? countdown(a.sleepingUntil, now)
                  : a.state === 'sleeping'
                    ? 'until woken'
                    : '—'}
              </span>
              <span class="wake-events" title={(a.wakeEvents ?? []).join(', ')}>
                {a.wakeEvents === null ? '—' : a.wakeEvents.length ? a.wakeEvents.join(', ') : 'none'}
              </span>
              <span class="num">{a.tokensUsed.toLocaleString('en')}</span>
              <span class={a.errorCount ? 'error-cell' : 'muted'} title={a.lastError ?? ''}>
                {a.errorCount ? `${a.errorCount}: ${a.lastError ?? ''}` : '0'}
              </span>
            </div>
          )}
        />
      )}
    </div>
  );
}

function TaskLink(props: {
  taskId: string | null;
  label: string;
  muted?: boolean;
  onOpen: (id: string) => void;
}) {
  const { taskId, label, muted, onOpen } = props;
  if (!taskId) {
    return <span>{label}</span>;
  }
  return (
    <button
      type="button"
      class={`link${muted ? ' muted' : ''}`}
      onClick={(e) => {
        e.stopPropagation();
        onOpen(taskId);
      }}
    >
      {label}
    </button>
  );
}
