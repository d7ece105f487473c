import { AGENT_STATES, type AgentStateName } from '../protocol';

const MEANING: Record<AgentStateName, string> = {
  idle: 'nothing to do',
  active: 'working on an item',
  waiting: 'waiting for another agent’s reply',
  sleeping: 'asleep until a timer, an event or a wake',
  stopped: 'takes no work until started',
};

export function StateBadge({ state }: { state: AgentStateName }) {
  return (
    <span class={`badge state-${state}`} title={MEANING[state]} data-testid="state-badge">
      {state}
    </span>
  );
}

/** The colour of each state, what it means, and how many agents are in it. */
export function Legend({ counts }: { counts: Record<AgentStateName, number> }) {
  return (
    <ul class="legend" data-testid="legend" aria-label="Agent states">
      {AGENT_STATES.map((s) => (
        <li key={s} title={MEANING[s]} data-state={s} data-count={counts[s]}>
          <span class={`dot state-${s}`} />
          {s} <strong>{counts[s]}</strong>
        </li>
      ))}
    </ul>
  );
}
