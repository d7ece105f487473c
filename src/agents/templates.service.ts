import { Inject, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse } from 'yaml';
import { APP_CONFIG } from 'src/config/config.module';
import { AppConfig } from 'src/config/app-config';
import { RpcError } from 'src/common/rpc-error';
import { TOOL_NAMES, unknownServerEntries } from '@mailroom/client/protocol';
import { AgentConfig, AgentConfigOverrides, DEFAULT_LIMITS, Template, templateSchema } from './agent.types';

const DEFAULT_TEMPLATE = 'assistant';

// Used only when the templates folder has no `assistant.yaml`, so agents can always be created.
const FALLBACK_ASSISTANT: Template = {
  name: DEFAULT_TEMPLATE,
  description: 'A general-purpose agent with every mailbox and event tool.',
  systemPrompt: 'You are a helpful agent working with other agents through a shared mailbox.',
  tools: [...TOOL_NAMES],
  wakeEvents: [],
  script: [{ when: {}, do: [{ reply: '(scripted) Received {{kind}}: {{prompt}}' }] }],
};

/** Agent templates: YAML files in `TEMPLATES_DIR`, read and validated once at boot (a bad file stops the boot). */
@Injectable()
export class TemplatesService implements OnModuleInit {
  private readonly logger = new Logger(TemplatesService.name);
  private readonly templates = new Map<string, Template>();

  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {}

  onModuleInit(): void {
    const dir = resolve(this.config.templatesDir);
    let files: string[] = [];
    try {
      files = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f));
    } catch {
      this.logger.warn(`No templates folder at ${dir}; only the built-in assistant is available`);
    }
    for (const file of files.sort()) {
      const parsed = templateSchema.safeParse(parse(readFileSync(join(dir, file), 'utf8')));
      if (!parsed.success) {
        const issues = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
        throw new Error(`Invalid template ${join(dir, file)}: ${issues}`);
      }
      if (this.templates.has(parsed.data.name)) {
        throw new Error(`Two templates are named '${parsed.data.name}' (the second is ${join(dir, file)})`);
      }
      this.templates.set(parsed.data.name, parsed.data);
    }
    if (!this.templates.has(DEFAULT_TEMPLATE)) {
      this.templates.set(DEFAULT_TEMPLATE, FALLBACK_ASSISTANT);
    }
    this.logger.log(`Loaded templates: ${[...this.templates.keys()].join(', ')}`);
  }

  list(): Template[] {
    return [...this.templates.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  /**
   * The template an agent gets: the one asked for; else one named like the agent (`coder2` and
   * `coder-2` also find `coder`); else `assistant`.
   */
  resolve(agentId: string, requested?: string): Template {
    if (requested !== undefined) {
      const t = this.templates.get(requested);
      if (!t) {
        throw RpcError.invalidParams([
          {
            path: 'template',
            message: `unknown template '${requested}' (known: ${[...this.templates.keys()].join(', ')})`,
          },
        ]);
      }
      return t;
    }
    const base = agentId.replace(/[-_.]?\d+$/, '');
    return this.templates.get(agentId) ?? this.templates.get(base) ?? this.templates.get(DEFAULT_TEMPLATE)!;
  }

  /** The template with `config` laid over it: what the agent runs with. */
  effectiveConfig(
    template: Template,
    overrides: AgentConfigOverrides = {},
  ): { config: AgentConfig; wakeEvents: string[] } {
    const config: AgentConfig = {
      description: overrides.description ?? template.description,
      systemPrompt: overrides.systemPrompt ?? template.systemPrompt,
      model: overrides.model ?? template.model,
      temperature: overrides.temperature ?? template.temperature,
      maxTokens: overrides.maxTokens ?? template.maxTokens,
      tools: overrides.tools ?? template.tools,
      script: overrides.script ?? template.script,
      limits: { ...DEFAULT_LIMITS, ...template.limits, ...overrides.limits },
    };
    // `config.mcpServers` adds servers to the template's, or replaces one of the same name.
    const mcpServers = { ...template.mcpServers, ...overrides.mcpServers };
    if (Object.keys(mcpServers).length > 0) {
      config.mcpServers = mcpServers;
    }
    const unknown = unknownServerEntries(config.tools, config.mcpServers);
    if (unknown.length > 0) {
      throw RpcError.invalidParams(
        unknown.map((entry) => ({
          path: 'config.tools',
          message: `'${entry}' names no server in mcpServers`,
        })),
      );
    }
    return { config, wakeEvents: overrides.wakeEvents ?? template.wakeEvents };
  }
}
