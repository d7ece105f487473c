#!/usr/bin/env node
// `npm run cluster`: several Mailroom nodes on one Postgres server, for trying out (and demonstrating)
// several servers on one machine. Each node is `node dist/main.js` on its own port; their output is
// prefixed with the node's name. Ctrl-C stops them all cleanly (SIGTERM each, once); a second Ctrl-C
// kills them.
//
//   DATABASE_URL       the Postgres database (default postgres://postgres@127.0.0.1:5432/mailroom;
//                      created when it does not exist)
//   CLUSTER_NODES      how many nodes (default 3)
//   CLUSTER_BASE_PORT  the first node's port, the others follow (default PORT, else 3000)
//
// Every other variable (MODEL_PROVIDER, OPENAI_*, API_TOKENS, LOG_LEVEL…) is passed to every node.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const main = join(root, 'dist', 'main.js');
const databaseUrl = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/mailroom';
const count = positiveInt('CLUSTER_NODES', process.env.CLUSTER_NODES ?? '3');
const basePort = positiveInt(
  'CLUSTER_BASE_PORT',
  process.env.CLUSTER_BASE_PORT ?? process.env.PORT ?? '3000',
);
const colors = process.stdout.isTTY ? [36, 35, 33, 32, 34, 31] : [];

function positiveInt(name, value) {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65535) {
    fail(`${name} must be a positive integer, got '${value}'`);
  }
  return n;
}

function fail(message) {
  console.error(`[cluster] ${message}`);
  process.exit(1);
}

function say(message) {
  console.log(`[cluster] ${message}`);
}

/** Creates the database named in the URL when the server does not have it yet. */
async function ensureDatabase(url) {
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.slice(1));
  if (!name) {
    fail(`DATABASE_URL names no database: ${url}`);
  }
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString() });
  try {
    await client.connect();
  } catch (err) {
    fail(`cannot reach the Postgres server at ${target.host}: ${err.message}`);
  }
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (rowCount === 0) {
      await client.query(`CREATE DATABASE "${name.replaceAll('"', '""')}"`);
      say(`created database ${name}`);
    }
  } finally {
    await client.end();
  }
}

/** Copies a stream to ours line by line, each line prefixed. */
function prefixLines(stream, out, prefix) {
  let partial = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop();
    for (const line of lines) {
      out.write(`${prefix} ${line}\n`);
    }
  });
  stream.on('end', () => partial && out.write(`${prefix} ${partial}\n`));
}

if (!existsSync(main)) {
  fail('dist/main.js is missing: run `npm run build` first (`npm run cluster` does)');
}
await ensureDatabase(databaseUrl);

const nodes = [];
let stopping = false;
for (let i = 0; i < count; i++) {
  const name = `node-${i}`;
  const port = basePort + i;
  const color = colors[i % colors.length];
  const prefix = color ? `\x1b[${color}m[${name}]\x1b[0m` : `[${name}]`;
  // Its own process group: the terminal's Ctrl-C reaches only this script, which stops each node once
  // (a second signal during Nest's shutdown would kill a node halfway).
  const child = spawn(process.execPath, [main], {
    cwd: root,
    env: { ...process.env, DATABASE_URL: databaseUrl, PORT: String(port), NODE_ID: name },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  prefixLines(child.stdout, process.stdout, prefix);
  prefixLines(child.stderr, process.stderr, prefix);
  const node = { name, port, child, exited: false };
  child.once('exit', (code, signal) => {
    node.exited = true;
    if (!stopping) {
      say(`${name} exited (${signal ?? code}); the other nodes take its work over`);
    }
    if (nodes.every((n) => n.exited)) {
      say(stopping ? 'all nodes stopped' : 'every node has exited');
      process.exit(stopping ? 0 : 1);
    }
  });
  nodes.push(node);
}
say(
  `${count} nodes on ${new URL(databaseUrl).host}${new URL(databaseUrl).pathname}: ${nodes
    .map((n) => `http://localhost:${n.port}`)
    .join(', ')} (Ctrl-C stops them)`,
);

function stop(signal) {
  if (stopping) {
    say('killing every node');
    for (const n of nodes) {
      if (!n.exited) {
        n.child.kill('SIGKILL');
      }
    }
    return;
  }
  stopping = true;
  say(`${signal}: stopping every node (again to kill them)`);
  for (const n of nodes) {
    if (!n.exited) {
      n.child.kill('SIGTERM');
    }
  }
}
process.on('SIGINT', () => stop('SIGINT'));
process.on('SIGTERM', () => stop('SIGTERM'));
// Should this script die of an error, its nodes go with it.
process.on('exit', () => {
  for (const n of nodes) {
    if (!n.exited) {
      n.child.kill('SIGKILL');
    }
  }
});
