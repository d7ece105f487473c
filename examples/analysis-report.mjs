// The guide's first workflow, parallel analysis and report generation: the analyzer mails its
// findings to the writer, the writer asks the reviewer (send_mail_with_switch, waiting for the
// verdict) and mails the approved report to the user.
//   npm start   (in another terminal), then   node examples/analysis-report.mjs
import { randomUUID } from 'node:crypto';
import { connect } from '@mailroom/client';

const TIMEOUT_MS = 30_000;
const client = await connect(process.env.MAILROOM_URL ?? 'http://localhost:3000', {
  token: process.env.MAILROOM_TOKEN,
});
const session = client.session(`analysis-${randomUUID().slice(0, 8)}`);
session.on('async.mail.sent', ({ message: m }) => {
  if (m.to === 'user') {
    console.log(`mail to user from ${m.from}: "${m.subject}"\n  ${m.body.replace(/\n/g, '\n  ')}`);
  }
});

await session.start();
console.log(`session ${session.id}`);
for (const agentId of ['analyzer', 'writer', 'reviewer']) {
  await session.call('async.createAgent', { agentId });
}

const report = session.waitFor('async.mail.sent', ({ message }) => message.to === 'user', {
  timeoutMs: TIMEOUT_MS,
});
const tasks = [
  await session.call('async.sendTask', {
    agentId: 'analyzer',
    prompt: 'Analyze customer sentiment from feedback.csv',
  }),
  await session.call('async.sendTask', {
    agentId: 'writer',
    prompt: 'Prepare report template for sentiment analysis',
  }),
];
for (const { taskId } of tasks) {
  const outcome = await session.waitForTask(taskId, { timeoutMs: TIMEOUT_MS });
  process.exitCode = 'error' in outcome ? 1 : process.exitCode;
  console.log(
    `task ${outcome.agentId}: ${'error' in outcome ? `FAILED ${outcome.error.message}` : outcome.result.final}`,
  );
}
await report;

await session.call('session.stop', {});
client.close();
