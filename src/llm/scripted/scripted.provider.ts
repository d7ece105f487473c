import { Clock, delay } from 'src/common/clock';
import { ChatMessage, ModelChunk, ModelProvider, ModelRequest, WorkContext } from '../model-provider';
import { renderArgs, renderText } from './render';
import { Script, ScriptRule } from './script.schema';

// Rules match the start of very long prompts only: a bound on the work one regex test can do.
const MATCH_TEXT_LIMIT = 20_000;

export const NO_RULE_MATCHED = '(scripted) no rule matched';
const NO_REPLY_STEP = '(scripted) done';

/**
 * The offline, deterministic model (docs/protocol.md, "The scripted model"). It is stateless: where it
 * is in a rule follows from the conversation it is given (how many tool calls it has made since
 * the work item's message), so it survives restarts and retries like a real model would.
 */
export class ScriptedProvider implements ModelProvider {
  readonly name = 'scripted';
  readonly defaultModel = 'scripted';
  private callCounter = 0;

  constructor(private readonly clock: Clock) {}

  async *stream(request: ModelRequest): AsyncIterable<ModelChunk> {
    const rule = findRule(request.script ?? [], request.work);
    const turn = currentTurn(request.messages);
    const toolStepsDone = turn.filter((m) => m.role === 'assistant' && m.toolCalls?.length).length;
    const lastTool = [...turn].reverse().find((m) => m.role === 'tool');
    const ctx = { work: request.work, result: lastTool ? parseJson(lastTool.content) : undefined };

    let output: ModelChunk;
    const step = rule ? nextStep(rule, toolStepsDone) : undefined;
    if (step?.delayMs) {
      await delay(this.clock, step.delayMs, request.signal);
    }
    if (!rule) {
      output = { type: 'text', delta: NO_RULE_MATCHED };
    } else if (!step) {
      output = { type: 'text', delta: NO_REPLY_STEP };
    } else if ('reply' in step) {
      output = { type: 'text', delta: renderText(step.reply, ctx) };
    } else {
      output = {
        type: 'tool_call',
        call: {
          id: `call_scripted_${++this.callCounter}`,
          name: step.tool,
          arguments: JSON.stringify(renderArgs(step.args, ctx)),
        },
      };
    }
    yield output;
    yield { type: 'usage', usage: estimateUsage(request.messages, output) };
  }
}

function findRule(script: Script, work: WorkContext): ScriptRule | undefined {
  return script.find(
    (r) =>
      (r.when.kind === undefined || r.when.kind === work.kind) &&
      (r.when.match === undefined ||
        new RegExp(r.when.match, 'i').test(work.prompt.slice(0, MATCH_TEXT_LIMIT))),
  );
}

/** The step after `toolStepsDone` tool steps; a reply step ends the rule. */
function nextStep(rule: ScriptRule, toolStepsDone: number) {
  let seen = 0;
  for (const step of rule.do) {
    if ('reply' in step) {
      return step;
    }
    if (seen === toolStepsDone) {
      return step;
    }
    seen++;
  }
  return undefined;
}

/** The messages since the work item's own (last) user message. */
function currentTurn(messages: ChatMessage[]): ChatMessage[] {
  let start = messages.length;
  while (start > 0 && messages[start - 1].role !== 'user') {
    start--;
  }
  return messages.slice(start);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** About four characters a token: enough for budgets to bite deterministically offline. */
function estimateUsage(messages: ChatMessage[], output: ModelChunk) {
  const chars = messages.reduce((n, m) => n + (m.content?.length ?? 0), 0);
  const out =
    output.type === 'text'
      ? output.delta.length
      : output.type === 'tool_call'
        ? output.call.arguments.length
        : 0;
  return { promptTokens: Math.ceil(chars / 4), completionTokens: Math.max(1, Math.ceil(out / 4)) };
}
