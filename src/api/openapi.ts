import { INestApplication } from '@nestjs/common';
import { DocumentBuilder, OpenAPIObject, SwaggerModule } from '@nestjs/swagger';
import type { SchemaObject } from '@nestjs/swagger/dist/interfaces/open-api-spec.interface';
import { ERROR_CODES } from 'src/common/rpc-error';
import { ApiModule } from './api.module';
import { HTTP_STATUS } from './http-status';
import { METHOD_RESULTS } from './method-results';
import { JsonSchema, MethodSchemas, toJsonSchema } from './method-schemas.service';

type Operation = {
  operationId?: string;
  description?: string;
  parameters?: Array<{ name: string; in: string; required?: boolean; schema?: unknown }>;
  requestBody?: unknown;
  responses?: Record<string, unknown>;
};

const ERROR_REF = { $ref: '#/components/schemas/Error' };

/**
 * The OpenAPI 3.1 document of `/api`, generated from the code: @nestjs/swagger reads the routes from
 * the controllers' decorators, and each operation's params and result come from the zod schemas of
 * the method it fronts (its `operationId`), the very schemas the dispatcher validates with.
 */
export function buildOpenApiDocument(app: INestApplication): OpenAPIObject {
  const config = new DocumentBuilder()
    .setTitle('Mailroom REST API')
    .setDescription(
      'Read and admin endpoints over the same methods, rules, errors and tokens as socket.io, /ws and POST /rpc. ' +
        'Each operation calls the method named by its operationId; see docs/protocol.md.',
    )
    .setVersion('1')
    .setOpenAPIVersion('3.1.0')
    .addBearerAuth()
    .build();
  const document = SwaggerModule.createDocument(app, config, { include: [ApiModule] });
  const schemas = app.get(MethodSchemas);
  for (const item of Object.values(document.paths)) {
    for (const [verb, op] of Object.entries(item) as Array<[string, Operation]>) {
      if (op && typeof op === 'object' && op.operationId && METHOD_RESULTS[op.operationId]) {
        describeOperation(op, verb, op.operationId, schemas.params(op.operationId));
      }
    }
  }
  document.components = {
    ...document.components,
    schemas: { ...document.components?.schemas, Error: errorSchema() as SchemaObject },
  };
  return document;
}

/** Serves the document at `/docs-json` and Swagger UI at `/docs` (its assets from swagger-ui-dist, no CDN). */
export function setupOpenApi(app: INestApplication): void {
  SwaggerModule.setup('docs', app, () => buildOpenApiDocument(app), { jsonDocumentUrl: 'docs-json' });
}

/** Params (path, then query for reads or a JSON body for writes), the 200 result and the error responses. */
function describeOperation(op: Operation, verb: string, method: string, params: JsonSchema): void {
  const properties = { ...(params.properties ?? {}) };
  const inPath = (op.parameters ?? []).filter((p) => p.in === 'path');
  for (const p of inPath) {
    p.required = true;
    p.schema = properties[p.name] ?? { type: 'string' };
    delete properties[p.name];
  }
  const rest = Object.keys(properties);
  const required = (params.required ?? []).filter((k) => rest.includes(k));
  const read = verb === 'get' || verb === 'delete';
  if (read) {
    const query = rest.map((name) => ({
      name,
      in: 'query',
      required: required.includes(name),
      schema: properties[name],
    }));
    op.parameters = [...inPath, ...query];
  } else if (rest.length === 0) {
    op.parameters = inPath; // everything is in the path: no body
  } else {
    op.parameters = inPath;
    op.requestBody = {
      required: required.length > 0,
      content: { 'application/json': { schema: { ...params, properties, required } } },
    };
  }
  op.description = `Calls the method \`${method}\` with the path's ids and the ${read ? 'query' : 'body'} as its params.`;
  op.responses = {
    '200': {
      description: `The result of ${method}`,
      content: { 'application/json': { schema: toJsonSchema(METHOD_RESULTS[method], 'output') } },
    },
    ...errorResponses(),
  };
}

/** One response per HTTP status a protocol error maps to, each listing the reasons behind it. */
function errorResponses(): Record<string, unknown> {
  const byStatus = new Map<number, string[]>();
  for (const [reason, status] of Object.entries(HTTP_STATUS)) {
    byStatus.set(status, [...(byStatus.get(status) ?? []), reason]);
  }
  return Object.fromEntries(
    [...byStatus].map(([status, reasons]) => [
      String(status),
      {
        description: `error.data.reason: ${reasons.join(' | ')}`,
        content: { 'application/json': { schema: ERROR_REF } },
      },
    ]),
  );
}

/** `{ error: { code, message, data } }`, the methods' error body. */
function errorSchema(): JsonSchema {
  return {
    type: 'object',
    required: ['error'],
    properties: {
      error: {
        type: 'object',
        required: ['code', 'message', 'data'],
        properties: {
          code: { type: 'integer', enum: Object.values(ERROR_CODES) },
          message: { type: 'string' },
          data: {
            type: 'object',
            required: ['reason'],
            properties: {
              reason: { type: 'string', enum: Object.keys(ERROR_CODES) },
              issues: {
                type: 'array',
                items: {
                  type: 'object',
                  required: ['path', 'message'],
                  properties: { path: { type: 'string' }, message: { type: 'string' } },
                },
              },
            },
          },
        },
      },
    },
  };
}
