import OpenAI from 'openai';

export interface RetryVerdict {
  retryable: boolean;
  /** What the server asked for (`retry-after-ms` / `retry-after`), when it did. */
  retryAfterMs?: number;
  message: string;
}

const RETRYABLE_STATUS = (status: number) =>
  status === 408 || status === 409 || status === 429 || status >= 500;

/** Whether a failed model call is worth another try, and when the server would like it. */
export function classify(err: unknown, now: number): RetryVerdict {
  if (err instanceof OpenAI.APIConnectionError) {
    return { retryable: true, message: `network error: ${err.message}` };
  }
  if (err instanceof OpenAI.APIError && typeof err.status === 'number') {
    return {
      retryable: RETRYABLE_STATUS(err.status),
      retryAfterMs: retryAfter(err.headers as Headers | undefined, now),
      message: err.message,
    };
  }
  // A socket lost mid-stream surfaces as undici's raw `TypeError: terminated`, which may come from
  // another realm (so not `instanceof Error`): recognise it by its message.
  const message = messageOf(err);
  if (/terminated|socket|ECONNRESET|fetch failed|other side closed/i.test(message)) {
    return { retryable: true, message: `network error: ${message}` };
  }
  return { retryable: false, message };
}

function messageOf(err: unknown): string {
  const m = (err as { message?: unknown } | null)?.message;
  return typeof m === 'string' ? m : String(err);
}

function retryAfter(headers: Headers | undefined, now: number): number | undefined {
  const ms = headers?.get('retry-after-ms');
  if (ms && Number.isFinite(Number(ms))) {
    return Math.max(0, Number(ms));
  }
  const value = headers?.get('retry-after');
  if (!value) {
    return undefined;
  }
  const seconds = Number(value);
  if (Number.isFinite(seconds)) {
    return Math.max(0, seconds * 1000);
  }
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/**
 * Exponential backoff with "equal jitter": half the window fixed, half random, so retries from many
 * agents spread out. A server's own `retry-after` wins (capped, so a hostile header cannot park an agent).
 */
export function backoffMs(
  attempt: number,
  policy: { baseMs: number; maxMs: number },
  retryAfterMs: number | undefined,
  random: () => number = Math.random,
): number {
  if (retryAfterMs !== undefined) {
    return Math.min(retryAfterMs, 10 * policy.maxMs);
  }
  const window = Math.min(policy.maxMs, policy.baseMs * 2 ** attempt);
  return Math.round(window / 2 + random() * (window / 2));
}
