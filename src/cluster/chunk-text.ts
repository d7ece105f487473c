/**
 * Splits `text` into pieces whose JSON string form (quotes excluded) takes at most `maxBytes`
 * bytes of UTF-8, never splitting a character: how a streamed delta too big for one NOTIFY
 * travels as several (concatenated, they are the delta again).
 */
export function chunkText(text: string, maxBytes: number): string[] {
  if (maxBytes < 12) {
    throw new Error('maxBytes must leave room for one escaped character');
  }
  const chunks: string[] = [];
  let current = '';
  let size = 0;
  for (const ch of text) {
    const cost = Buffer.byteLength(JSON.stringify(ch)) - 2;
    if (size + cost > maxBytes && current) {
      chunks.push(current);
      current = '';
      size = 0;
    }
    current += ch;
    size += cost;
  }
  if (current || chunks.length === 0) {
    chunks.push(current);
  }
  return chunks;
}
