import { z } from 'zod';

/**
 * The one environment schema. Everything the service can be told from outside is here, validated
 * at boot; nothing else in `src/` reads `process.env`.
 */
const intFromEnv = (fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER) =>
  z.coerce.number().int().min(min).max(max).default(fallback);

const envSchema = z.object({
  PORT: intFromEnv(3000, 0, 65535),
  HOST: z.string().min(1).optional(),
  API_TOKENS: z
    .string()
    .optional()
    .transform((v) =>
      (v ?? '')
        .split(',')
        .map((t) => t.trim())
        .filter(Boolean),
    ),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL')
    .optional()
    .or(z.literal('').transform(() => undefined)),
  DATA_DIR: z.string().min(1).default('./data'),
  MODEL_PROVIDER: z.enum(['scripted', 'openai']).optional(),
  OPENAI_API_KEY: z
    .string()
    .optional()
    .transform((v) => v || undefined),
  OPENAI_BASE_URL: z.string().url().optional(),
  OPENAI_MODEL: z.string().min(1).default('gpt-4o-mini'),
  LLM_CONCURRENCY: intFromEnv(8, 1, 1024),
  LLM_MAX_RETRIES: intFromEnv(4, 0, 20),
  LLM_RETRY_BASE_MS: intFromEnv(500, 1),
  LLM_RETRY_MAX_MS: intFromEnv(30_000, 1),
  LLM_TIMEOUT_MS: intFromEnv(120_000, 100),
  TEMPLATES_DIR: z.string().min(1).default('./templates'),
  LOG_LEVEL: z.enum(['error', 'warn', 'log', 'debug', 'verbose']).default('log'),
  LOG_FORMAT: z.enum(['auto', 'json', 'pretty']).default('auto'),
  OTEL_EXPORTER_OTLP_ENDPOINT: z
    .string()
    .url()
    .optional()
    .or(z.literal('').transform(() => undefined)),
  OTEL_SERVICE_NAME: z.string().min(1).default('mailroom'),
  MAX_PARAMS_BYTES: intFromEnv(256 * 1024, 1024),
  MAX_QUEUE_SIZE: intFromEnv(10_000, 1),
  POLL_INTERVAL_MS: intFromEnv(5_000, 50),
  MAX_ATTEMPTS: intFromEnv(3, 1, 100),
  CONVERSATION_WINDOW: intFromEnv(40, 2, 10_000),
  CONVERSATION_WINDOW_TOKENS: z.coerce.number().int().min(100).optional(),
  MCP_TOOL_TIMEOUT_MS: intFromEnv(60_000, 100),
  MCP_RESULT_MAX_BYTES: intFromEnv(100_000, 1024, 16 * 1024 * 1024),
  LEASE_TTL_MS: intFromEnv(10_000, 500, 600_000),
  SHUTDOWN_GRACE_MS: intFromEnv(0, 0, 600_000),
  COMMIT_BATCH_MAX: intFromEnv(64, 1, 10_000),
  COMMIT_PENDING_MAX: intFromEnv(10_000, 1, 1_000_000),
  COMMIT_LANES: intFromEnv(2, 1, 64),
  NODE_ID: z
    .string()
    .regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'must be 1-64 chars of [A-Za-z0-9_.:-]')
    .optional(),
});

export type Env = z.input<typeof envSchema>;

