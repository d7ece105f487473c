import { parseArgs } from 'node:util';
import { connect, type MailroomClient } from '../client';
import { MailroomError } from '../errors';
import type { Priority } from '../protocol/names';
import { PRIORITIES } from '../protocol/names';
import type { AnyPush } from '../protocol/pushes';
import { formatPush, formatStates, formatTemplates, palette, wantsColour, type Palette } from './format';

/** Exit codes scripts can rely on. */
export const EXIT = { ok: 0, errorReply: 1, usage: 2, connection: 3 } as const;

export const DEFAULT_URL = 'http://localhost:3000';

export const USAGE = `Usage: mailroom <command> [options]

Commands:
  tail <session>                         follow the session: its history, then every push as it happens
  send <session> <agent> <prompt>        send a task (--wait: wait for it and print its result)
  mail <session> <agent> <subject> <body>  mail an agent from "user"
  states <session>                       every agent's state, work and queue
  history <session>                      the session's history, one line per record
  templates                              the agent templates the server knows

Options:
  --url <url>        server (default $MAILROOM_URL or ${DEFAULT_URL})
  --token <token>    bearer token (default $MAILROOM_TOKEN)
  --json             print JSON instead of text (one object per line for tail and history)
  --after <seq>      tail, history: start after this seq (default 0)
  --priority <p>     send, mail: low | normal | high | urgent
  --wait             send: wait for the task to end; exit 1 when it failed
  -h, --help         this text

Exit codes: 0 ok, 1 the server answered with an error (or the awaited task failed),
2 usage error, 3 cannot connect or the connection dropped.`;

/** Where the CLI writes and what it reads: the process, or a test's stand-ins. */
export interface CliIo {
  out: (line: string) => void;
  err: (line: string) => void;
  env: Record<string, string | undefined>;
  isTTY: boolean;
  /** Ends `tail` (Ctrl-C in the process). */
  signal?: AbortSignal;
}

class UsageError extends Error {}

/** Runs one command line; resolves with the exit code. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  let parsed;
  try {
    parsed = parse(argv);
  } catch (err) {
    io.err(`mailroom: ${(err as Error).message}`);
    io.err('Run `mailroom --help` for usage.');
    return EXIT.usage;
  }
  if (parsed.help) {
    io.out(USAGE);
    return EXIT.ok;
  }
  const url = parsed.url ?? io.env.MAILROOM_URL ?? DEFAULT_URL;
  const token = parsed.token ?? io.env.MAILROOM_TOKEN;
  const c = palette(!parsed.json && wantsColour(io.isTTY, io.env));
  let client: MailroomClient | undefined;
  try {
    client = await connect(url, { token: token === '' ? undefined : token });
    return await run(client, parsed, io, c);
  } catch (err) {
    if (err instanceof MailroomError) {
      io.err(`mailroom: ${err.message}`);
      for (const issue of err.issues) {
        io.err(`  ${issue.path || '(params)'}: ${issue.message}`);
      }
      return err.isConnectionError || (err.reason === 'unauthorized' && !client)
        ? EXIT.connection
        : EXIT.errorReply;
    }
    throw err;
  } finally {
    client?.close();
  }
}

type Parsed = ReturnType<typeof parse>;

function parse(argv: string[]) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      url: { type: 'string' },
      token: { type: 'string' },
      json: { type: 'boolean', default: false },
      after: { type: 'string' },
      priority: { type: 'string' },
      wait: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const [command, ...args] = positionals;
  if (values.help) {
    return { ...values, command: 'help', args, after: 0, priority: undefined };
  }
  const arity: Record<string, number> = { tail: 1, send: 3, mail: 4, states: 1, history: 1, templates: 0 };
  if (command === undefined) {
    throw new UsageError('a command is required');
  }
  if (!(command in arity)) {
    throw new UsageError(`unknown command '${command}'`);
  }
  if (args.length !== arity[command]) {
    throw new UsageError(`${command} takes ${arity[command]} argument(s), got ${args.length}`);
  }
  const after = values.after === undefined ? 0 : Number(values.after);
  if (!Number.isInteger(after) || after < 0) {
    throw new UsageError('--after must be a whole number');
  }
  const priority = values.priority;
  if (priority !== undefined && !(PRIORITIES as readonly string[]).includes(priority)) {
    throw new UsageError(`--priority must be one of ${PRIORITIES.join(', ')}`);
  }
  return { ...values, command, args, after, priority: priority as Priority | undefined };
}

async function run(client: MailroomClient, p: Parsed, io: CliIo, c: Palette): Promise<number> {
  const [sessionId, ...rest] = p.args;
  /** The result as JSON with --json, else the text. */
  const show = (value: unknown, text: string, to = io.out) => to(p.json ? JSON.stringify(value) : text);
  switch (p.command) {
    case 'templates': {
      const { templates } = await client.call('templates.list', {});
      (p.json ? [JSON.stringify(templates)] : formatTemplates(templates, c)).forEach((l) => io.out(l));
      return EXIT.ok;
    }
    case 'states': {
      const { agents } = await client.call('async.getAgentStates', { sessionId });
      (p.json ? [JSON.stringify(agents)] : formatStates(agents, c)).forEach((l) => io.out(l));
      return EXIT.ok;
    }
    case 'history': {
      for (let after = p.after; ;) {
        const page = await client.call('async.getHistory', { sessionId, after, limit: 1000 });
        for (const e of page.events) {
          const push = {
            name: e.type,
            payload: { ...e.payload, sessionId, seq: e.seq, at: e.at },
          } as AnyPush;
          io.out(p.json ? JSON.stringify(push) : formatPush(push, c));
        }
        if (page.events.length < 1000) {
          return EXIT.ok;
        }
        after = page.nextAfter;
      }
    }
    case 'send': {
      const [agentId, prompt] = rest;
      const session = client.session(sessionId);
      if (p.wait) {
        await session.subscribe({ after: await lastSeq(client, sessionId) });
      }
      const sent = await session.call('async.sendTask', { agentId, prompt, priority: p.priority });
      if (!p.wait) {
        show(sent, sent.taskId);
        return EXIT.ok;
      }
      const outcome = await session.waitForTask(sent.taskId);
      if ('error' in outcome) {
        show(outcome, `${outcome.error.code}: ${outcome.error.message}`, p.json ? io.out : io.err);
        return EXIT.errorReply;
      }
      show(outcome, outcome.result.final);
      return EXIT.ok;
    }
    case 'mail': {
      const [to, subject, body] = rest;
      const sent = await client.call('async.sendMail', {
        sessionId,
        to,
        subject,
        body,
        priority: p.priority,
      });
      show(sent, sent.messageId);
      return EXIT.ok;
    }
    case 'tail':
      return tail(client, sessionId, p, io, c);
    default:
      throw new UsageError(`unknown command '${p.command}'`);
  }
}

