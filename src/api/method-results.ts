import { z } from 'zod';
import { PRIORITIES } from 'src/common/names';

/**
 * The result of each method the REST API exposes, as the OpenAPI document describes it. Objects are
 * loose: a documented field is always there with its type, and a field added later breaks no client.
 */
const obj = <T extends z.ZodRawShape>(shape: T) => z.looseObject(shape);
const timestamp = z.string().describe('ISO 8601 UTC');
const nullableTimestamp = timestamp.nullable();
const agentState = z.enum(['idle', 'active', 'waiting', 'sleeping', 'stopped']);
const workKind = z.enum(['task', 'mailbox_message', 'event', 'schedule']);
const workState = z.enum(['queued', 'running', 'done', 'failed', 'cancelled']);
const priority = z.enum(PRIORITIES);

const agentSnapshot = obj({
  state: agentState,
  current_task: workKind.nullable(),
  queue_size: z.number().int(),
  sleeping_until: nullableTimestamp,
  wake_events: z.array(z.string()),
  error_count: z.number().int(),
  last_error: z.string().nullable(),
  last_active_at: nullableTimestamp,
  template: z.string(),
  tokens_used: z.number().int(),
});

const mail = obj({
  messageId: z.string(),
  sessionId: z.string(),
  from: z.string(),
  to: z.string(),
  subject: z.string(),
  body: z.string(),
  priority,
  status: z.enum(['unread', 'read', 'replied', 'archived']),
  replyTo: z.string().nullable(),
  threadId: z.string(),
  createdAt: timestamp,
  readAt: nullableTimestamp,
});

const schedule = obj({
  scheduleId: z.string(),
  agentId: z.string(),
  cron: z.string(),
  timezone: z.string(),
  prompt: z.string().nullable(),
  event: z.string().nullable(),
  nextRunAt: timestamp,
});

export const METHOD_RESULTS: Record<string, z.ZodType> = {
  'session.start': obj({ sessionId: z.string(), createdAt: timestamp }),
  'session.list': obj({
    sessions: z.array(
      obj({
        sessionId: z.string(),
        createdAt: timestamp,
        agentCount: z.number().int(),
        tokensUsed: z.number(),
      }),
    ),
  }),
  'session.stop': obj({ sessionId: z.string(), stopped: z.literal(true) }),
  'async.getHistory': obj({
    events: z.array(
      obj({
        seq: z.number().int(),
        at: timestamp,
        type: z.string(),
        payload: z.record(z.string(), z.unknown()),
      }),
    ),
    nextAfter: z.number().int(),
  }),
  'async.createAgent': obj({ agentId: z.string(), state: agentState, template: z.string() }),
  'async.startAgent': obj({ agentId: z.string(), state: agentState }),
  'async.stopAgent': obj({ agentId: z.string(), state: z.literal('stopped') }),
  'async.sleepAgent': obj({
    agentId: z.string(),
    state: agentState,
    sleepingUntil: nullableTimestamp,
    wakeEvents: z.array(z.string()),
  }),
  'async.wakeAgent': obj({ agentId: z.string(), state: agentState, woke: z.boolean() }),
  'async.getAgentStates': obj({ agents: z.record(z.string(), agentSnapshot) }),
  'async.sendTask': obj({ taskId: z.string(), queued: z.literal(true), queueSize: z.number().int() }),
  'async.getTask': obj({
    taskId: z.string(),
    agentId: z.string(),
    kind: workKind,
    state: workState,
    prompt: z.string(),
    priority,
    output: z.string().optional(),
    result: obj({ final: z.string() }).optional(),
    error: obj({ code: z.string(), message: z.string() }).optional(),
    createdAt: timestamp,
    startedAt: timestamp.optional(),
    finishedAt: timestamp.optional(),
    usage: obj({ promptTokens: z.number(), completionTokens: z.number() }).optional(),
  }),
  'async.cancelTask': obj({ taskId: z.string(), state: workState }),
  'async.sendMail': obj({ messageId: z.string() }),
  'async.listMail': obj({ messages: z.array(mail), nextBefore: z.number().int().nullable() }),
  'async.broadcastEvent': obj({
    event: z.string(),
    delivered: z.array(z.string()),
    woke: z.array(z.string()),
  }),
  'async.scheduleAgent': obj({ scheduleId: z.string(), nextRunAt: timestamp }),
  'async.unschedule': obj({ scheduleId: z.string(), removed: z.literal(true) }),
  'async.listSchedules': obj({ schedules: z.array(schedule) }),
  'templates.list': obj({
    templates: z.array(
      obj({ name: z.string(), description: z.string(), tools: z.array(z.string()), model: z.string() }),
    ),
  }),
};
