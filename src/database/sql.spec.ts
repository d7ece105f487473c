import { json, storableText } from './sql';

describe('json (what a jsonb parameter gets)', () => {
  it('writes what Postgres can store unchanged, as JSON.stringify does', () => {
    const value = { a: 'plain ✓ 😀', n: 1, nested: [{ b: null }], at: new Date('2026-01-01T00:00:00.000Z') };
    expect(json(value)).toBe(JSON.stringify(value));
    expect(json(undefined)).toBe('null');
  });

  it('stores U+0000 and unpaired surrogates as U+FFFD, in values and keys, and keeps surrogate pairs', () => {
    const value = { ['k\u0000']: ['a\u0000b', 'lone \ud800 high', 'lone \udc00 low', 'pair 😀'], n: 2 };
    expect(JSON.parse(json(value))).toEqual({
      'k\uFFFD': ['a\uFFFDb', 'lone \uFFFD high', 'lone \uFFFD low', 'pair 😀'],
      n: 2,
    });
  });

  it('leaves a string that only spells an escape as it is', () => {
    const value = { text: 'a backslash then u0000: \\u0000, and \\ud800' };
    expect(JSON.parse(json(value))).toEqual(value);
  });

  it('gives text the same treatment', () => {
    expect(storableText('x\u0000y\udfffz 😀')).toBe('x\uFFFDy\uFFFDz 😀');
  });
});
