// `npm run bench`: Mailroom and its peers (LangGraph.js with its Postgres checkpointer and its
// MemorySaver, @openai/agents in memory) on the same shapes in the same run, with a zero-latency model.
// Postgres rows use BENCH_DATABASE_URL (default: the local server's `test` database) when it answers.
// Figures are printed and written to BENCHMARKS.md with the machine and the date.
import 'reflect-metadata';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, platform, release, totalmem } from 'node:os';
import { instrumentDrivers } from './cost';
import { measureMailroom, MailroomResult } from './mailroom';
import { langGraphPeer } from './peers/langgraph';
import { openAiAgentsPeer } from './peers/openai-agents';
import { measurePeer, RuntimeResult, SEQUENTIAL, SHAPES } from './peers/shapes';
import { profiled } from './profile';
import { measureScale, scaleOptionsFromEnv, scaleTable } from './scale';
import { measureWakeups, wakeupsTable } from './wakeups';
import { freshDatabase } from './support/databases';

const DEFAULT_SERVER = 'postgres://postgres@127.0.0.1:5432/test';

/** Drops the databases the run made, once it is over. */
const drops: Array<() => Promise<void>> = [];

/** A fresh database on the server, or undefined (and a line saying so) when the server is not usable. */
async function freshOrNone(server: string, name: string): Promise<string | undefined> {
  try {
    const fresh = await freshDatabase(server, name);
    drops.push(fresh.drop);
    return fresh.url;
  } catch (err) {
    console.error(`Postgres at ${server} is not usable (${String(err)}): its rows are left out.`);
    return undefined;
  }
}

const f1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : '–');
const f0 = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–');

function table(results: RuntimeResult[]): string[] {
  const lines = [
    `| runtime | durable | ${SHAPES.map((s) => `${s.agents} × ${s.perAgent} units/s`).join(' | ')} | one at a time p50 / p99 ms | per unit at ${SHAPES[0].agents} × ${SHAPES[0].perAgent}: SQL statements, commits, Node CPU ms, Postgres CPU ms |`,
    `|---|---|${SHAPES.map(() => '---|').join('')}---|---|`,
  ];
  for (const r of results) {
    const c = r.shapes[0].cost;
    lines.push(
      `| ${r.runtime} | ${r.durable ? 'yes' : 'no'} | ${r.shapes.map((s) => f0(s.unitsPerSecond)).join(' | ')} | ${f1(r.latencyP50)} / ${f1(r.latencyP99)} | ${f1(c.statements)}, ${f1(c.commits)}, ${c.nodeCpuMs.toFixed(2)}, ${c.postgresCpuMs.toFixed(2)} |`,
    );
  }
  return lines;
}

function ratios(mailroom: RuntimeResult | undefined, peers: RuntimeResult[]): string[] {
  if (!mailroom) {
    return [];
  }
  return peers.map(
    (p) =>
      `- ${mailroom.runtime} ÷ ${p.runtime}: ${mailroom.shapes
        .map(
          (s, i) =>
            `${(s.unitsPerSecond / p.shapes[i].unitsPerSecond).toFixed(2)}× at ${s.agents} × ${s.perAgent}`,
        )
        .join(', ')}`,
  );
}

