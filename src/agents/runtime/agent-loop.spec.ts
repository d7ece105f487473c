import { Logger } from '@nestjs/common';
import { AgentLoop, RunOne } from './agent-loop';

/** A step that claims `item-<n>` on its n-th call; records whether that item was aborted once claimed, and at its end. */
function steps(plan: Array<boolean | 'next'>, beforeEach?: (call: number) => Promise<void> | void) {
  const calls: Array<{ abortedAtStart: boolean; abortedAtEnd?: boolean }> = [];
  const run: RunOne = async (signal, onClaim) => {
    const call = calls.length;
    onClaim(`item-${call}`); // a closing loop aborts the item as soon as it is claimed
    calls.push({ abortedAtStart: signal.aborted });
    await beforeEach?.(call);
    calls[call].abortedAtEnd = signal.aborted;
    return plan[call] ?? false;
  };
  return { run, calls };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe(AgentLoop.name, () => {
  const logger = new Logger('spec');

  it('calls its step again after one that claimed the next item, and settles after one that found nothing', async () => {
    const { run, calls } = steps(['next', 'next', true, false]);
    const settled: AgentLoop[] = [];
    const loop = new AgentLoop('s/a', run, logger, (l) => settled.push(l));
    loop.signal();
    await settle();
    expect(calls).toHaveLength(4);
    expect(settled).toEqual([loop]);
    await loop.close();
  });

  it('runs a claimed next item even while closing, with its signal aborted, so that it is given back', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const { run, calls } = steps(['next', 'next'], (call) => (call === 0 ? gate : undefined));
    const loop = new AgentLoop('s/a', run, logger);
    loop.signal();
    await settle();
    const closed = loop.close();
    release();
    await closed;
    // The first item was aborted by the close; its end had claimed the next one, which the loop
    // still ran (aborted once claimed); a step that claimed a next item once closed is run too.
    expect(calls).toEqual([
      { abortedAtStart: false, abortedAtEnd: true },
      { abortedAtStart: true, abortedAtEnd: true },
      { abortedAtStart: true, abortedAtEnd: true },
    ]);
  });

  it('aborts a claimed next item by its task id', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const { run, calls } = steps(['next', false], (call) => (call === 1 ? gate : undefined));
    const loop = new AgentLoop('s/a', run, logger);
    loop.signal();
    await settle();
    loop.abort('item-0'); // no longer in hand: nothing happens
    loop.abort('item-1');
    release();
    await loop.close();
    expect(calls).toEqual([
      { abortedAtStart: false, abortedAtEnd: false },
      { abortedAtStart: false, abortedAtEnd: true },
    ]);
  });
});
