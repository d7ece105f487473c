import { toToolResult, truncate } from './mcp-result';

describe(toToolResult.name, () => {
  it('joins the text content and names what is not text', () => {
    const sut = toToolResult(
      {
        content: [
          { type: 'text', text: 'one' },
          { type: 'image', data: 'AAAA', mimeType: 'image/png' },
          { type: 'resource', resource: { uri: 'file:///a', text: 'two' } },
          { type: 'resource_link', uri: 'file:///b', name: 'b' },
        ],
      },
      1000,
    );
    expect(sut).toBe('one\n[image image/png]\ntwo\n[resource file:///b]');
  });

  it('falls back to structured content, and turns an error result into { error }', () => {
    expect(toToolResult({ content: [], structuredContent: { n: 1 } }, 1000)).toBe('{"n":1}');
    expect(toToolResult({ isError: true, content: [{ type: 'text', text: 'no such file' }] }, 1000)).toEqual({
      error: 'no such file',
    });
    expect(toToolResult({ isError: true, content: [] }, 1000)).toEqual({
      error: 'the tool reported an error',
    });
  });
});

describe(truncate.name, () => {
  it('keeps text within the limit as it is', () => {
    expect(truncate('short', 1024)).toBe('short');
  });

  it('cuts longer text to the limit in UTF-8 bytes, marker included, never inside a character', () => {
    const sut = truncate('é'.repeat(1000), 1024);
    expect(Buffer.byteLength(sut)).toBeLessThanOrEqual(1024);
    expect(sut).toMatch(/^é+\n\[truncated: the result was 2000 bytes, the limit is 1024\]$/);
  });
});
