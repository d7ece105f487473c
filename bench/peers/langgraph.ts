// LangGraph.js as a peer: a one-node agent graph whose "model" answers at once, checkpointed per thread
// (one thread per agent) by its Postgres checkpointer or its MemorySaver.
import { AIMessage, HumanMessage } from '@langchain/core/messages';
import {
  BaseCheckpointSaver,
  END,
  MemorySaver,
  MessagesAnnotation,
  START,
  StateGraph,
} from '@langchain/langgraph';
import { PostgresSaver } from '@langchain/langgraph-checkpoint-postgres';
import { Peer } from './shapes';

function agentGraph(checkpointer: BaseCheckpointSaver) {
  return new StateGraph(MessagesAnnotation)
    .addNode('agent', () => ({ messages: [new AIMessage('ok')] }))
    .addEdge(START, 'agent')
    .addEdge('agent', END)
    .compile({ checkpointer });
}

export async function langGraphPeer(databaseUrl?: string): Promise<Peer> {
  let saver: BaseCheckpointSaver;
  let closeSaver = () => Promise.resolve();
  if (databaseUrl) {
    const pg = PostgresSaver.fromConnString(databaseUrl);
    await pg.setup();
    saver = pg;
    closeSaver = () => pg.end();
  } else {
    saver = new MemorySaver();
  }
  const graph = agentGraph(saver);
  let round = 0;
  return {
    runtime: databaseUrl ? 'LangGraph.js + Postgres checkpointer' : 'LangGraph.js + MemorySaver',
    durable: databaseUrl !== undefined,
    prepare: () => {
      const prefix = `r${round++}`; // fresh threads per shape, as fresh agents are
      return Promise.resolve((agent: number, n: number) =>
        graph.invoke(
          { messages: [new HumanMessage(`task ${n}`)] },
          { configurable: { thread_id: `${prefix}-agent-${agent}` } },
        ),
      );
    },
    close: closeSaver,
  };
}
