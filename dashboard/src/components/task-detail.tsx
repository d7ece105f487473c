import { useEffect, useState } from 'preact/hooks';
import { describeError } from '../connection';
import { clockTime, duration, json } from '../format';
import type { TaskDetail as Task } from '../protocol';
import type { SessionStore } from '../session-store';

interface Props {
  store: SessionStore;
  taskId: string;
  onClose: () => void;
}

/**
 * One work item: what it was asked, the text as the model streams it, each tool call with its
 * arguments and result, the tokens it cost and how it ended.
 */
export function TaskDetailView({ store, taskId, onClose }: Props) {
  const [task, setTask] = useState<Task | null>(null);
  const [error, setError] = useState<string | null>(null);
  /** How many streamed pieces had arrived when `task.output` was read: later ones follow it. */
  const [seenParts, setSeenParts] = useState(0);
  const phase = store.timeline.taskPhases.get(taskId) ?? 'queued';

  useEffect(() => {
    let current = true;
    const before = store.outputs.get(taskId)?.length ?? 0;
    store.conn
      .call<Task>('async.getTask', { sessionId: store.sessionId, taskId })
      .then((t) => {
        if (current) {
          setTask(t);
          setSeenParts(before);
          setError(null);
        }
      })
      .catch((err: unknown) => current && setError(describeError(err)));
    return () => {
      current = false;
    };
  }, [store, taskId, phase]);

  const calls = store.timeline.toolCalls.get(taskId) ?? [];
  const parts = store.outputs.get(taskId) ?? [];
  const running = task?.state === 'running' || task?.state === 'queued';
  // The text so far from `async.getTask`, and the pieces pushed since; a server that does not
  // report it keeps every piece in the history, so they all count.
  const streamed =
    task?.output === undefined ? parts.join('') : task.output + parts.slice(seenParts).join('');
  const text = task?.result?.final ?? streamed;
  return (
    <section class="card task-detail" data-testid="task-detail" data-task={taskId} data-state={task?.state}>
      <header class="card-head">
        <h2>
          {task ? `${task.agentId} · ${task.kind.replace('_', ' ')}` : 'Task'}{' '}
          {task ? <span class={`badge task-${task.state}`}>{task.state}</span> : null}
        </h2>
        <button type="button" class="ghost" onClick={onClose} aria-label="Close the task">
          ✕
        </button>
      </header>
      {error ? <p class="outcome error">{error}</p> : null}
      {!task ? (
        <p class="muted">Loading {taskId}…</p>
      ) : (
        <div class="task-body">
          <dl class="facts">
            <dt>task id</dt>
            <dd>
              <code>{task.taskId}</code>
            </dd>
            <dt>created</dt>
            <dd>{clockTime(task.createdAt)}</dd>
            <dt>took</dt>
            <dd>
              {task.startedAt && task.finishedAt
                ? duration(new Date(task.finishedAt).getTime() - new Date(task.startedAt).getTime())
                : running
                  ? 'running…'
                  : '—'}
            </dd>
            <dt>usage</dt>
            <dd data-testid="task-usage">
              {task.usage
                ? `${task.usage.promptTokens} prompt + ${task.usage.completionTokens} completion tokens`
                : '—'}
            </dd>
            <dt>hops</dt>
            <dd>{task.hops}</dd>
          </dl>
          <h3>Prompt</h3>
          <pre class="prompt" data-testid="task-prompt">
            {task.prompt}
          </pre>
          <h3>{task.result?.final !== undefined ? 'Answer' : 'Output so far'}</h3>
          <pre class="output" data-testid="task-output">
            {text || (running ? '(nothing streamed yet)' : '(no text)')}
          </pre>
          {task.error ? (
            <p class="outcome error" data-testid="task-error">
              {task.error.code}: {task.error.message}
            </p>
          ) : null}
          <h3>Tool calls ({calls.length})</h3>
          {calls.length === 0 ? <p class="muted">None.</p> : null}
          <ol class="tool-calls" data-testid="tool-calls">
            {calls.map((c) => (
              <li key={c.seq}>
                <code>{c.tool}</code>
                <div class="io">
                  <pre title="arguments">{json(c.args)}</pre>
                  <pre title="result" class={(c.result as { error?: unknown })?.error ? 'error-text' : ''}>
                    {json(c.result)}
                  </pre>
                </div>
              </li>
            ))}
          </ol>
        </div>
      )}
    </section>
  );
}
