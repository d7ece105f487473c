import { DeadlineQueue } from './deadline-queue';

describe(DeadlineQueue.name, () => {
  const keys = (q: DeadlineQueue<string>, now: number) => q.takeDue(now).map((e) => e.key);

  it('gives due deadlines nearest first, and keeps the rest', () => {
    const sut = new DeadlineQueue<string>();
    for (const [key, due] of [
      ['c', 30],
      ['a', 10],
      ['e', 50],
      ['b', 20],
      ['d', 40],
    ] as const) {
      sut.set(key, due, key);
    }
    expect(sut.next()).toBe(10);
    expect(keys(sut, 5)).toEqual([]);
    expect(keys(sut, 30)).toEqual(['a', 'b', 'c']);
    expect(sut.next()).toBe(40);
    expect(sut.size).toBe(2);
    expect(keys(sut, 1_000)).toEqual(['d', 'e']);
    expect(sut.next()).toBeUndefined();
  });

  it('replaces a key’s deadline, and forgets deleted ones', () => {
    const sut = new DeadlineQueue<string>();
    sut.set('a', 10, 'first');
    sut.set('b', 20, 'b');
    sut.set('a', 30, 'second');
    expect(sut.next()).toBe(20);
    sut.delete('b');
    expect(sut.has('b')).toBe(false);
    expect(sut.next()).toBe(30);
    expect(sut.takeDue(100)).toEqual([{ key: 'a', due: 30, value: 'second' }]);
  });

  it('drops the deadlines whose value matches', () => {
    const sut = new DeadlineQueue<string>();
    sut.set('s1/a', 10, 's1');
    sut.set('s2/a', 20, 's2');
    sut.set('s1/b', 30, 's1');
    sut.deleteWhere((session) => session === 's1');
    expect(keys(sut, 100)).toEqual(['s2/a']);
  });

  it('stays in order through many replacements (the heap is compacted on the way)', () => {
    const sut = new DeadlineQueue<number>();
    const last = new Map<string, number>();
    let seed = 7;
    const random = () => (seed = (seed * 48_271) % 2_147_483_647) % 10_000;
    for (let i = 0; i < 5_000; i++) {
      const key = `k${random() % 300}`;
      const due = random();
      sut.set(key, due, due);
      last.set(key, due);
    }
    expect(sut.size).toBe(last.size);
    const taken = sut.takeDue(Infinity);
    expect(taken.map((e) => e.due)).toEqual([...last.values()].sort((a, b) => a - b));
    expect(new Map(taken.map((e) => [e.key, e.due]))).toEqual(last);
  });
});
