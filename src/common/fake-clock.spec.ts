import { delay } from './clock';
import { FakeClock } from './fake-clock';

describe(FakeClock.name, () => {
  let sut: FakeClock;

  beforeEach(() => {
    sut = new FakeClock(Date.parse('2026-03-01T12:00:00.000Z'));
  });

  it('starts at the given time (2026-01-01 by default) and stands still', () => {
    expect(new FakeClock().now()).toBe(Date.parse('2026-01-01T00:00:00.000Z'));
    expect(sut.now()).toBe(Date.parse('2026-03-01T12:00:00.000Z'));
    expect(sut.now()).toBe(sut.now());
  });

  it('moves only when advanced, and fires what comes due on the way', () => {
    const start = sut.now();
    const fired: string[] = [];
    sut.setTimeout(() => fired.push('at 100'), 100);
    sut.setTimeout(() => fired.push('at 500'), 500);

    sut.advance(99);
    expect(fired).toEqual([]);
    sut.advance(1);
    expect(fired).toEqual(['at 100']);
    sut.advance(1_000);
    expect(fired).toEqual(['at 100', 'at 500']);
    expect(sut.now()).toBe(start + 1_100);
  });

  it('fires in deadline order, ties in the order they were set, each at its own time', () => {
    const start = sut.now();
    const fired: Array<[string, number]> = [];
    const record = (name: string) => () => fired.push([name, sut.now() - start]);
    sut.setTimeout(record('c'), 300);
    sut.setTimeout(record('a1'), 100);
    sut.setTimeout(record('b'), 200);
    sut.setTimeout(record('a2'), 100);
    sut.setTimeout(record('now'), 0);
    sut.setTimeout(record('negative'), -50);

    sut.advance(300);
    expect(fired).toEqual([
      ['now', 0],
      ['negative', 0],
      ['a1', 100],
      ['a2', 100],
      ['b', 200],
      ['c', 300],
    ]);
  });

  it('fires a timer set by a firing timer when it falls due within the same advance', () => {
    const fired: string[] = [];
    sut.setTimeout(() => {
      fired.push('first');
      sut.setTimeout(() => fired.push('chained'), 50);
      sut.setTimeout(() => fired.push('too late'), 500);
    }, 100);
    sut.advance(200);
    expect(fired).toEqual(['first', 'chained']);
    expect(sut.pending()).toBe(1);
  });

  it('never fires a cancelled timer, and counts only live ones', () => {
    const fired: string[] = [];
    const keep = sut.setTimeout(() => fired.push('kept'), 10);
    const drop = sut.setTimeout(() => fired.push('dropped'), 10);
    expect(sut.pending()).toBe(2);
    drop.cancel();
    expect(sut.pending()).toBe(1);
    sut.advance(10);
    keep.cancel(); // after it fired: no effect
    expect(fired).toEqual(['kept']);
    expect(sut.pending()).toBe(0);
  });

  it('drives delay(), which an abort rejects early', async () => {
    const done = delay(sut, 1_000);
    sut.advance(1_000);
    await expect(done).resolves.toBeUndefined();

    const controller = new AbortController();
    const aborted = delay(sut, 1_000, controller.signal);
    controller.abort();
    await expect(aborted).rejects.toMatchObject({ name: 'AbortError' });
    expect(sut.pending()).toBe(0);
  });
});
