// The guide's third workflow, task decomposition and parallel execution: the planner splits a
// feature into three tasks and mails one to each coder; the coders work at the same time and
// mail the integrator, which integrates each piece and reports it to the user.
//   npm start   (in another terminal), then   node examples/task-decomposition.mjs
import { randomUUID } from 'node:crypto';
import { connect } from '@mailroom/client';

const TIMEOUT_MS = 30_000;
const CODERS = ['coder1', 'coder2', 'coder3'];
const client = await connect(process.env.MAILROOM_URL ?? 'http://localhost:3000', {
  token: process.env.MAILROOM_TOKEN,
});
const session = client.session(`decomposition-${randomUUID().slice(0, 8)}`);

await session.start();
console.log(`session ${session.id}`);
for (const agentId of ['planner', ...CODERS, 'integrator']) {
  await session.call('async.createAgent', { agentId }); // coderN gets the `coder` template
}

// Three reports, one per coder, whatever order they finish in.
const reports = new Promise((resolve, reject) => {
  /** @type {import('@mailroom/client').Mail[]} */
  const received = [];
  const timer = setTimeout(() => reject(new Error('the integrator did not report three times')), TIMEOUT_MS);
  const off = session.on('async.mail.sent', ({ message: m }) => {
    if (m.to !== 'user') {
      return;
    }
    console.log(`mail to user from ${m.from}: "${m.subject}"\n  ${m.body}`);
    received.push(m);
    if (received.length === CODERS.length) {
      off();
      clearTimeout(timer);
      resolve(received);
    }
  });
});
const plan = await session.call('async.sendTask', {
  agentId: 'planner',
  prompt: 'Create plan for new feature implementation',
});
const outcome = await session.waitForTask(plan.taskId, { timeoutMs: TIMEOUT_MS });
console.log(`task planner: ${'error' in outcome ? `FAILED ${outcome.error.message}` : outcome.result.final}`);
await reports;

await session.call('session.stop', {});
client.close();
