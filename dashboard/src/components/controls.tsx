import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';
import type { Connection } from '../connection';
import { useAction, type Outcome } from '../hooks';
import type { TemplateSummary } from '../protocol';

interface Props {
  conn: Connection;
  sessionId: string;
  agentIds: string[];
  selected: string | null;
  templates: TemplateSummary[];
}

const TABS = ['create agent', 'send task', 'mail', 'sleep / wake', 'broadcast', 'schedule'] as const;
type Tab = (typeof TABS)[number];

/** Every control a client has, through the same public methods; the server's answer is shown as it is. */
export function Controls(props: Props) {
  const [tab, setTab] = useState<Tab>('create agent');
  return (
    <section class="card controls" data-testid="controls">
      <header class="card-head">
        <h2>Controls</h2>
        <nav class="tabs small" role="tablist">
          {TABS.map((t) => (
            <button
              key={t}
              type="button"
              role="tab"
              aria-selected={t === tab}
              class={t === tab ? 'active' : ''}
              data-testid={`tab-${t.replace(/[^a-z]+/g, '-')}`}
              onClick={() => setTab(t)}
            >
              {t}
            </button>
          ))}
        </nav>
      </header>
      <datalist id="agent-ids">
        {props.agentIds.map((id) => (
          <option key={id} value={id} />
        ))}
      </datalist>
      {tab === 'create agent' ? <CreateAgent {...props} /> : null}
      {tab === 'send task' ? <SendTask {...props} /> : null}
      {tab === 'mail' ? <SendMail {...props} /> : null}
      {tab === 'sleep / wake' ? <Lifecycle {...props} /> : null}
      {tab === 'broadcast' ? <Broadcast {...props} /> : null}
      {tab === 'schedule' ? <Schedule {...props} /> : null}
    </section>
  );
}

function Field({ label, children }: { label: string; children: ComponentChildren }) {
  return (
    <label class="field">
      <span>{label}</span>
      {children}
    </label>
  );
}

function AgentField({ selected, name = 'agentId' }: { selected: string | null; name?: string }) {
  return (
    <Field label={name === 'to' ? 'to agent' : 'agent'}>
      <input name={name} list="agent-ids" required defaultValue={selected ?? ''} key={selected ?? ''} />
    </Field>
  );
}

function OutcomeLine({ outcome }: { outcome: Outcome }) {
  switch (outcome.kind) {
    case 'idle':
      return null;
    case 'busy':
      return <p class="outcome busy">Sending…</p>;
    case 'ok':
      return (
        <p class="outcome ok" role="status" data-testid="outcome" data-ok="true" data-run={outcome.run}>
          ✓ {outcome.text}
        </p>
      );
    case 'error':
      return (
        <p class="outcome error" role="alert" data-testid="outcome" data-ok="false" data-run={outcome.run}>
          ✗ {outcome.text}
        </p>
      );
  }
}

/** The form's fields by name; empty ones left out. */
function fields(form: HTMLFormElement): Record<string, string> {
  const out: Record<string, string> = {};
  new FormData(form).forEach((value, key) => {
    if (typeof value === 'string' && value.trim() !== '') {
      out[key] = value.trim();
    }
  });
  return out;
}

function list(text: string | undefined): string[] | undefined {
  return text === undefined ? undefined : text.split(/[\s,]+/).filter(Boolean);
}

function useForm(run: (f: Record<string, string>, submitter: string) => Promise<string>) {
  const [outcome, act] = useAction();
  const onSubmit = (e: SubmitEvent) => {
    e.preventDefault();
    const submitter = (e.submitter as HTMLButtonElement | null)?.value ?? '';
    const values = fields(e.currentTarget as HTMLFormElement);
    act(() => run(values, submitter));
  };
  return { outcome, onSubmit };
}

function CreateAgent({ conn, sessionId, templates }: Props) {
  const { outcome, onSubmit } = useForm(async (f) => {
    const r = await conn.call<{ agentId: string; state: string; template: string }>('async.createAgent', {
      sessionId,
      agentId: f.agentId ?? '',
      ...(f.template ? { template: f.template } : {}),
      autoStart: f.autoStart === 'on',
    });
    return `created ${r.agentId} (${r.template}), ${r.state}`;
  });
  return (
    <form data-testid="form-create-agent" onSubmit={onSubmit}>
      <Field label="agent id">
        <input name="agentId" required placeholder="analyzer" />
      </Field>
      <Field label="template">
        <select name="template">
          <option value="">the one named like the agent, else assistant</option>
          {templates.map((t) => (
            <option key={t.name} value={t.name} title={t.description}>
              {t.name}
            </option>
          ))}
        </select>
      </Field>
      <label class="check">
        <input type="checkbox" name="autoStart" defaultChecked /> start it now
      </label>
      <button type="submit">Create agent</button>
      <OutcomeLine outcome={outcome} />
    </form>
  );
}

function SendTask({ conn, sessionId, selected }: Props) {
  const { outcome, onSubmit } = useForm(async (f) => {
    const r = await conn.call<{ taskId: string; queueSize: number }>('async.sendTask', {
      sessionId,
      agentId: f.agentId ?? '',
      prompt: f.prompt ?? '',
      priority: f.priority ?? 'normal',
    });
    return `task ${r.taskId} queued (queue size ${r.queueSize})`;
  });
  return (
    <form data-testid="form-send-task" onSubmit={onSubmit}>
      <AgentField selected={selected} />
      <Field label="prompt">
        <textarea name="prompt" rows={3} placeholder="Analyze customer sentiment from feedback.csv" />
      </Field>
      <PriorityField />
      <button type="submit">Send task</button>
      <OutcomeLine outcome={outcome} />
    </form>
  );
}

