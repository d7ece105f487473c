// The guide's second workflow, monitoring with sleep/wake: the monitor sleeps until an "alert" or
// "hourly_check" event (an hourly schedule broadcasts the latter; here the example sends both
// events itself, so it does not wait an hour), mails the user about alerts, and sleeps again.
//   npm start   (in another terminal), then   node examples/monitoring.mjs
import { randomUUID } from 'node:crypto';
import { connect } from '@mailroom/client';

const TIMEOUT_MS = 30_000;
const client = await connect(process.env.MAILROOM_URL ?? 'http://localhost:3000', {
  token: process.env.MAILROOM_TOKEN,
});
const session = client.session(`monitoring-${randomUUID().slice(0, 8)}`);
session.on('async.mail.sent', ({ message: m }) => {
  if (m.to === 'user') {
    console.log(`mail to user from ${m.from} [${m.priority}]: "${m.subject}"\n  ${m.body}`);
  }
});
session.on('async.agent.stateChanged', (p) =>
  console.log(`${p.agentId}: ${p.previous ?? 'new'} -> ${p.state} (${p.reason})`),
);
const asleep = () =>
  session.waitFor('async.agent.stateChanged', (p) => p.agentId === 'monitor' && p.state === 'sleeping', {
    timeoutMs: TIMEOUT_MS,
  });

await session.start();
console.log(`session ${session.id}`);
await session.call('async.createAgent', { agentId: 'monitor' });
await session.call('async.sleepAgent', { agentId: 'monitor', wakeEvents: ['alert', 'hourly_check'] });
const { nextRunAt } = await session.call('async.scheduleAgent', {
  agentId: 'monitor',
  cron: '0 * * * *',
  event: 'hourly_check',
});
console.log(`hourly_check scheduled, next at ${nextRunAt}`);

// Each event wakes it for one work item; it goes back to sleep at the end of it.
for (const { event, data } of [
  { event: 'hourly_check', data: {} },
  { event: 'alert', data: { service: 'payments', severity: 'critical', errorRate: 0.31 } },
]) {
  const started = session.waitFor('async.task.started', (p) => p.agentId === 'monitor', {
    timeoutMs: TIMEOUT_MS,
  });
  const slept = asleep();
  const { woke } = await session.call('async.broadcastEvent', { event, data });
  console.log(`broadcast ${event}: woke ${woke.join(', ') || 'nobody'}`);
  const outcome = await session.waitForTask((await started).taskId, { timeoutMs: TIMEOUT_MS });
  console.log(
    `task monitor (${event}): ${'error' in outcome ? `FAILED ${outcome.error.message}` : outcome.result.final}`,
  );
  await slept;
}

const { woke } = await session.call('async.wakeAgent', { agentId: 'monitor', reason: 'manual' });
console.log(`manual wake: ${woke ? 'woke' : 'was awake'}`);

await session.call('session.stop', {});
client.close();
