import { z } from 'zod';
import { agentConfigOverridesSchema } from './agent-config';
import { eventNameSchema, idSchema, MAIL_STATUSES, prioritySchema } from './names';

const obj = <T extends z.ZodRawShape>(shape: T) => z.object(shape).strict();
const session = { sessionId: idSchema };
const agent = { sessionId: idSchema, agentId: idSchema };
const taskId = z.string().min(1).max(100);
const ONE_YEAR_SECONDS = 31_536_000;
/** history.seq is a Postgres `integer`; a larger cursor would fail in the database instead of here. */
const MAX_SEQ = 2_147_483_647;

/**
 * The params schema of every method, by name: the server validates each request with these, and
 * the client's types are inferred from them (`MethodParams` is what a caller may send, defaults
 * optional; `ParsedParams` is what the server's handler receives).
 */
export const METHOD_PARAMS = {
  'session.start': obj({
    sessionId: idSchema.optional(),
    metadata: z.record(z.string(), z.unknown()).optional(),
    limits: obj({ maxTokens: z.number().int().positive().optional() }).optional(),
  }),
  'session.subscribe': obj(session),
  'session.list': obj({}),
  'session.stop': obj(session),
  // The seed project's own pair (its clients open and close sessions this way).
  startSession: obj({
    userId: z.string().min(1).max(200).optional(),
    sessionParams: z.record(z.string(), z.unknown()).optional(),
  }),
  stopSession: obj(session),

  'async.createAgent': obj({
    ...agent,
    template: idSchema.optional(),
    autoStart: z.boolean().default(true),
    config: agentConfigOverridesSchema.optional(),
  }),
  'async.startAgent': obj(agent),
  'async.stopAgent': obj(agent),
  'async.sleepAgent': obj({
    ...agent,
    durationSeconds: z.number().positive().max(ONE_YEAR_SECONDS).optional(),
    wakeEvents: z.array(eventNameSchema).max(100).optional(),
  }),
  'async.wakeAgent': obj({ ...agent, reason: z.string().max(1000).optional() }),
  'async.sendTask': obj({
    ...agent,
    prompt: z.string().min(1),
    priority: prioritySchema.default('normal'),
    idempotencyKey: z.string().min(1).max(200).optional(),
  }),
  'async.getAgentStates': obj(session),
  'async.broadcastEvent': obj({ ...session, event: eventNameSchema, data: z.unknown().default({}) }),

  'async.getTask': obj({ ...session, taskId }),
  'async.cancelTask': obj({ ...session, taskId }),
  'async.sendMail': obj({
    ...session,
    to: idSchema,
    subject: z.string().max(1000),
    body: z.string(),
    priority: prioritySchema.default('normal'),
    // null as absent: what Mail.replyTo holds for mail that answers nothing.
    replyTo: z
      .string()
      .min(1)
      .max(100)
      .nullish()
      .transform((v) => v ?? undefined),
  }),
  'async.listMail': obj({
    ...session,
    agentId: z.union([idSchema, z.literal('user')]).optional(),
    status: z.enum(MAIL_STATUSES).optional(),
    limit: z.number().int().min(1).max(500).default(50),
    // null as absent: the `nextBefore` of the last page, handed back as it came.
    before: z
      .number()
      .int()
      .positive()
      .nullish()
      .transform((v) => v ?? undefined),
  }),
  'async.getHistory': obj({
    ...session,
    after: z.number().int().min(0).max(MAX_SEQ).default(0),
    limit: z.number().int().min(1).max(1000).default(500),
  }),
  'async.scheduleAgent': obj({
    ...agent,
    cron: z.string().min(1).max(200),
    prompt: z.string().min(1).optional(),
    event: eventNameSchema.optional(),
    timezone: z.string().min(1).max(100).default('UTC'),
  }),
  'async.unschedule': obj({ ...session, scheduleId: z.string().min(1).max(100) }),
  'async.listSchedules': obj(session),
  'templates.list': obj({}),
};

export type MethodName = keyof typeof METHOD_PARAMS;
/** What a caller sends: fields with a default are optional. */
export type MethodParams<M extends MethodName> = z.input<(typeof METHOD_PARAMS)[M]>;
/** What the server's handler receives once the params are validated (defaults filled in). */
export type ParsedParams<M extends MethodName> = z.output<(typeof METHOD_PARAMS)[M]>;

export const METHOD_NAMES = Object.keys(METHOD_PARAMS) as MethodName[];
