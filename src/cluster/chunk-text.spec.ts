import { chunkText } from './chunk-text';

describe(chunkText.name, () => {
  const jsonBytes = (s: string) => Buffer.byteLength(JSON.stringify(s)) - 2;

  it('keeps a short text whole', () => {
    expect(chunkText('hello', 100)).toEqual(['hello']);
    expect(chunkText('', 100)).toEqual(['']);
  });

  it('splits long text into pieces that fit once escaped and join back into the text', () => {
    const text = 'line\n"quoted"\u0001 ünïcødé 😀 '.repeat(500);
    const sut = chunkText(text, 200);
    expect(sut.join('')).toBe(text);
    expect(sut.length).toBeGreaterThan(1);
    for (const piece of sut) {
      expect(jsonBytes(piece)).toBeLessThanOrEqual(200);
    }
  });

  it('never splits a surrogate pair', () => {
    const sut = chunkText('😀'.repeat(50), 12);
    expect(sut.every((piece) => [...piece].every((ch) => ch === '😀'))).toBe(true);
  });
});
