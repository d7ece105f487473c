import { templateSchema } from 'src/agents/agent.types';
import {
  allowsMcpTool,
  mcpServersSchema,
  splitToolName,
  toolEntrySchema,
  unknownServerEntries,
} from './mcp-config';

describe('mcpServers and tool names', () => {
  it('splits <server>__<tool> at the first separator and leaves built-in names alone', () => {
    expect(splitToolName('files__read_file')).toEqual({ server: 'files', tool: 'read_file' });
    expect(splitToolName('my_files__read__all')).toEqual({ server: 'my_files', tool: 'read__all' });
    expect(splitToolName('send_mail')).toBeUndefined();
    expect(splitToolName('__x')).toBeUndefined();
  });

  it("offers all of a server's tools unless `tools` names some of them", () => {
    expect(allowsMcpTool(['send_mail'], 'files', 'write_file')).toBe(true);
    expect(allowsMcpTool(['files__*'], 'files', 'write_file')).toBe(true);
    expect(allowsMcpTool(['files__read_file'], 'files', 'read_file')).toBe(true);
    expect(allowsMcpTool(['files__read_file'], 'files', 'write_file')).toBe(false);
    expect(allowsMcpTool(['files__read_file'], 'web', 'fetch')).toBe(true);
  });

  it('accepts stdio and Streamable HTTP definitions and refuses mixtures, bad names and bad URLs', () => {
    expect(
      mcpServersSchema.safeParse({
        files: { command: 'node', args: ['server.js', '.'], env: { TOKEN: 't' }, cwd: '/srv' },
        'web-1': { url: 'https://example.com/mcp', headers: { Authorization: 'Bearer t' } },
      }).success,
    ).toBe(true);
    for (const bad of [
      { a__b: { command: 'x' } },
      { _a: { command: 'x' } },
      { a: { command: 'x', url: 'http://h' } },
      { a: { url: 'file:///etc/passwd' } },
      { a: { command: '' } },
      { a: {} },
    ]) {
      expect(mcpServersSchema.safeParse(bad).success).toBe(false);
    }
  });

  it('accepts built-in tools, <server>__<tool> and <server>__* in `tools`', () => {
    for (const ok of ['send_mail', 'files__read_file', 'files__*', 'my-srv__x']) {
      expect(toolEntrySchema.safeParse(ok).success).toBe(true);
    }
    for (const bad of ['no_such_tool', 'files__', 'files__a.b', '__x', 'a__b*']) {
      expect(toolEntrySchema.safeParse(bad).success).toBe(false);
    }
    expect(unknownServerEntries(['send_mail', 'files__x', 'web__*'], { files: { command: 'x' } })).toEqual([
      'web__*',
    ]);
  });

  it('refuses a template whose tools name a server it does not define', () => {
    const template = { name: 't', description: 'd', systemPrompt: 's', tools: ['files__read_file'] };
    const refused = templateSchema.safeParse(template);
    expect(refused.success).toBe(false);
    expect(refused.error?.issues[0]).toMatchObject({ path: ['tools'] });
    expect(templateSchema.safeParse({ ...template, mcpServers: { files: { command: 'x' } } }).success).toBe(
      true,
    );
  });
});