async function main(): Promise<void> {
  instrumentDrivers();
  const server = process.env.BENCH_DATABASE_URL ?? DEFAULT_SERVER;
  const mailroom: MailroomResult[] = [];
  let profile: string[] = [];

  mailroom.push(await measureMailroom('Mailroom, embedded PGlite, 1 session', undefined, false));
  const pgMailroom = await freshOrNone(server, `mailroom_bench_${process.pid}`);
  if (pgMailroom) {
    mailroom.push(await measureMailroom('Mailroom, Postgres, 1 session', pgMailroom, false));
    const pgSpread = await freshOrNone(server, `mailroom_bench_spread_${process.pid}`);
    mailroom.push(await measureMailroom('Mailroom, Postgres, 1 session per agent', pgSpread, true));
    // Profiled in a run of its own: the sampling profiler slows what it watches (one-at-a-time
    // latency about doubled under it), so no figure in the table comes from a profiled run.
    const pgProfiled = await freshOrNone(server, `mailroom_bench_profiled_${process.pid}`);
    if (pgProfiled) {
      ({ top: profile } = await profiled('bench/mailroom-postgres.cpuprofile', () =>
        measureMailroom('Mailroom, Postgres, 1 session (profiled)', pgProfiled, false),
      ));
    }
  }

  const peers: RuntimeResult[] = [];
  const pgLangGraph = await freshOrNone(server, `langgraph_bench_${process.pid}`);
  if (pgLangGraph) {
    peers.push(await measurePeer(await langGraphPeer(pgLangGraph)));
  }
  peers.push(await measurePeer(await langGraphPeer()));
  peers.push(await measurePeer(openAiAgentsPeer()));
  // Wake-ups on Postgres: a broadcast to many sleepers, and many sleep timers at once.
  const quick = process.env.BENCH_QUICK === '1';
  const wakeups = pgMailroom
    ? await measureWakeups(server, quick ? { large: 500, small: 50, timers: 500 } : undefined)
    : undefined;

  // Scale of one node on Postgres: many agents created and put to sleep, the server in its own process.
  const scale = pgMailroom ? await measureScale(server, scaleOptionsFromEnv(quick)) : undefined;

  const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, ${platform()} ${release()}, Node ${process.version}`;
  const pgRow = mailroom.find((r) => r.runtime === 'Mailroom, Postgres, 1 session');
  const text = [
    '# Benchmarks',
    '',
    `Measured ${new Date().toISOString()} on ${machine}, with \`npm run bench\``,
    `(Postgres: ${pgMailroom ? server.replace(/\/\/[^@]*@/, '//…@') : 'not reachable, rows left out'}).`,
    '',
    `Shapes: ${SHAPES.map((s) => `${s.agents} agents × ${s.perAgent} units`).join(', and ')}, all agents at once; then ${SEQUENTIAL}`,
    "units one at a time. Before each shape, each runtime runs a warm-up on agents of its own (the shape's",
    'agents, a quarter of its units), unmeasured. The model answers at once in every runtime, so this is',
    "each runtime's own cost. A",
    'Mailroom unit is a task sent over socket.io by a client in this process (acknowledged only once',
    'committed), taken by a scripted agent, answered and pushed back as `async.task.completed`; a',
    "LangGraph.js unit is one `invoke` of a one-node agent graph on the agent's thread with its checkpointer;",
    'an @openai/agents unit is one `Runner.run` of an Agent. SQL statements and commits are counted at the',
    'drivers (`pg`, PGlite; a `BEGIN; …` or `…; COMMIT` query, as Mailroom sends its batches on Postgres,',
    'counts as two); Node CPU is this process (client included); Postgres CPU is every `postgres`',
    'process on the machine.',
    '',
    ...table([...mailroom, ...peers]),
    '',
    ...mailroom.map(
      (m) =>
        `- ${m.runtime}: one at a time, sendTask answered (committed) p50 ${f1(m.ackP50)} ms; send-and-switch task round trip p50 ${f1(m.switchP50)} ms`,
    ),
    '',
    'Ratios of throughput (units/s):',
    '',
    ...ratios(pgRow ?? mailroom[0], peers),
    '',
    '## Wake-ups (Mailroom, Postgres)',
    '',
    wakeups
      ? 'One session; agents created and put to sleep through the API, then one `async.broadcastEvent` to all of them, and (the same agents) sleep timers spread over a few seconds; jitter is the push of the wake-up minus the deadline.'
      : 'Not measured: Postgres was not reachable.',
    '',
    ...(wakeups ? [wakeupsTable(wakeups), ''] : []),
    '## Scale of one node (Mailroom, Postgres)',
    '',
    scale
      ? [
          `The server alone (\`node dist/main.js\` in a child process, its memory read from \`/proc/<pid>/status\` and`,
          '`process.memoryUsage()` after a forced GC; the bench process holds only the socket.io clients). Agents are',
          'created with `async.createAgent` and put to sleep with `async.sleepAgent`, with bounded concurrency, nobody',
          'subscribed to the session; RSS per agent is the growth over the server before any agent. `SCALE_AGENTS`,',
          '`SCALE_SESSIONS`, `SCALE_IN_FLIGHT`, `SCALE_SOCKETS` change the shape; `node -r @swc-node/register bench/scale.ts`',
          'runs it alone (`SCALE_PROFILE=1`: CPU profiles of the server for both phases).',
        ].join('\n')
      : 'Not measured: Postgres was not reachable.',
    '',
    ...(scale ? [scaleTable(scale), ''] : []),
    '## Where the time goes',
    '',
    pgMailroom
      ? `CPU profile of a run of its own of the Mailroom Postgres 1-session shapes (in-process inspector, as \`--cpu-prof\`; written to \`bench/mailroom-postgres.cpuprofile\`, not committed; the figures above come from runs without it), functions by self time:`
      : 'No profile: Postgres was not reachable.',
    '',
    ...profile.map((line) => `    ${line}`),
    '',
    // Earlier commits' figures (before this round-trip work, and before group commit), kept for comparison.
    readFileSync('bench/before-fast-path.md', 'utf8').trimEnd(),
    '',
  ].join('\n');
  writeFileSync('BENCHMARKS.md', text);
  console.log(text);
}

/** Drops the bench's databases, also after a failed run. */
async function dropAll(): Promise<void> {
  for (const drop of drops) {
    await drop().catch((err: unknown) => console.error(`A bench database was not dropped: ${String(err)}`));
  }
}

main()
  .finally(dropAll)
  .then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
