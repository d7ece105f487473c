/** The parts of an MCP `CallToolResult` we read (the SDK's type is a wide zod-inferred union). */
export interface McpCallResult {
  content?: unknown;
  structuredContent?: unknown;
  isError?: unknown;
}

/**
 * An MCP tool result as the model gets it: its text content (other content named in brackets);
 * structured content when there is no text. An error result becomes `{ error }`.
 */
export function toToolResult(result: McpCallResult, maxBytes: number): string | { error: string } {
  const parts = Array.isArray(result.content) ? result.content.map(describePart) : [];
  let text = parts.join('\n');
  if (text === '' && result.structuredContent !== undefined) {
    text = JSON.stringify(result.structuredContent);
  }
  text = truncate(text, maxBytes);
  if (result.isError === true) {
    return { error: text || 'the tool reported an error' };
  }
  return text;
}

function describePart(part: unknown): string {
  const p = (part ?? {}) as Record<string, unknown>;
  switch (p.type) {
    case 'text':
      return typeof p.text === 'string' ? p.text : '';
    case 'resource': {
      const resource = (p.resource ?? {}) as Record<string, unknown>;
      return typeof resource.text === 'string' ? resource.text : `[resource ${String(resource.uri)}]`;
    }
    case 'resource_link':
      return `[resource ${String(p.uri)}]`;
    default:
      return `[${String(p.type)}${typeof p.mimeType === 'string' ? ` ${p.mimeType}` : ''}]`;
  }
}

/** Cuts `text` to at most `maxBytes` of UTF-8 (marker included), on a character boundary. */
export function truncate(text: string, maxBytes: number): string {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes <= maxBytes) {
    return text;
  }
  const marker = `\n[truncated: the result was ${bytes} bytes, the limit is ${maxBytes}]`;
  const keep = Math.max(0, maxBytes - Buffer.byteLength(marker, 'utf8'));
  // toString drops a multi-byte character cut in half (as U+FFFD): strip it.
  const head = Buffer.from(text, 'utf8')
    .subarray(0, keep)
    .toString('utf8')
    .replace(/\uFFFD$/, '');
  return head + marker;
}
