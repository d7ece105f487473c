import { Injectable } from '@nestjs/common';
import { Tx } from 'src/database/database.service';
import { defer, json, queryOne } from 'src/database/sql';

/** Where a tool call stands in its work item: the model step (1, 2, …) and its place among that step's calls. */
export interface ToolCallKey {
  taskId: string;
  step: number;
  index: number;
}

/**
 * The committed result of each built-in tool call, so that an interrupted item that runs again is
 * handed what its first run's call returned instead of repeating the call's effect.
 */
@Injectable()
export class ToolEffectRepository {
  async record(tx: Tx, key: ToolCallKey, tool: string, result: unknown): Promise<void> {
    await defer(
      tx,
      `INSERT INTO tool_effect (task_id, step, call_index, tool, result) VALUES ($1, $2, $3, $4, $5::jsonb)
       ON CONFLICT DO NOTHING`,
      [key.taskId, key.step, key.index, tool, json(result ?? null)],
    );
  }

  async find(tx: Tx, key: ToolCallKey): Promise<{ tool: string; result: unknown } | undefined> {
    return queryOne<{ tool: string; result: unknown }>(
      tx,
      `SELECT tool, result FROM tool_effect WHERE task_id = $1 AND step = $2 AND call_index = $3`,
      [key.taskId, key.step, key.index],
    );
  }
}
