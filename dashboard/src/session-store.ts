import { agentsFromSnapshot, applyToAgents, type AgentMap } from './agents-model';
import { describeError, type Connection, type SessionPush } from './connection';
import type { AgentStateSnapshot, HistoryRecord } from './protocol';
import { Timeline } from './timeline-model';

const HISTORY_PAGE = 500;
/** Queue sizes and sleep deadlines are not in the pushes: a fresh snapshot corrects them this often at most. */
const SNAPSHOT_EVERY_MS = 1000;

/**
 * One session as the page follows it: the agents (a snapshot moved on by pushes), the whole
 * history from seq 1 (for the timeline and replay), and the text tasks stream. Listeners are told
 * at most once a frame, so a burst of a thousand pushes costs one render.
 */
export class SessionStore {
  agents: AgentMap = new Map();
  readonly timeline = new Timeline();
  /** Every history record, in seq order, for replay. */
  readonly records: HistoryRecord[] = [];
  /** Streamed text per task: pushed while the page was open, or read from the history where it is kept. */
  readonly outputs = new Map<string, string[]>();
  private readonly outputKeys = new Map<string, Set<number>>();
  agentsLoaded = false;
  historyLoaded = false;
  error: string | null = null;
  /**
   * The server's clock minus this page's, from the latest push (its `at` is the server's time),
   * so that countdowns and running waits agree with the server even when the clocks differ.
   */
  clockOffset = 0;
  /** Moves on with every change; components compare it to know they must draw again. */
  version = 0;

  private listeners = new Set<() => void>();
  private pendingHistory: HistoryRecord[] | null = [];
  private sinceSnapshot: HistoryRecord[] | null = null;
  private snapshotTimer: ReturnType<typeof setTimeout> | null = null;
  private snapshotStale = false;
  private frame: number | null = null;
  private closed = false;
  private readonly unsubscribe: () => void;

  constructor(
    readonly conn: Connection,
    readonly sessionId: string,
  ) {
    this.unsubscribe = conn.onPush((push) => this.onPush(push));
  }

  async open(): Promise<void> {
    try {
      await this.conn.call('session.subscribe', { sessionId: this.sessionId });
      await this.refreshAgents();
      this.agentsLoaded = true;
      this.changed();
      await this.loadHistory();
    } catch (err) {
      this.error = describeError(err);
      this.changed();
    }
  }

  close(): void {
    this.closed = true;
    this.unsubscribe();
    if (this.snapshotTimer) {
      clearTimeout(this.snapshotTimer);
    }
    if (this.frame !== null) {
      cancelAnimationFrame(this.frame);
    }
    this.listeners.clear();
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private async refreshAgents(): Promise<void> {
    this.sinceSnapshot = [];
    const { agents } = await this.conn.call<{ agents: Record<string, AgentStateSnapshot> }>(
      'async.getAgentStates',
      { sessionId: this.sessionId },
    );
    const fresh = agentsFromSnapshot(agents, this.agents);
    // A state change pushed while the snapshot was on its way may be newer than the snapshot.
    for (const record of this.sinceSnapshot) {
      if (record.type === 'async.agent.stateChanged' && fresh.has(String(record.payload.agentId))) {
        applyToAgents(fresh, record);
      }
    }
    this.sinceSnapshot = null;
    this.agents = fresh;
  }

  private async loadHistory(): Promise<void> {
    let after = 0;
    for (;;) {
      const page = await this.conn.call<{ events: HistoryRecord[]; nextAfter: number | null }>(
        'async.getHistory',
        { sessionId: this.sessionId, after, limit: HISTORY_PAGE },
      );
      if (this.closed) {
        return;
      }
      page.events.forEach((r) => this.addRecord(r));
      this.changed();
      if (page.events.length < HISTORY_PAGE || page.nextAfter === null) {
        break;
      }
      after = page.nextAfter;
    }
    const pending = this.pendingHistory ?? [];
    this.pendingHistory = null;
    pending.sort((a, b) => a.seq - b.seq).forEach((r) => this.addRecord(r));
    this.historyLoaded = true;
    this.changed();
  }

  private addRecord(record: HistoryRecord): void {
    if (record.type === 'async.task.output') {
      this.addOutput(record);
    } else if (this.timeline.add(record)) {
      this.records.push(record);
    }
  }

  /** A piece of streamed text, once: by its `index` within the task, or its `seq` when it has none. */
  private addOutput(record: HistoryRecord): void {
    const taskId = String(record.payload.taskId);
    const key = typeof record.payload.index === 'number' ? record.payload.index : record.seq;
    const keys = this.outputKeys.get(taskId) ?? new Set<number>();
    if (keys.has(key)) {
      return;
    }
    keys.add(key);
    this.outputKeys.set(taskId, keys);
    const parts = this.outputs.get(taskId) ?? [];
    const delta = record.payload.delta;
    parts.push(typeof delta === 'string' ? delta : '');
    this.outputs.set(taskId, parts);
  }

  private onPush(push: SessionPush): void {
    if (push.sessionId !== this.sessionId || this.closed) {
      return;
    }
    const record: HistoryRecord = { seq: push.seq, at: push.at, type: push.type, payload: push.payload };
    const at = Date.parse(push.at);
    if (!Number.isNaN(at)) {
      this.clockOffset = at - Date.now();
    }
    if (push.type === 'async.task.output') {
      this.addOutput(record);
      this.changed();
      return;
    }
    applyToAgents(this.agents, record);
    this.sinceSnapshot?.push(record);
    if (this.pendingHistory) {
      this.pendingHistory.push(record);
    } else {
      this.addRecord(record);
    }
    this.refreshSoon();
    this.changed();
  }

  private refreshSoon(): void {
    if (this.snapshotTimer || !this.agentsLoaded) {
      this.snapshotStale = this.agentsLoaded;
      return;
    }
    this.snapshotStale = false;
    this.snapshotTimer = setTimeout(() => {
      this.refreshAgents()
        .then(() => this.changed())
        .catch((err: unknown) => {
          this.error = describeError(err);
          this.changed();
        })
        .finally(() => {
          this.snapshotTimer = null;
          if (this.snapshotStale && !this.closed) {
            this.refreshSoon();
          }
        });
    }, SNAPSHOT_EVERY_MS);
  }

  private changed(): void {
    this.version += 1;
    if (this.frame === null && !this.closed) {
      this.frame = requestAnimationFrame(() => {
        this.frame = null;
        this.listeners.forEach((l) => l());
      });
    }
  }
}
