import safeRegex from 'safe-regex2';
import { z } from 'zod';
import { WORK_KINDS } from './names';

const stepSchema = z.union([
  z
    .object({
      tool: z.string().min(1),
      args: z.record(z.string(), z.unknown()).default({}),
      delayMs: z.number().int().min(0).max(600_000).optional(),
    })
    .strict(),
  z
    .object({
      reply: z.string(),
      delayMs: z.number().int().min(0).max(600_000).optional(),
    })
    .strict(),
]);

const ruleSchema = z
  .object({
    when: z
      .object({
        kind: z.enum(WORK_KINDS).optional(),
        match: z
          .string()
          .max(1000)
          .refine((m) => isRegex(m), 'must be a valid regular expression')
          .refine(
            (m) => !isRegex(m) || safeRegex(m),
            'may backtrack catastrophically (nested quantifiers); simplify it',
          )
          .optional(),
      })
      .strict()
      .default({}),
    do: z.array(stepSchema).min(1).max(64),
  })
  .strict();

/** A scripted model's rules (docs/protocol.md, "The scripted model"). */
export const scriptSchema = z.array(ruleSchema).max(256);

export type Script = z.infer<typeof scriptSchema>;
export type ScriptRule = Script[number];
export type ScriptStep = ScriptRule['do'][number];

function isRegex(pattern: string): boolean {
  try {
    new RegExp(pattern, 'i');
    return true;
  } catch {
    return false;
  }
}