function PriorityField() {
  return (
    <Field label="priority">
      <select name="priority">
        {['low', 'normal', 'high', 'urgent'].map((p) => (
          <option key={p} selected={p === 'normal'}>
            {p}
          </option>
        ))}
      </select>
    </Field>
  );
}

function SendMail({ conn, sessionId, selected }: Props) {
  const { outcome, onSubmit } = useForm(async (f) => {
    const r = await conn.call<{ messageId: string }>('async.sendMail', {
      sessionId,
      to: f.to ?? '',
      subject: f.subject ?? '',
      body: f.body ?? '',
      priority: f.priority ?? 'normal',
    });
    return `mail ${r.messageId} sent as user`;
  });
  return (
    <form data-testid="form-mail" onSubmit={onSubmit}>
      <AgentField selected={selected} name="to" />
      <Field label="subject">
        <input name="subject" placeholder="Question" />
      </Field>
      <Field label="body">
        <textarea name="body" rows={3} />
      </Field>
      <PriorityField />
      <button type="submit">Mail as user</button>
      <OutcomeLine outcome={outcome} />
    </form>
  );
}

function Lifecycle({ conn, sessionId, selected }: Props) {
  const { outcome, onSubmit } = useForm(async (f, action) => {
    const target = { sessionId, agentId: f.agentId ?? '' };
    switch (action) {
      case 'sleep': {
        const r = await conn.call<{ sleepingUntil: string | null; wakeEvents: string[] }>(
          'async.sleepAgent',
          {
            ...target,
            ...(f.durationSeconds ? { durationSeconds: Number(f.durationSeconds) } : {}),
            ...(f.wakeEvents ? { wakeEvents: list(f.wakeEvents) } : {}),
          },
        );
        const until = r.sleepingUntil ? `until ${r.sleepingUntil}` : 'until woken';
        return `${target.agentId} sleeping ${until}${r.wakeEvents.length ? `, wakes on ${r.wakeEvents.join(', ')}` : ''}`;
      }
      case 'wake': {
        const r = await conn.call<{ state: string; woke: boolean }>('async.wakeAgent', target);
        return r.woke
          ? `${target.agentId} woke (${r.state})`
          : `${target.agentId} was not asleep (${r.state})`;
      }
      case 'stop':
      case 'start': {
        const r = await conn.call<{ state: string }>(`async.${action}Agent`, target);
        return `${target.agentId} ${r.state}`;
      }
      default:
        throw new Error(`unknown action ${action}`);
    }
  });
  return (
    <form data-testid="form-lifecycle" onSubmit={onSubmit}>
      <AgentField selected={selected} />
      <Field label="sleep for (seconds, empty: until woken)">
        <input name="durationSeconds" type="number" min="1" step="1" />
      </Field>
      <Field label="wake on events (comma separated)">
        <input name="wakeEvents" placeholder="alert, hourly_check" />
      </Field>
      <div class="buttons">
        <button type="submit" value="sleep">
          Sleep
        </button>
        <button type="submit" value="wake">
          Wake
        </button>
        <button type="submit" value="stop" class="danger">
          Stop
        </button>
        <button type="submit" value="start">
          Start
        </button>
      </div>
      <OutcomeLine outcome={outcome} />
    </form>
  );
}

function Broadcast({ conn, sessionId }: Props) {
  const { outcome, onSubmit } = useForm(async (f) => {
    let data: unknown = {};
    if (f.data) {
      try {
        data = JSON.parse(f.data);
      } catch {
        throw new Error('data is not valid JSON');
      }
    }
    const r = await conn.call<{ event: string; delivered: string[]; woke: string[] }>(
      'async.broadcastEvent',
      {
        sessionId,
        event: f.event ?? '',
        data,
      },
    );
    const to = r.delivered.length ? r.delivered.join(', ') : 'nobody (no running agent listens to it)';
    return `${r.event} delivered to ${to}${r.woke.length ? `; woke ${r.woke.join(', ')}` : ''}`;
  });
  return (
    <form data-testid="form-broadcast" onSubmit={onSubmit}>
      <Field label="event">
        <input name="event" required placeholder="alert" />
      </Field>
      <Field label="data (JSON)">
        <textarea name="data" rows={2} placeholder='{"severity": "critical"}' />
      </Field>
      <button type="submit">Broadcast event</button>
      <OutcomeLine outcome={outcome} />
    </form>
  );
}

function Schedule({ conn, sessionId, selected }: Props) {
  const { outcome, onSubmit } = useForm(async (f) => {
    const r = await conn.call<{ scheduleId: string; nextRunAt: string }>('async.scheduleAgent', {
      sessionId,
      agentId: f.agentId ?? '',
      cron: f.cron ?? '',
      ...(f.prompt ? { prompt: f.prompt } : {}),
      ...(f.event ? { event: f.event } : {}),
    });
    return `schedule ${r.scheduleId}, next run ${r.nextRunAt}`;
  });
  return (
    <form data-testid="form-schedule" onSubmit={onSubmit}>
      <AgentField selected={selected} />
      <Field label="cron (5 fields, or 6 with seconds first; UTC)">
        <input name="cron" required placeholder="0 * * * *" />
      </Field>
      <Field label="prompt">
        <input name="prompt" placeholder="Check the error rate" />
      </Field>
      <Field label="or event">
        <input name="event" placeholder="hourly_check" />
      </Field>
      <button type="submit">Schedule</button>
      <OutcomeLine outcome={outcome} />
    </form>
  );
}
