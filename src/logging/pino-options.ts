import type { IncomingMessage, ServerResponse } from 'node:http';
import { DestinationStream, LevelWithSilent, destination, stdTimeFunctions } from 'pino';
import type { Options } from 'pino-http';
import pretty from 'pino-pretty';
import { AppConfig } from 'src/config/app-config';

/** LOG_LEVEL keeps Nest's names; pino's levels under them (`log` is pino's `info`, `verbose` its `trace`). */
export const PINO_LEVEL: Record<AppConfig['logLevel'], LevelWithSilent> = {
  error: 'error',
  warn: 'warn',
  log: 'info',
  debug: 'debug',
  verbose: 'trace',
};

/**
 * pino (through pino-http) for the whole app: one JSON object a line, or pino-pretty's lines on a
 * terminal. HTTP requests are logged at debug with their path only: a `?token=` in a
 * query string never reaches a log, nor does any header. Credentials under the usual names are
 * redacted wherever a log call would carry them.
 */
export function pinoHttpOptions(config: AppConfig): [Options, DestinationStream] {
  const options: Options = {
    level: PINO_LEVEL[config.logLevel],
    timestamp: stdTimeFunctions.isoTime,
    redact: {
      paths: ['authorization', 'token', 'apiKey', '*.authorization', '*.token', '*.apiKey'],
      censor: '[redacted]',
    },
    serializers: {
      req: (req: IncomingMessage & { id?: unknown }) => ({
        id: req.id,
        method: req.method,
        path: pathOf(req),
      }),
      res: (res: ServerResponse) => ({ statusCode: res.statusCode }),
    },
    // A failing request is logged where it fails (Nest's exception handler); a 503 from /health is an answer.
    customLogLevel: () => 'debug',
    customSuccessMessage: (req, res, ms) =>
      `${req.method} ${pathOf(req)} ${res.statusCode} in ${Math.round(ms)} ms`,
    customErrorMessage: (req, res) => `${req.method} ${pathOf(req)} ${res.statusCode} failed`,
    // `"level":"info"` rather than 30 for collectors; pino-pretty reads the numbers.
    ...(config.logFormat === 'json' ? { formatters: { level: (label: string) => ({ level: label }) } } : {}),
  };
  const stream =
    config.logFormat === 'pretty'
      ? pretty({
          colorize: true,
          translateTime: 'SYS:HH:MM:ss.l',
          ignore: 'pid,hostname,context,req,res,responseTime',
          // The message says it for people; the fields are for machines (LOG_FORMAT=json).
          hideObject: true,
          messageFormat: '{if context}[{context}] {end}{msg}',
        })
      : destination({ dest: 1, sync: true });
  return [options, stream];
}

/** The request's path without its query string (where a `?token=` may be). */
function pathOf(req: IncomingMessage): string {
  return (req.url ?? '').split('?')[0];
}
