// @openai/agents as a peer: one Agent per agent, run in memory by a Runner whose model answers at once.
import { Agent, Model, ModelResponse, Runner, Usage } from '@openai/agents';
import { Peer } from './shapes';

/** A model that answers every request with "ok", instantly: the runtime's own cost is what is left. */
class InstantModel implements Model {
  getResponse(): Promise<ModelResponse> {
    return Promise.resolve({
      usage: new Usage(),
      output: [
        {
          type: 'message',
          role: 'assistant',
          status: 'completed',
          content: [{ type: 'output_text', text: 'ok' }],
        },
      ],
    });
  }

  getStreamedResponse(): AsyncIterable<never> {
    throw new Error('the bench does not stream');
  }
}

export function openAiAgentsPeer(): Peer {
  const runner = new Runner({ model: new InstantModel(), tracingDisabled: true });
  return {
    runtime: '@openai/agents (in memory)',
    durable: false,
    prepare: (agents) => {
      const team = Array.from(
        { length: agents },
        (_, i) => new Agent({ name: `agent${i}`, instructions: 'Answer.' }),
      );
      return Promise.resolve((agent: number, n: number) => runner.run(team[agent], `task ${n}`));
    },
    close: () => Promise.resolve(),
  };
}
