import type { AnyPush } from '../protocol/pushes';
import type { AgentStateSnapshot, TemplateSummary } from '../protocol/results';

/** ANSI colours, or none (not a terminal, NO_COLOR set). */
export interface Palette {
  dim(s: string): string;
  bold(s: string): string;
  red(s: string): string;
  green(s: string): string;
  yellow(s: string): string;
  blue(s: string): string;
  magenta(s: string): string;
  cyan(s: string): string;
}

const ansi = (open: number, close: number) => (s: string) => `\u001b[${open}m${s}\u001b[${close}m`;

export function palette(colour: boolean): Palette {
  if (!colour) {
    const plain = (s: string) => s;
    return {
      dim: plain,
      bold: plain,
      red: plain,
      green: plain,
      yellow: plain,
      blue: plain,
      magenta: plain,
      cyan: plain,
    };
  }
  return {
    dim: ansi(2, 22),
    bold: ansi(1, 22),
    red: ansi(31, 39),
    green: ansi(32, 39),
    yellow: ansi(33, 39),
    blue: ansi(34, 39),
    magenta: ansi(35, 39),
    cyan: ansi(36, 39),
  };
}

/** Colours on a terminal unless NO_COLOR is set; FORCE_COLOR turns them on anywhere. */
export function wantsColour(isTTY: boolean, env: Record<string, string | undefined>): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') {
    return false;
  }
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '' && env.FORCE_COLOR !== '0') {
    return true;
  }
  return isTTY;
}

/** One push on one line: `#seq hh:mm:ss.mmm  who  what`. */
export function formatPush(push: AnyPush, c: Palette): string {
  const p = push.payload;
  const head = `${c.dim(`#${String(p.seq).padEnd(4)} ${p.at.slice(11, 23)}`)}  `;
  return head + describe(push, c);
}

function describe(push: AnyPush, c: Palette): string {
  switch (push.name) {
    case 'async.agent.stateChanged': {
      const p = push.payload;
      return `${who(p.agentId, c)} ${c.blue('state')}  ${p.previous ?? 'new'} → ${c.bold(p.state)} ${c.dim(`(${p.reason})`)}`;
    }
    case 'async.task.started': {
      const p = push.payload;
      return `${who(p.agentId, c)} ${c.blue('start')}  ${p.kind} ${shortId(p.taskId)}`;
    }
    case 'async.task.output': {
      const p = push.payload;
      return `${who(p.agentId, c)} ${c.dim('text')}   ${shortId(p.taskId)} ${clip(JSON.stringify(p.delta))}`;
    }
    case 'async.task.completed': {
      const p = push.payload;
      const tokens = p.usage ? c.dim(` (${p.usage.promptTokens}+${p.usage.completionTokens} tokens)`) : '';
      return `${who(p.agentId, c)} ${c.green('done')}   ${shortId(p.taskId)} ${clip(oneLine(p.result.final))}${tokens}`;
    }
    case 'async.task.failed': {
      const p = push.payload;
      return `${who(p.agentId, c)} ${c.red('failed')} ${shortId(p.taskId)} ${p.error.code}: ${clip(oneLine(p.error.message))}`;
    }
    case 'async.mail.sent': {
      const m = push.payload.message;
      const priority = m.priority === 'normal' ? '' : ` [${m.priority}]`;
      return `${who(m.from, c)} ${c.yellow('mail')}   → ${c.cyan(m.to)}${priority} "${m.subject}": ${clip(oneLine(m.body))}`;
    }
    case 'async.event.broadcast': {
      const p = push.payload;
      const woke = p.woke.length ? ` woke ${p.woke.join(', ')}` : '';
      return `${who('', c)} ${c.magenta('event')}  ${p.event} ${clip(JSON.stringify(p.data ?? {}))}${woke}`;
    }
    case 'async.tool.called': {
      const p = push.payload;
      return `${who(p.agentId, c)} ${c.dim('tool')}   ${p.tool} ${clip(JSON.stringify(p.args))} → ${clip(JSON.stringify(p.result))}`;
    }
    default:
      return unknownPush(push);
  }
}

/** A push this version does not know (a newer server): shown as it came. */
function unknownPush(push: never): string {
  const { name, payload } = push as { name: string; payload: unknown };
  return `${name} ${clip(JSON.stringify(payload))}`;
}

export function formatStates(agents: Record<string, AgentStateSnapshot>, c: Palette): string[] {
  const rows = Object.entries(agents).map(([agentId, s]) => [
    agentId,
    s.state,
    s.current_task ?? '-',
    String(s.queue_size),
    s.template,
    String(s.tokens_used),
    s.sleeping_until ?? (s.state === 'sleeping' ? `on ${s.wake_events.join(',') || 'wake'}` : '-'),
    s.last_error ? clip(oneLine(s.last_error), 60) : '-',
  ]);
  return table(
    ['agent', 'state', 'working on', 'queue', 'template', 'tokens', 'sleeping until', 'last error'],
    rows,
    c,
  );
}

export function formatTemplates(templates: TemplateSummary[], c: Palette): string[] {
  return table(
    ['template', 'model', 'tools', 'description'],
    templates.map((t) => [t.name, t.model, t.tools.join(','), clip(t.description, 80)]),
    c,
  );
}

function table(header: string[], rows: string[][], c: Palette): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [c.bold(line(header)), ...rows.map(line)];
}

const AGENT_WIDTH = 12;

function who(agentId: string, c: Palette): string {
  return c.cyan(agentId.padEnd(AGENT_WIDTH));
}

function shortId(taskId: string): string {
  return taskId.slice(0, 8);
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ⏎ ');
}

function clip(s: string, max = 120): string {
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}
