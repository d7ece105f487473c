import { WorkContext } from 'src/llm/model-provider';
import { WorkItem } from 'src/mailbox/mailbox.types';

/** What the scripted model matches on and templates substitute. */
export function workContext(agentId: string, item: WorkItem): WorkContext {
  const p = item.payload;
  return {
    agentId,
    kind: item.kind,
    prompt: item.prompt,
    ...(item.kind === 'mailbox_message'
      ? { from: p.from, subject: p.subject, body: item.prompt, messageId: p.messageId }
      : {}),
    ...(item.kind === 'event' || item.kind === 'schedule' ? { event: p.event, data: p.data ?? {} } : {}),
  };
}

/** The user message that hands the item to the model, phrased for a real model. */
export function describeWork(item: WorkItem): string {
  const p = item.payload;
  switch (item.kind) {
    case 'task':
      return item.prompt;
    case 'mailbox_message': {
      const head = `Mail from ${p.from} (messageId ${p.messageId}, priority ${item.priority})\nSubject: ${p.subject}\n\n${item.prompt}`;
      return item.isSwitch
        ? `${head}\n\n${p.from} is waiting for your answer: your final reply is sent back to them.`
        : head;
    }
    case 'event':
      return `Event "${p.event}" was broadcast with data: ${JSON.stringify(p.data ?? {})}`;
    case 'schedule':
      return p.event ? `Scheduled event "${p.event}" fired.` : `Scheduled task: ${item.prompt}`;
  }
}
