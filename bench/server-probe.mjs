// Preloaded into the server that bench/scale.ts starts as a child process
// (`node --expose-gc --import ./bench/server-probe.mjs dist/main.js`), so that the server's own memory and
// statements are measured, not the bench client's. It counts the statements sent through `pg` (as
// bench/cost.ts does in-process) and answers `{ type: 'probe', gc }` messages on the IPC channel with
// the process's memory after a forced GC (when `--expose-gc` is on) and the counts so far.
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import pg from 'pg';

let statements = 0;
let commits = 0;
let roundTrips = 0;
const query = pg.Client.prototype.query;
pg.Client.prototype.query = function (...args) {
  const first = args[0];
  const text = typeof first === 'string' ? first : first?.text;
  roundTrips += 1;
  statements += 1;
  // Counted as bench/cost.ts counts: a fused transaction sends `BEGIN; …` and `…; COMMIT` as one query.
  if (typeof text === 'string') {
    if (/^\s*BEGIN;/i.test(text)) {
      statements += 1;
    }
    if (/;\s*COMMIT\s*$/i.test(text)) {
      statements += 1;
      commits += 1;
    } else if (/^\s*COMMIT\b/i.test(text)) {
      commits += 1;
    }
  }
  return query.apply(this, args);
};

// `{ type: 'profile', file }` starts a CPU profile (the inspector, as `--cpu-prof`); the next one with
// `stop: true` writes it to `file` and answers.
let profiler;
function profile(message) {
  if (!message.stop) {
    profiler = new Session();
    profiler.connect();
    profiler.post('Profiler.enable', () => profiler.post('Profiler.start'));
    return;
  }
  profiler?.post('Profiler.stop', (err, result) => {
    if (!err) {
      writeFileSync(message.file, JSON.stringify(result.profile));
    }
    profiler.disconnect();
    profiler = undefined;
    process.send?.({ type: 'profile', id: message.id, error: err ? String(err) : undefined });
  });
}

process.on('message', (message) => {
  if (message?.type === 'profile') {
    profile(message);
    return;
  }
  if (message?.type !== 'probe') {
    return;
  }
  const gc = typeof globalThis.gc === 'function';
  if (message.gc && gc) {
    // Twice: the first pass may only queue finalizers whose objects the second frees.
    globalThis.gc();
    globalThis.gc();
  }
  const { rss, heapUsed, heapTotal, external, arrayBuffers } = process.memoryUsage();
  process.send?.({
    type: 'probe',
    id: message.id,
    gc,
    rss,
    heapUsed,
    heapTotal,
    external,
    arrayBuffers,
    statements,
    commits,
    roundTrips,
  });
});
// The channel must not keep the server alive once it has shut down on SIGTERM.
process.channel?.unref();
