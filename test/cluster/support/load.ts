import { Reply, TestClient } from '../../support/client';
import { newSessionId } from '../../factories/ids';
import { Cluster, ClusterNode } from './cluster';

export const AGENT = 'worker';

/**
 * Every task does one visible thing (mail to the user, the "effect", subject = the task's prompt)
 * after `delayMs`, then answers: with a short delay, tasks are in flight when a fault strikes.
 */
export function workScript(delayMs: number) {
  return [
    {
      when: {},
      do: [
        {
          tool: 'send_mail',
          args: { to: 'user', subject: '{{prompt}}', body: 'effect of {{prompt}}' },
          delayMs,
        },
        { reply: 'done {{prompt}}' },
      ],
    },
  ];
}

export interface Ack {
  taskId: string;
  sessionId: string;
  prompt: string;
  via: string;
}

/** A reply, or undefined when none came within `ms` (a dead or paused node never answers). */
export function callWithin(client: TestClient, method: string, params: unknown, ms: number) {
  return new Promise<Reply | undefined>((resolve) => {
    const timer = setTimeout(() => resolve(undefined), ms);
    void client.call(method, params).then((reply) => {
      clearTimeout(timer);
      resolve(reply);
    });
  });
}

/**
 * A steady stream of scripted tasks into a few sessions, each sent through the next live node in
 * turn (any node serves any request). Every acknowledgement is kept: those are the tasks that must
 * not be lost. A call that got no answer is counted, not retried: its task may or may not exist.
 */
export class Load {
  readonly acked: Ack[] = [];
  refused = 0;
  unanswered = 0;
  private sent = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly inFlight = new Set<Promise<void>>();

  private constructor(
    private readonly cluster: Cluster,
    readonly sessions: string[],
  ) {}

  /** `sessions` sessions of one scripted agent each, created through the first node, watched from every node. */
  static async setUp(cluster: Cluster, opts: { sessions?: number; delayMs?: number } = {}): Promise<Load> {
    const { client } = cluster.live()[0];
    const sessions: string[] = [];
    for (let i = 0; i < (opts.sessions ?? 6); i++) {
      const sessionId = newSessionId('fault');
      await client.ok('session.start', { sessionId });
      await client.ok('async.createAgent', {
        sessionId,
        agentId: AGENT,
        template: 'assistant',
        config: { script: workScript(opts.delayMs ?? 150) },
      });
      sessions.push(sessionId);
    }
    const load = new Load(cluster, sessions);
    for (const node of cluster.live()) {
      await load.watchFrom(node);
    }
    return load;
  }

  /** Subscribes a node's client to every session (a node that boots later is watched from then on). */
  async watchFrom(node: ClusterNode): Promise<void> {
    for (const sessionId of this.sessions) {
      await node.client.ok('session.subscribe', { sessionId });
    }
  }

  /** Sends one task every `intervalMs` until {@link stop}. */
  start(intervalMs = 80): void {
    this.timer = setInterval(() => this.sendOne(), intervalMs);
  }

  /** Stops sending and waits for the calls still out (a paused node's calls end at their time limit). */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await Promise.all([...this.inFlight]);
  }

  /** The acknowledged tasks, by id. */
  ackedIds(): string[] {
    return this.acked.map((a) => a.taskId);
  }

  private sendOne(): void {
    const nodes = this.cluster.live().filter((n) => n.client.socket.connected);
    if (nodes.length === 0) {
      return;
    }
    const n = this.sent++;
    const node = nodes[n % nodes.length];
    const sessionId = this.sessions[n % this.sessions.length];
    const prompt = `task-${n}`;
    const call = callWithin(node.client, 'async.sendTask', { sessionId, agentId: AGENT, prompt }, 5_000).then(
      (reply) => {
        if (!reply) {
          this.unanswered += 1;
        } else if ('error' in reply) {
          this.refused += 1;
        } else {
          this.acked.push({ taskId: reply.result.taskId, sessionId, prompt, via: node.name });
        }
      },
    );
    this.inFlight.add(call);
    void call.finally(() => this.inFlight.delete(call));
  }
}