/** Prints the history after `--after`, then each push as it comes, until the signal (Ctrl-C). */
async function tail(
  client: MailroomClient,
  sessionId: string,
  p: Parsed,
  io: CliIo,
  c: Palette,
): Promise<number> {
  const session = client.session(sessionId);
  session.onAny((push) => io.out(p.json ? JSON.stringify(push) : formatPush(push, c)));
  let dropped: MailroomError | undefined;
  client.onConnection((event) => {
    if (event.type === 'disconnected') {
      io.err(c.dim(`(connection lost: ${event.reason}; reconnecting)`));
    } else if (event.type === 'reconnected') {
      io.err(c.dim('(reconnected)'));
    } else if (event.error instanceof MailroomError && !event.error.isConnectionError) {
      dropped = event.error;
    }
  });
  await session.subscribe({ after: p.after });
  await new Promise<void>((resolve) => {
    if (io.signal?.aborted) {
      resolve();
    }
    io.signal?.addEventListener('abort', () => resolve(), { once: true });
  });
  if (dropped) {
    throw dropped;
  }
  return EXIT.ok;
}

/** The session's latest seq, so that `send --wait` follows from now rather than replaying everything. */
async function lastSeq(client: MailroomClient, sessionId: string): Promise<number> {
  let after = 0;
  for (;;) {
    const page = await client.call('async.getHistory', { sessionId, after, limit: 1000 });
    if (page.events.length < 1000) {
      return page.nextAfter;
    }
    after = page.nextAfter;
  }
}

/** The `mailroom` command of the package's `bin`. */
export function main(): void {
  const controller = new AbortController();
  process.once('SIGINT', () => controller.abort());
  process.once('SIGTERM', () => controller.abort());
  runCli(process.argv.slice(2), {
    out: (line) => process.stdout.write(`${line}\n`),
    err: (line) => process.stderr.write(`${line}\n`),
    env: process.env,
    isTTY: Boolean(process.stdout.isTTY),
    signal: controller.signal,
  }).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`mailroom: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