export interface AppConfig {
  port: number;
  /** 127.0.0.1 unless tokens are set: an open server only listens on loopback. */
  host: string;
  /** Bearer tokens; empty means no authentication. */
  apiTokens: string[];
  /** Postgres server URL; undefined means the embedded PGlite database in `dataDir`. */
  databaseUrl: string | undefined;
  dataDir: string;
  modelProvider: 'scripted' | 'openai';
  openai: { apiKey: string | undefined; baseUrl: string | undefined; model: string };
  llmConcurrency: number;
  /** Model calls: retries after a 429, a 5xx, a network error or a timeout, with exponential backoff and jitter. */
  llmRetry: { maxRetries: number; baseMs: number; maxMs: number };
  /** A model call that sends nothing for this long is abandoned (and retried). */
  llmTimeoutMs: number;
  templatesDir: string;
  logLevel: 'error' | 'warn' | 'log' | 'debug' | 'verbose';
  /** `json`: one JSON object a line (for collectors); `pretty`: for people. `LOG_FORMAT=auto` picks pretty on a terminal. */
  logFormat: 'json' | 'pretty';
  /** OpenTelemetry: spans go over OTLP/HTTP to `endpoint` when it is set; without it no tracing SDK is started. */
  otel: { endpoint: string | undefined; serviceName: string };
  maxParamsBytes: number;
  maxQueueSize: number;
  /** Backstop poll: a lost wake-up signal delays work by at most this long, never loses it. */
  pollIntervalMs: number;
  /** How many times a work item interrupted by a crash is tried before it is marked failed. */
  maxAttempts: number;
  /** How many past conversation messages an agent's model sees besides the system prompt. */
  conversationWindow: number;
  /** When set, the window is also trimmed (oldest turns first) to about this many tokens. */
  conversationWindowTokens: number | undefined;
  /**
   * MCP tool servers: a call (or a server's start) that takes longer than `toolTimeoutMs` is a tool
   * error; a result's text longer than `resultMaxBytes` (UTF-8) is cut there, with a marker.
   */
  mcp: { toolTimeoutMs: number; resultMaxBytes: number };
  /** Several servers: how long a node's ownership of a session lasts without renewal (renewed every third of it). */
  leaseTtlMs: number;
  /** On shutdown, how long items in hand may run to their end before they are abandoned (and retried elsewhere). */
  shutdownGraceMs: number;
  /** This process's name among the nodes; a random one when unset. */
  nodeId: string | undefined;
  /**
   * Group commit: sessions are spread over `lanes` (one on the embedded database); at most
   * `maxBatch` writes of a lane share a transaction, and when `maxPending` more already wait for it
   * (the database is behind), a new one is refused with `unavailable`.
   */
  commit: { maxBatch: number; maxPending: number; lanes: number };
}

export class ConfigError extends Error {}

/** Validates an environment (normally `process.env`) into the typed config, or throws one clear message. */
export function loadConfig(
  env: Record<string, string | undefined>,
  terminal: { stdoutIsTTY?: boolean } = {},
): AppConfig {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  // A configured API key means a real model is wanted; without one, the offline scripted model.
  const modelProvider = e.MODEL_PROVIDER ?? (e.OPENAI_API_KEY ? 'openai' : 'scripted');
  return {
    port: e.PORT,
    host: e.HOST ?? (e.API_TOKENS.length > 0 ? '0.0.0.0' : '127.0.0.1'),
    apiTokens: e.API_TOKENS,
    databaseUrl: e.DATABASE_URL,
    dataDir: e.DATA_DIR,
    modelProvider,
    openai: { apiKey: e.OPENAI_API_KEY, baseUrl: e.OPENAI_BASE_URL, model: e.OPENAI_MODEL },
    llmConcurrency: e.LLM_CONCURRENCY,
    llmRetry: { maxRetries: e.LLM_MAX_RETRIES, baseMs: e.LLM_RETRY_BASE_MS, maxMs: e.LLM_RETRY_MAX_MS },
    llmTimeoutMs: e.LLM_TIMEOUT_MS,
    templatesDir: e.TEMPLATES_DIR,
    logLevel: e.LOG_LEVEL,
    logFormat: e.LOG_FORMAT === 'auto' ? (terminal.stdoutIsTTY ? 'pretty' : 'json') : e.LOG_FORMAT,
    otel: { endpoint: e.OTEL_EXPORTER_OTLP_ENDPOINT, serviceName: e.OTEL_SERVICE_NAME },
    maxParamsBytes: e.MAX_PARAMS_BYTES,
    maxQueueSize: e.MAX_QUEUE_SIZE,
    pollIntervalMs: e.POLL_INTERVAL_MS,
    maxAttempts: e.MAX_ATTEMPTS,
    conversationWindow: e.CONVERSATION_WINDOW,
    conversationWindowTokens: e.CONVERSATION_WINDOW_TOKENS,
    mcp: { toolTimeoutMs: e.MCP_TOOL_TIMEOUT_MS, resultMaxBytes: e.MCP_RESULT_MAX_BYTES },
    leaseTtlMs: e.LEASE_TTL_MS,
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    nodeId: e.NODE_ID,
    commit: { maxBatch: e.COMMIT_BATCH_MAX, maxPending: e.COMMIT_PENDING_MAX, lanes: e.COMMIT_LANES },
  };
}

/** The process environment, read here and only here. */
export function configFromProcessEnv(): AppConfig {
  return loadConfig(process.env, { stdoutIsTTY: process.stdout.isTTY === true });
}
