import { duration } from '../format';
import type { WaitEntry } from '../timeline-model';

const SHOWN = 50;

/**
 * Send-and-switch waits as bars: who waits on whom and for how long, the longest wait the full
 * width. In replay, a wait that ends after the replay position is still running.
 */
export function WaitsView({
  waits,
  upToSeq,
  now,
}: {
  waits: readonly WaitEntry[];
  upToSeq: number;
  now: number;
}) {
  const visible = waits
    .filter((w) => w.seq <= upToSeq)
    .slice(-SHOWN)
    .reverse();
  if (visible.length === 0) {
    return <p class="empty">No agent has waited on another yet (send_mail_with_switch).</p>;
  }
  const spans = visible.map((w) => {
    const running = w.endSeq === null || w.endSeq > upToSeq;
    const end = running ? now : new Date(w.endAt!).getTime();
    return { w, running, ms: Math.max(0, end - new Date(w.at).getTime()) };
  });
  const longest = Math.max(1, ...spans.map((s) => s.ms));
  return (
    <ul class="waits" data-testid="waits">
      {spans.map(({ w, running, ms }) => (
        <li
          key={w.seq}
          data-testid="wait"
          data-from={w.agentId}
          data-to={w.on}
          data-outcome={running ? 'waiting' : w.outcome}
        >
          <span class="wait-who">
            <b>{w.agentId}</b> ⇢ <b>{w.on}</b>
          </span>
          {w.outcome === 'refused' ? (
            <span class="wait-refused" title={w.message ?? ''}>
              refused: {w.message?.replace(/^refused: /, '')}
            </span>
          ) : (
            <>
              <span class="wait-bar">
                <span
                  class={running ? 'bar running' : 'bar'}
                  style={{ width: `${Math.max(2, (ms / longest) * 100)}%` }}
                />
              </span>
              <span class="wait-len">
                {duration(ms)} · {running ? 'waiting…' : w.outcome}
              </span>
            </>
          )}
        </li>
      ))}
    </ul>
  );
}
