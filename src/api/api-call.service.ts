import { Injectable } from '@nestjs/common';
import type { Request, Response } from 'express';
import { RpcError, RpcErrorBody } from 'src/common/rpc-error';
import { AuthService } from 'src/gateway/auth.service';
import { unauthorized } from 'src/gateway/json-rpc';
import { RpcDispatcher } from 'src/gateway/rpc-dispatcher.service';
import { HTTP_STATUS } from './http-status';
import { MethodSchemas } from './method-schemas.service';

/**
 * The one path of every REST route: authenticate the bearer token, gather the method's params from
 * the path and the body (or the query string of a GET), and hand them to the same dispatcher the
 * socket transports use, so validation, rules and errors are the methods' own.
 */
@Injectable()
export class ApiCallService {
  constructor(
    private readonly dispatcher: RpcDispatcher,
    private readonly auth: AuthService,
    private readonly schemas: MethodSchemas,
  ) {}

  async run(req: Request, res: Response, method: string, path: Record<string, string> = {}): Promise<void> {
    const principal = this.auth.authenticate(AuthService.bearer(req.headers.authorization));
    if (principal === undefined) {
      this.fail(res, unauthorized());
      return;
    }
    let params: Record<string, unknown>;
    try {
      params = { ...this.input(req, method, path), ...path };
    } catch (err) {
      this.fail(res, (err as RpcError).toBody());
      return;
    }
    // REST has no pushes: subscribing (session.start) means nothing here.
    const reply = await this.dispatcher.dispatch(method, params, { principal, subscribe: () => undefined });
    if ('error' in reply) {
      this.fail(res, reply.error);
    } else {
      res.status(200).json(reply.result);
    }
  }

  /** The params besides the path's: the query string of a GET or DELETE, else the JSON body. */
  private input(req: Request, method: string, path: Record<string, string>): Record<string, unknown> {
    const given =
      req.method === 'GET' || req.method === 'DELETE'
        ? this.schemas.fromQuery(method, req.query)
        : parseBody(req.body);
    const twice = Object.keys(path).filter((k) => k in given);
    if (twice.length > 0) {
      throw RpcError.invalidParams(
        twice.map((k) => ({ path: k, message: 'given in the URL path; leave it out of the body' })),
      );
    }
    return given;
  }

  private fail(res: Response, error: RpcErrorBody): void {
    res.status(HTTP_STATUS[error.data.reason]).json({ error });
  }
}

/** `/api` bodies arrive as text (see bootstrap), so that bad JSON is a protocol `parse_error`. */
function parseBody(body: unknown): Record<string, unknown> {
  const text = typeof body === 'string' ? body.trim() : '';
  if (text === '') {
    return {};
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new RpcError('parse_error', 'Parse error: the request body is not valid JSON');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw RpcError.invalidParams([{ path: '', message: 'the request body must be a JSON object' }]);
  }
  return value as Record<string, unknown>;
}
