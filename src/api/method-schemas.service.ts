import { Injectable } from '@nestjs/common';
import { z } from 'zod';
import { MethodsService } from 'src/gateway/methods.service';

/** A JSON Schema object, as zod writes it. */
export interface JsonSchema {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  [key: string]: unknown;
}

/**
 * The methods' own zod params schemas as JSON Schema: what the OpenAPI document shows for each
 * route, and how a query string's text becomes the numbers and booleans the schema expects.
 */
@Injectable()
export class MethodSchemas {
  private readonly cache = new Map<string, JsonSchema>();

  constructor(private readonly methods: MethodsService) {}

  /** The params of `method` as JSON Schema (input side: defaults make a field optional). */
  params(method: string): JsonSchema {
    let schema = this.cache.get(method);
    if (!schema) {
      const m = this.methods.methods.find((x) => x.name === method);
      if (!m) {
        throw new Error(`no method '${method}'`);
      }
      schema = toJsonSchema(m.params);
      this.cache.set(method, schema);
    }
    return schema;
  }

  /** Query-string values typed as the schema says (`limit=50` is the number 50); the rest stays text. */
  fromQuery(method: string, query: Record<string, unknown>): Record<string, unknown> {
    const properties = this.params(method).properties ?? {};
    return Object.fromEntries(
      Object.entries(query).map(([key, value]) => [key, typed(properties[key]?.type, value)]),
    );
  }
}

/** zod to JSON Schema (draft 2020-12, as OpenAPI 3.1 uses), without the `$schema` tag. */
export function toJsonSchema(schema: z.ZodType, io: 'input' | 'output' = 'input'): JsonSchema {
  const { $schema: _tag, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as JsonSchema;
  return rest;
}

function typed(type: JsonSchema['type'], value: unknown): unknown {
  if (typeof value !== 'string') {
    return value;
  }
  if ((type === 'integer' || type === 'number') && value.trim() !== '' && Number.isFinite(Number(value))) {
    return Number(value);
  }
  if (type === 'boolean' && (value === 'true' || value === 'false')) {
    return value === 'true';
  }
  return value;
}
