import { WorkContext } from '../model-provider';

const PLACEHOLDER = /\{\{\s*([A-Za-z_][\w]*)((?:\.[\w-]+)*)\s*\}\}/g;
const KNOWN = new Set([
  'agentId',
  'kind',
  'prompt',
  'from',
  'subject',
  'body',
  'messageId',
  'event',
  'data',
  'result',
]);

export interface RenderContext {
  work: WorkContext;
  /** The previous tool step's JSON result. */
  result?: unknown;
}

function lookup(ctx: RenderContext, root: string, path: string): unknown {
  let value: unknown;
  if (root === 'result') {
    value = ctx.result;
  } else {
    value = (ctx.work as unknown as Record<string, unknown>)[root];
  }
  for (const key of path.split('.').filter(Boolean)) {
    value = value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[key] : undefined;
  }
  return value;
}

const asText = (v: unknown): string =>
  v === undefined || v === null ? '' : typeof v === 'string' ? v : JSON.stringify(v);

/** Fills `{{name}}` and `{{result.a.b}}` placeholders; unknown names stay as written. */
export function renderText(template: string, ctx: RenderContext): string {
  return template.replace(PLACEHOLDER, (whole, root: string, path: string) =>
    KNOWN.has(root) ? asText(lookup(ctx, root, path)) : whole,
  );
}

/**
 * Renders every string inside tool arguments. A string that is exactly one placeholder keeps the
 * value's type, so `data: "{{data}}"` passes the event's data on as an object.
 */
export function renderArgs(value: unknown, ctx: RenderContext): unknown {
  if (typeof value === 'string') {
    const single = /^\{\{\s*([A-Za-z_][\w]*)((?:\.[\w-]+)*)\s*\}\}$/.exec(value);
    if (single && KNOWN.has(single[1])) {
      const v = lookup(ctx, single[1], single[2]);
      return v === undefined ? '' : v;
    }
    return renderText(value, ctx);
  }
  if (Array.isArray(value)) {
    return value.map((v) => renderArgs(v, ctx));
  }
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, renderArgs(v, ctx)]));
  }
  return value;
}
